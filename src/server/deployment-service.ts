/**
 * Deployments and rollbacks. A deployment rolls out in batches (the canary
 * first); a batch opens only when every host of the one before is healthy
 * (and after the configured pause). A failed host beyond `max_failures`
 * stops the rollout: hosts that had switched are returned to the release
 * they had, and the release is marked rolled back in the environment.
 * An environment rollback goes to every host at once.
 */
import type { AgentReport, DeploymentView } from '../api/schemas.js';
import { environmentOf, type Config, type EnvironmentConfig } from '../core/config.js';
import { formatDuration } from '../core/duration.js';
import { LockstepError, notFound } from '../core/errors.js';
import { type ReleaseInEnvironment } from '../core/gate.js';
import { evaluatePolicy, type PolicyVerdict } from '../core/policy.js';
import { isKnownGood, knownGoodSoak } from '../core/known-good.js';
import { shortId } from '../core/manifest.js';
import { decideObservation, decideReport, FINISHED_STEPS, IN_FLIGHT_STEPS, type DeploymentKind, type DeploymentState, type ReportDecision, type StepState } from '../core/report-decision.js';
import { failureBudget, planBatches } from '../core/rollout-plan.js';
import type { DeploymentHostRow, DeploymentRow, HostRow, ReadRepo, ReleaseEnvironmentRow, ReleaseRow, WriteRepo } from '../store/store.js';
import type { Alert } from './alerts/alert-channel.js';
import { currentConfig, requireConfig } from './config-service.js';
import type { Principal, ServerContext } from './context.js';
import { keys } from './notifier.js';
import { resolveRelease } from './release-service.js';


/** The gate's facts about a release in one environment, from its record. */
function factsOf(row: ReleaseEnvironmentRow | undefined): ReleaseInEnvironment {
  const date = (value: string | null | undefined) => (value ? new Date(value) : undefined);
  return {
    succeededAt: date(row?.succeeded_at),
    rolledBackAt: date(row?.rolled_back_at),
    rolledBackReason: row?.rolled_back_reason ?? undefined,
    rejectedAt: date(row?.rejected_at),
    rejectedReason: row?.rejected_reason ?? undefined,
  };
}

/** A person or script acting through a user token. */
export type UserPrincipal = Extract<Principal, { kind: 'user' }>;

/**
 * Evaluates the whole policy for a release entering an environment, without
 * changing anything. `deployment` gives the approvals an existing
 * deployment has; without it, a new request by `requester` is assumed.
 */
export async function planDeployment(repo: ReadRepo, config: Config, release: ReleaseRow, env: string, now: Date, who: { requester: string; deployment?: DeploymentRow }): Promise<PolicyVerdict> {
  const environment = config.environments[env] as EnvironmentConfig;
  const source = environment.promote_from;
  const inSource = source ? await repo.releaseEnvironment(release.id, source) : undefined;
  const sourceCurrent = source ? await repo.environmentCurrent(source) : undefined;
  const sourceHosts = source ? await repo.listHosts(source) : [];
  const granted = who.deployment ? (await repo.approvals(who.deployment.id)).filter((row) => row.decision === 'approve').length : 0;
  return evaluatePolicy({
    config,
    environment: env,
    release: { id: release.id, version: release.version },
    inSource: factsOf(inSource),
    sourceCurrent,
    inTarget: factsOf(await repo.releaseEnvironment(release.id, env)),
    now,
    policy: environment,
    sourceCurrentSince: sourceCurrent === release.id && inSource?.succeeded_at ? new Date(inSource.succeeded_at) : undefined,
    sourceUnhealthyHosts: sourceHosts.filter((host) => host.enrolled_at !== null && host.health === 'unhealthy').map((host) => host.name),
    approvals: { granted, excluded: [...new Set([who.requester, release.created_by])] },
    unreconciledFirecall: await repo.unreconciledFirecall(env),
  });
}

/** Refuses a token scoped to other environments. */
export function requireEnvironmentScope(principal: UserPrincipal, env: string): void {
  if (principal.envs !== null && !principal.envs.includes(env)) {
    throw new LockstepError('forbidden', `token ${principal.name} may not act on ${env} (its environments: ${principal.envs.join(', ') || 'none'})`);
  }
}

/**
 * Starts a deployment after the policy allowed it, or records it as
 * awaiting approval. An admin's `override` (with a reason) proceeds past
 * refused rules unless the environment says `allow_override: false`; it is
 * loudly audited and alerted.
 */
