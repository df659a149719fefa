import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PolicyVerdict } from '../../src/core/policy.js';
import type { DeploymentKind, DeploymentState, ReportState, StepState, TaskKind } from '../../src/core/report-decision.js';
import {
  applyTransitions,
  decideRollout,
  openDeployment,
  openReturn,
  taskOf,
  type DeploymentFacts,
  type HostHistory,
  type RolloutConfig,
  type RolloutEffect,
  type RolloutEvent,
  type RolloutOutcome,
  type RolloutState,
  type StepFacts,
} from '../../src/core/rollout-machine.js';

const OLD = 'a'.repeat(64);
const NEW = 'b'.repeat(64);
const OTHER = 'c'.repeat(64);
const NAMES: Readonly<Record<string, string>> = { [OLD]: 'old', [NEW]: 'new', [OTHER]: 'other' };
const now = new Date('2030-01-01T12:00:00.000Z');
const PAST = '2030-01-01T11:59:59.000Z';
const FUTURE = '2030-01-01T12:00:30.000Z';
const SEEN = '2030-01-01T11:58:00.000Z';
/** Deadlines of tasks handed out at `now` (host_timeout 1m). */
const DEADLINE = '2030-01-01T12:01:00.000Z';

const config: NonNullable<RolloutConfig> = {
  host_timeout: 60_000,
  rollout: { canary: 1, batch: 2, pause: 0, max_failures: 0 },
  approvals: { required: 1, expire_after: 3_600_000 },
};
const withRollout = (rollout: Partial<NonNullable<RolloutConfig>['rollout']>): RolloutConfig => ({ ...config, rollout: { ...config.rollout, ...rollout } });

/** A step: host, batch, state, and what differs from a step in time that came from OLD. */
function step(host: string, batch: number, state: StepState, extra: Partial<StepFacts> = {}): StepFacts {
  const inFlight = state === 'pending' || state === 'staging' || state === 'activated' || state === 'reverting';
  return { host, batch, state, fromReleaseId: OLD, error: null, deadlineAt: inFlight ? FUTURE : null, ...extra };
}

/** The usual rollout of NEW over OLD to h1 (canary), then h2 and h3. */
function rollout(deployment: Partial<DeploymentFacts>, steps: readonly StepFacts[], extra: Partial<RolloutState> = {}): RolloutState {
  const onNew = new Set(steps.filter((s) => s.state === 'succeeded' || s.state === 'activated').map((s) => s.host));
  return {
    deployment: {
      id: 7, env: 'test', kind: 'deploy', state: 'running', releaseId: NEW, fromReleaseId: OLD, requestedBy: 'alice', createdAt: '2030-01-01T11:50:00.000Z',
      error: null, currentBatch: 0, batches: 2, nextBatchAt: null, ...deployment,
    },
    steps,
    hosts: new Map(steps.map((s) => [s.host, { lastSeenAt: SEEN, currentReleaseId: onNew.has(s.host) ? NEW : OLD }])),
    environmentCurrent: OLD,
    release: { app: 'shop', version: '2.0.0' },
    ...extra,
  };
}

const fresh: HostHistory = { dropAudited: false, lateSwitchAudited: false, movedByAnother: false };
const report = (host: string, state: ReportState, on: string | null, more: { task?: TaskKind; error?: string; history?: Partial<HostHistory>; progressed?: boolean } = {}): RolloutEvent => ({
  kind: 'report', host, report: { state, currentReleaseId: on, taskKind: more.task, error: more.error, progressed: more.progressed }, history: { ...fresh, ...more.history },
});
const observation = (host: string, on: string | null, history: Partial<HostHistory> = {}): RolloutEvent => ({ kind: 'observation', host, currentReleaseId: on, history: { ...fresh, ...history } });
const tick: RolloutEvent = { kind: 'tick' };
const verdict = (kind: PolicyVerdict['kind']): RolloutEvent => ({
  kind: 'approval-check',
  verdict: kind === 'allowed' ? { kind, rules: [{ rule: 'approvals', passed: true, detail: '1 of 1 approvals' }] } : { kind, rules: [], reason: 'waiting for 1 approval' },
});

/** What an outcome does, in words a row can state: the deployment's and steps' states after it, and its effects. */
interface Summary {
  readonly deployment: DeploymentState;
  readonly steps: Readonly<Record<string, StepState>>;
  readonly effects: readonly string[];
}

const name = (id: string | null) => (id === null ? 'none' : (NAMES[id] ?? id));
function describeEffect(effect: RolloutEffect): string {
  switch (effect.kind) {
    case 'audit': return `audit ${effect.action}`;
    case 'release-record': return `record ${name(effect.releaseId)} ${Object.keys(effect.patch).join(',')}`;
    case 'environment-current': return `current ${name(effect.releaseId)}`;
    case 'start-return': return `return ${effect.request.host} from ${name(effect.request.switchedTo)} to ${name(effect.request.to)}`;
    case 'alert': return `alert ${effect.alert.kind}`;
    case 'wake': return `wake ${effect.host}`;
    case 'recheck': return `recheck ${effect.at}`;
  }
}

