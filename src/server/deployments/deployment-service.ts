/**
 * Deployments and rollbacks. A deployment rolls out in batches (the canary
 * first); a batch opens only when every host of the one before is healthy
 * (and after the configured pause). A failed host beyond `max_failures`
 * stops the rollout: hosts that had switched are returned to the release
 * they had, and the release is marked rolled back in the environment.
 * An environment rollback goes to every host at once. What each event does
 * is decided by the pure rollout machine (core/rollout-machine.ts); this file
 * loads its state, applies its transitions and effects in one transaction,
 * and notifies and alerts after commit.
 */
import type { AgentReport, DeploymentView, StagingProgress } from '../../api/schemas.js';
import { environmentOf, type Config, type EnvironmentConfig } from '../../core/config.js';
import { LockstepError, notFound } from '../../core/errors.js';
import { type ReleaseInEnvironment } from '../../core/gate.js';
import { approvalRefusal, evaluatePolicy, withRule, type PolicyVerdict } from '../../core/policy.js';
import { isKnownGood, knownGoodSoak } from '../../core/known-good.js';
import { shortId } from '../../core/manifest.js';
import { FINISHED_STEPS, type DeploymentKind, type DeploymentState, type StepState } from '../../core/report-decision.js';
import {
  decideRollout,
  openDeployment,
  openReturn,
  type DeploymentFacts,
  type DeploymentPatch,
  type HostHistory,
  type OpenedDeployment,
  type RolloutAlert,
  type RolloutEffect,
  type RolloutEvent,
  type RolloutOutcome,
  type RolloutState,
  type StepPatch,
} from '../../core/rollout-machine.js';
import type { DeploymentRow, ReadRepo, ReleaseEnvironmentRow, ReleaseRow, WriteRepo } from '../../store/store.js';
import { currentConfig, requireConfig } from '../config-service.js';
import type { Principal, ServerContext } from '../context.js';
import { keys } from '../notifier.js';
import { manifestOf, resolveRelease } from '../releases/release-service.js';
import { plannedRelease, templateRule } from '../system/system-plan-service.js';
import { recordedFor, viewAfter, type RecordedOnce, type RolloutView } from './rollout-views.js';


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
 * The checks of an admin's `--override --reason`, shared by deployments and fire calls: the admin
 * role, a reason, and the environment's allow_override (a refusal there is audited as `SUBJECT.override_refused`).
 * Returns the reason.
 */