export async function startDeployment(
  context: ServerContext,
  principal: UserPrincipal,
  request: { release: string; env: string; reason?: string | undefined; override?: boolean | undefined },
): Promise<DeploymentView> {
  const actor = principal.name;
  const config = await requireConfig(context.store.read);
  requireEnvironment(config, request.env);
  requireEnvironmentScope(principal, request.env);
  const environment = config.environments[request.env] as EnvironmentConfig;
  const release = await resolveRelease(context.store.read, request.release);
  const now = context.now();
  const verdict = await planDeployment(context.store.read, config, release, request.env, now, { requester: actor });
  const at = now.toISOString();
  if (request.override) {
    if (principal.role !== 'admin') throw new LockstepError('forbidden', `only the admin role may override policy; token ${actor} has the ${principal.role} role`);
    if (!request.reason?.trim()) throw new LockstepError('bad-input', 'an override needs a reason: --override --reason TEXT');
    if (!environment.allow_override) {
      await context.store.transaction((repo) =>
        repo.appendAudit({ at, actor, action: 'deployment.override_refused', target: `env:${request.env}`, details: { release: release.id, reason: request.reason } }),
      );
      throw new LockstepError('refused', `${request.env} forbids overrides (allow_override: false)`);
    }
    const overridden = verdict.rules.filter((rule) => !rule.passed).map((rule) => `${rule.rule}: ${rule.detail}`);
    const view = await begin(context, actor, 'deploy', release, request.env, request.reason, config, 'running', overridden.length > 0 ? request.reason : null);
    if (overridden.length > 0) {
      await context.store.transaction((repo) =>
        repo.appendAudit({ at, actor, action: 'deployment.override', target: `env:${request.env}`, details: { deployment: view.id, release: release.id, version: release.version, reason: request.reason, overridden } }),
      );
      context.alerts.dispatch(
        { kind: 'deployment.override', env: request.env, at, summary: `${actor} overrode policy to deploy ${release.app}@${release.version} to ${request.env}: ${request.reason}`, details: { deployment: view.id, overridden } },
        environment.alerts,
      );
    }
    return view;
  }
  if (verdict.kind === 'refused') {
    await context.store.transaction((repo) =>
      repo.appendAudit({ at, actor, action: 'deployment.refused', target: `env:${request.env}`, details: { release: release.id, version: release.version, reason: verdict.reason, request: request.reason ?? null } }),
    );
    throw new LockstepError('refused', verdict.reason, { rules: verdict.rules });
  }
  return begin(context, actor, 'deploy', release, request.env, request.reason ?? null, config, verdict.kind === 'waiting' ? 'awaiting_approval' : 'running', null);
}

/**
 * Returns every host of an environment to its previous known-good release,
 * or to `to`, which must be known-good there. Rollbacks bypass the gate:
 * they restore a state that already passed it.
 */
export async function startRollback(context: ServerContext, principal: UserPrincipal, env: string, request: { to?: string | undefined; reason?: string | undefined }): Promise<DeploymentView> {
  const actor = principal.name;
  const config = await requireConfig(context.store.read);
  requireEnvironment(config, env);
  requireEnvironmentScope(principal, env);
  if (config.environments[env]?.rollback.require_reason && !request.reason?.trim()) {
    throw new LockstepError('refused', `the policy of ${env} requires a reason for rollbacks: lockstep rollback ${env} --reason TEXT`);
  }
  const repo = context.store.read;
  const current = await repo.environmentCurrent(env);
  const hostsOfEnv = (await repo.listHosts(env)).filter((host) => host.enrolled_at !== null);
  const soak = knownGoodSoak(config, env);
  const unhealthy = hostsOfEnv.some((host) => host.health === 'unhealthy');
  // Known-good: succeeded, not rolled back, and soaked (see core/known-good.ts).
  const knownGood = (await repo.knownGoodReleases(env)).filter((row) => isKnownGood(row, soak, context.now(), unhealthy));
  let target: ReleaseRow;
  if (request.to !== undefined) {
    target = await resolveRelease(repo, request.to);
    if (!knownGood.some((row) => row.release_id === target.id)) {
      throw new LockstepError('refused', `release ${target.version} (${shortId(target.id)}) is not known-good in ${env}; known-good: ${await describeReleases(repo, knownGood.map((row) => row.release_id))}`);
    }
  } else {
    // After a failed deployment some hosts may run a release that never
    // became current: then the current release itself is the way back.
    const mixed = current !== undefined && hostsOfEnv.some((host) => host.current_release_id !== current);
    // The current release is what the environment runs: it is the way back even before it soaked.
    const previous = mixed ? (await repo.releaseEnvironment(current, env)) : knownGood.find((row) => row.release_id !== current);
    if (!previous) throw new LockstepError('refused', `${env} has no known-good release to roll back to${current ? ` before ${shortId(current)}` : ''}`);
    target = (await repo.release(previous.release_id)) as ReleaseRow;
  }
  return begin(context, actor, 'rollback', target, env, request.reason ?? null, config, 'running', null);
}

