/** Host facts as agents report them, and `lockstep parity`: two environments compared on the same work. */
import type { FactsReport } from '../../api/schemas.js';
import { environmentOf, type EnvironmentConfig } from '../../core/config.js';
import { canonicalJson, type Manifest } from '../../core/manifest.js';
import { templateNames } from '../../core/template.js';
import { plannedRelease } from '../system/system-plan-service.js';
import { LockstepError } from '../../core/errors.js';
import { compareEnvironments, type HostFacts, type ParityEnvironment, type ParityResult } from '../../core/parity.js';
import type { HostFactsReadRepo } from '../../store/host-facts-repo.js';
import type { HostReadRepo } from '../../store/host-repo.js';
import type { ReleaseReadRepo } from '../../store/release-repo.js';
import type { SecretReadRepo } from '../../store/secret-repo.js';
import { requireConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';
import { manifestOf } from '../releases/release-service.js';
import { secretDigests } from '../secrets/secret-service.js';

/**
 * Stores a host's latest facts. Facts are observations, like heartbeats, not
 * changes Lockstep made, so they are not audit events; `changed_at` records
 * when they last differed.
 */
export async function recordFacts(context: ServerContext, host: string, report: FactsReport): Promise<void> {
  const at = context.now().toISOString();
  const facts = canonicalJson(report.facts);
  await context.store.transaction(async (repo) => {
    const [previous] = await repo.hostFacts([host]);
    await repo.putHostFacts({ host, facts, reported_at: at, changed_at: previous?.facts === facts ? previous.changed_at : at });
  });
}

/** When each host last reported its facts (null: never). */
type FactsAge = readonly { readonly name: string; readonly env: string; readonly factsAt: string | null }[];

/** Compares environment `a` with environment `b` (the body of parityResponse); unknown names are bad input. */
export async function parityView(context: ServerContext, a: string, b: string): Promise<ParityResult & { readonly hosts: FactsAge }> {
  const repo = context.store.read;
  const config = await requireConfig(repo);
  const names = Object.keys(config.environments);
  const known = (name: string): EnvironmentConfig => environmentOf(config, name);
  const envA = known(a);
  const envB = known(b);
  if (a === b) throw new LockstepError('bad-input', `compare two different environments, e.g. lockstep parity ${names.find((name) => name !== a) ?? 'test'} ${a}`);
  const [left, right] = await Promise.all([environment(context, a, envA), environment(context, b, envB)]);
  return { ...compareEnvironments(left.environment, right.environment), hosts: [...left.hosts, ...right.hosts] };
}

async function environment(context: ServerContext, name: string, config: EnvironmentConfig): Promise<{ environment: ParityEnvironment; hosts: FactsAge }> {
  const repo: HostReadRepo & HostFactsReadRepo & ReleaseReadRepo & SecretReadRepo = context.store.read;
  const currentId = await repo.environmentCurrent(name);
  const release = currentId ? await repo.release(currentId) : undefined;
  const manifest = release ? manifestOf(release) : undefined;
  const hostRows = await repo.listHosts(name);
  const factRows = new Map((await repo.hostFacts(hostRows.map((row) => row.name))).map((row) => [row.host, row]));
  return {
    environment: {
      name,
      release: release && manifest ? { id: release.id, version: release.version, manifest } : null,
      vars: config.vars,
      secrets: await secretDigests(repo, name),
      declared: config.declared_differences,
      templates: manifest?.system === undefined ? {} : await templatesOf(context, manifest),
      hosts: hostRows.map((row) => {
        const facts = factRows.get(row.name);
        return { name: row.name, releaseId: row.current_release_id, facts: facts ? (JSON.parse(facts.facts) as HostFacts) : null };
      }),
    },
    hosts: hostRows.map((row) => ({ name: row.name, env: name, factsAt: factRows.get(row.name)?.reported_at ?? null })),
  };
}

/** The names each managed-file template of a release inserts, by host path (their sources read from the blob store). */
async function templatesOf(context: ServerContext, manifest: Manifest): Promise<Record<string, readonly string[]>> {
  const planned = await plannedRelease(context, manifest);
  const templates: Record<string, readonly string[]> = {};
  for (const file of manifest.system?.files ?? []) {
    const source = file.template ? planned.sources.get(file.source) : undefined;
    if (source !== undefined) templates[file.path] = templateNames(source.toString('utf8'));
  }
  return templates;
}
