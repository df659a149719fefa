/**
 * Scheduled parity, decided purely: when a pair is due for a check, which
 * undeclared differences a check found, and which of them are new since the
 * last check (alerted once; a difference that went away and came back is new
 * again). The server stores the state and alerts (parity-watch-service.ts).
 */
import type { ParityDifference, ParityResult } from './parity.js';

/** What the last check of a pair found. */
export interface ParityWatchState {
  /** The undeclared differences, as keys (see differenceKey), sorted. */
  readonly differences: readonly string[];
  /** Since when at least one undeclared difference was found without a break (null: none now). */
  readonly since: string | null;
  readonly checkedAt: string;
}

/** One undeclared difference as a stable key, e.g. `sysctl vm.swappiness (live)` or `package curl on web2 (production)`. */
export function differenceKey(difference: ParityDifference): string {
  const where = difference.within ? ` on ${difference.within.host} (${difference.within.env})` : '';
  return `${difference.category} ${difference.name}${difference.live ? ' (live)' : ''}${where}`;
}

/**
 * The keys of a comparison's undeclared differences, sorted, each once. The active release is left out: test
 * running ahead of production is the pipeline's normal state (`lockstep parity` as a gate still reports it), and a
 * host that diverged from its environment's release is shown by `lockstep status` already.
 */
export function undeclaredKeys(result: Pick<ParityResult, 'differences'>): string[] {
  return [...new Set(result.differences.filter((difference) => !difference.declared && difference.category !== 'release').map(differenceKey))].sort();
}

/** Whether a pair is due: never checked, its period passed, or a deployment to either environment finished since the last check. */
export function parityCheckDue(before: ParityWatchState | undefined, now: number, everyMs: number, deploymentsFinishedAt: readonly (string | null)[]): boolean {
  if (before === undefined) return true;
  const checked = Date.parse(before.checkedAt);
  if (now - checked >= everyMs) return true;
  return deploymentsFinishedAt.some((finished) => finished !== null && Date.parse(finished) > checked);
}

/** The state after a check that found `keys` at `at`, and the differences that are new (to alert). */
export function judgeParity(before: ParityWatchState | undefined, keys: readonly string[], at: string): { readonly state: ParityWatchState; readonly added: readonly string[] } {
  const known = new Set(before?.differences ?? []);
  const added = keys.filter((key) => !known.has(key));
  const since = keys.length === 0 ? null : (before?.since ?? at);
  return { state: { differences: [...keys].sort(), since, checkedAt: at }, added };
}
