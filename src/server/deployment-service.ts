/**
 * Deployments and rollbacks: the gate, one active deployment per
 * environment, a step per host, completion when every host reported, and
 * failure when a host fails or does not finish within the environment's
 * host_timeout.
 */
import type { AgentReport, DeploymentView } from '../api/schemas.js';
import type { Config } from '../core/config.js';
import { formatDuration } from '../core/duration.js';
import { LockstepError, notFound } from '../core/errors.js';
import { evaluateGate, type Verdict } from '../core/gate.js';
import { shortId } from '../core/manifest.js';
import type { DeploymentRow, ReadRepo, ReleaseRow, WriteRepo } from '../store/store.js';
import { requireConfig } from './config-service.js';
import type { ServerContext } from './context.js';
import { keys } from './notifier.js';
import { resolveRelease } from './release-service.js';

type DeploymentKind = 'deploy' | 'rollback';

/** Evaluates the gate for a release entering an environment, without changing anything. */
export async function planDeployment(repo: ReadRepo, config: Config, release: ReleaseRow, env: string): Promise<Verdict> {
  const source = config.environments[env]?.promote_from;
  const inSource = source ? await repo.releaseEnvironment(release.id, source) : undefined;
  return evaluateGate({
    config,
    environment: env,
    release: { id: release.id, version: release.version },
    inSource: {
      succeededAt: inSource?.succeeded_at ? new Date(inSource.succeeded_at) : undefined,
      rolledBackAt: inSource?.rolled_back_at ? new Date(inSource.rolled_back_at) : undefined,
    },
    sourceCurrent: source ? await repo.environmentCurrent(source) : undefined,
  });
}

/** Starts a deployment of a release to an environment after the gate allowed it. */
export async function startDeployment(context: ServerContext, actor: string, request: { release: string; env: string; reason?: string | undefined }): Promise<DeploymentView> {
  const config = await requireConfig(context.store.read);
  requireEnvironment(config, request.env);
  const release = await resolveRelease(context.store.read, request.release);
  const verdict = await planDeployment(context.store.read, config, release, request.env);
  if (verdict.kind === 'refused') {
    const at = context.now().toISOString();
    await context.store.transaction((repo) =>
      repo.appendAudit({ at, actor, action: 'deployment.refused', target: `env:${request.env}`, details: { release: release.id, version: release.version, reason: verdict.reason, request: request.reason ?? null } }),
    );
    throw new LockstepError('refused', verdict.reason, { rules: verdict.rules });
  }
  return begin(context, actor, 'deploy', release, request.env, request.reason ?? null);
}

/**
 * Returns every host of an environment to its previous known-good release,
 * or to `to`, which must be known-good there. Rollbacks bypass the gate:
 * they restore a state that already passed it.
 */
export async function startRollback(context: ServerContext, actor: string, env: string, request: { to?: string | undefined; reason?: string | undefined }): Promise<DeploymentView> {
  const config = await requireConfig(context.store.read);
  requireEnvironment(config, env);
  const repo = context.store.read;
  const current = await repo.environmentCurrent(env);
  const knownGood = await repo.knownGoodReleases(env);
  let target: ReleaseRow;
  if (request.to !== undefined) {
    target = await resolveRelease(repo, request.to);
    if (!knownGood.some((row) => row.release_id === target.id)) {
      throw new LockstepError('refused', `release ${target.version} (${shortId(target.id)}) is not known-good in ${env}; known-good: ${await describeReleases(repo, knownGood.map((row) => row.release_id))}`);
    }
  } else {
    // After a failed deployment some hosts may run a release that never
    // became current: then the current release itself is the way back.
    const hosts = (await repo.listHosts(env)).filter((host) => host.enrolled_at !== null);
    const mixed = current !== undefined && hosts.some((host) => host.current_release_id !== current);
    const previous = mixed ? knownGood.find((row) => row.release_id === current) : knownGood.find((row) => row.release_id !== current);
    if (!previous) throw new LockstepError('refused', `${env} has no known-good release to roll back to${current ? ` before ${shortId(current)}` : ''}`);
    target = (await repo.release(previous.release_id)) as ReleaseRow;
  }
  return begin(context, actor, 'rollback', target, env, request.reason ?? null);
}

