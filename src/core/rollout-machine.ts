/**
 * The rollout as a pure state machine. Given a deployment, its steps, what
 * the server knows of the hosts, the environment's config and `now`, an event
 * (a host's report, a heartbeat naming a release, a sweep tick, an approval
 * check, an approval decision) yields the row updates (`transitions`) and
 * what to do besides (`effects`: audit events and release records written in
 * the same transaction; alerts, agent wake-ups and a re-check after it
 * commits). `server/deployment-service.ts` loads the state, calls
 * `decideRollout` and applies the result in one transaction. What one report
 * means for its step is `decideReport` (report-decision.ts); this module
 * moves the whole deployment on from there.
 */
import type { EnvironmentConfig } from './config.js';
import { formatDuration } from './duration.js';
import { shortId } from './manifest.js';
import type { PolicyVerdict } from './policy.js';
import {
  ACTIVE_DEPLOYMENTS,
  decideObservation,
  decideReport,
  IN_FLIGHT_STEPS,
  switchHasDeadline,
  type DeploymentKind,
  type DeploymentState,
  type ReportDecision,
  type ReportFacts,
  type ReportedState,
  type StepState,
  type TaskKind,
} from './report-decision.js';
import { failureBudget, planBatches, type RolloutPolicy } from './rollout-plan.js';

/** A deployment as the machine sees it. */
export interface DeploymentFacts {
  readonly id: number;
  readonly env: string;
  readonly kind: DeploymentKind;
  readonly state: DeploymentState;
  readonly releaseId: string;
  /** What the environment ran when it started. */
  readonly fromReleaseId: string | null;
  readonly requestedBy: string;
  readonly createdAt: string;
  readonly error: string | null;
  readonly currentBatch: number;
  readonly batches: number;
  /** When the next batch may open (a pause between batches). */
  readonly nextBatchAt: string | null;
}

/** One host's step of the deployment. */
export interface StepFacts {
  readonly host: string;
  readonly batch: number;
  readonly state: StepState;
  readonly fromReleaseId: string | null;
  readonly error: string | null;
  readonly deadlineAt: string | null;
}

/** What the server last heard from a host. */
export interface HostFacts {
  readonly lastSeenAt: string | null;
  readonly currentReleaseId: string | null;
}

/** Everything the machine looks at besides the event. */
export interface RolloutState {
  readonly deployment: DeploymentFacts;
  readonly steps: readonly StepFacts[];
  /** The hosts of the environment by name (a host missing here was never seen). */
  readonly hosts: ReadonlyMap<string, HostFacts>;
  /** The release the environment runs (null: none yet). */
  readonly environmentCurrent: string | null;
  /** The deployment's release, for alerts (undefined: unknown). */
  readonly release: { readonly app: string; readonly version: string } | undefined;
}

/** A host's report about its task, as it enters the machine. */
export interface HostReport extends ReportedState {
  readonly error?: string | undefined;
  /** The report carries staging progress (bytes moved since the last one): the host is not silent. */
  readonly progressed?: boolean | undefined;
}

/** What is recorded elsewhere about the host an event is about: facts recorded once, and other deployments. */
export interface HostHistory {
  /** This deployment's `deployment.task_dropped` event about the host was appended already. */
  readonly dropAudited: boolean;
  /** This deployment's `deployment.late_switch` event about the host was appended already. */
  readonly lateSwitchAudited: boolean;
  /** Another deployment of the environment will still move the host (then it needs no return). */
  readonly movedByAnother: boolean;
}

/** What happens to a deployment. */
export type RolloutEvent =
  /** A host reports on its task. */
  | { readonly kind: 'report'; readonly host: string; readonly report: HostReport; readonly history: HostHistory }
  /** A heartbeat names a release the host did not run before (its report may have been lost). */
  | { readonly kind: 'observation'; readonly host: string; readonly currentReleaseId: string | null; readonly history: HostHistory }
  /** The periodic sweep, or the end of a pause: deadlines and batches are checked at `now`. */
  | { readonly kind: 'tick' }
  /** A deployment awaiting approval is checked against its expiry and the policy's verdict now. */
  | { readonly kind: 'approval-check'; readonly verdict: PolicyVerdict }
  /** A person approves or rejects a deployment awaiting approval (validated by the caller). */
  | { readonly kind: 'decision'; readonly actor: string; readonly decision: 'approve' | 'reject'; readonly comment: string | null };