async function begin(
  context: ServerContext,
  actor: string,
  kind: Exclude<DeploymentKind, 'return'>,
  release: ReleaseRow,
  env: string,
  reason: string | null,
  config: Config,
  initial: 'running' | 'awaiting_approval',
  overrideReason: string | null,
): Promise<DeploymentView> {
  const at = context.now();
  const iso = at.toISOString();
  const environment = config.environments[env] as EnvironmentConfig;
  const { id, dispatched } = await context.store.transaction(async (repo) => {
    const running = await repo.activeDeployments(env);
    const first = running[0];
    if (first) {
      throw new LockstepError('conflict', `deployment #${first.id} to ${env} is still ${first.state.replace(/_/g, ' ')} (started by ${first.requested_by} at ${first.created_at}); follow it with: lockstep deploy --follow ${first.id}`);
    }
    const hosts = (await repo.listHosts(env)).filter((host) => host.enrolled_at !== null);
    if (hosts.length === 0) throw new LockstepError('refused', `${env} has no enrolled hosts; add one with: lockstep host add NAME --env ${env}`);
    // A rollback restores a known-good state as fast as possible: every host at once.
    const batches = kind === 'rollback' ? [hosts.map((host) => host.name).sort()] : planBatches(hosts.map((host) => host.name), environment.rollout);
    const batchOf = new Map(batches.flatMap((names, index) => names.map((name) => [name, index] as const)));
    const id = await repo.next('deployment');
    const from = (await repo.environmentCurrent(env)) ?? null;
    await repo.insertDeployment({
      id, env, kind, release_id: release.id, from_release_id: from, state: initial, requested_by: actor, reason,
      created_at: iso, finished_at: null, error: null, revision: 1, current_batch: 0, batches: batches.length, next_batch_at: null,
      override_reason: overrideReason,
    });
    const deadline = new Date(at.getTime() + environment.host_timeout).toISOString();
    for (const host of hosts) {
      const batch = batchOf.get(host.name) ?? 0;
      const dispatch = batch === 0 && initial === 'running';
      await repo.insertDeploymentHost({
        deployment_id: id, host: host.name, from_release_id: host.current_release_id, state: dispatch ? 'pending' : 'waiting',
        error: null, updated_at: iso, batch, deadline_at: dispatch ? deadline : null,
      });
    }
    await repo.upsertReleaseEnvironment(release.id, env, {}, iso);
    await repo.appendAudit({
      at: iso,
      actor,
      action: kind === 'rollback' ? 'rollback.started' : initial === 'awaiting_approval' ? 'deployment.requested' : 'deployment.started',
      target: `env:${env}`,
      details: { deployment: id, release: release.id, version: release.version, from, batches, reason, ...(overrideReason ? { override: overrideReason } : {}) },
    });
    return { id, dispatched: initial === 'running' ? (batches[0] ?? []) : [] };
  });
  for (const host of dispatched) context.notifier.notify(keys.host(host));
  return deploymentView(context, id);
}

/** Records one host's report and moves the deployment on (the decision: core/report-decision.ts). */
export async function recordReport(context: ServerContext, host: string, report: AgentReport): Promise<void> {
  const at = context.now();
  const iso = at.toISOString();
  const config = await requireConfig(context.store.read);
  const outcomes = await context.store.transaction(async (repo) => {
    await repo.updateHost(host, { last_seen_at: iso, current_release_id: report.currentReleaseId });
    const steps = await repo.deploymentHosts(report.deploymentId);
    const step = steps.find((candidate) => candidate.host === host);
    if (!step) throw new LockstepError('forbidden', `deployment #${report.deploymentId} has no step for host ${host}`);
    // Bumping the revision first locks the deployment's row (PostgreSQL), so
    // concurrent reports of one deployment are evaluated one after the other.
    const deployment = await repo.updateDeployment(report.deploymentId, {});
    if (report.logs && report.logs.length > 0) {
      await repo.appendDeploymentLogs(report.logs.map((log, line) => ({ deployment_id: deployment.id, host, at: iso, line, source: log.source, text: log.text })));
    }
    const decision = decideReport({
      deployment: { kind: deployment.kind as DeploymentKind, state: deployment.state as DeploymentState, releaseId: deployment.release_id },
      step: { state: step.state as StepState, fromReleaseId: step.from_release_id, deadlineAt: step.deadline_at },
      report: { state: report.state, currentReleaseId: report.currentReleaseId, taskKind: report.taskKind },
      environmentCurrent: (await repo.environmentCurrent(deployment.env)) ?? null,
      now: at,
    });
    const timeoutError = `did not finish within ${formatDuration(config.environments[deployment.env]?.host_timeout ?? 0)}`;
    const dropNote = `the agent dropped the task at its deadline${report.error ? ` (${report.error})` : ''}`;
    const setStep = async (next: StepState, error: string | null): Promise<void> => {
      await repo.updateDeploymentHost(deployment.id, host, { state: next, error, updated_at: iso, ...(next === 'reverting' ? { deadline_at: deadlineFor(config, deployment.env, at) } : {}) });
    };
    switch (decision.kind) {
      case 'ignore':
        break;
      case 'advance': {
        if (decision.step === step.state) break;
        // A host that failed and was then returned keeps why it failed.
        const next = decision.step;
        const error = next === 'failed' || next === 'revert_failed' ? (report.error ?? 'failed') : next === 'reverting' || next === 'reverted' ? step.error : null;
        await setStep(next, error);
        break;
      }
      case 'missed-deadline':
        await setStep('failed', decision.acknowledged ? `${timeoutError}; ${dropNote}` : `${timeoutError} (reported ${report.state})`);
        if (decision.acknowledged) await auditOnce(repo, deployment, host, 'deployment.task_dropped', { release: deployment.release_id, currentReleaseId: report.currentReleaseId, error: report.error ?? null }, iso);
        break;
      case 'dropped':
        if (await auditOnce(repo, deployment, host, 'deployment.task_dropped', { release: deployment.release_id, currentReleaseId: report.currentReleaseId, error: report.error ?? null }, iso)) {
          await repo.updateDeploymentHost(deployment.id, host, { error: `${step.error ?? (step.state === 'skipped' ? 'skipped' : timeoutError)}; ${dropNote}`, updated_at: iso });
        }
        break;
      case 'late-switch':
        // A host still busy with its task says its last word later, when its way back is known.
        return settleLateSwitch(repo, config, deployment, step, decision, report.currentReleaseId, report.state !== 'activated', at);
    }
    return [await advance(repo, config, deployment, at)];
  });
  for (const outcome of outcomes) afterAdvance(context, config, outcome);
}

