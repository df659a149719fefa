import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideObservation, decideReport, switchHasDeadline, type DeploymentKind, type DeploymentState, type ReportDecision, type ReportState, type StepState, type TaskKind } from '../../src/core/report-decision.js';

const OLD = 'a'.repeat(64);
const NEW = 'b'.repeat(64);
const OTHER = 'c'.repeat(64);
const now = new Date('2030-01-01T12:00:00Z');
const PAST = '2030-01-01T11:59:59.000Z';
const FUTURE = '2030-01-01T12:00:30.000Z';

/** One row: the deployment, the step, the report, what the environment runs, and the decision. */
interface Row {
  readonly name: string;
  readonly kind?: DeploymentKind;
  readonly deployment: DeploymentState;
  readonly step: StepState;
  readonly deadline?: string | null;
  readonly from?: string | null;
  readonly report: ReportState;
  readonly on: string | null;
  readonly task?: TaskKind;
  readonly env?: string | null;
  readonly expect: ReportDecision;
}

const advance = (step: StepState): ReportDecision => ({ kind: 'advance', step });
const ignore: ReportDecision = { kind: 'ignore' };

const rows: readonly Row[] = [
  // ---- a rollout in time: the host says how its step goes ----
  { name: 'staging in time', deployment: 'running', step: 'pending', deadline: FUTURE, report: 'staging', on: OLD, expect: advance('staging') },
  { name: 'activated in time', deployment: 'running', step: 'staging', deadline: FUTURE, report: 'activated', on: NEW, expect: advance('activated') },
  { name: 'succeeded in time', deployment: 'running', step: 'activated', deadline: FUTURE, report: 'succeeded', on: NEW, expect: advance('succeeded') },
  { name: 'failed in time', deployment: 'running', step: 'staging', deadline: FUTURE, report: 'failed', on: OLD, expect: advance('failed') },
  { name: 'a repeated report of a finished step', deployment: 'running', step: 'succeeded', deadline: FUTURE, report: 'succeeded', on: NEW, expect: ignore },
  { name: 'dropped before the server saw the deadline pass (clock rate)', deployment: 'running', step: 'staging', deadline: FUTURE, report: 'cancelled', on: OLD, expect: { kind: 'missed-deadline', acknowledged: true } },

  // ---- the deadline passed before the report (the sweep had not run yet) ----
  { name: 'staging after the deadline', deployment: 'running', step: 'staging', deadline: PAST, report: 'staging', on: OLD, expect: { kind: 'missed-deadline', acknowledged: false } },
  { name: 'a failure after the deadline, host not switched', deployment: 'running', step: 'staging', deadline: PAST, report: 'failed', on: OLD, expect: { kind: 'missed-deadline', acknowledged: false } },
  { name: 'dropped at the deadline, not switched', deployment: 'running', step: 'staging', deadline: PAST, report: 'cancelled', on: OLD, expect: { kind: 'missed-deadline', acknowledged: true } },
  { name: 'switched after the deadline, rollout running: the step fails, the rollout decides', deployment: 'running', step: 'staging', deadline: PAST, report: 'succeeded', on: NEW, expect: { kind: 'late-switch', step: 'failed', returnTo: null } },
  { name: 'activated after the deadline while rolling back: fails, reverts on the last report', deployment: 'rolling_back', step: 'staging', deadline: PAST, report: 'activated', on: NEW, expect: { kind: 'late-switch', step: 'failed', returnTo: null } },
  { name: 'succeeded after the deadline while rolling back: goes back', deployment: 'rolling_back', step: 'activated', deadline: PAST, report: 'succeeded', on: NEW, expect: { kind: 'late-switch', step: 'reverting', returnTo: null } },
  { name: 'late, rolling back, no earlier release to return to', deployment: 'rolling_back', step: 'activated', deadline: PAST, from: null, report: 'succeeded', on: NEW, expect: { kind: 'late-switch', step: 'revert_failed', returnTo: null } },
  { name: 'a return has no deadline: late is fine', kind: 'return', deployment: 'running', step: 'staging', deadline: PAST, report: 'succeeded', on: OLD, task: 'revert', expect: advance('succeeded') },

  // ---- the step already failed (timed out) while the deployment still runs ----
  { name: 'the drop is acknowledged after the step timed out', deployment: 'rolling_back', step: 'failed', report: 'cancelled', on: OLD, expect: { kind: 'dropped' } },
  { name: 'a timed-out host switched anyway while rolling back: it goes back', deployment: 'rolling_back', step: 'failed', report: 'succeeded', on: NEW, expect: { kind: 'late-switch', step: 'reverting', returnTo: null } },
  { name: 'a timed-out host reports activated while rolling back: revert waits for its last report', deployment: 'rolling_back', step: 'failed', report: 'activated', on: NEW, expect: { kind: 'late-switch', step: null, returnTo: null } },
  { name: 'a timed-out host switched, failures tolerated: the rollout decides', deployment: 'running', step: 'failed', report: 'succeeded', on: NEW, expect: { kind: 'late-switch', step: null, returnTo: null } },
  { name: 'a skipped host that took its task before the stop goes back', deployment: 'rolling_back', step: 'skipped', report: 'activated', on: NEW, expect: { kind: 'late-switch', step: 'reverting', returnTo: null } },
  { name: 'a skipped host staging', deployment: 'rolling_back', step: 'skipped', report: 'staging', on: OLD, expect: ignore },
  { name: 'a stopped host that never switched fails', deployment: 'rolling_back', step: 'staging', deadline: FUTURE, report: 'failed', on: OLD, expect: advance('failed') },
  { name: 'rolling back: a host that switched in time goes back', deployment: 'rolling_back', step: 'activated', deadline: FUTURE, report: 'succeeded', on: NEW, expect: advance('reverting') },
  { name: 'rolling back: activated in time waits for its last report', deployment: 'rolling_back', step: 'staging', deadline: FUTURE, report: 'activated', on: NEW, expect: advance('activated') },

  // ---- reverting: only the revert task's reports count ----
  { name: 'the revert succeeded', deployment: 'rolling_back', step: 'reverting', deadline: PAST, report: 'succeeded', on: OLD, task: 'revert', expect: advance('reverted') },
  { name: 'the revert failed', deployment: 'rolling_back', step: 'reverting', report: 'failed', on: NEW, task: 'revert', expect: advance('revert_failed') },
  { name: 'a late report of the deploy task while reverting (the server saw the switch first)', deployment: 'rolling_back', step: 'reverting', report: 'succeeded', on: NEW, task: 'deploy', expect: { kind: 'late-switch', step: null, returnTo: null } },
  { name: 'a late staging report of the deploy task while reverting', deployment: 'rolling_back', step: 'reverting', report: 'staging', on: OLD, task: 'deploy', expect: ignore },
  { name: 'an older agent (no task kind) while reverting', deployment: 'rolling_back', step: 'reverting', report: 'succeeded', on: OLD, expect: advance('reverted') },

  // ---- the deployment is over ----
  { name: 'late switch after a failed deployment: return to the environment\'s release', deployment: 'failed', step: 'failed', report: 'succeeded', on: NEW, env: OLD, expect: { kind: 'late-switch', step: null, returnTo: OLD } },
  { name: 'late activated after a failed deployment', deployment: 'failed', step: 'failed', report: 'activated', on: NEW, env: OLD, expect: { kind: 'late-switch', step: null, returnTo: OLD } },
  { name: 'late switch, the environment moved on since', deployment: 'failed', step: 'failed', report: 'succeeded', on: NEW, env: OTHER, expect: { kind: 'late-switch', step: null, returnTo: OTHER } },
  { name: 'late switch, the environment runs nothing: back to the host\'s earlier release', deployment: 'failed', step: 'failed', report: 'succeeded', on: NEW, env: null, from: OLD, expect: { kind: 'late-switch', step: null, returnTo: OLD } },
  { name: 'late switch with nowhere to return to', deployment: 'failed', step: 'failed', report: 'succeeded', on: NEW, env: null, from: null, expect: { kind: 'late-switch', step: null, returnTo: null } },
  { name: 'a late rollback switch returns too', kind: 'rollback', deployment: 'failed', step: 'failed', report: 'succeeded', on: NEW, env: OLD, expect: { kind: 'late-switch', step: null, returnTo: OLD } },
  { name: 'late report after the deployment succeeded: nothing diverges', deployment: 'succeeded', step: 'failed', report: 'succeeded', on: NEW, env: NEW, expect: ignore },
  { name: 'the drop is acknowledged after the deployment failed', deployment: 'failed', step: 'failed', report: 'cancelled', on: OLD, env: OLD, expect: { kind: 'dropped' } },
  { name: 'dropped after the switch, deployment over: return', deployment: 'failed', step: 'failed', report: 'cancelled', on: NEW, env: OLD, expect: { kind: 'late-switch', step: null, returnTo: OLD } },
  { name: 'a late revert that succeeded after the deployment ended', deployment: 'failed', step: 'revert_failed', report: 'succeeded', on: OLD, task: 'revert', env: OLD, expect: ignore },
  { name: 'a late report of a finished return', kind: 'return', deployment: 'failed', step: 'failed', report: 'succeeded', on: OLD, task: 'revert', env: NEW, expect: ignore },
  { name: 'staging after the deployment ended', deployment: 'failed', step: 'failed', report: 'staging', on: NEW, env: OLD, expect: ignore },
];