/** Changed columns of the deployment. */
export interface DeploymentPatch {
  readonly state?: DeploymentState;
  readonly finishedAt?: string;
  readonly error?: string | null;
  readonly currentBatch?: number;
  readonly nextBatchAt?: string | null;
}

/** Changed columns of one step. */
export interface StepPatch {
  readonly state?: StepState;
  readonly error?: string | null;
  readonly updatedAt: string;
  readonly deadlineAt?: string | null;
}

/** A row update, applied in the event's transaction. */
export type Transition = { readonly kind: 'deployment'; readonly patch: DeploymentPatch } | { readonly kind: 'step'; readonly host: string; readonly patch: StepPatch };

/** What the environment's records say about a release (known-good bookkeeping). */
export interface ReleaseRecordPatch {
  readonly succeeded_at?: string | null;
  readonly rolled_back_at?: string | null;
  readonly rolled_back_reason?: string | null;
  readonly superseded_at?: string | null;
}

/** An alert, without the environment and time the dispatcher adds. */
export interface RolloutAlert {
  readonly kind: string;
  readonly summary: string;
  readonly details: Readonly<Record<string, unknown>>;
}

/** One host's return to its environment's release after a late switch. */
export interface ReturnRequest {
  readonly env: string;
  readonly host: string;
  /** The release the host switched to late. */
  readonly switchedTo: string | null;
  readonly to: string;
  /** The deployment the host switched late in. */
  readonly after: number;
  /** Whether the late switch still needs its audit event (it names the return). */
  readonly auditLateSwitch: boolean;
}

/** What to do besides the row updates. */
export type RolloutEffect =
  /** In the transaction: one audit event, at `now`. */
  | { readonly kind: 'audit'; readonly actor: string; readonly action: string; readonly target: string; readonly details: Readonly<Record<string, unknown>> }
  /** In the transaction: the release's record in the environment. */
  | { readonly kind: 'release-record'; readonly releaseId: string; readonly env: string; readonly patch: ReleaseRecordPatch }
  /** In the transaction: the environment now runs this release. */
  | { readonly kind: 'environment-current'; readonly env: string; readonly releaseId: string }
  /** In the transaction: a new one-host `return` deployment (its id comes from the store; see `openReturn`). */
  | { readonly kind: 'start-return'; readonly request: ReturnRequest }
  /** After commit: alert the environment's channels. */
  | { readonly kind: 'alert'; readonly alert: RolloutAlert }
  /** After commit: the host has a task to pick up. */
  | { readonly kind: 'wake'; readonly host: string }
  /** After commit: look at the deployment again at `at` (a pause ends). */
  | { readonly kind: 'recheck'; readonly at: string };

/** What an event decided. */
export interface RolloutOutcome {
  readonly transitions: readonly Transition[];
  readonly effects: readonly RolloutEffect[];
}

/** The environment's settings the machine uses (undefined: the environment left the config). */
export type RolloutConfig = Pick<EnvironmentConfig, 'host_timeout' | 'rollout' | 'approvals'> | undefined;

/** The defaults of an environment that left the config while a deployment of it runs. */
const FALLBACK_ROLLOUT: RolloutPolicy = { canary: 1, batch: '25%', pause: 0, max_failures: 0 };
const FALLBACK_TIMEOUT = 120_000;
const FALLBACK_EXPIRY = 86_400_000;

/** When a step handed out at `now` must be finished. */
export function deadlineFor(config: RolloutConfig, now: Date): string {
  return new Date(now.getTime() + (config?.host_timeout ?? FALLBACK_TIMEOUT)).toISOString();
}

/** The first word of a deployment's audit actions and alerts. */
function actionOf(kind: DeploymentKind): string {
  return kind === 'deploy' ? 'deployment' : kind;
}

function patchDeployment(deployment: DeploymentFacts, patch: DeploymentPatch): DeploymentFacts {
  return { ...deployment, ...patch };
}