/**
 * Appends an audit event about one host's step unless one of that action was
 * already recorded for it: reports are retried, facts are recorded once.
 * Returns whether it appended.
 */
async function auditOnce(repo: WriteRepo, deployment: DeploymentRow, host: string, action: string, details: Record<string, unknown>, at: string): Promise<boolean> {
  const target = `host:${host}`;
  const earlier = await repo.auditSince(deployment.created_at, [action]);
  if (earlier.some((event) => event.target === target && (JSON.parse(event.details) as { deployment?: number }).deployment === Number(deployment.id))) return false;
  await repo.appendAudit({ at, actor: 'lockstep', action, target, details: { deployment: Number(deployment.id), env: deployment.env, host, ...details } });
  return true;
}

/**
 * Acts on a late switch of `step`'s host to `switchedTo`: the step's new
 * state within a deployment that still runs, or a return once it is over;
 * then moves the deployment on and audits the switch once, with the release
 * the host returns to (`settled`: false while the host's task still runs and
 * that is not known yet).
 */
async function settleLateSwitch(
  repo: WriteRepo,
  config: Config,
  deployment: DeploymentRow,
  step: DeploymentHostRow,
  decision: Extract<ReportDecision, { kind: 'late-switch' }>,
  switchedTo: string | null,
  settled: boolean,
  at: Date,
): Promise<Advanced[]> {
  const iso = at.toISOString();
  const host = step.host;
  if (decision.step !== null && decision.step !== step.state) {
    const timeoutError = `did not finish within ${formatDuration(config.environments[deployment.env]?.host_timeout ?? 0)}`;
    const error = decision.step === 'revert_failed' ? `${timeoutError}; switched late, and there is no earlier release on this host to return to` : (step.error ?? `${timeoutError}; switched after its deadline`);
    await repo.updateDeploymentHost(deployment.id, host, { state: decision.step, error, updated_at: iso, ...(decision.step === 'reverting' ? { deadline_at: deadlineFor(config, deployment.env, at) } : {}) });
  }
  const returned = decision.returnTo !== null ? await startReturn(repo, config, deployment, host, switchedTo, decision.returnTo, at) : undefined;
  const advanced = await advance(repo, config, deployment, at);
  // After advance: a running rollout may just have stopped and decided to revert this host.
  const after = (await repo.deploymentHosts(deployment.id)).find((candidate) => candidate.host === host);
  const returnTo = returned !== undefined ? decision.returnTo : after?.state === 'reverting' ? after.from_release_id : null;
  if (returnTo !== null || settled) {
    const by = returned !== undefined ? `return #${returned.deploymentId}` : returnTo !== null ? `deployment #${deployment.id}` : null;
    await auditOnce(repo, deployment, host, 'deployment.late_switch', { release: switchedTo, returnTo, by }, iso);
  }
  return returned === undefined ? [advanced] : [advanced, returned];
}

/**
 * After a heartbeat named a new release for `host`: a host found on its
 * newest deployment's release after its step failed or was skipped switched
 * late, and its report never came (its agent died in between). Settled like
 * a late report (core/report-decision.ts, decideObservation).
 */
export async function observeHostRelease(context: ServerContext, host: string, currentReleaseId: string | null): Promise<void> {
  const config = await currentConfig(context.store.read);
  if (config === undefined) return;
  const outcomes = await context.store.transaction(async (repo) => {
    const row = await repo.host(host);
    // A later report or heartbeat already said something else.
    if (row === undefined || row.current_release_id !== currentReleaseId) return [];
    return observeRelease(repo, config, row, currentReleaseId, context.now());
  });
  for (const outcome of outcomes) afterAdvance(context, config, outcome);
}

async function observeRelease(repo: WriteRepo, config: Config, host: HostRow, currentReleaseId: string | null, at: Date): Promise<Advanced[]> {
  for (const candidate of await repo.listDeployments({ env: host.env, limit: 5 })) {
    const step = (await repo.deploymentHosts(candidate.id)).find((row) => row.host === host.name);
    if (step === undefined) continue;
    // Lock the deployment's row, as a report would.
    const deployment = await repo.updateDeployment(candidate.id, {});
    const decision = decideObservation({
      deployment: { kind: deployment.kind as DeploymentKind, state: deployment.state as DeploymentState, releaseId: deployment.release_id },
      step: { state: step.state as StepState, fromReleaseId: step.from_release_id, deadlineAt: step.deadline_at },
      currentReleaseId,
      environmentCurrent: (await repo.environmentCurrent(deployment.env)) ?? null,
    });
    return decision.kind === 'late-switch' ? settleLateSwitch(repo, config, deployment, step, decision, currentReleaseId, true, at) : [];
  }
  return [];
}

/**
 * Starts a return: one host goes back to `to` (its environment's release)
 * after it switched to `switchedTo` late. Nothing starts while another
 * deployment of the environment will still move this host, or a return of it
 * runs already; that one brings it where it belongs.
 */
