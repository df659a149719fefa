/**
 * What a host's report about a deployment step means, as a pure function of
 * the deployment, the step, the report, the environment's current release and
 * `now`. The server decides who switched from what the hosts report: a host
 * that missed its step's deadline fails it, and a host found on the
 * deployment's release after its step ended (a late switch) must return to
 * the release the environment runs. The rollout machine
 * (rollout-machine.ts) moves the whole deployment on from this decision.
 */

import { ACTIVE_DEPLOYMENTS, FINISHED_STEPS, type DeploymentKind, type DeploymentState, type StepState } from './deployment-states.js';

// The unions and state lists live in deployment-states.ts (the store's rows use them too); re-exported for this module's callers.
export { ACTIVE_DEPLOYMENTS, DEPLOYMENT_KINDS, DEPLOYMENT_STATES, FINISHED_STEPS, IN_FLIGHT_DEPLOYMENT_STATES, IN_FLIGHT_STEPS, STEP_STATES, type DeploymentKind, type DeploymentState, type StepState } from './deployment-states.js';
/** What a host says about its task; `cancelled`: it dropped the task at its deadline. */
export type ReportState = 'staging' | 'activated' | 'succeeded' | 'failed' | 'cancelled';
/** The kind of task a report is about (absent from agents before deadlines). */
export type TaskKind = 'deploy' | 'rollback' | 'revert';

/**
 * Whether a deployment's tasks must switch by their step's deadline. A task
 * that returns a host to where it belongs (a revert, a return) has none:
 * arriving late is better than leaving the host on the wrong release.
 */
export function switchHasDeadline(kind: DeploymentKind, step: StepState): boolean {
  return kind !== 'return' && step !== 'reverting';
}

/** Where a host found on the new release goes while its deployment rolls back (only a rollout reverts). */
function revertStepOf(deployment: ReportFacts['deployment'], step: ReportFacts['step']): StepState {
  return deployment.kind !== 'deploy' ? 'failed' : step.fromReleaseId === null ? 'revert_failed' : 'reverting';
}

/** What a host says about its task, as far as a decision needs it. */
export interface ReportedState {
  readonly state: ReportState;
  readonly currentReleaseId: string | null;
  readonly taskKind?: TaskKind | undefined;
}

/** Everything `decideReport` looks at. */
export interface ReportFacts {
  readonly deployment: { readonly kind: DeploymentKind; readonly state: DeploymentState; readonly releaseId: string };
  readonly step: { readonly state: StepState; readonly fromReleaseId: string | null; readonly deadlineAt: string | null };
  readonly report: ReportedState;
  /** The release the environment runs (null: none yet). */
  readonly environmentCurrent: string | null;
  readonly now: Date;
}

/** What to do with a report. */
export type ReportDecision =
  /** Nothing changes: a repeated, stale or meaningless report. */
  | { readonly kind: 'ignore' }
  /** The step moves on as the host says. */
  | { readonly kind: 'advance'; readonly step: StepState }
  /** The step's deadline passed before the host switched: it fails now; `acknowledged` when the host said it dropped the task. */
  | { readonly kind: 'missed-deadline'; readonly acknowledged: boolean }
  /** The host acknowledges it dropped the task of a step that already failed or was skipped. */
  | { readonly kind: 'dropped' }
  /**
   * The host is on the deployment's release although its step ended or its
   * deadline passed. `step`: the step's new state within a deployment that
   * still runs (null: unchanged); `returnTo`: the release a return of this one
   * host must restore, once the deployment is over (null: none needed or none known).
   */
  | { readonly kind: 'late-switch'; readonly step: StepState | null; readonly returnTo: string | null };

