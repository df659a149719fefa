/**
 * The server's view of an in-flight deployment between events
 * (server/deployments/rollout-views.ts): what an outcome leaves in it, and
 * when it may be used instead of the database.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DeploymentFacts, RolloutOutcome, StepFacts } from '../../src/core/rollout-machine.js';
import { recordedFor, RolloutViews, viewAfter, type RolloutView } from '../../src/server/deployments/rollout-views.js';

const NEW = 'b'.repeat(64);
const OLD = 'a'.repeat(64);
const AT = '2030-01-01T12:00:00.000Z';
const deployment: DeploymentFacts = {
  id: 7, env: 'production', kind: 'deploy', state: 'running', releaseId: NEW, fromReleaseId: OLD, requestedBy: 'alice', createdAt: AT, error: null, currentBatch: 0, batches: 2, nextBatchAt: null,
};
const step = (host: string, batch: number, state: StepFacts['state']): StepFacts => ({ host, batch, state, fromReleaseId: OLD, error: null, deadlineAt: null });
const view: RolloutView = { revision: 4, steps: [step('web-1', 0, 'activated'), step('web-2', 1, 'waiting')], release: { app: 'shop', version: '2.0.0' }, recorded: new Map() };

describe('viewAfter: the view an outcome leaves', () => {
  it('applies the step transitions; the revision moves by one more only when the deployment row changes', () => {
    const stepOnly: RolloutOutcome = { transitions: [{ kind: 'step', host: 'web-1', patch: { state: 'succeeded', error: null, updatedAt: AT } }], effects: [] };
    const first = viewAfter(view, deployment, stepOnly, 5);
    assert.deepEqual(first.view.steps.map((s) => s.state), ['succeeded', 'waiting']);
    assert.equal(first.view.revision, 5);
    assert.equal(first.inFlight, true);
    const finished: RolloutOutcome = { transitions: [{ kind: 'deployment', patch: { state: 'succeeded', finishedAt: AT } }], effects: [] };
    const second = viewAfter(first.view, deployment, finished, 6);
    assert.equal(second.view.revision, 7);
    assert.equal(second.inFlight, false);
  });

  it('notes the audit events written once per host: a dropped task, a late switch, and the late switch a return audits', () => {
    const outcome: RolloutOutcome = {
      transitions: [],
      effects: [
        { kind: 'audit', actor: 'lockstep', action: 'deployment.task_dropped', target: 'host:web-1', details: { deployment: 7 } },
        { kind: 'audit', actor: 'lockstep', action: 'deployment.late_switch', target: 'host:web-2', details: { deployment: 7 } },
        { kind: 'start-return', request: { env: 'production', host: 'web-3', switchedTo: NEW, to: OLD, after: 7, auditLateSwitch: true } },
        { kind: 'audit', actor: 'lockstep', action: 'deployment.succeeded', target: 'env:production', details: { deployment: 7 } },
      ],
    };
    const next = viewAfter(view, deployment, outcome, 5).view;
    assert.deepEqual(recordedFor(next, 'web-1'), { dropAudited: true, lateSwitchAudited: false });
    assert.deepEqual(recordedFor(next, 'web-2'), { dropAudited: false, lateSwitchAudited: true });
    assert.deepEqual(recordedFor(next, 'web-3'), { dropAudited: false, lateSwitchAudited: true });
    assert.deepEqual(recordedFor(view, 'web-1'), { dropAudited: false, lateSwitchAudited: false }, 'the view before is not changed');
  });
});

describe('RolloutViews: when a kept view stands for the database', () => {
  it('only at the revision right after its own, never replaced by an older one, dropped once the deployment finished', () => {
    const views = new RolloutViews();
    views.keep(7, view, true);
    assert.equal(views.current(7, 5), view);
    assert.equal(views.current(7, 6), undefined, 'another event changed the deployment in between');
    assert.equal(views.current(7, 4), undefined);
    views.keep(7, { ...view, revision: 3 }, true);
    assert.equal(views.current(7, 5), view, 'an older view does not replace a newer one');
    views.keep(7, { ...view, revision: 6 }, false);
    assert.equal(views.has(7), false);
    views.keep(8, view, true);
    views.retain([9]);
    assert.equal(views.has(8), false, 'a deployment no longer in flight is forgotten at the sweep');
  });

  it('runs the events of one deployment one after another', async () => {
    const views = new RolloutViews();
    const order: string[] = [];
    let release: () => void = () => undefined;
    const first = views.serially(7, () => new Promise<void>((resolve) => (release = () => { order.push('first'); resolve(); })));
    const second = views.serially(7, async () => void order.push('second'));
    const other = views.serially(8, async () => void order.push('other deployment'));
    await other;
    release();
    await Promise.all([first, second]);
    assert.deepEqual(order, ['other deployment', 'first', 'second']);
  });
});