/** The state after the outcome's transitions (as the server keeps it between events); every step change is stamped `now`. */
function after(state: RolloutState, outcome: RolloutOutcome): { deployment: DeploymentFacts; steps: readonly StepFacts[] } {
  for (const transition of outcome.transitions) if (transition.kind === 'step') assert.equal(transition.patch.updatedAt, now.toISOString());
  return applyTransitions(state, outcome.transitions);
}

function summarize(state: RolloutState, outcome: RolloutOutcome): Summary {
  const final = after(state, outcome);
  return { deployment: final.deployment.state, steps: Object.fromEntries(final.steps.map((s) => [s.host, s.state])), effects: outcome.effects.map(describeEffect) };
}

/** One row: a state, an event, and what follows. */
interface Row {
  readonly name: string;
  readonly state: RolloutState;
  readonly event: RolloutEvent;
  readonly config?: RolloutConfig;
  readonly expect: Summary;
  /** Step errors after the event, by host. */
  readonly errors?: Readonly<Record<string, string | null>>;
  /** The deployment's error after the event. */
  readonly error?: string | null;
  /** Other columns of the deployment after the event. */
  readonly deployment?: Partial<DeploymentFacts>;
  /** Step deadlines after the event, by host. */
  readonly deadlines?: Readonly<Record<string, string | null>>;
}

const canaryThen = (canary: StepState, ...rest: StepState[]) => [step('h1', 0, canary), ...rest.map((state, index) => step(`h${index + 2}`, 1, state))];
const finishedWell = ['audit deployment.succeeded'];
const knownGood = ['record old superseded_at', 'current new', 'record new succeeded_at,rolled_back_at,rolled_back_reason,superseded_at'];
const failedRollout = ['record new rolled_back_at,rolled_back_reason', 'audit deployment.failed', 'alert deployment.failed'];

