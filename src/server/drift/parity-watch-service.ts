/**
 * Scheduled parity (`parity:` in lockstep.yaml): each pair is compared every
 * period and after each deployment to either environment finishes; a new
 * undeclared difference is stored with its audit event (only if no other
 * server stored the check first) and then alerted once through the alert
 * channels of both environments. Decisions are pure (src/core/parity-watch.ts).
 */
import { judgeParity, parityCheckDue, undeclaredKeys, type ParityWatchState } from '../../core/parity-watch.js';
import type { ParityAlertStateRow } from '../../store/store.js';
import { currentConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';
import { parityView } from './parity-service.js';

/** At most this many differences are named in one alert or audit event; the count is always exact. */
const LISTED = 50;

/** The row key of a pair. */
export function pairKey(a: string, b: string): string {
  return `${a} ${b}`;
}

/** Checks every configured pair that is due and alerts its new undeclared differences. */
export async function sweepParity(context: ServerContext): Promise<void> {
  const read = context.store.read;
  const config = await currentConfig(read);
  if (!config?.parity) return;
  const states = await read.parityAlertStates();
  const now = context.now();
  for (const [a, b] of config.parity.pairs) {
    if (config.environments[a] === undefined || config.environments[b] === undefined) continue;
    const key = pairKey(a, b);
    const row = states.get(key);
    const before = row && stateOf(row);
    const finished = await Promise.all([a, b].map(async (env) => (await read.listDeployments({ env, limit: 1 }))[0]?.finished_at ?? null));
    if (!parityCheckDue(before, now.getTime(), config.parity.every, finished)) continue;
    const result = await parityView(context, a, b);
    const at = now.toISOString();
    const { state, added } = judgeParity(before, undeclaredKeys(result), at);
    const details = { a, b, added: added.slice(0, LISTED), count: added.length, undeclared: state.differences.length, since: state.since };
    const stored = await context.store.transaction(async (repo) => {
      if (!(await repo.swapParityAlertState(row, rowOf(key, state)))) return false;
      if (added.length > 0) await repo.appendAudit({ at, actor: 'lockstep', action: 'parity.undeclared', target: `parity:${key}`, details });
      return true;
    });
    // Another server stored this check first and alerts it.
    if (!stored || added.length === 0) continue;
    const summary = `parity ${a} vs ${b}: ${added.length} new undeclared difference${added.length === 1 ? '' : 's'} (${added.slice(0, 5).join('; ')}${added.length > 5 ? '; …' : ''}); see lockstep parity ${a} ${b}, declare intended ones under declared_differences`;
    const alert = { kind: 'parity.undeclared', env: b, summary, at, details };
    context.alerts.dispatch(alert, [config.environments[a]?.alerts, config.environments[b]?.alerts]);
  }
}

/** Per configured pair, what the last check found (for `lockstep status`). */
export async function parityWatchSummary(context: ServerContext): Promise<{ a: string; b: string; undeclared: number; since: string | null; checkedAt: string | null }[]> {
  const config = await currentConfig(context.store.read);
  if (!config?.parity) return [];
  const states = await context.store.read.parityAlertStates();
  return config.parity.pairs.map(([a, b]) => {
    const row = states.get(pairKey(a, b));
    const state = row && stateOf(row);
    return { a, b, undeclared: state?.differences.length ?? 0, since: state?.since ?? null, checkedAt: state?.checkedAt ?? null };
  });
}

function stateOf(row: ParityAlertStateRow): ParityWatchState {
  return { differences: JSON.parse(row.differences) as string[], since: row.since, checkedAt: row.checked_at };
}

function rowOf(pair: string, state: ParityWatchState): ParityAlertStateRow {
  return { pair, differences: JSON.stringify(state.differences), since: state.since, checked_at: state.checkedAt };
}