describe('decideReport: what a host report means', () => {
  for (const row of rows) {
    it(row.name, () => {
      const decision = decideReport({
        deployment: { kind: row.kind ?? 'deploy', state: row.deployment, releaseId: row.kind === 'return' ? OLD : NEW },
        step: { state: row.step, fromReleaseId: row.from === undefined ? OLD : row.from, deadlineAt: row.deadline ?? null },
        report: { state: row.report, currentReleaseId: row.on, taskKind: row.task },
        environmentCurrent: row.env === undefined ? OLD : row.env,
        now,
      });
      assert.deepEqual(decision, row.expect);
    });
  }

  it('only switches forward have a deadline', () => {
    assert.equal(switchHasDeadline('deploy', 'pending'), true);
    assert.equal(switchHasDeadline('rollback', 'staging'), true);
    assert.equal(switchHasDeadline('deploy', 'reverting'), false);
    assert.equal(switchHasDeadline('return', 'pending'), false);
  });
});

describe('decideObservation: a heartbeat that names a new release', () => {
  const observationRows: readonly { name: string; kind?: DeploymentKind; deployment: DeploymentState; step: StepState; from?: string | null; on: string | null; env?: string | null; expect: ReportDecision }[] = [
    { name: 'on the release of a failed deployment whose step failed: return', deployment: 'failed', step: 'failed', on: NEW, expect: { kind: 'late-switch', step: null, returnTo: OLD } },
    { name: 'on it while the rollout rolls back: revert', deployment: 'rolling_back', step: 'failed', on: NEW, expect: { kind: 'late-switch', step: 'reverting', returnTo: null } },
    { name: 'a skipped host on it while rolling back, nothing to return to', deployment: 'rolling_back', step: 'skipped', from: null, on: NEW, expect: { kind: 'late-switch', step: 'revert_failed', returnTo: null } },
    { name: 'on it while the rollout runs (failures tolerated): the rollout decides', deployment: 'running', step: 'failed', on: NEW, expect: { kind: 'late-switch', step: null, returnTo: null } },
    { name: 'switching in time during a rollout', deployment: 'running', step: 'staging', on: NEW, expect: ignore },
    { name: 'the step was reverted: a hand edit, not a switch of ours', deployment: 'failed', step: 'reverted', on: NEW, expect: ignore },
    { name: 'the step succeeded', deployment: 'succeeded', step: 'succeeded', on: NEW, env: NEW, expect: ignore },
    { name: 'on another release than the deployment\'s', deployment: 'failed', step: 'failed', on: OTHER, expect: ignore },
    { name: 'a return deployment\'s step', kind: 'return', deployment: 'failed', step: 'failed', on: OLD, env: NEW, expect: ignore },
  ];
  for (const row of observationRows) {
    it(row.name, () => {
      const decision = decideObservation({
        deployment: { kind: row.kind ?? 'deploy', state: row.deployment, releaseId: row.kind === 'return' ? OLD : NEW },
        step: { state: row.step, fromReleaseId: row.from === undefined ? OLD : row.from, deadlineAt: null },
        currentReleaseId: row.on,
        environmentCurrent: row.env === undefined ? OLD : row.env,
      });
      assert.deepEqual(decision, row.expect);
    });
  }
});