async function begin(context: ServerContext, actor: string, kind: DeploymentKind, release: ReleaseRow, env: string, reason: string | null): Promise<DeploymentView> {
  const at = context.now().toISOString();
  const { id, hosts } = await context.store.transaction(async (repo) => {
    const running = await repo.runningDeployments(env);
    const first = running[0];
    if (first) {
      throw new LockstepError('conflict', `deployment #${first.id} to ${env} is still running (started by ${first.requested_by} at ${first.created_at}); follow it with: lockstep deploy --follow ${first.id}`);
    }
    const hosts = (await repo.listHosts(env)).filter((host) => host.enrolled_at !== null);
    if (hosts.length === 0) throw new LockstepError('refused', `${env} has no enrolled hosts; add one with: lockstep host add NAME --env ${env}`);
    const id = await repo.next('deployment');
    const from = (await repo.environmentCurrent(env)) ?? null;
    await repo.insertDeployment({ id, env, kind, release_id: release.id, from_release_id: from, state: 'running', requested_by: actor, reason, created_at: at, finished_at: null, error: null, revision: 1 });
    for (const host of hosts) {
      await repo.insertDeploymentHost({ deployment_id: id, host: host.name, from_release_id: host.current_release_id, state: 'pending', error: null, updated_at: at });
    }
    await repo.upsertReleaseEnvironment(release.id, env, {}, at);
    await repo.appendAudit({
      at,
      actor,
      action: kind === 'deploy' ? 'deployment.started' : 'rollback.started',
      target: `env:${env}`,
      details: { deployment: id, release: release.id, version: release.version, from, hosts: hosts.map((host) => host.name), reason },
    });
    return { id, hosts };
  });
  for (const host of hosts) context.notifier.notify(keys.host(host.name));
  return deploymentView(context, id);
}

/** Records one host's report and finishes the deployment when it is complete. */
export async function recordReport(context: ServerContext, host: string, report: AgentReport): Promise<void> {
  const at = context.now().toISOString();
  const changed = await context.store.transaction(async (repo) => {
    await repo.updateHost(host, { last_seen_at: at, current_release_id: report.currentReleaseId });
    const steps = await repo.deploymentHosts(report.deploymentId);
    if (!steps.some((step) => step.host === host)) throw new LockstepError('forbidden', `deployment #${report.deploymentId} has no step for host ${host}`);
    // Bumping the revision first locks the deployment's row (PostgreSQL), so
    // concurrent reports of one deployment are evaluated one after the other.
    const deployment = await repo.updateDeployment(report.deploymentId, {});
    if (deployment.state !== 'running') return false;
    await repo.updateDeploymentHost(deployment.id, host, { state: report.state, error: report.error ?? null, updated_at: at });
    await finishIfComplete(repo, deployment, at);
    return true;
  });
  if (changed) context.notifier.notify(keys.deployment(report.deploymentId));
}

/** Fails the steps of running deployments whose hosts did not finish within host_timeout. */
export async function expireOverdueSteps(context: ServerContext): Promise<void> {
  const running = await context.store.read.runningDeployments();
  if (running.length === 0) return;
  const config = await requireConfig(context.store.read);
  const now = context.now();
  for (const deployment of running) {
    const timeout = config.environments[deployment.env]?.host_timeout ?? 120_000;
    if (now.getTime() - Date.parse(deployment.created_at) < timeout) continue;
    const at = now.toISOString();
    await context.store.transaction(async (repo) => {
      const locked = await repo.updateDeployment(deployment.id, {});
      if (locked.state !== 'running') return;
      for (const step of await repo.deploymentHosts(deployment.id)) {
        if (step.state === 'succeeded' || step.state === 'failed') continue;
        const host = await repo.host(step.host);
        const seen = host?.last_seen_at ? `last seen ${host.last_seen_at}` : 'never seen';
        await repo.updateDeploymentHost(deployment.id, step.host, { state: 'failed', error: `did not finish within ${formatDuration(timeout)} (offline? ${seen})`, updated_at: at });
      }
      await finishIfComplete(repo, locked, at);
    });
    context.notifier.notify(keys.deployment(deployment.id));
  }
}