function patchStep(step: StepFacts, patch: Omit<StepPatch, 'updatedAt'>): StepFacts {
  const { host, batch, fromReleaseId } = step;
  return { host, batch, fromReleaseId, state: patch.state ?? step.state, error: patch.error !== undefined ? patch.error : step.error, deadlineAt: patch.deadlineAt !== undefined ? patch.deadlineAt : step.deadlineAt };
}

/**
 * The deployment and its steps as `transitions` leave them: what a caller
 * that keeps a rollout between events (the server's view of an in-flight
 * deployment) holds next, without reading the rows back.
 */
export function applyTransitions(before: Pick<RolloutState, 'deployment' | 'steps'>, transitions: readonly Transition[]): Pick<RolloutState, 'deployment' | 'steps'> {
  let deployment = before.deployment;
  const steps = [...before.steps];
  for (const transition of transitions) {
    if (transition.kind === 'deployment') {
      deployment = patchDeployment(deployment, transition.patch);
      continue;
    }
    const index = steps.findIndex((step) => step.host === transition.host);
    const current = steps[index];
    if (current !== undefined) steps[index] = patchStep(current, transition.patch);
  }
  return { deployment, steps };
}

/** The working copy of one event's decision: the state as it changes, and what was decided so far. */
class Draft {
  deployment: DeploymentFacts;
  readonly steps: StepFacts[];
  readonly transitions: Transition[] = [];
  readonly effects: RolloutEffect[] = [];
  readonly iso: string;

  constructor(
    readonly state: RolloutState,
    readonly config: RolloutConfig,
    readonly now: Date,
  ) {
    this.deployment = state.deployment;
    this.steps = [...state.steps];
    this.iso = now.toISOString();
  }

  get timeoutError(): string {
    return `did not finish within ${formatDuration(this.config?.host_timeout ?? 0)}`;
  }

  step(host: string): StepFacts | undefined {
    return this.steps.find((step) => step.host === host);
  }

  setDeployment(patch: DeploymentPatch): void {
    this.deployment = patchDeployment(this.deployment, patch);
    this.transitions.push({ kind: 'deployment', patch });
  }

  setStep(host: string, patch: Omit<StepPatch, 'updatedAt'>): void {
    const index = this.steps.findIndex((step) => step.host === host);
    const current = this.steps[index];
    if (current === undefined) return;
    this.steps[index] = patchStep(current, patch);
    this.transitions.push({ kind: 'step', host, patch: { ...patch, updatedAt: this.iso } });
  }

  audit(action: string, target: string, details: Readonly<Record<string, unknown>>, actor = 'lockstep'): void {
    this.effects.push({ kind: 'audit', actor, action, target, details });
  }

  /** An event about one host's step, recorded once per deployment (reports are retried). */
  auditHost(host: string, action: string, details: Readonly<Record<string, unknown>>): void {
    this.audit(action, `host:${host}`, { deployment: this.deployment.id, env: this.deployment.env, host, ...details });
  }

  outcome(): RolloutOutcome {
    return { transitions: this.transitions, effects: this.effects };
  }
}

/**
 * Decides what an event does to a deployment: the transitions of its rows
 * and the effects to run. Pure: time is `now`; see the table in
 * test/unit/rollout-machine.test.ts.
 */
export function decideRollout(state: RolloutState, event: RolloutEvent, config: RolloutConfig, now: Date): RolloutOutcome {
  const draft = new Draft(state, config, now);
  switch (event.kind) {
    case 'report':
      onReport(draft, event.host, event.report, event.history);
      break;
    case 'observation':
      onObservation(draft, event.host, event.currentReleaseId, event.history);
      break;
    case 'tick':
      advance(draft);
      break;
    case 'approval-check':
      onApprovalCheck(draft, event.verdict);
      break;
    case 'decision':
      onDecision(draft, event.actor, event.decision, event.comment);
      break;
  }
  return draft.outcome();
}

function reportFacts(draft: Draft, step: StepFacts): Pick<ReportFacts, 'deployment' | 'step' | 'environmentCurrent'> {
  const { deployment } = draft;
  return {
    deployment: { kind: deployment.kind, state: deployment.state, releaseId: deployment.releaseId },
    step: { state: step.state, fromReleaseId: step.fromReleaseId, deadlineAt: step.deadlineAt },
    environmentCurrent: draft.state.environmentCurrent,
  };
}