const rows: readonly Row[] = [
  // ---- batches ----
  {
    name: 'the canary succeeds: the next batch opens, its hosts get tasks with a deadline',
    state: rollout({}, canaryThen('activated', 'waiting', 'waiting')),
    event: report('h1', 'succeeded', NEW),
    expect: { deployment: 'running', steps: { h1: 'succeeded', h2: 'pending', h3: 'pending' }, effects: ['wake h2', 'wake h3'] },
    deployment: { currentBatch: 1, nextBatchAt: null },
    deadlines: { h2: DEADLINE, h3: DEADLINE },
  },
  {
    name: 'the canary succeeds with a pause: the next batch waits, a re-check is set for the pause\'s end',
    state: rollout({}, canaryThen('activated', 'waiting', 'waiting')),
    event: report('h1', 'succeeded', NEW),
    config: withRollout({ pause: 30_000 }),
    expect: { deployment: 'running', steps: { h1: 'succeeded', h2: 'waiting', h3: 'waiting' }, effects: ['recheck 2030-01-01T12:00:30.000Z'] },
    deployment: { currentBatch: 0, nextBatchAt: '2030-01-01T12:00:30.000Z' },
  },
  {
    name: 'a tick during the pause changes nothing and re-checks at its end',
    state: rollout({ nextBatchAt: FUTURE }, canaryThen('succeeded', 'waiting', 'waiting')),
    event: tick,
    config: withRollout({ pause: 30_000 }),
    expect: { deployment: 'running', steps: { h1: 'succeeded', h2: 'waiting', h3: 'waiting' }, effects: [`recheck ${FUTURE}`] },
  },
  {
    name: 'the tick at the pause\'s end opens the next batch',
    state: rollout({ nextBatchAt: PAST }, canaryThen('succeeded', 'waiting', 'waiting')),
    event: tick,
    config: withRollout({ pause: 30_000 }),
    expect: { deployment: 'running', steps: { h1: 'succeeded', h2: 'pending', h3: 'pending' }, effects: ['wake h2', 'wake h3'] },
    deployment: { currentBatch: 1, nextBatchAt: null },
  },
  {
    name: 'a batch with a host still at work waits for it',
    state: rollout({ currentBatch: 1 }, canaryThen('succeeded', 'succeeded', 'staging')),
    event: report('h2', 'succeeded', NEW),
    expect: { deployment: 'running', steps: { h1: 'succeeded', h2: 'succeeded', h3: 'staging' }, effects: [] },
  },
  {
    name: 'the last host succeeds: the deployment succeeds, the release becomes current and known-good, the one before superseded',
    state: rollout({ currentBatch: 1 }, canaryThen('succeeded', 'succeeded', 'activated')),
    event: report('h3', 'succeeded', NEW),
    expect: { deployment: 'succeeded', steps: { h1: 'succeeded', h2: 'succeeded', h3: 'succeeded' }, effects: [...knownGood, ...finishedWell] },
    error: null,
  },
  {
    name: 'the first deployment to an environment supersedes nothing',
    state: rollout({ batches: 1, fromReleaseId: null }, [step('h1', 0, 'activated', { fromReleaseId: null })], { environmentCurrent: null }),
    event: report('h1', 'succeeded', NEW),
    expect: { deployment: 'succeeded', steps: { h1: 'succeeded' }, effects: ['current new', 'record new succeeded_at,rolled_back_at,rolled_back_reason,superseded_at', ...finishedWell] },
  },
  {
    name: 'a failure within max_failures is tolerated and noted when the rollout succeeds',
    state: rollout({ currentBatch: 1 }, canaryThen('succeeded', 'succeeded', 'staging')),
    event: report('h3', 'failed', OLD, { error: 'health check failed' }),
    config: withRollout({ max_failures: 1 }),
    expect: { deployment: 'succeeded', steps: { h1: 'succeeded', h2: 'succeeded', h3: 'failed' }, effects: [...knownGood, ...finishedWell] },
    error: 'tolerated failures: h3: health check failed',
  },

  // ---- failures: stop and revert ----
  {
    name: 'the canary fails (max_failures 0): the rest is skipped and, nothing having switched, the deployment fails at once',
    state: rollout({}, canaryThen('staging', 'waiting', 'waiting')),
    event: report('h1', 'failed', OLD, { error: 'hook before_activate exited 1' }),
    expect: { deployment: 'failed', steps: { h1: 'failed', h2: 'skipped', h3: 'skipped' }, effects: ['audit deployment.rolling_back', ...failedRollout] },
    errors: { h1: 'hook before_activate exited 1' },
    error: 'h1: hook before_activate exited 1',
  },
  {
    name: 'a failure beyond max_failures stops the rollout: switched hosts revert, hosts at work keep on',
    state: rollout({ currentBatch: 1 }, canaryThen('succeeded', 'staging', 'activated')),
    event: report('h2', 'failed', OLD, { error: 'boom' }),
    expect: { deployment: 'rolling_back', steps: { h1: 'reverting', h2: 'failed', h3: 'activated' }, effects: ['audit deployment.rolling_back', 'wake h1'] },
    error: 'h2: boom',
    deadlines: { h1: DEADLINE },
  },
  {
    name: 'a failure within max_failures while others are at work: the rollout goes on',
    state: rollout({ currentBatch: 1 }, canaryThen('succeeded', 'staging', 'activated')),
    event: report('h2', 'failed', OLD, { error: 'boom' }),
    config: withRollout({ max_failures: 1 }),
    expect: { deployment: 'running', steps: { h1: 'succeeded', h2: 'failed', h3: 'activated' }, effects: [] },
  },
  {
    name: 'a switched host with no earlier release cannot revert: revert_failed, and the deployment fails saying so',
    state: rollout({ currentBatch: 1 }, [step('h1', 0, 'succeeded', { fromReleaseId: null }), step('h2', 1, 'staging'), step('h3', 1, 'succeeded')]),
    event: report('h2', 'failed', OLD, { error: 'boom' }),
    expect: { deployment: 'rolling_back', steps: { h1: 'revert_failed', h2: 'failed', h3: 'reverting' }, effects: ['audit deployment.rolling_back', 'wake h3'] },
    errors: { h1: 'no earlier release on this host to return to' },
  },
  {
    name: 'the last revert succeeds: the deployment fails with the cause; the reverted host did not fail',
    state: rollout({ state: 'rolling_back', currentBatch: 1, error: 'h2: boom' }, canaryThen('reverting', 'failed', 'skipped')),
    event: report('h1', 'succeeded', OLD, { task: 'revert' }),
    expect: { deployment: 'failed', steps: { h1: 'reverted', h2: 'failed', h3: 'skipped' }, effects: failedRollout },
    error: 'h2: boom',
  },
  {
    name: 'a revert fails: revert_failed, and the deployment\'s error names the host',
    state: rollout({ state: 'rolling_back', currentBatch: 1, error: 'h2: boom' }, canaryThen('reverting', 'failed', 'skipped')),
    event: report('h1', 'failed', NEW, { task: 'revert', error: 'disk full' }),
    expect: { deployment: 'failed', steps: { h1: 'revert_failed', h2: 'failed', h3: 'skipped' }, effects: failedRollout },
    error: 'h2: boom; could not return h1 (disk full)',
  },
  {
    name: 'rolling back: a host that switched in time reverts too',
    state: rollout({ state: 'rolling_back', currentBatch: 1, error: 'h2: boom' }, canaryThen('reverting', 'failed', 'activated')),
    event: report('h3', 'succeeded', NEW),
    expect: { deployment: 'rolling_back', steps: { h1: 'reverting', h2: 'failed', h3: 'reverting' }, effects: [] },
    deadlines: { h3: DEADLINE },
  },

  // ---- timeouts ----
  {
    name: 'a step past its deadline fails at the tick, naming when the host was last seen; the rollout stops',
    state: rollout({}, [step('h1', 0, 'staging', { deadlineAt: PAST }), step('h2', 1, 'waiting')]),
    event: tick,
    expect: { deployment: 'failed', steps: { h1: 'failed', h2: 'skipped' }, effects: ['audit deployment.rolling_back', ...failedRollout] },
    errors: { h1: `did not finish within 1m (offline? last seen ${SEEN})` },
  },
  {
    name: 'a host never seen times out as such',
    state: rollout({ batches: 1 }, [step('h1', 0, 'pending', { deadlineAt: PAST })], { hosts: new Map() }),
    event: tick,
    expect: { deployment: 'failed', steps: { h1: 'failed' }, effects: ['audit deployment.rolling_back', ...failedRollout] },
    errors: { h1: 'did not finish within 1m (offline? never seen)' },
  },
  {
    name: 'a revert past its deadline fails as revert_failed',
    state: rollout({ state: 'rolling_back', batches: 1, error: 'h2: boom' }, [step('h1', 0, 'reverting', { deadlineAt: PAST }), step('h2', 0, 'failed', { error: 'boom' })]),
    event: tick,
    expect: { deployment: 'failed', steps: { h1: 'revert_failed', h2: 'failed' }, effects: failedRollout },
    error: `h2: boom; could not return h1 (did not finish within 1m (offline? last seen ${SEEN}))`,
  },
  {
    name: 'a tick before any deadline changes nothing',
    state: rollout({}, canaryThen('staging', 'waiting')),
    event: tick,
    expect: { deployment: 'running', steps: { h1: 'staging', h2: 'waiting' }, effects: [] },
  },
  // ---- host_timeout counts silence: staging progress pushes the deadline ----
  {
    name: 'staging progress in time: the step gets a full host_timeout from now',
    state: rollout({}, canaryThen('staging', 'waiting')),
    event: report('h1', 'staging', OLD, { progressed: true }),
    expect: { deployment: 'running', steps: { h1: 'staging', h2: 'waiting' }, effects: [] },
    deadlines: { h1: DEADLINE },
  },
  {
    name: 'the first staging report with progress of a pending step: staging, deadline pushed',
    state: rollout({}, canaryThen('pending', 'waiting')),
    event: report('h1', 'staging', OLD, { progressed: true }),
    expect: { deployment: 'running', steps: { h1: 'staging', h2: 'waiting' }, effects: [] },
    deadlines: { h1: DEADLINE },
  },
  {
    name: 'a staging report without progress leaves the deadline where it was',
    state: rollout({}, canaryThen('staging', 'waiting')),
    event: report('h1', 'staging', OLD),
    expect: { deployment: 'running', steps: { h1: 'staging', h2: 'waiting' }, effects: [] },
    deadlines: { h1: FUTURE },
  },
  {
    name: 'progress never shortens a deadline (a longer host_timeout was in force when the task went out)',
    state: rollout({}, canaryThen('staging', 'waiting').map((s) => (s.host === 'h1' ? { ...s, deadlineAt: '2030-01-01T12:05:00.000Z' } : s))),
    event: report('h1', 'staging', OLD, { progressed: true }),
    expect: { deployment: 'running', steps: { h1: 'staging', h2: 'waiting' }, effects: [] },
    deadlines: { h1: '2030-01-01T12:05:00.000Z' },
  },
  {
    name: 'progress after the deadline comes too late: the step fails as timed out',
    state: rollout({}, [step('h1', 0, 'staging', { deadlineAt: PAST }), step('h2', 1, 'waiting')]),
    event: report('h1', 'staging', OLD, { progressed: true }),
    expect: { deployment: 'failed', steps: { h1: 'failed', h2: 'skipped' }, effects: ['audit deployment.rolling_back', ...failedRollout] },
    errors: { h1: 'did not finish within 1m (reported staging)' },
  },
  {
    name: 'progress of a return (no deadline) changes no deadline',
    state: rollout({ kind: 'return', releaseId: OLD, fromReleaseId: NEW, batches: 1 }, [step('h1', 0, 'staging', { fromReleaseId: NEW, deadlineAt: null })]),
    event: report('h1', 'staging', NEW, { progressed: true }),
    expect: { deployment: 'running', steps: { h1: 'staging' }, effects: [] },
    deadlines: { h1: null },
  },
  {
    name: 'a report after the deadline, host not switched: the step fails as timed out',
    state: rollout({}, [step('h1', 0, 'staging', { deadlineAt: PAST }), step('h2', 1, 'waiting')]),
    event: report('h1', 'staging', OLD),
    config: withRollout({ max_failures: 1 }),
    expect: { deployment: 'running', steps: { h1: 'failed', h2: 'pending' }, effects: ['wake h2'] },
    errors: { h1: 'did not finish within 1m (reported staging)' },
  },
  {
    name: 'the agent drops its task at its deadline: the step fails, the drop is audited once',
    state: rollout({}, canaryThen('staging', 'waiting')),
    event: report('h1', 'cancelled', OLD, { error: 'deadline passed' }),
    expect: { deployment: 'failed', steps: { h1: 'failed', h2: 'skipped' }, effects: ['audit deployment.task_dropped', 'audit deployment.rolling_back', ...failedRollout] },
    errors: { h1: 'did not finish within 1m; the agent dropped the task at its deadline (deadline passed)' },
  },
  {
    name: 'the same drop reported again (already audited): no second audit event',
    state: rollout({}, canaryThen('staging', 'waiting')),
    event: report('h1', 'cancelled', OLD, { history: { dropAudited: true } }),
    expect: { deployment: 'failed', steps: { h1: 'failed', h2: 'skipped' }, effects: ['audit deployment.rolling_back', ...failedRollout] },
  },
  {
    name: 'a dropped (cancelled) task of a step the sweep already failed: audited, the step\'s error says so',
    state: rollout({ state: 'failed' }, [step('h1', 0, 'failed', { error: 'did not finish within 1m (offline? never seen)' })]),
    event: report('h1', 'cancelled', OLD),
    expect: { deployment: 'failed', steps: { h1: 'failed' }, effects: ['audit deployment.task_dropped'] },
    errors: { h1: 'did not finish within 1m (offline? never seen); the agent dropped the task at its deadline' },
  },
  {
    name: 'that drop redelivered: ignored',
    state: rollout({ state: 'failed' }, [step('h1', 0, 'failed', { error: 'x' })]),
    event: report('h1', 'cancelled', OLD, { history: { dropAudited: true } }),
    expect: { deployment: 'failed', steps: { h1: 'failed' }, effects: [] },
  },

  // ---- late switches ----
  {
    name: 'switched after the deadline while running: the step fails, the rollout stops and the host reverts; the late switch is audited',
    state: rollout({}, [step('h1', 0, 'activated', { deadlineAt: PAST }), step('h2', 1, 'waiting')]),
    event: report('h1', 'succeeded', NEW),
    expect: { deployment: 'rolling_back', steps: { h1: 'reverting', h2: 'skipped' }, effects: ['audit deployment.rolling_back', 'wake h1', 'audit deployment.late_switch'] },
    errors: { h1: 'did not finish within 1m; switched after its deadline' },
  },
  {
    name: 'a timed-out host switched while rolling back: it reverts',
    state: rollout({ state: 'rolling_back', batches: 1, error: 'h1: x' }, [step('h1', 0, 'failed', { error: 'x' }), step('h2', 0, 'reverting')]),
    event: report('h1', 'succeeded', NEW),
    expect: { deployment: 'rolling_back', steps: { h1: 'reverting', h2: 'reverting' }, effects: ['audit deployment.late_switch'] },
    errors: { h1: 'x' },
  },
  {
    name: 'a late report after the deployment failed: a return of the host to the environment\'s release',
    state: rollout({ state: 'failed', batches: 1 }, [step('h1', 0, 'failed', { error: 'x' })]),
    event: report('h1', 'succeeded', NEW),
    expect: { deployment: 'failed', steps: { h1: 'failed' }, effects: ['return h1 from new to old'] },
  },
  {
    name: 'a late switch after the end, but another deployment will move the host: no return, audited',
    state: rollout({ state: 'failed', batches: 1 }, [step('h1', 0, 'failed', { error: 'x' })]),
    event: report('h1', 'succeeded', NEW, { history: { movedByAnother: true } }),
    expect: { deployment: 'failed', steps: { h1: 'failed' }, effects: ['audit deployment.late_switch'] },
  },
  {
    name: 'the same, reported as activated (the task still runs): audited on its last report',
    state: rollout({ state: 'failed', batches: 1 }, [step('h1', 0, 'failed', { error: 'x' })]),
    event: report('h1', 'activated', NEW, { history: { movedByAnother: true } }),
    expect: { deployment: 'failed', steps: { h1: 'failed' }, effects: [] },
  },
  {
    name: 'a heartbeat finds the host on the failed deployment\'s release (its report was lost): a return',
    state: rollout({ state: 'failed', batches: 1 }, [step('h1', 0, 'failed', { error: 'x' })]),
    event: observation('h1', NEW),
    expect: { deployment: 'failed', steps: { h1: 'failed' }, effects: ['return h1 from new to old'] },
  },
  {
    name: 'a heartbeat of a host switching in time changes nothing',
    state: rollout({}, canaryThen('staging', 'waiting')),
    event: observation('h1', NEW),
    expect: { deployment: 'running', steps: { h1: 'staging', h2: 'waiting' }, effects: [] },
  },

  // ---- duplicates and redeliveries ----
  {
    name: 'a redelivered report of a finished step is ignored',
    state: rollout({ currentBatch: 1 }, canaryThen('succeeded', 'staging')),
    event: report('h1', 'succeeded', NEW),
    expect: { deployment: 'running', steps: { h1: 'succeeded', h2: 'staging' }, effects: [] },
  },
  {
    name: 'a repeated report of the same progress changes nothing',
    state: rollout({}, canaryThen('activated', 'waiting')),
    event: report('h1', 'activated', NEW),
    expect: { deployment: 'running', steps: { h1: 'activated', h2: 'waiting' }, effects: [] },
  },
  {
    name: 'a report after the deployment succeeded is ignored',
    state: rollout({ state: 'succeeded', batches: 1 }, [step('h1', 0, 'succeeded')], { environmentCurrent: NEW }),
    event: report('h1', 'succeeded', NEW),
    expect: { deployment: 'succeeded', steps: { h1: 'succeeded' }, effects: [] },
  },

  // ---- a crash between steps: the state as loaded after the server restarted ----
  {
    name: 'after a restart, steps left staging and activated with deadlines in the past fail; the switched host reverts',
    state: rollout({ currentBatch: 1 }, [step('h1', 0, 'succeeded'), step('h2', 1, 'staging', { deadlineAt: PAST }), step('h3', 1, 'activated', { deadlineAt: PAST })]),
    event: tick,
    expect: { deployment: 'rolling_back', steps: { h1: 'reverting', h2: 'failed', h3: 'reverting' }, effects: ['audit deployment.rolling_back', 'wake h1', 'wake h3'] },
  },
  {
    name: 'after a restart, a batch that finished while the server was down opens the next one at the first tick',
    state: rollout({ batches: 3 }, [step('h1', 0, 'succeeded'), step('h2', 1, 'waiting'), step('h3', 2, 'waiting')]),
    event: tick,
    expect: { deployment: 'running', steps: { h1: 'succeeded', h2: 'pending', h3: 'waiting' }, effects: ['wake h2'] },
  },
  {
    name: 'after a restart, the agent re-sends its last report: applied once',
    state: rollout({}, canaryThen('activated', 'waiting')),
    event: report('h1', 'succeeded', NEW),
    expect: { deployment: 'running', steps: { h1: 'succeeded', h2: 'pending' }, effects: ['wake h2'] },
  },

  // ---- rollbacks and returns ----
  {
    name: 'a rollback with a failed host does not stop; it fails once every host finished, and no release is marked rolled back',
    state: rollout({ kind: 'rollback', releaseId: OLD, fromReleaseId: NEW, batches: 1 }, [step('h1', 0, 'succeeded', { fromReleaseId: NEW }), step('h2', 0, 'staging', { fromReleaseId: NEW })]),
    event: report('h2', 'failed', NEW, { error: 'boom' }),
    expect: { deployment: 'failed', steps: { h1: 'succeeded', h2: 'failed' }, effects: ['audit rollback.failed', 'alert rollback.failed'] },
  },
  {
    name: 'a rollback succeeds: the restored release is current, the one it replaced is rolled back',
    state: rollout({ kind: 'rollback', releaseId: OLD, fromReleaseId: NEW, batches: 1 }, [step('h1', 0, 'succeeded', { fromReleaseId: NEW }), step('h2', 0, 'activated', { fromReleaseId: NEW })], { environmentCurrent: NEW }),
    event: report('h2', 'succeeded', OLD),
    expect: {
      deployment: 'succeeded', steps: { h1: 'succeeded', h2: 'succeeded' },
      effects: ['record new superseded_at', 'current old', 'record old succeeded_at,rolled_back_at,rolled_back_reason,superseded_at', 'record new rolled_back_at,rolled_back_reason', 'audit rollback.succeeded'],
    },
  },
  {
    name: 'a return succeeds: the environment\'s records stay as they are',
    state: rollout({ kind: 'return', releaseId: OLD, fromReleaseId: NEW, batches: 1 }, [step('h1', 0, 'activated', { fromReleaseId: NEW, deadlineAt: PAST })]),
    event: report('h1', 'succeeded', OLD, { task: 'revert' }),
    expect: { deployment: 'succeeded', steps: { h1: 'succeeded' }, effects: ['audit return.succeeded'] },
  },

  // ---- approvals ----
  {
    name: 'approved: the deployment runs, the canary gets its task',
    state: rollout({ state: 'awaiting_approval' }, canaryThen('waiting', 'waiting')),
    event: verdict('allowed'),
    expect: { deployment: 'running', steps: { h1: 'pending', h2: 'waiting' }, effects: ['audit deployment.started', 'wake h1'] },
    deadlines: { h1: DEADLINE },
  },
  {
    name: 'still waiting for approval (or a window): nothing changes',
    state: rollout({ state: 'awaiting_approval' }, canaryThen('waiting', 'waiting')),
    event: verdict('waiting'),
    expect: { deployment: 'awaiting_approval', steps: { h1: 'waiting', h2: 'waiting' }, effects: [] },
  },
  {
    name: 'not approved within expire_after: expired, even if allowed now',
    state: rollout({ state: 'awaiting_approval', createdAt: '2030-01-01T11:00:00.000Z' }, canaryThen('waiting', 'waiting')),
    event: verdict('allowed'),
    expect: { deployment: 'expired', steps: { h1: 'waiting', h2: 'waiting' }, effects: ['audit deployment.expired'] },
    error: 'not approved within 1h',
  },
  {
    name: 'rejected: the deployment ends, with who and why',
    state: rollout({ state: 'awaiting_approval' }, canaryThen('waiting', 'waiting')),
    event: { kind: 'decision', actor: 'bob', decision: 'reject', comment: 'not today' },
    expect: { deployment: 'rejected', steps: { h1: 'waiting', h2: 'waiting' }, effects: ['audit deployment.rejected'] },
    error: 'rejected by bob: not today',
  },
  {
    name: 'an approval is audited; the approval check starts the deployment',
    state: rollout({ state: 'awaiting_approval' }, canaryThen('waiting', 'waiting')),
    event: { kind: 'decision', actor: 'bob', decision: 'approve', comment: null },
    expect: { deployment: 'awaiting_approval', steps: { h1: 'waiting', h2: 'waiting' }, effects: ['audit deployment.approved'] },
  },
  {
    name: 'an approval check of a deployment that already runs changes nothing',
    state: rollout({}, canaryThen('staging', 'waiting')),
    event: verdict('allowed'),
    expect: { deployment: 'running', steps: { h1: 'staging', h2: 'waiting' }, effects: [] },
  },
];