/** Decides what a host's report means; see the table in test/unit/report-decision.test.ts. */
export function decideReport(facts: ReportFacts): ReportDecision {
  const { deployment, step, report } = facts;
  const onNew = report.currentReleaseId !== null && report.currentReleaseId === deployment.releaseId;
  const final = report.state === 'succeeded' || report.state === 'failed' || report.state === 'cancelled';
  const canRevert = deployment.kind === 'deploy';
  const revertStep = revertStepOf(deployment, step);

  if (step.state === 'reverting') {
    // Only the revert task's reports count. One of the task before it, on the new release, arrives
    // after the server failed its step and found the host switched (a heartbeat): a late switch.
    if (report.taskKind !== undefined && report.taskKind !== 'revert') {
      return onNew && report.state !== 'staging' ? { kind: 'late-switch', step: null, returnTo: null } : { kind: 'ignore' };
    }
    if (report.state === 'succeeded') return { kind: 'advance', step: 'reverted' };
    if (report.state === 'failed') return { kind: 'advance', step: 'revert_failed' };
    return { kind: 'ignore' };
  }

  if (!ACTIVE_DEPLOYMENTS.includes(deployment.state)) {
    // The deployment is over: a host on its release that the environment does not run must come back.
    if (onNew && report.state !== 'staging' && switchHasDeadline(deployment.kind, step.state) && report.currentReleaseId !== facts.environmentCurrent) {
      const target = facts.environmentCurrent ?? step.fromReleaseId;
      return { kind: 'late-switch', step: null, returnTo: target !== report.currentReleaseId ? target : null };
    }
    return report.state === 'cancelled' ? { kind: 'dropped' } : { kind: 'ignore' };
  }

  const rollingBack = deployment.state === 'rolling_back';
  const inFlight = step.state === 'pending' || step.state === 'staging' || step.state === 'activated';
  const overdue = inFlight && switchHasDeadline(deployment.kind, step.state) && step.deadlineAt !== null && Date.parse(step.deadlineAt) <= facts.now.getTime();
  if (overdue) {
    if (onNew && report.state !== 'staging') {
      // Reverting waits for the task's last report: the host sends nothing after it, so the next one is the revert's.
      return { kind: 'late-switch', step: rollingBack && final ? revertStep : 'failed', returnTo: null };
    }
    return { kind: 'missed-deadline', acknowledged: report.state === 'cancelled' };
  }

  if (FINISHED_STEPS.includes(step.state)) {
    const late = (step.state === 'failed' || step.state === 'skipped') && onNew && report.state !== 'staging';
    if (late) {
      // A skipped host took its task before the rollout stopped: it goes back at once (its task is over by the time a revert is handed out).
      const goBack = rollingBack && (final || step.state === 'skipped');
      return { kind: 'late-switch', step: goBack ? revertStep : null, returnTo: null };
    }
    return report.state === 'cancelled' && (step.state === 'failed' || step.state === 'skipped') ? { kind: 'dropped' } : { kind: 'ignore' };
  }

  // In flight (or waiting) and in time.
  if (report.state === 'cancelled') {
    // The host's clock ran out first (its deadline counts from when it received the task).
    return onNew && rollingBack ? { kind: 'advance', step: revertStep } : { kind: 'missed-deadline', acknowledged: true };
  }
  if (!rollingBack) return { kind: 'advance', step: report.state };
  if (report.state === 'staging') return { kind: 'advance', step: 'staging' };
  if (onNew && canRevert && report.state !== 'activated') return { kind: 'advance', step: revertStep };
  if (report.state === 'activated') return { kind: 'advance', step: 'activated' };
  return { kind: 'advance', step: 'failed' };
}

/** Everything `decideObservation` looks at: the release a host's heartbeat names, and its newest deployment step. */
export interface ObservationFacts {
  readonly deployment: ReportFacts['deployment'];
  readonly step: ReportFacts['step'];
  readonly currentReleaseId: string | null;
  readonly environmentCurrent: string | null;
}

/**
 * What a heartbeat that names a new release means for the host's newest
 * deployment: found on that deployment's release after its step failed or
 * was skipped, the host switched late and its report was lost (the agent
 * died between the switch and the report). Anything else is no switch of
 * Lockstep's: a hand-edited `current` stays diverged (and is drift).
 */
export function decideObservation(facts: ObservationFacts): Extract<ReportDecision, { kind: 'ignore' | 'late-switch' }> {
  const { deployment, step } = facts;
  const onNew = facts.currentReleaseId !== null && facts.currentReleaseId === deployment.releaseId;
  const lost = (step.state === 'failed' || step.state === 'skipped') && switchHasDeadline(deployment.kind, step.state);
  if (!onNew || !lost || facts.currentReleaseId === facts.environmentCurrent) return { kind: 'ignore' };
  if (deployment.state === 'rolling_back') {
    const revertStep = revertStepOf(deployment, step);
    return { kind: 'late-switch', step: revertStep === 'failed' ? null : revertStep, returnTo: null };
  }
  // A running rollout decides with the host's release known (it stops and reverts, or tolerates the failure).
  if (deployment.state === 'running') return { kind: 'late-switch', step: null, returnTo: null };
  const target = facts.environmentCurrent ?? step.fromReleaseId;
  return { kind: 'late-switch', step: null, returnTo: target !== facts.currentReleaseId ? target : null };
}