async function startReturn(repo: WriteRepo, config: Config, late: DeploymentRow, host: string, switchedTo: string | null, to: string, at: Date): Promise<Advanced | undefined> {
  const iso = at.toISOString();
  for (const active of await repo.activeDeployments(late.env)) {
    if (active.id === late.id) continue;
    const step = (await repo.deploymentHosts(active.id)).find((candidate) => candidate.host === host);
    if (step !== undefined && !FINISHED_STEPS.includes(step.state as StepState)) return undefined;
  }
  const id = await repo.next('deployment');
  const reason = `${host} switched to ${shortId(switchedTo ?? '')} after deployment #${late.id} ended; returning it to ${shortId(to)}`;
  await repo.insertDeployment({
    id, env: late.env, kind: 'return', release_id: to, from_release_id: switchedTo, state: 'running', requested_by: 'lockstep', reason,
    created_at: iso, finished_at: null, error: null, revision: 1, current_batch: 0, batches: 1, next_batch_at: null, override_reason: null,
  });
  await repo.insertDeploymentHost({ deployment_id: id, host, from_release_id: switchedTo, state: 'pending', error: null, updated_at: iso, batch: 0, deadline_at: deadlineFor(config, late.env, at) });
  await repo.appendAudit({ at: iso, actor: 'lockstep', action: 'return.started', target: `env:${late.env}`, details: { deployment: id, release: to, from: switchedTo, host, after: Number(late.id), reason } });
  return { deploymentId: id, env: late.env, wake: [host], alert: { kind: 'host.late_switch', summary: `${reason} (return #${id})`, details: { host, deployment: Number(late.id), release: switchedTo, returnTo: to, return: id } } };
}

function deadlineFor(config: Config, env: string, at: Date): string {
  return new Date(at.getTime() + (config.environments[env]?.host_timeout ?? 120_000)).toISOString();
}

/** What a transaction decided, for the notifications and alerts sent after it commits. */
interface Advanced {
  readonly deploymentId: number;
  readonly env: string;
  readonly wake: readonly string[];
  /** When the deployment should be looked at again (a pause ends). */
  readonly recheckAt?: string;
  readonly alert?: Omit<Alert, 'env' | 'at'>;
}

/**
 * Moves a deployment on from its steps' states: fails overdue steps, stops
 * the rollout when failures exceed the budget, opens the next batch, or
 * finishes. Runs in the caller's transaction with the deployment row locked.
 */
async function advance(repo: WriteRepo, config: Config, deployment: DeploymentRow, at: Date): Promise<Advanced> {
  const iso = at.toISOString();
  const env = config.environments[deployment.env];
  const base = { deploymentId: deployment.id, env: deployment.env };
  if (deployment.state !== 'running' && deployment.state !== 'rolling_back') return { ...base, wake: [] };
  let steps = await repo.deploymentHosts(deployment.id);

  // A host that has not finished by its deadline (offline, hung) fails its step.
  for (const step of steps) {
    if (!IN_FLIGHT_STEPS.includes(step.state as StepState) || !step.deadline_at || step.deadline_at > iso) continue;
    const host = await repo.host(step.host);
    const seen = host?.last_seen_at ? `last seen ${host.last_seen_at}` : 'never seen';
    const state: StepState = step.state === 'reverting' ? 'revert_failed' : 'failed';
    await repo.updateDeploymentHost(deployment.id, step.host, { state, error: `did not finish within ${formatDuration(env?.host_timeout ?? 0)} (offline? ${seen})`, updated_at: iso });
  }
  steps = await repo.deploymentHosts(deployment.id);
  const count = (...states: StepState[]) => steps.filter((step) => states.includes(step.state as StepState)).length;
  const failed = steps.filter((step) => step.state === 'failed');
  const describeFailures = () => failed.map((step) => `${step.host}: ${step.error ?? 'failed'}`).join('; ');

  if (deployment.state === 'running') {
    // Only a rollout stops and goes back; a rollback or a return has nowhere better to go.
    const budget = deployment.kind !== 'deploy' ? Number.POSITIVE_INFINITY : failureBudget(env?.rollout ?? { canary: 1, batch: '25%', pause: 0, max_failures: 0 }, steps.length);
    if (failed.length > budget) return stopRollout(repo, deployment, steps, describeFailures(), iso);
    const batch = steps.filter((step) => step.batch === deployment.current_batch);
    if (batch.some((step) => IN_FLIGHT_STEPS.includes(step.state as StepState))) return { ...base, wake: [] };
    if (deployment.current_batch + 1 < deployment.batches) {
      const pause = env?.rollout.pause ?? 0;
      if (pause > 0 && deployment.next_batch_at === null) {
        const recheckAt = new Date(at.getTime() + pause).toISOString();
        await repo.updateDeployment(deployment.id, { next_batch_at: recheckAt });
        return { ...base, wake: [], recheckAt };
      }
      if (deployment.next_batch_at !== null && deployment.next_batch_at > iso) return { ...base, wake: [], recheckAt: deployment.next_batch_at };
      const nextBatch = deployment.current_batch + 1;
      const deadline = deadlineFor(config, deployment.env, at);
      const wake = steps.filter((step) => step.batch === nextBatch).map((step) => step.host);
      for (const host of wake) await repo.updateDeploymentHost(deployment.id, host, { state: 'pending', updated_at: iso, deadline_at: deadline });
      await repo.updateDeployment(deployment.id, { current_batch: nextBatch, next_batch_at: null });
      return { ...base, wake };
    }
    if (failed.length > 0 && deployment.kind !== 'deploy') return finishFailed(repo, deployment, describeFailures(), iso);
    return finishSucceeded(repo, deployment, steps, failed.length > 0 ? `tolerated failures: ${describeFailures()}` : null, iso);
  }

  // rolling_back: done when no host has work left.
  if (count(...IN_FLIGHT_STEPS) > 0) return { ...base, wake: [] };
  const revertFailed = steps.filter((step) => step.state === 'revert_failed');
  const error = `${deployment.error ?? 'rollout stopped'}${revertFailed.length ? `; could not return ${revertFailed.map((step) => `${step.host} (${step.error ?? 'failed'})`).join(', ')}` : ''}`;
  return finishFailed(repo, deployment, error, iso);
}

