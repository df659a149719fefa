/**
 * Known-good: a release that succeeded in an environment and then stayed
 * its current, healthy release through the soak time — the only kind of
 * release a rollback returns to.
 */
import type { Config } from './config.js';

/** What the store records about a release in an environment. */
export interface ReleaseRecord {
  readonly succeeded_at: string | null;
  readonly rolled_back_at: string | null;
  readonly superseded_at: string | null;
}

/**
 * How long a release must stay current in `env` to be known-good there: the
 * longest `soak` that an environment promoting from `env` asks for (0 when
 * none does, e.g. production).
 */
export function knownGoodSoak(config: Config, env: string): number {
  let soak = 0;
  for (const environment of Object.values(config.environments)) if (environment.promote_from === env) soak = Math.max(soak, environment.soak);
  return soak;
}

/**
 * Whether a release is known-good: it succeeded, was never rolled back since,
 * and stayed current for `soakMs` (until it was superseded, or until `now`
 * while it is still current — and then only if no host is unhealthy).
 */
export function isKnownGood(record: ReleaseRecord, soakMs: number, now: Date, unhealthyHosts: boolean): boolean {
  if (record.succeeded_at === null || record.rolled_back_at !== null) return false;
  if (soakMs === 0) return true;
  const end = record.superseded_at === null ? now.getTime() : Date.parse(record.superseded_at);
  if (record.superseded_at === null && unhealthyHosts) return false;
  return end - Date.parse(record.succeeded_at) >= soakMs;
}