/** The columns of a step that moves to `next`: a reverting host gets a new deadline for its way back. */
function stepTo(draft: Draft, next: StepState, error: string | null): Omit<StepPatch, 'updatedAt'> {
  return { state: next, error, ...(next === 'reverting' ? { deadlineAt: deadlineFor(draft.config, draft.now) } : {}) };
}

function onReport(draft: Draft, host: string, report: HostReport, history: HostHistory): void {
  const step = draft.step(host);
  if (step === undefined) return;
  const decision = decideReport({ ...reportFacts(draft, step), report: { state: report.state, currentReleaseId: report.currentReleaseId, taskKind: report.taskKind }, now: draft.now });
  const dropNote = `the agent dropped the task at its deadline${report.error ? ` (${report.error})` : ''}`;
  const dropDetails = { release: draft.deployment.releaseId, currentReleaseId: report.currentReleaseId, error: report.error ?? null };
  switch (decision.kind) {
    case 'ignore':
      break;
    case 'advance': {
      if (report.progressed === true && decision.step === 'staging') extendDeadline(draft, step);
      if (decision.step === step.state) break;
      // A host that failed and was then returned keeps why it failed.
      const next = decision.step;
      const error = next === 'failed' || next === 'revert_failed' ? (report.error ?? 'failed') : next === 'reverting' || next === 'reverted' ? step.error : null;
      draft.setStep(host, stepTo(draft, next, error));
      break;
    }
    case 'missed-deadline':
      draft.setStep(host, stepTo(draft, 'failed', decision.acknowledged ? `${draft.timeoutError}; ${dropNote}` : `${draft.timeoutError} (reported ${report.state})`));
      if (decision.acknowledged && !history.dropAudited) draft.auditHost(host, 'deployment.task_dropped', dropDetails);
      break;
    case 'dropped':
      if (!history.dropAudited) {
        draft.auditHost(host, 'deployment.task_dropped', dropDetails);
        draft.setStep(host, { error: `${step.error ?? (step.state === 'skipped' ? 'skipped' : draft.timeoutError)}; ${dropNote}` });
      }
      break;
    case 'late-switch':
      // A host still busy with its task says its last word later, when its way back is known.
      settleLateSwitch(draft, step, decision, report.currentReleaseId, report.state !== 'activated', history);
      return;
  }
  advance(draft);
}

function onObservation(draft: Draft, host: string, currentReleaseId: string | null, history: HostHistory): void {
  const step = draft.step(host);
  if (step === undefined) return;
  const { deployment, step: facts, environmentCurrent } = reportFacts(draft, step);
  const decision = decideObservation({ deployment, step: facts, currentReleaseId, environmentCurrent });
  if (decision.kind === 'late-switch') settleLateSwitch(draft, step, decision, currentReleaseId, true, history);
}

/**
 * Acts on a late switch of `step`'s host to `switchedTo`: the step's new
 * state within a deployment that still runs, or a return once it is over;
 * then moves the deployment on and audits the switch once, with the release
 * the host returns to (`settled`: false while the host's task still runs and
 * that is not known yet).
 */
function settleLateSwitch(draft: Draft, step: StepFacts, decision: Extract<ReportDecision, { kind: 'late-switch' }>, switchedTo: string | null, settled: boolean, history: HostHistory): void {
  const host = step.host;
  if (decision.step !== null && decision.step !== step.state) {
    const error = decision.step === 'revert_failed' ? `${draft.timeoutError}; switched late, and there is no earlier release on this host to return to` : (step.error ?? `${draft.timeoutError}; switched after its deadline`);
    draft.setStep(host, stepTo(draft, decision.step, error));
  }
  if (decision.returnTo !== null && !history.movedByAnother) {
    // The return's own events name it, the late switch's among them (see openReturn).
    draft.effects.push({ kind: 'start-return', request: { env: draft.deployment.env, host, switchedTo, to: decision.returnTo, after: draft.deployment.id, auditLateSwitch: !history.lateSwitchAudited } });
    advance(draft);
    return;
  }
  advance(draft);
  // After advance: a running rollout may just have stopped and decided to revert this host.
  const after = draft.step(host);
  const returnTo = after?.state === 'reverting' ? after.fromReleaseId : null;
  if ((returnTo !== null || settled) && !history.lateSwitchAudited) {
    draft.auditHost(host, 'deployment.late_switch', { release: switchedTo, returnTo, by: returnTo !== null ? `deployment #${draft.deployment.id}` : null });
  }
}

