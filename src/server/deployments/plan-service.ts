/** `lockstep plan`: what a deployment would do, changing nothing. */
import { environmentOf } from '../../core/config.js';
import type { PlanResponse } from '../../api/schemas.js';
import { diffManifests } from '../../core/manifest-diff.js';
import type { Manifest } from '../../core/manifest.js';
import { planBatches } from '../../core/rollout-plan.js';
import { requireConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';
import { planDeployment } from './deployment-service.js';
import { manifestOf, resolveRelease, summarize } from '../releases/release-service.js';
import { withRule } from '../../core/policy.js';
import type { PlannedRelease } from '../../core/system-plan.js';
import { hostSystemPlan, installedPackages, plannedRelease, templateRule } from '../system/system-plan-service.js';
import { secretNames } from '../secrets/secret-service.js';

/** Paths listed per kind of change and host; the counts are always complete. */
const MAX_PATHS = 100;

/** The verdict, the batches in order, and per host the files that would change and the bytes it must fetch. */
export async function planRollout(context: ServerContext, requester: string, request: { release: string; env: string }): Promise<PlanResponse> {
  const repo = context.store.read;
  const config = await requireConfig(repo);
  const environment = environmentOf(config, request.env);
  const release = await resolveRelease(repo, request.release);
  const target = manifestOf(release);
  const hosts = (await repo.listHosts(request.env)).filter((host) => host.enrolled_at !== null);
  const manifests = new Map<string, Manifest | null>();
  const planned = new Map<string, PlannedRelease>();
  const targetParts = await plannedRelease(context, target);
  const envSecretNames = await secretNames(repo, request.env);
  const installed = target.system?.packages.length ? await installedPackages(context, hosts.map((host) => host.name)) : new Map<string, Readonly<Record<string, string>>>();
  const hostPlans = [];
  for (const host of hosts) {
    const from = host.current_release_id;
    if (from !== null && !manifests.has(from)) {
      const row = await repo.release(from);
      manifests.set(from, row ? manifestOf(row) : null);
    }
    const fromManifest = from === null ? null : (manifests.get(from) ?? null);
    const diff = diffManifests(fromManifest, target);
    let system;
    if (target.system !== undefined || fromManifest?.system !== undefined) {
      let fromParts = from === null ? undefined : planned.get(from);
      if (fromManifest !== null && from !== null && fromParts === undefined) {
        fromParts = await plannedRelease(context, fromManifest);
        planned.set(from, fromParts);
      }
      const plan = hostSystemPlan(fromParts ?? null, targetParts, { name: host.name, installed: installed.get(host.name) }, request.env, environment.vars, envSecretNames);
      system = { files: plan.files.map((file) => ({ ...file })), packages: plan.packages.map((change) => ({ ...change })) };
    }
    hostPlans.push({
      host: host.name,
      currentReleaseId: from,
      added: { count: diff.added.length, paths: diff.added.slice(0, MAX_PATHS) },
      changed: { count: diff.changed.length, paths: diff.changed.slice(0, MAX_PATHS) },
      removed: { count: diff.removed.length, paths: diff.removed.slice(0, MAX_PATHS) },
      fetchBytes: diff.fetchBytes,
      fetchBlobs: diff.fetchBlobs,
      ...(system === undefined ? {} : { system }),
    });
  }
  const policy = await planDeployment(repo, config, release, request.env, context.now(), { requester });
  const templates = await templateRule(context, targetParts, request.env, environment.vars);
  const verdict = templates === undefined ? policy : withRule(policy, templates);
  return {
    release: await summarize(repo, release),
    env: request.env,
    verdict: { kind: verdict.kind, rules: [...verdict.rules], ...(verdict.kind !== 'allowed' ? { reason: verdict.reason } : {}) },
    batches: planBatches(hosts.map((host) => host.name), environment.rollout),
    rollout: { canary: environment.rollout.canary, batch: String(environment.rollout.batch), pause: environment.rollout.pause, maxFailures: String(environment.rollout.max_failures) },
    hosts: hostPlans,
  };
}
