/**
 * Rollout batches, as a pure function of the hosts and the environment's
 * `rollout:` policy: the canary first, alone, then batches of N hosts or P%
 * of all hosts, in host-name order.
 */

/** A count of hosts or a share written as `25%`. */
export type CountOrShare = number | string;

/** The rollout policy of an environment (validated by the config schema). */
export interface RolloutPolicy {
  readonly canary: number;
  readonly batch: CountOrShare;
  readonly pause: number;
  readonly max_failures: CountOrShare;
}

/** Resolves a count or share against a total: `25%` of 10 is 3 (rounded up). */
export function resolveCount(value: CountOrShare, total: number): number {
  if (typeof value === 'number') return value;
  const percent = Number(value.replace('%', ''));
  return Math.ceil((percent / 100) * total);
}

/** The batches of a rollout: lists of host names, in order; none empty. */
export function planBatches(hosts: readonly string[], policy: RolloutPolicy): string[][] {
  const sorted = [...hosts].sort();
  if (sorted.length === 0) return [];
  const batches: string[][] = [];
  const canary = Math.min(policy.canary, sorted.length);
  if (canary > 0) batches.push(sorted.slice(0, canary));
  const size = Math.max(1, resolveCount(policy.batch, sorted.length));
  for (let start = canary; start < sorted.length; start += size) batches.push(sorted.slice(start, start + size));
  return batches;
}

/** How many failed hosts a rollout tolerates before it stops and rolls back. */
export function failureBudget(policy: RolloutPolicy, total: number): number {
  return Math.max(0, resolveCount(policy.max_failures, total));
}