/**
 * Moves a deployment on from its steps' states: fails overdue steps, stops
 * the rollout when failures exceed the budget, opens the next batch (after
 * its pause), or finishes.
 */
function advance(draft: Draft): void {
  if (!ACTIVE_DEPLOYMENTS.includes(draft.deployment.state)) return;
  failOverdueSteps(draft);
  const { deployment, steps, config } = draft;
  const failed = steps.filter((step) => step.state === 'failed');
  const describeFailures = () => failed.map((step) => `${step.host}: ${step.error ?? 'failed'}`).join('; ');

  if (deployment.state === 'running') {
    // Only a rollout stops and goes back; a rollback or a return has nowhere better to go.
    const budget = deployment.kind !== 'deploy' ? Number.POSITIVE_INFINITY : failureBudget(config?.rollout ?? FALLBACK_ROLLOUT, steps.length);
    if (failed.length > budget) {
      stopRollout(draft, describeFailures());
      return;
    }
    const batch = steps.filter((step) => step.batch === deployment.currentBatch);
    if (batch.some((step) => IN_FLIGHT_STEPS.includes(step.state))) return;
    if (deployment.currentBatch + 1 < deployment.batches) {
      openNextBatch(draft);
      return;
    }
    if (failed.length > 0 && deployment.kind !== 'deploy') finishFailed(draft, describeFailures());
    else finishSucceeded(draft, failed.length > 0 ? `tolerated failures: ${describeFailures()}` : null);
    return;
  }

  // rolling_back: done when no host has work left.
  if (steps.some((step) => IN_FLIGHT_STEPS.includes(step.state))) return;
  const revertFailed = steps.filter((step) => step.state === 'revert_failed');
  const error = `${deployment.error ?? 'rollout stopped'}${revertFailed.length ? `; could not return ${revertFailed.map((step) => `${step.host} (${step.error ?? 'failed'})`).join(', ')}` : ''}`;
  finishFailed(draft, error);
}

/**
 * `host_timeout` measures silence, not size: a host that reports staging
 * progress in time gets a full `host_timeout` from now (never less than it
 * had), so a large release may take longer than the timeout while a host that
 * stops sending still fails at its deadline.
 */
function extendDeadline(draft: Draft, step: StepFacts): void {
  if (step.deadlineAt === null || !switchHasDeadline(draft.deployment.kind, step.state)) return;
  const pushed = deadlineFor(draft.config, draft.now);
  if (pushed > step.deadlineAt) draft.setStep(step.host, { deadlineAt: pushed });
}

/** A host that has not finished by its deadline (offline, hung) fails its step. */
function failOverdueSteps(draft: Draft): void {
  for (const step of [...draft.steps]) {
    if (!IN_FLIGHT_STEPS.includes(step.state) || !step.deadlineAt || step.deadlineAt > draft.iso) continue;
    const lastSeen = draft.state.hosts.get(step.host)?.lastSeenAt;
    const seen = lastSeen ? `last seen ${lastSeen}` : 'never seen';
    draft.setStep(step.host, { state: step.state === 'reverting' ? 'revert_failed' : 'failed', error: `${draft.timeoutError} (offline? ${seen})` });
  }
}

/** Opens the next batch, or first starts the pause before it. */
function openNextBatch(draft: Draft): void {
  const { deployment } = draft;
  const pause = draft.config?.rollout.pause ?? 0;
  if (pause > 0 && deployment.nextBatchAt === null) {
    const recheckAt = new Date(draft.now.getTime() + pause).toISOString();
    draft.setDeployment({ nextBatchAt: recheckAt });
    draft.effects.push({ kind: 'recheck', at: recheckAt });
    return;
  }
  if (deployment.nextBatchAt !== null && deployment.nextBatchAt > draft.iso) {
    draft.effects.push({ kind: 'recheck', at: deployment.nextBatchAt });
    return;
  }
  const nextBatch = deployment.currentBatch + 1;
  const deadline = deadlineFor(draft.config, draft.now);
  const wake = draft.steps.filter((step) => step.batch === nextBatch).map((step) => step.host);
  for (const host of wake) draft.setStep(host, { state: 'pending', deadlineAt: deadline });
  draft.setDeployment({ currentBatch: nextBatch, nextBatchAt: null });
  for (const host of wake) draft.effects.push({ kind: 'wake', host });
}