describe('decideRollout: every transition of a deployment', () => {
  for (const row of rows) {
    it(row.name, () => {
      const outcome = decideRollout(row.state, row.event, row.config ?? config, now);
      assert.deepEqual(summarize(row.state, outcome), row.expect);
      const final = after(row.state, outcome);
      for (const [host, error] of Object.entries(row.errors ?? {})) assert.equal(final.steps.find((s) => s.host === host)?.error, error, `error of ${host}`);
      for (const [host, deadline] of Object.entries(row.deadlines ?? {})) assert.equal(final.steps.find((s) => s.host === host)?.deadlineAt, deadline, `deadline of ${host}`);
      if (row.error !== undefined) assert.equal(final.deployment.error, row.error);
      for (const [key, value] of Object.entries(row.deployment ?? {})) assert.equal(final.deployment[key as keyof DeploymentFacts], value, key);
    });
  }

  it('audits name the deployment, the host and what it switched to', () => {
    const state = rollout({}, [step('h1', 0, 'activated', { deadlineAt: PAST }), step('h2', 1, 'waiting')]);
    const outcome = decideRollout(state, report('h1', 'succeeded', NEW), config, now);
    const audit = outcome.effects.find((effect) => effect.kind === 'audit' && effect.action === 'deployment.late_switch');
    assert.deepEqual(audit, {
      kind: 'audit', actor: 'lockstep', action: 'deployment.late_switch', target: 'host:h1',
      details: { deployment: 7, env: 'test', host: 'h1', release: NEW, returnTo: OLD, by: 'deployment #7' },
    });
  });

  it('the failure alert names the release and the failed hosts', () => {
    const state = rollout({}, canaryThen('staging', 'waiting'));
    const alert = decideRollout(state, report('h1', 'failed', OLD, { error: 'boom' }), config, now).effects.find((effect) => effect.kind === 'alert');
    assert.deepEqual(alert, {
      kind: 'alert',
      alert: { kind: 'deployment.failed', summary: 'deployment #7 of shop@2.0.0 to test failed: h1: boom', details: { deployment: 7, release: NEW, version: '2.0.0', failedHosts: ['h1'], error: 'h1: boom' } },
    });
  });

  it('an environment that left the config still times out and stops (built-in defaults)', () => {
    const state = rollout({}, [step('h1', 0, 'staging', { deadlineAt: PAST }), step('h2', 1, 'waiting')]);
    assert.deepEqual(summarize(state, decideRollout(state, tick, undefined, now)).deployment, 'failed');
  });
});