/** Stops a rollout: unstarted hosts are skipped, switched hosts return to the release they had. */
async function stopRollout(repo: WriteRepo, deployment: DeploymentRow, steps: readonly DeploymentHostRow[], cause: string, iso: string): Promise<Advanced> {
  const config = await requireConfig(repo);
  const deadline = deadlineFor(config, deployment.env, new Date(iso));
  const wake: string[] = [];
  for (const step of steps) {
    const host = await repo.host(step.host);
    const switched = host?.current_release_id === deployment.release_id && step.from_release_id !== deployment.release_id;
    if (step.state === 'waiting' || step.state === 'pending') {
      await repo.updateDeploymentHost(deployment.id, step.host, { state: 'skipped', updated_at: iso, deadline_at: null });
    } else if ((step.state === 'succeeded' || step.state === 'failed') && switched) {
      if (step.from_release_id === null) {
        await repo.updateDeploymentHost(deployment.id, step.host, { state: 'revert_failed', error: `${step.error ? `${step.error}; ` : ''}no earlier release on this host to return to`, updated_at: iso });
      } else {
        await repo.updateDeploymentHost(deployment.id, step.host, { state: 'reverting', updated_at: iso, deadline_at: deadline });
        wake.push(step.host);
      }
    }
  }
  const updated = await repo.updateDeployment(deployment.id, { state: 'rolling_back', error: cause });
  await repo.appendAudit({ at: iso, actor: 'lockstep', action: 'deployment.rolling_back', target: `env:${deployment.env}`, details: { deployment: deployment.id, release: deployment.release_id, cause, reverting: wake } });
  const next = await advance(repo, config, updated, new Date(iso));
  return { ...next, wake: [...wake, ...next.wake] };
}

/** The first word of a deployment's audit actions and alerts. */
function actionOf(deployment: DeploymentRow): string {
  return deployment.kind === 'deploy' ? 'deployment' : deployment.kind;
}

async function finishSucceeded(repo: WriteRepo, deployment: DeploymentRow, steps: readonly DeploymentHostRow[], note: string | null, at: string): Promise<Advanced> {
  const action = actionOf(deployment);
  await repo.updateDeployment(deployment.id, { state: 'succeeded', finished_at: at, error: note });
  if (deployment.kind === 'return') {
    // A return restores the environment's release on one host: the environment's records stay as they are.
    await repo.appendAudit({ at, actor: 'lockstep', action: 'return.succeeded', target: `env:${deployment.env}`, details: { deployment: deployment.id, release: deployment.release_id, hosts: steps.map((step) => step.host) } });
    return { deploymentId: deployment.id, env: deployment.env, wake: [] };
  }
  const replaced = await repo.environmentCurrent(deployment.env);
  if (replaced !== undefined && replaced !== deployment.release_id) await repo.upsertReleaseEnvironment(replaced, deployment.env, { superseded_at: at }, at);
  await repo.setEnvironmentCurrent(deployment.env, deployment.release_id, at);
  await repo.upsertReleaseEnvironment(deployment.release_id, deployment.env, { succeeded_at: at, rolled_back_at: null, rolled_back_reason: null, superseded_at: null }, at);
  if (deployment.kind === 'rollback' && deployment.from_release_id && deployment.from_release_id !== deployment.release_id) {
    await repo.upsertReleaseEnvironment(deployment.from_release_id, deployment.env, { rolled_back_at: at, rolled_back_reason: `rolled back by ${deployment.requested_by} (#${deployment.id})` }, at);
  }
  await repo.appendAudit({ at, actor: 'lockstep', action: `${action}.succeeded`, target: `env:${deployment.env}`, details: { deployment: deployment.id, release: deployment.release_id, hosts: steps.length, note } });
  return { deploymentId: deployment.id, env: deployment.env, wake: [] };
}