/** Stops a rollout: unstarted hosts are skipped, switched hosts return to the release they had. */
function stopRollout(draft: Draft, cause: string): void {
  const { deployment } = draft;
  const deadline = deadlineFor(draft.config, draft.now);
  const reverting: string[] = [];
  for (const step of [...draft.steps]) {
    const switched = draft.state.hosts.get(step.host)?.currentReleaseId === deployment.releaseId && step.fromReleaseId !== deployment.releaseId;
    if (step.state === 'waiting' || step.state === 'pending') {
      draft.setStep(step.host, { state: 'skipped', deadlineAt: null });
    } else if ((step.state === 'succeeded' || step.state === 'failed') && switched) {
      if (step.fromReleaseId === null) {
        draft.setStep(step.host, { state: 'revert_failed', error: `${step.error ? `${step.error}; ` : ''}no earlier release on this host to return to` });
      } else {
        draft.setStep(step.host, { state: 'reverting', deadlineAt: deadline });
        reverting.push(step.host);
      }
    }
  }
  draft.setDeployment({ state: 'rolling_back', error: cause });
  draft.audit('deployment.rolling_back', `env:${deployment.env}`, { deployment: deployment.id, release: deployment.releaseId, cause, reverting });
  for (const host of reverting) draft.effects.push({ kind: 'wake', host });
  advance(draft);
}

/** Finishes a deployment that reached every host; the environment now runs its release (known-good bookkeeping). */
function finishSucceeded(draft: Draft, note: string | null): void {
  const { deployment, iso } = draft;
  const { env, releaseId } = deployment;
  draft.setDeployment({ state: 'succeeded', finishedAt: iso, error: note });
  if (deployment.kind === 'return') {
    // A return restores the environment's release on one host: the environment's records stay as they are.
    draft.audit('return.succeeded', `env:${env}`, { deployment: deployment.id, release: releaseId, hosts: draft.steps.map((step) => step.host) });
    return;
  }
  const replaced = draft.state.environmentCurrent;
  if (replaced !== null && replaced !== releaseId) draft.effects.push({ kind: 'release-record', releaseId: replaced, env, patch: { superseded_at: iso } });
  draft.effects.push({ kind: 'environment-current', env, releaseId });
  draft.effects.push({ kind: 'release-record', releaseId, env, patch: { succeeded_at: iso, rolled_back_at: null, rolled_back_reason: null, superseded_at: null } });
  if (deployment.kind === 'rollback' && deployment.fromReleaseId && deployment.fromReleaseId !== releaseId) {
    draft.effects.push({ kind: 'release-record', releaseId: deployment.fromReleaseId, env, patch: { rolled_back_at: iso, rolled_back_reason: `rolled back by ${deployment.requestedBy} (#${deployment.id})` } });
  }
  draft.audit(`${actionOf(deployment.kind)}.succeeded`, `env:${env}`, { deployment: deployment.id, release: releaseId, hosts: draft.steps.length, note });
}