async function finishIfComplete(repo: WriteRepo, deployment: DeploymentRow, at: string): Promise<void> {
  const steps = await repo.deploymentHosts(deployment.id);
  if (steps.some((step) => step.state === 'pending' || step.state === 'staging')) return;
  const failed = steps.filter((step) => step.state === 'failed');
  const action = deployment.kind === 'deploy' ? 'deployment' : 'rollback';
  if (failed.length > 0) {
    const error = failed.map((step) => `${step.host}: ${step.error ?? 'failed'}`).join('; ');
    await repo.updateDeployment(deployment.id, { state: 'failed', finished_at: at, error });
    await repo.appendAudit({ at, actor: 'lockstep', action: `${action}.failed`, target: `env:${deployment.env}`, details: { deployment: deployment.id, release: deployment.release_id, failedHosts: failed.map((step) => step.host), error } });
    return;
  }
  await repo.updateDeployment(deployment.id, { state: 'succeeded', finished_at: at });
  await repo.setEnvironmentCurrent(deployment.env, deployment.release_id, at);
  await repo.upsertReleaseEnvironment(deployment.release_id, deployment.env, { succeeded_at: at, rolled_back_at: null }, at);
  if (deployment.kind === 'rollback' && deployment.from_release_id && deployment.from_release_id !== deployment.release_id) {
    await repo.upsertReleaseEnvironment(deployment.from_release_id, deployment.env, { rolled_back_at: at }, at);
  }
  await repo.appendAudit({ at, actor: 'lockstep', action: `${action}.succeeded`, target: `env:${deployment.env}`, details: { deployment: deployment.id, release: deployment.release_id, hosts: steps.length } });
}

/** A deployment with its host steps, as the API shows it. */
export async function deploymentView(context: ServerContext, id: number): Promise<DeploymentView> {
  const repo = context.store.read;
  const row = await repo.deployment(id);
  if (!row) throw notFound(`no deployment #${id}; list them with: lockstep history`);
  return viewOf(repo, row);
}

/** Converts a deployment row to its API view. */
export async function viewOf(repo: ReadRepo, row: DeploymentRow): Promise<DeploymentView> {
  const release = await repo.release(row.release_id);
  const steps = await repo.deploymentHosts(row.id);
  return {
    id: Number(row.id),
    env: row.env,
    kind: row.kind as DeploymentView['kind'],
    releaseId: row.release_id,
    version: release?.version ?? '?',
    fromReleaseId: row.from_release_id,
    state: row.state as DeploymentView['state'],
    requestedBy: row.requested_by,
    reason: row.reason,
    createdAt: row.created_at,
    finishedAt: row.finished_at,
    error: row.error,
    revision: Number(row.revision),
    hosts: steps.map((step) => ({ host: step.host, state: step.state as DeploymentView['hosts'][number]['state'], fromReleaseId: step.from_release_id, error: step.error, updatedAt: step.updated_at })),
  };
}

/** Long-polls a deployment until its revision passes `since` or `waitMs` elapses. */
export async function waitForDeployment(context: ServerContext, id: number, since: number, waitMs: number, signal: AbortSignal): Promise<DeploymentView> {
  const deadline = Date.now() + waitMs;
  const recheckMs = context.store.capabilities.sharedByServers ? 500 : 5_000;
  for (;;) {
    const view = await deploymentView(context, id);
    const remaining = deadline - Date.now();
    if (view.revision > since || remaining <= 0 || signal.aborted) return view;
    await context.notifier.wait(keys.deployment(id), Math.min(remaining, recheckMs), signal);
  }
}

function requireEnvironment(config: Config, env: string): void {
  if (!config.environments[env]) {
    throw notFound(`environment "${env}" is not in lockstep.yaml (environments: ${Object.keys(config.environments).join(', ')})`);
  }
}

async function describeReleases(repo: ReadRepo, ids: readonly string[]): Promise<string> {
  if (ids.length === 0) return 'none';
  const names = await Promise.all(ids.map(async (id) => `${(await repo.release(id))?.version ?? '?'} (${shortId(id)})`));
  return names.join(', ');
}