async function finishFailed(repo: WriteRepo, deployment: DeploymentRow, error: string, at: string): Promise<Advanced> {
  const action = actionOf(deployment);
  await repo.updateDeployment(deployment.id, { state: 'failed', finished_at: at, error });
  if (deployment.kind === 'deploy') {
    // A release that failed in an environment must not be promoted onward from it.
    await repo.upsertReleaseEnvironment(deployment.release_id, deployment.env, { rolled_back_at: at, rolled_back_reason: `deployment #${deployment.id} failed` }, at);
  }
  const steps = await repo.deploymentHosts(deployment.id);
  // A host that failed its step and was then returned to its release still failed.
  const failedHosts = steps.filter((step) => step.state === 'failed' || step.state === 'revert_failed' || (step.state === 'reverted' && step.error !== null)).map((step) => step.host);
  await repo.appendAudit({ at, actor: 'lockstep', action: `${action}.failed`, target: `env:${deployment.env}`, details: { deployment: deployment.id, release: deployment.release_id, failedHosts, error } });
  const release = await repo.release(deployment.release_id);
  return {
    deploymentId: deployment.id,
    env: deployment.env,
    wake: [],
    alert: {
      kind: `${action}.failed`,
      summary: `${action} #${deployment.id} of ${release?.app ?? ''}@${release?.version ?? shortId(deployment.release_id)} to ${deployment.env} failed: ${error}`,
      details: { deployment: deployment.id, release: deployment.release_id, version: release?.version ?? null, failedHosts, error },
    },
  };
}

function afterAdvance(context: ServerContext, config: Config, outcome: Advanced): void {
  if (outcome.recheckAt !== undefined) {
    // Open the next batch when the pause ends, not at the next periodic sweep
    // (measured: waiting for the 1 s sweep added ~575 ms per pause).
    const delay = Math.max(0, Date.parse(outcome.recheckAt) - context.now().getTime());
    setTimeout(() => {
      if (context.shutdown.aborted) return;
      advanceDeployment(context, outcome.deploymentId).catch((error: unknown) => context.logger.error({ err: error, deployment: outcome.deploymentId }, 'advancing a deployment failed'));
    }, delay + 5).unref();
  }
  for (const host of outcome.wake) context.notifier.notify(keys.host(host));
  context.notifier.notify(keys.deployment(outcome.deploymentId));
  if (outcome.alert) {
    context.alerts.dispatch({ ...outcome.alert, env: outcome.env, at: context.now().toISOString() }, config.environments[outcome.env]?.alerts);
  }
}

/** Moves one deployment on now (after a pause ends). */
async function advanceDeployment(context: ServerContext, id: number): Promise<void> {
  const config = await requireConfig(context.store.read);
  const outcome = await context.store.transaction(async (repo) => advance(repo, config, await repo.updateDeployment(id, {}), context.now()));
  afterAdvance(context, config, outcome);
}

/**
 * Periodic work: fails overdue steps, opens batches whose pause has passed,
 * starts approved deployments once their window is open, and expires
 * deployments that waited for approval too long.
 */
export async function advanceDeployments(context: ServerContext): Promise<void> {
  const active = await context.store.read.activeDeployments();
  if (active.length === 0) return;
  const config = await requireConfig(context.store.read);
  const at = context.now();
  for (const deployment of active) {
    if (deployment.state === 'awaiting_approval') {
      await settleApproval(context, config, deployment.id);
      continue;
    }
    const outcome = await context.store.transaction(async (repo) => advance(repo, config, await repo.updateDeployment(deployment.id, {}), at));
    afterAdvance(context, config, outcome);
  }
}

/**
 * Moves a deployment awaiting approval on: expires it after
 * approvals.expire_after, or starts it when the policy (approvals, window,
 * freeze…) now allows it.
 */
async function settleApproval(context: ServerContext, config: Config, id: number): Promise<void> {
  const now = context.now();
  const iso = now.toISOString();
  const started = await context.store.transaction(async (repo) => {
    const deployment = await repo.updateDeployment(id, {});
    if (deployment.state !== 'awaiting_approval') return [];
    const environment = config.environments[deployment.env];
    const expiry = Date.parse(deployment.created_at) + (environment?.approvals.expire_after ?? 86_400_000);
    if (now.getTime() >= expiry) {
      await repo.updateDeployment(id, { state: 'expired', finished_at: iso, error: `not approved within ${formatDuration(environment?.approvals.expire_after ?? 0)}` });
      await repo.appendAudit({ at: iso, actor: 'lockstep', action: 'deployment.expired', target: `env:${deployment.env}`, details: { deployment: id } });
      return [];
    }
    const release = (await repo.release(deployment.release_id)) as ReleaseRow;
    const verdict = await planDeployment(repo, config, release, deployment.env, now, { requester: deployment.requested_by, deployment });
    if (verdict.kind !== 'allowed') return [];
    const deadline = deadlineFor(config, deployment.env, now);
    const steps = await repo.deploymentHosts(id);
    const wake = steps.filter((step) => step.batch === 0).map((step) => step.host);
    for (const host of wake) await repo.updateDeploymentHost(id, host, { state: 'pending', updated_at: iso, deadline_at: deadline });
    await repo.updateDeployment(id, { state: 'running' });
    await repo.appendAudit({ at: iso, actor: 'lockstep', action: 'deployment.started', target: `env:${deployment.env}`, details: { deployment: id, release: deployment.release_id, approvals: verdict.rules.find((rule) => rule.rule === 'approvals')?.detail ?? null } });
    return wake;
  });
  for (const host of started) context.notifier.notify(keys.host(host));
  context.notifier.notify(keys.deployment(id));
}

/**
 * Records an approval or a rejection of a deployment awaiting approval.
 * Separation of duties: neither the requester nor the release's creator may
 * approve (either may still reject, which cancels).
 */
