/**
 * The server's view of each in-flight deployment: its steps, its release and
 * what was audited once about each host, kept between events so that a
 * host's report writes its own step and moves the rollout on without reading
 * every step back (issue 12, "Cheap reports"). The database stays the truth:
 * every event locks the deployment's row, which bumps its revision, and a
 * view is used only when the revision the lock returns is the one right
 * after the view's; otherwise (a restart, an event another server handled on
 * a shared PostgreSQL, a transaction that rolled back) the view is rebuilt
 * from the database. A view is kept only after its transaction committed.
 * So every change to a deployment's steps must be a transition of the
 * rollout machine applied by deployment-service.ts under the row's lock (or
 * at least bump the row's revision): a direct write to `deployment_hosts`
 * would leave the views stale.
 */
import { IN_FLIGHT_DEPLOYMENT_STATES } from '../../core/deployment-states.js';
import { applyTransitions, type DeploymentFacts, type RolloutOutcome, type RolloutState, type StepFacts } from '../../core/rollout-machine.js';
import { SerialQueue } from '../../core/serial-queue.js';

/** Audit events about one host of a deployment that are written once (reports are retried). */
export interface RecordedOnce {
  readonly dropAudited: boolean;
  readonly lateSwitchAudited: boolean;
}

const NOTHING_RECORDED: RecordedOnce = { dropAudited: false, lateSwitchAudited: false };

/** One deployment as the server last committed it. */
export interface RolloutView {
  /** The deployment row's revision once the transaction that left this view committed. */
  readonly revision: number;
  readonly steps: readonly StepFacts[];
  readonly release: RolloutState['release'];
  /** By host; a host missing here has nothing recorded. */
  readonly recorded: ReadonlyMap<string, RecordedOnce>;
}

/** What was recorded once about `host` in the view. */
export function recordedFor(view: RolloutView, host: string): RecordedOnce {
  return view.recorded.get(host) ?? NOTHING_RECORDED;
}

/**
 * The view an event's outcome leaves: its step transitions applied, the
 * once-only audit events it appends noted, at the revision its writes leave
 * the row (`lockedRevision`, plus one when the deployment's row changes).
 */
export function viewAfter(view: RolloutView, deployment: DeploymentFacts, outcome: RolloutOutcome, lockedRevision: number): { view: RolloutView; inFlight: boolean } {
  const after = applyTransitions({ deployment, steps: view.steps }, outcome.transitions);
  const recorded = new Map(view.recorded);
  const note = (host: string, change: Partial<RecordedOnce>) => recorded.set(host, { ...(recorded.get(host) ?? NOTHING_RECORDED), ...change });
  for (const effect of outcome.effects) {
    const host = effect.kind === 'audit' && effect.target.startsWith('host:') ? effect.target.slice('host:'.length) : undefined;
    if (effect.kind === 'audit' && host !== undefined && effect.action === 'deployment.task_dropped') note(host, { dropAudited: true });
    if (effect.kind === 'audit' && host !== undefined && effect.action === 'deployment.late_switch') note(host, { lateSwitchAudited: true });
    // A return opened for a late switch audits the switch in its own events (core/rollout-machine.ts, openReturn).
    if (effect.kind === 'start-return' && effect.request.auditLateSwitch) note(effect.request.host, { lateSwitchAudited: true });
  }
  const changesRow = outcome.transitions.some((transition) => transition.kind === 'deployment');
  return {
    view: { revision: lockedRevision + (changesRow ? 1 : 0), steps: after.steps, release: view.release, recorded },
    inFlight: IN_FLIGHT_DEPLOYMENT_STATES.includes(after.deployment.state),
  };
}

/** The views of the in-flight deployments this server handled, and the order of each one's events. */
export class RolloutViews {
  readonly #views = new Map<number, RolloutView>();
  readonly #queues = new Map<number, SerialQueue>();

  /** Whether a view of deployment `id` is held (then the deployment exists: deployments are never deleted). */
  has(id: number): boolean {
    return this.#views.has(id);
  }

  /** The view of deployment `id` if nothing changed its rows since: `lockedRevision` is the revision this event's lock gave the row. */
  current(id: number, lockedRevision: number): RolloutView | undefined {
    const view = this.#views.get(id);
    return view !== undefined && view.revision + 1 === lockedRevision ? view : undefined;
  }

  /** Keeps the view a committed transaction left (a finished deployment's is dropped); an older one never replaces a newer one. */
  keep(id: number, view: RolloutView, inFlight: boolean): void {
    const held = this.#views.get(id);
    if (held !== undefined && held.revision > view.revision) return;
    if (inFlight) this.#views.set(id, view);
    else this.forget(id);
  }

  /** Drops the view of `id` (its transaction failed: the next event reads the database). */
  forget(id: number): void {
    this.#views.delete(id);
  }

  /** Keeps only the deployments still in flight (others may have finished them on a shared database). */
  retain(inFlight: readonly number[]): void {
    const keep = new Set(inFlight);
    for (const id of this.#views.keys()) if (!keep.has(id)) this.#views.delete(id);
    for (const id of this.#queues.keys()) if (!keep.has(id)) this.#queues.delete(id);
  }

  /**
   * Runs `work` after the events of deployment `id` queued before it in this
   * server, so each finds the view the one before left instead of racing it
   * to the database and rebuilding.
   */
  serially<T>(id: number, work: () => Promise<T>): Promise<T> {
    let queue = this.#queues.get(id);
    if (queue === undefined) {
      queue = new SerialQueue();
      this.#queues.set(id, queue);
    }
    return queue.run(work);
  }
}