/** Finishes a deployment that failed; a failed rollout's release may not be promoted onward. */
function finishFailed(draft: Draft, error: string): void {
  const { deployment, iso } = draft;
  const action = actionOf(deployment.kind);
  draft.setDeployment({ state: 'failed', finishedAt: iso, error });
  if (deployment.kind === 'deploy') {
    draft.effects.push({ kind: 'release-record', releaseId: deployment.releaseId, env: deployment.env, patch: { rolled_back_at: iso, rolled_back_reason: `deployment #${deployment.id} failed` } });
  }
  // A host that failed its step and was then returned to its release still failed.
  const failedHosts = draft.steps.filter((step) => step.state === 'failed' || step.state === 'revert_failed' || (step.state === 'reverted' && step.error !== null)).map((step) => step.host);
  draft.audit(`${action}.failed`, `env:${deployment.env}`, { deployment: deployment.id, release: deployment.releaseId, failedHosts, error });
  const release = draft.state.release;
  draft.effects.push({
    kind: 'alert',
    alert: {
      kind: `${action}.failed`,
      summary: `${action} #${deployment.id} of ${release?.app ?? ''}@${release?.version ?? shortId(deployment.releaseId)} to ${deployment.env} failed: ${error}`,
      details: { deployment: deployment.id, release: deployment.releaseId, version: release?.version ?? null, failedHosts, error },
    },
  });
}

/** Expires a deployment that waited too long for approval, or starts it when the policy now allows it. */
function onApprovalCheck(draft: Draft, verdict: PolicyVerdict): void {
  const { deployment, config, iso } = draft;
  if (deployment.state !== 'awaiting_approval') return;
  const expiry = Date.parse(deployment.createdAt) + (config?.approvals.expire_after ?? FALLBACK_EXPIRY);
  if (draft.now.getTime() >= expiry) {
    draft.setDeployment({ state: 'expired', finishedAt: iso, error: `not approved within ${formatDuration(config?.approvals.expire_after ?? 0)}` });
    draft.audit('deployment.expired', `env:${deployment.env}`, { deployment: deployment.id });
    return;
  }
  if (verdict.kind !== 'allowed') return;
  const deadline = deadlineFor(config, draft.now);
  const wake = draft.steps.filter((step) => step.batch === 0).map((step) => step.host);
  for (const host of wake) draft.setStep(host, { state: 'pending', deadlineAt: deadline });
  draft.setDeployment({ state: 'running' });
  draft.audit('deployment.started', `env:${deployment.env}`, { deployment: deployment.id, release: deployment.releaseId, approvals: verdict.rules.find((rule) => rule.rule === 'approvals')?.detail ?? null });
  for (const host of wake) draft.effects.push({ kind: 'wake', host });
}

/** Records an approval or a rejection; a rejection ends the deployment. */
function onDecision(draft: Draft, actor: string, decision: 'approve' | 'reject', comment: string | null): void {
  const { deployment, iso } = draft;
  if (deployment.state !== 'awaiting_approval') return;
  draft.audit(decision === 'approve' ? 'deployment.approved' : 'deployment.rejected', `env:${deployment.env}`, { deployment: deployment.id, release: deployment.releaseId, comment }, actor);
  if (decision === 'reject') draft.setDeployment({ state: 'rejected', finishedAt: iso, error: `rejected by ${actor}${comment ? `: ${comment}` : ''}` });
}

/** What a host's unfinished step hands out to its agent. */
export interface TaskPlan {
  /** A revert and a return bring a host back (their after_rollback hook runs). */
  readonly kind: TaskKind;
  /** The release to switch to (null: the host had none before, and a revert has nothing to restore). */
  readonly releaseId: string | null;
  /** The agent switches only before this (null: no deadline). */
  readonly deadlineAt: string | null;
}

/** The task of an unfinished step: a reverting step returns the host to the release it had before the deployment. */
export function taskOf(deployment: Pick<DeploymentFacts, 'kind' | 'releaseId'>, step: Pick<StepFacts, 'state' | 'fromReleaseId' | 'deadlineAt'>): TaskPlan {
  const reverting = step.state === 'reverting';
  return {
    kind: reverting || deployment.kind === 'return' ? 'revert' : deployment.kind,
    releaseId: reverting ? step.fromReleaseId : deployment.releaseId,
    deadlineAt: switchHasDeadline(deployment.kind, step.state) ? step.deadlineAt : null,
  };
}

/** A deployment about to be created, with its steps and what to do once it is. */
export interface OpenedDeployment {
  readonly deployment: DeploymentFacts & { readonly reason: string | null; readonly overrideReason: string | null };
  readonly steps: readonly StepFacts[];
  readonly effects: readonly RolloutEffect[];
}