describe('openDeployment and openReturn: how a deployment starts', () => {
  const hosts = ['h3', 'h1', 'h2', 'h4'].map((name) => ({ name, currentReleaseId: OLD }));
  const request = { id: 9, env: 'test', release: { id: NEW, version: '2.0.0' }, from: OLD, hosts, actor: 'alice', reason: null, overrideReason: null } as const;
  const batchesOf = (steps: readonly StepFacts[]) => steps.map((s) => `${s.host}:${s.batch}:${s.state}`).sort();

  it('a deployment runs the canary first; only its host gets a task', () => {
    const opened = openDeployment({ ...request, kind: 'deploy', initial: 'running' }, config, now);
    assert.deepEqual(batchesOf(opened.steps), ['h1:0:pending', 'h2:1:waiting', 'h3:1:waiting', 'h4:2:waiting']);
    assert.equal(opened.deployment.batches, 3);
    assert.deepEqual(opened.effects.map(describeEffect), ['record new ', 'audit deployment.started', 'wake h1']);
    assert.equal(opened.steps.find((s) => s.host === 'h1')?.deadlineAt, DEADLINE);
  });

  it('a deployment awaiting approval hands out nothing', () => {
    const opened = openDeployment({ ...request, kind: 'deploy', initial: 'awaiting_approval' }, config, now);
    assert.ok(opened.steps.every((s) => s.state === 'waiting' && s.deadlineAt === null));
    assert.deepEqual(opened.effects.map(describeEffect), ['record new ', 'audit deployment.requested']);
  });

  it('a rollback goes to every host at once', () => {
    const opened = openDeployment({ ...request, kind: 'rollback', initial: 'running' }, config, now);
    assert.deepEqual(batchesOf(opened.steps), ['h1:0:pending', 'h2:0:pending', 'h3:0:pending', 'h4:0:pending']);
    assert.deepEqual(opened.effects.map(describeEffect), ['record new ', 'audit rollback.started', 'wake h1', 'wake h2', 'wake h3', 'wake h4']);
  });

  it('a return brings one host back and names itself in the late switch\'s audit and alert', () => {
    const opened = openReturn(12, { env: 'test', host: 'h1', switchedTo: NEW, to: OLD, after: 7, auditLateSwitch: true }, config, now);
    const kind: DeploymentKind = opened.deployment.kind;
    assert.equal(kind, 'return');
    assert.deepEqual(batchesOf(opened.steps), ['h1:0:pending']);
    assert.deepEqual(opened.effects.map(describeEffect), ['audit return.started', 'audit deployment.late_switch', 'alert host.late_switch', 'wake h1']);
    assert.equal(opened.deployment.reason, 'h1 switched to bbbbbbbbbbbb after deployment #7 ended; returning it to aaaaaaaaaaaa');
    const withoutAudit = openReturn(12, { env: 'test', host: 'h1', switchedTo: NEW, to: OLD, after: 7, auditLateSwitch: false }, config, now);
    assert.deepEqual(withoutAudit.effects.map(describeEffect), ['audit return.started', 'alert host.late_switch', 'wake h1']);
  });
});

describe('taskOf: the task an unfinished step hands out', () => {
  const taskRows: readonly { name: string; kind: DeploymentKind; state: StepState; from?: string | null; expect: ReturnType<typeof taskOf> }[] = [
    { name: 'a rollout step switches to the new release by its deadline', kind: 'deploy', state: 'pending', expect: { kind: 'deploy', releaseId: NEW, deadlineAt: FUTURE } },
    { name: 'a rollback step too', kind: 'rollback', state: 'staging', expect: { kind: 'rollback', releaseId: NEW, deadlineAt: FUTURE } },
    { name: 'a reverting step returns to the host\'s earlier release, late rather than never', kind: 'deploy', state: 'reverting', expect: { kind: 'revert', releaseId: OLD, deadlineAt: null } },
    { name: 'a return is a revert without a deadline', kind: 'return', state: 'pending', expect: { kind: 'revert', releaseId: NEW, deadlineAt: null } },
  ];
  for (const row of taskRows) {
    it(row.name, () => {
      assert.deepEqual(taskOf({ kind: row.kind, releaseId: NEW }, { state: row.state, fromReleaseId: row.from === undefined ? OLD : row.from, deadlineAt: FUTURE }), row.expect);
    });
  }
});