export async function decideDeployment(context: ServerContext, principal: UserPrincipal, id: number, decision: 'approve' | 'reject', comment: string | undefined): Promise<DeploymentView> {
  const config = await requireConfig(context.store.read);
  const at = context.now().toISOString();
  await context.store.transaction(async (repo) => {
    if (!(await repo.deployment(id))) throw notFound(`no deployment #${id}; list them with: lockstep history`);
    const deployment = await repo.updateDeployment(id, {});
    requireEnvironmentScope(principal, deployment.env);
    if (deployment.state !== 'awaiting_approval') throw new LockstepError('conflict', `deployment #${id} is not waiting for approval (it is ${deployment.state.replace(/_/g, ' ')})`);
    const release = (await repo.release(deployment.release_id)) as ReleaseRow;
    if (decision === 'approve') {
      if (principal.role !== 'approver') throw new LockstepError('forbidden', `approvals must come from tokens with the approver role; ${principal.name} has the ${principal.role} role`);
      if (principal.name === deployment.requested_by) throw new LockstepError('forbidden', `separation of duties: ${principal.name} requested deployment #${id} and cannot approve it`);
      if (principal.name === release.created_by) throw new LockstepError('forbidden', `separation of duties: ${principal.name} created release ${release.version} and cannot approve its deployment`);
    }
    if ((await repo.approvals(id)).some((row) => row.actor === principal.name)) throw new LockstepError('conflict', `${principal.name} already decided on deployment #${id}`);
    await repo.insertApproval({ deployment_id: id, actor: principal.name, decision, comment: comment ?? null, at });
    await repo.appendAudit({ at, actor: principal.name, action: decision === 'approve' ? 'deployment.approved' : 'deployment.rejected', target: `env:${deployment.env}`, details: { deployment: id, release: deployment.release_id, comment: comment ?? null } });
    if (decision === 'reject') await repo.updateDeployment(id, { state: 'rejected', finished_at: at, error: `rejected by ${principal.name}${comment ? `: ${comment}` : ''}` });
  });
  if (decision === 'approve') await settleApproval(context, config, id);
  else context.notifier.notify(keys.deployment(id));
  return deploymentView(context, id);
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
  const approvals = (await repo.approvals(row.id)).map((approval) => ({ actor: approval.actor, decision: approval.decision as 'approve' | 'reject', comment: approval.comment, at: approval.at }));
  // It ran from the approval that let it run (the last one), else from its creation.
  const startedAt = approvals.filter((approval) => approval.decision === 'approve').reduce((latest, approval) => (approval.at > latest ? approval.at : latest), row.created_at);
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
    startedAt,
    finishedAt: row.finished_at,
    durationMs: row.finished_at === null ? null : Math.max(0, Date.parse(row.finished_at) - Date.parse(startedAt)),
    error: row.error,
    revision: Number(row.revision),
    currentBatch: Number(row.current_batch),
    batches: Number(row.batches),
    overrideReason: row.override_reason,
    approvals,
    hosts: steps
      .map((step) => ({ host: step.host, batch: Number(step.batch), state: step.state as StepState, fromReleaseId: step.from_release_id, error: step.error, updatedAt: step.updated_at }))
      .sort((a, b) => a.batch - b.batch || (a.host < b.host ? -1 : 1)),
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

/** Marks a release rejected in an environment by hand (it cannot be promoted onward from there). */
export async function rejectRelease(context: ServerContext, actor: string, ref: string, env: string, reason: string): Promise<void> {
  const config = await requireConfig(context.store.read);
  requireEnvironment(config, env);
  const release = await resolveRelease(context.store.read, ref);
  const at = context.now().toISOString();
  await context.store.transaction(async (repo) => {
    await repo.upsertReleaseEnvironment(release.id, env, { rejected_at: at, rejected_reason: `rejected by ${actor}: ${reason}` }, at);
    await repo.appendAudit({ at, actor, action: 'release.rejected', target: `release:${release.id}`, details: { env, reason, version: release.version } });
  });
}

/** Lifts a manual rejection (admin only; audited). */
export async function unrejectRelease(context: ServerContext, actor: string, ref: string, env: string, reason: string | undefined): Promise<void> {
  const release = await resolveRelease(context.store.read, ref);
  const at = context.now().toISOString();
  await context.store.transaction(async (repo) => {
    const row = await repo.releaseEnvironment(release.id, env);
    if (!row?.rejected_at) throw new LockstepError('bad-input', `release ${release.version} (${shortId(release.id)}) is not rejected in ${env}`);
    await repo.upsertReleaseEnvironment(release.id, env, { rejected_at: null, rejected_reason: null }, at);
    await repo.appendAudit({ at, actor, action: 'release.unrejected', target: `release:${release.id}`, details: { env, reason: reason ?? null, was: row.rejected_reason } });
  });
}

function requireEnvironment(config: Config, env: string): void {
  environmentOf(config, env);
}

async function describeReleases(repo: ReadRepo, ids: readonly string[]): Promise<string> {
  if (ids.length === 0) return 'none';
  const names = await Promise.all(ids.map(async (id) => `${(await repo.release(id))?.version ?? '?'} (${shortId(id)})`));
  return names.join(', ');
}