/** Everything `openDeployment` needs: the id comes from the store, the hosts are the environment's enrolled ones. */
export interface DeploymentRequest {
  readonly id: number;
  readonly env: string;
  readonly kind: Exclude<DeploymentKind, 'return'>;
  readonly release: { readonly id: string; readonly version: string };
  /** What the environment runs now. */
  readonly from: string | null;
  readonly hosts: readonly { readonly name: string; readonly currentReleaseId: string | null }[];
  readonly actor: string;
  readonly reason: string | null;
  readonly initial: 'running' | 'awaiting_approval';
  readonly overrideReason: string | null;
}

/**
 * The start of a deployment or rollback: its batches (a rollback restores a
 * known-good state as fast as possible, so every host at once), the canary's
 * tasks when it runs, and its audit event.
 */
export function openDeployment(request: DeploymentRequest, config: RolloutConfig, now: Date): OpenedDeployment {
  const iso = now.toISOString();
  const { id, env, kind, release, initial } = request;
  const names = request.hosts.map((host) => host.name);
  const batches = kind === 'rollback' ? [[...names].sort()] : planBatches(names, config?.rollout ?? FALLBACK_ROLLOUT);
  const batchOf = new Map(batches.flatMap((batch, index) => batch.map((name) => [name, index] as const)));
  const deadline = deadlineFor(config, now);
  const steps = request.hosts.map((host): StepFacts => {
    const batch = batchOf.get(host.name) ?? 0;
    const dispatch = batch === 0 && initial === 'running';
    return { host: host.name, batch, state: dispatch ? 'pending' : 'waiting', fromReleaseId: host.currentReleaseId, error: null, deadlineAt: dispatch ? deadline : null };
  });
  const action = kind === 'rollback' ? 'rollback.started' : initial === 'awaiting_approval' ? 'deployment.requested' : 'deployment.started';
  const effects: RolloutEffect[] = [
    { kind: 'release-record', releaseId: release.id, env, patch: {} },
    {
      kind: 'audit', actor: request.actor, action, target: `env:${env}`,
      details: { deployment: id, release: release.id, version: release.version, from: request.from, batches, reason: request.reason, ...(request.overrideReason ? { override: request.overrideReason } : {}) },
    },
    ...(initial === 'running' ? (batches[0] ?? []).map((host): RolloutEffect => ({ kind: 'wake', host })) : []),
  ];
  return {
    deployment: {
      id, env, kind, releaseId: release.id, fromReleaseId: request.from, state: initial, requestedBy: request.actor, createdAt: iso, error: null,
      currentBatch: 0, batches: batches.length, nextBatchAt: null, reason: request.reason, overrideReason: request.overrideReason,
    },
    steps,
    effects,
  };
}

/** The one-host `return` deployment a `start-return` effect asks for, once the store gave it an id. */
export function openReturn(id: number, request: ReturnRequest, config: RolloutConfig, now: Date): OpenedDeployment {
  const iso = now.toISOString();
  const { env, host, switchedTo, to, after } = request;
  const reason = `${host} switched to ${shortId(switchedTo ?? '')} after deployment #${after} ended; returning it to ${shortId(to)}`;
  const lateSwitch = { deployment: after, env, host, release: switchedTo, returnTo: to, by: `return #${id}` };
  return {
    deployment: {
      id, env, kind: 'return', releaseId: to, fromReleaseId: switchedTo, state: 'running', requestedBy: 'lockstep', createdAt: iso, error: null,
      currentBatch: 0, batches: 1, nextBatchAt: null, reason, overrideReason: null,
    },
    steps: [{ host, batch: 0, state: 'pending', fromReleaseId: switchedTo, error: null, deadlineAt: deadlineFor(config, now) }],
    effects: [
      { kind: 'audit', actor: 'lockstep', action: 'return.started', target: `env:${env}`, details: { deployment: id, release: to, from: switchedTo, host, after, reason } },
      ...(request.auditLateSwitch ? [{ kind: 'audit', actor: 'lockstep', action: 'deployment.late_switch', target: `host:${host}`, details: lateSwitch } as const] : []),
      { kind: 'alert', alert: { kind: 'host.late_switch', summary: `${reason} (return #${id})`, details: { host, deployment: after, release: switchedTo, returnTo: to, return: id } } },
      { kind: 'wake', host },
    ],
  };
}