export async function requireOverride(
  context: ServerContext,
  principal: UserPrincipal,
  env: string,
  reason: string | undefined,
  subject: 'deployment' | 'firecall',
  details: Readonly<Record<string, unknown>>,
): Promise<string> {
  if (principal.role !== 'admin') throw new LockstepError('forbidden', `only the admin role may override policy; token ${principal.name} has the ${principal.role} role`);
  if (!reason?.trim()) throw new LockstepError('bad-input', 'an override needs a reason: --override --reason TEXT');
  const config = await requireConfig(context.store.read);
  if (!environmentOf(config, env).allow_override) {
    const at = context.now().toISOString();
    await context.store.transaction((repo) => repo.appendAudit({ at, actor: principal.name, action: `${subject}.override_refused`, target: `env:${env}`, details: { ...details, reason } }));
    throw new LockstepError('refused', `${env} forbids overrides (allow_override: false)`);
  }
  return reason;
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
  const policy = await planDeployment(context.store.read, config, release, request.env, now, { requester: actor });
  // Templates that name what the environment lacks are refused here, not left to render empty on the hosts.
  const templates = await templateRule(context, await plannedRelease(context, manifestOf(release)), request.env, config.environments[request.env]?.vars ?? {});
  const verdict = templates === undefined ? policy : withRule(policy, templates);
  const at = now.toISOString();
  if (request.override) {
    const reason = await requireOverride(context, principal, request.env, request.reason, 'deployment', { release: release.id });
    const overridden = verdict.rules.filter((rule) => !rule.passed).map((rule) => `${rule.rule}: ${rule.detail}`);
    const view = await begin(context, actor, 'deploy', release, request.env, reason, config, 'running', overridden.length > 0 ? reason : null);
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
  const knownGood = (await repo.succeededReleases(env)).filter((row) => isKnownGood(row, soak, context.now(), unhealthy));
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
  const { id, applied } = await context.store.transaction(async (repo) => {
    const running = await repo.activeDeployments(env);
    const first = running[0];
    if (first) {
      throw new LockstepError('conflict', `deployment #${first.id} to ${env} is still ${first.state.replace(/_/g, ' ')} (started by ${first.requested_by} at ${first.created_at}); follow it with: lockstep deploy --follow ${first.id}`);
    }
    const hosts = (await repo.listHosts(env)).filter((host) => host.enrolled_at !== null);
    if (hosts.length === 0) throw new LockstepError('refused', `${env} has no enrolled hosts; add one with: lockstep host add NAME --env ${env}`);
    const id = await repo.next('deployment');
    const from = (await repo.environmentCurrent(env)) ?? null;
    const opened = openDeployment(
      { id, env, kind, release, from, hosts: hosts.map((host) => ({ name: host.name, currentReleaseId: host.current_release_id })), actor, reason, initial, overrideReason },
      config.environments[env],
      at,
    );
    return { id, applied: await insertOpened(repo, config, opened, at) };
  });
  afterCommit(context, config, applied);
  return deploymentView(context, id);
}

/**
 * Records one host's report and moves the deployment on (the decision:
 * core/rollout-machine.ts). Returns the time the host has left to switch,
 * which staging progress may have pushed forward (null: no deadline).
 */
export async function recordReport(context: ServerContext, host: string, report: AgentReport): Promise<{ remainingMs: number | null }> {
  const at = context.now();
  const iso = at.toISOString();
  const config = await requireConfig(context.store.read);
  const noStep = () => new LockstepError('forbidden', `deployment #${report.deploymentId} has no step for host ${host}`);
  // The step's deadline after this report (staging progress may push it): what the agent is told it has left.
  let deadline: string | null = null;
  const applied = await inRollout(context, report.deploymentId, async (repo) => {
    await repo.updateHost(host, { last_seen_at: iso, current_release_id: report.currentReleaseId });
    const rollout = await openRollout(context, repo, report.deploymentId);
    if (rollout === undefined || !rollout.state.steps.some((candidate) => candidate.host === host)) throw noStep();
    if (report.logs && report.logs.length > 0) {
      await repo.appendDeploymentLogs(report.logs.map((log, line) => ({ deployment_id: report.deploymentId, host, at: iso, line, source: log.source, text: log.text })));
    }
    if (report.progress !== undefined) await repo.updateDeploymentHost(report.deploymentId, host, { progress: JSON.stringify(report.progress) });
    const event: RolloutEvent = {
      kind: 'report',
      host,
      report: { state: report.state, currentReleaseId: report.currentReleaseId, taskKind: report.taskKind, error: report.error, progressed: report.progress !== undefined },
      history: await historyOf(repo, rollout, host),
    };
    const decided = await decideAndApply(repo, config, rollout, event, at);
    deadline = decided.view.steps.find((step) => step.host === host)?.deadlineAt ?? null;
    return decided;
  });
  afterCommit(context, config, applied);
  return { remainingMs: deadline === null ? null : Math.max(0, Date.parse(deadline) - at.getTime()) };
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
  const at = context.now();
  const decided = await context.store.transaction(async (repo): Promise<Decided | undefined> => {
    const row = await repo.host(host);
    // A later report or heartbeat already said something else.
    if (row === undefined || row.current_release_id !== currentReleaseId) return undefined;
    for (const candidate of await repo.listDeployments({ env: row.env, limit: 5 })) {
      if (!(await repo.deploymentHosts(candidate.id)).some((step) => step.host === host)) continue;
      const rollout = await openRollout(context, repo, Number(candidate.id));
      if (rollout === undefined) continue;
      const event: RolloutEvent = { kind: 'observation', host, currentReleaseId, history: await historyOf(repo, rollout, host) };
      return decideAndApply(repo, config, rollout, event, at);
    }
    return undefined;
  });
  if (decided !== undefined) keepView(context, decided);
  afterCommit(context, config, decided?.applied ?? []);
}

/** One deployment's rollout as an event finds it: the locked row, what the machine looks at, and the server's view it came from. */
interface OpenedRollout {
  readonly row: DeploymentRow;
  readonly state: RolloutState;
  readonly view: RolloutView;
}

/**
 * Locks the deployment's row first (bumping its revision: PostgreSQL then
 * evaluates concurrent events of one deployment one after the other) and
 * takes what the rollout machine looks at: the deployment from the locked
 * row; its steps, release and once-only audit events from the server's view
 * when the revision shows nothing changed them since, else from the
 * database; the environment's hosts and current release from the database,
 * since heartbeats and other deployments change those. Undefined: no such
 * deployment.
 */
async function openRollout(context: ServerContext, repo: WriteRepo, id: number): Promise<OpenedRollout | undefined> {
  if (!context.rollouts.has(id) && (await repo.deployment(id)) === undefined) return undefined;
  const row = await repo.updateDeployment(id, {});
  const view = context.rollouts.current(id, Number(row.revision)) ?? (await loadView(repo, row));
  const hosts = new Map((await repo.listHosts(row.env)).map((host) => [host.name, { lastSeenAt: host.last_seen_at, currentReleaseId: host.current_release_id }] as const));
  return {
    row,
    view,
    state: {
      deployment: {
        id: Number(row.id), env: row.env, kind: row.kind as DeploymentKind, state: row.state as DeploymentState, releaseId: row.release_id, fromReleaseId: row.from_release_id,
        requestedBy: row.requested_by, createdAt: row.created_at, error: row.error, currentBatch: Number(row.current_batch), batches: Number(row.batches), nextBatchAt: row.next_batch_at,
      },
      steps: view.steps,
      hosts,
      environmentCurrent: (await repo.environmentCurrent(row.env)) ?? null,
      release: view.release,
    },
  };
}

/** Builds the view of a deployment from the database (its first event in this server, or after someone else changed it), at the locked row's revision. */
async function loadView(repo: WriteRepo, row: DeploymentRow): Promise<RolloutView> {
  const id = Number(row.id);
  const steps = await repo.deploymentHosts(id);
  const release = await repo.release(row.release_id);
  const recorded = new Map<string, RecordedOnce>();
  for (const event of await repo.auditSince(row.created_at, ['deployment.task_dropped', 'deployment.late_switch'])) {
    if (!event.target.startsWith('host:') || (JSON.parse(event.details) as { deployment?: number }).deployment !== id) continue;
    const host = event.target.slice('host:'.length);
    const before = recorded.get(host) ?? { dropAudited: false, lateSwitchAudited: false };
    recorded.set(host, event.action === 'deployment.task_dropped' ? { ...before, dropAudited: true } : { ...before, lateSwitchAudited: true });
  }
  return {
    revision: Number(row.revision),
    steps: steps.map((step) => ({ host: step.host, batch: Number(step.batch), state: step.state as StepState, fromReleaseId: step.from_release_id, error: step.error, deadlineAt: step.deadline_at })),
    release: release === undefined ? undefined : { app: release.app, version: release.version },
    recorded,
  };
}

/** What is recorded about `host` beyond the deployment's rows: its events recorded once, and other deployments that will move it. */
async function historyOf(repo: WriteRepo, rollout: OpenedRollout, host: string): Promise<HostHistory> {
  const { deployment } = rollout.state;
  let movedByAnother = false;
  for (const active of await repo.activeDeployments(deployment.env)) {
    if (Number(active.id) === deployment.id) continue;
    const step = (await repo.deploymentHosts(active.id)).find((candidate) => candidate.host === host);
    if (step !== undefined && !FINISHED_STEPS.includes(step.state as StepState)) movedByAnother = true;
  }
  return { ...recordedFor(rollout.view, host), movedByAnother };
}

/** An event's outcome applied in its transaction: what to do after commit, and the view to keep then. */
interface Decided {
  readonly applied: Applied[];
  readonly id: number;
  readonly view: RolloutView;
  readonly inFlight: boolean;
}

/** Asks the machine what `event` does to the deployment and applies it in the caller's transaction. */
async function decideAndApply(repo: WriteRepo, config: Config, rollout: OpenedRollout, event: RolloutEvent, at: Date): Promise<Decided> {
  const { state } = rollout;
  const outcome = decideRollout(state, event, config.environments[state.deployment.env], at);
  const applied = await applyOutcome(repo, config, state.deployment, outcome, at);
  return { applied, id: state.deployment.id, ...viewAfter(rollout.view, state.deployment, outcome, Number(rollout.row.revision)) };
}

/** Keeps the view a committed event left, for the deployment's next event. */
function keepView(context: ServerContext, decided: Decided): void {
  context.rollouts.keep(decided.id, decided.view, decided.inFlight);
}

/**
 * Runs one event of deployment `id` in a transaction, after the events of the
 * same deployment before it in this server; keeps the view it leaves once it
 * committed, and forgets the view when it failed. Returns what to do after commit.
 */
async function inRollout(context: ServerContext, id: number, work: (repo: WriteRepo) => Promise<Decided | undefined>): Promise<Applied[]> {
  return context.rollouts.serially(id, async () => {
    try {
      const decided = await context.store.transaction(work);
      if (decided === undefined) return [];
      keepView(context, decided);
      return decided.applied;
    } catch (error) {
      context.rollouts.forget(id);
      throw error;
    }
  });
}

/** What a transaction decided for one deployment, for the notifications and alerts sent after it commits. */
interface Applied {
  readonly deploymentId: number;
  readonly env: string;
  readonly wake: readonly string[];
  /** When the deployment should be looked at again (a pause ends). */
  readonly recheckAt: string | undefined;
  readonly alerts: readonly RolloutAlert[];
}

/**
 * Applies the machine's outcome in the caller's transaction: the row
 * updates, then audit events, release records and new return deployments, in
 * order. Returns what to do after commit, for this deployment and any return
 * it started.
 */
async function applyOutcome(repo: WriteRepo, config: Config, deployment: DeploymentFacts, outcome: RolloutOutcome, at: Date): Promise<Applied[]> {
  const iso = at.toISOString();
  let patch: DeploymentPatch = {};
  for (const transition of outcome.transitions) {
    if (transition.kind === 'deployment') patch = { ...patch, ...transition.patch };
    else await repo.updateDeploymentHost(deployment.id, transition.host, stepColumns(transition.patch));
  }
  if (Object.keys(patch).length > 0) {
    await repo.updateDeployment(deployment.id, {
      ...(patch.state !== undefined ? { state: patch.state } : {}),
      ...(patch.finishedAt !== undefined ? { finished_at: patch.finishedAt } : {}),
      ...(patch.error !== undefined ? { error: patch.error } : {}),
      ...(patch.currentBatch !== undefined ? { current_batch: patch.currentBatch } : {}),
      ...(patch.nextBatchAt !== undefined ? { next_batch_at: patch.nextBatchAt } : {}),
    });
  }
  return applyEffects(repo, config, deployment, outcome.effects, at, iso);
}

function stepColumns(patch: StepPatch): Parameters<WriteRepo['updateDeploymentHost']>[2] {
  return {
    updated_at: patch.updatedAt,
    ...(patch.state !== undefined ? { state: patch.state } : {}),
    ...(patch.error !== undefined ? { error: patch.error } : {}),
    ...(patch.deadlineAt !== undefined ? { deadline_at: patch.deadlineAt } : {}),
  };
}

async function applyEffects(repo: WriteRepo, config: Config, deployment: Pick<DeploymentFacts, 'id' | 'env'>, effects: readonly RolloutEffect[], at: Date, iso: string): Promise<Applied[]> {
  const wake: string[] = [];
  const alerts: RolloutAlert[] = [];
  const returns: Applied[] = [];
  let recheckAt: string | undefined;
  for (const effect of effects) {
    switch (effect.kind) {
      case 'audit':
        await repo.appendAudit({ at: iso, actor: effect.actor, action: effect.action, target: effect.target, details: effect.details });
        break;
      case 'release-record':
        await repo.upsertReleaseEnvironment(effect.releaseId, effect.env, effect.patch, iso);
        break;
      case 'environment-current':
        await repo.setEnvironmentCurrent(effect.env, effect.releaseId, iso);
        break;
      case 'start-return': {
        const opened = openReturn(await repo.next('deployment'), effect.request, config.environments[effect.request.env], at);
        returns.push(...(await insertOpened(repo, config, opened, at)));
        break;
      }
      case 'alert':
        alerts.push(effect.alert);
        break;
      case 'wake':
        wake.push(effect.host);
        break;
      case 'recheck':
        recheckAt = effect.at;
        break;
    }
  }
  return [{ deploymentId: deployment.id, env: deployment.env, wake, recheckAt, alerts }, ...returns];
}

/** Inserts a deployment the machine opened, with its steps, and applies its effects. */
async function insertOpened(repo: WriteRepo, config: Config, opened: OpenedDeployment, at: Date): Promise<Applied[]> {
  const iso = at.toISOString();
  const { deployment } = opened;
  await repo.insertDeployment({
    id: deployment.id, env: deployment.env, kind: deployment.kind, release_id: deployment.releaseId, from_release_id: deployment.fromReleaseId, state: deployment.state,
    requested_by: deployment.requestedBy, reason: deployment.reason, created_at: deployment.createdAt, finished_at: null, error: deployment.error, revision: 1,
    current_batch: deployment.currentBatch, batches: deployment.batches, next_batch_at: deployment.nextBatchAt, override_reason: deployment.overrideReason,
  });
  for (const step of opened.steps) {
    await repo.insertDeploymentHost({ deployment_id: deployment.id, host: step.host, from_release_id: step.fromReleaseId, state: step.state, error: step.error, updated_at: iso, batch: step.batch, deadline_at: step.deadlineAt, progress: null });
  }
  return applyEffects(repo, config, deployment, opened.effects, at, iso);
}

/** After commit: re-checks, agent wake-ups, deployment watchers, alerts. */
function afterCommit(context: ServerContext, config: Config, applied: readonly Applied[]): void {
  for (const outcome of applied) {
    if (outcome.recheckAt !== undefined) {
      // Open the next batch when the pause ends, not at the next periodic sweep
      // (measured: waiting for the 1 s sweep added ~575 ms per pause).
      const delay = Math.max(0, Date.parse(outcome.recheckAt) - context.now().getTime());
      setTimeout(() => {
        if (context.shutdown.aborted) return;
        tick(context, outcome.deploymentId).catch((error: unknown) => context.logger.error({ err: error, deployment: outcome.deploymentId }, 'advancing a deployment failed'));
      }, delay + 5).unref();
    }
    for (const host of outcome.wake) context.notifier.notify(keys.host(host));
    context.notifier.notify(keys.deployment(outcome.deploymentId));
    const at = context.now().toISOString();
    for (const alert of outcome.alerts) context.alerts.dispatch({ ...alert, env: outcome.env, at }, config.environments[outcome.env]?.alerts);
  }
}

/** Moves one deployment on at `now`: deadlines, batches and pauses (a sweep tick). */
async function tick(context: ServerContext, id: number, config?: Config): Promise<void> {
  const current = config ?? (await requireConfig(context.store.read));
  const at = context.now();
  const applied = await inRollout(context, id, async (repo) => {
    const rollout = await openRollout(context, repo, id);
    return rollout === undefined ? undefined : decideAndApply(repo, current, rollout, { kind: 'tick' }, at);
  });
  afterCommit(context, current, applied);
}

/**
 * Periodic work: fails overdue steps, opens batches whose pause has passed,
 * starts approved deployments once their window is open, and expires
 * deployments that waited for approval too long.
 */
export async function advanceDeployments(context: ServerContext): Promise<void> {
  const active = await context.store.read.activeDeployments();
  context.rollouts.retain(active.map((deployment) => Number(deployment.id)));
  if (active.length === 0) return;
  const config = await requireConfig(context.store.read);
  for (const deployment of active) {
    if (deployment.state === 'awaiting_approval') await settleApproval(context, config, deployment.id);
    else await tick(context, deployment.id, config);
  }
}

/**
 * Moves a deployment awaiting approval on: expires it after
 * approvals.expire_after, or starts it when the policy (approvals, window,
 * freeze…) now allows it.
 */
async function settleApproval(context: ServerContext, config: Config, id: number): Promise<void> {
  const now = context.now();
  const applied = await inRollout(context, id, async (repo) => {
    const rollout = await openRollout(context, repo, id);
    if (rollout === undefined || rollout.row.state !== 'awaiting_approval') return undefined;
    const { row } = rollout;
    const release = (await repo.release(row.release_id)) as ReleaseRow;
    // An environment that left the config cannot be allowed into; it only expires.
    const verdict: PolicyVerdict = config.environments[row.env] !== undefined
      ? await planDeployment(repo, config, release, row.env, now, { requester: row.requested_by, deployment: row })
      : { kind: 'waiting', rules: [], reason: `${row.env} is not in the configuration` };
    return decideAndApply(repo, config, rollout, { kind: 'approval-check', verdict }, now);
  });
  afterCommit(context, config, applied);
  // Watchers re-read it either way (a follower waits for any change).
  if (applied.length === 0) context.notifier.notify(keys.deployment(id));
}

/**
 * Records an approval or a rejection of a deployment awaiting approval.
 * Separation of duties: neither the requester nor the release's creator may
 * approve (either may still reject, which cancels).
 */
export async function decideDeployment(context: ServerContext, principal: UserPrincipal, id: number, decision: 'approve' | 'reject', comment: string | undefined): Promise<DeploymentView> {
  const config = await requireConfig(context.store.read);
  const now = context.now();
  const at = now.toISOString();
  const applied = await inRollout(context, id, async (repo) => {
    const rollout = await openRollout(context, repo, id);
    if (rollout === undefined) throw notFound(`no deployment #${id}; list them with: lockstep history`);
    const { row: deployment } = rollout;
    requireEnvironmentScope(principal, deployment.env);
    if (deployment.state !== 'awaiting_approval') throw new LockstepError('conflict', `deployment #${id} is not waiting for approval (it is ${deployment.state.replace(/_/g, ' ')})`);
    const release = (await repo.release(deployment.release_id)) as ReleaseRow;
    if (decision === 'approve') {
      const refusal = approvalRefusal(principal, ['approver'], [
        { name: deployment.requested_by, because: `${principal.name} requested deployment #${id} and cannot approve it` },
        { name: release.created_by, because: `${principal.name} created release ${release.version} and cannot approve its deployment` },
      ]);
      if (refusal) throw new LockstepError('forbidden', refusal);
    }
    if ((await repo.approvals(id)).some((row) => row.actor === principal.name)) throw new LockstepError('conflict', `${principal.name} already decided on deployment #${id}`);
    await repo.insertApproval({ deployment_id: id, actor: principal.name, decision, comment: comment ?? null, at });
    const event: RolloutEvent = { kind: 'decision', actor: principal.name, decision, comment: comment ?? null };
    return decideAndApply(repo, config, rollout, event, now);
  });
  if (decision === 'approve') await settleApproval(context, config, id);
  else afterCommit(context, config, applied);
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
  const approvals = (await repo.approvals(row.id)).map((approval) => ({ actor: approval.actor, decision: approval.decision, comment: approval.comment, at: approval.at }));
  // It ran from the approval that let it run (the last one), else from its creation.
  const startedAt = approvals.filter((approval) => approval.decision === 'approve').reduce((latest, approval) => (approval.at > latest ? approval.at : latest), row.created_at);
  return {
    id: Number(row.id),
    env: row.env,
    kind: row.kind,
    releaseId: row.release_id,
    version: release?.version ?? '?',
    fromReleaseId: row.from_release_id,
    state: row.state,
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
      .map((step) => ({
        host: step.host, batch: Number(step.batch), state: step.state, fromReleaseId: step.from_release_id, error: step.error, updatedAt: step.updated_at,
        ...(step.progress === null ? {} : { progress: JSON.parse(step.progress) as StagingProgress }),
      }))
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
