/**
 * Decisions of the failed-authentication limiter, as pure functions of the
 * failure times recorded under a key (a source address, a presented token's
 * fingerprint) and `now`. The server keeps the times (server/http/access.ts);
 * what to answer is decided here.
 */

/** How many failures a key may have within a sliding window before it waits. */
export interface FailureRule {
  readonly limit: number;
  readonly windowMs: number;
}

/** 20 failures a minute: far beyond a person mistyping, far below a useful guessing rate. */
export const DEFAULT_FAILURE_RULE: FailureRule = { limit: 20, windowMs: 60_000 };

/** The failures still inside the window at `now`, oldest first. */
export function recentFailures(times: readonly number[], now: number, rule: FailureRule): number[] {
  return times.filter((at) => now - at < rule.windowMs);
}

/**
 * How long a key must wait before its next attempt is heard (0: not blocked):
 * until enough of its recent failures leave the window to bring it below the limit.
 */
export function waitFor(times: readonly number[], now: number, rule: FailureRule): number {
  const recent = recentFailures(times, now, rule);
  if (recent.length < rule.limit) return 0;
  // The failure whose expiry brings the count back to limit - 1.
  const freeing = recent[recent.length - rule.limit] ?? now;
  return Math.max(1, freeing + rule.windowMs - now);
}

/** What the presented credential turned out to be. */
export type CredentialCheck = 'valid' | 'invalid' | 'missing';

/** What to answer an authentication attempt. */
export type AuthDecision =
  | { readonly kind: 'serve' }
  | { readonly kind: 'unauthorized'; readonly countFailure: boolean }
  | { readonly kind: 'rate-limited'; readonly retryAfterSeconds: number };

/**
 * The answer to an attempt whose keys must wait `waitMs` (the longest of its
 * keys'). A valid credential is always served, whatever others did from its
 * address: tokens are 256-bit random secrets, so the limiter is there to
 * make guessing and replaying bad tokens expensive, not to guard valid ones.
 * A bad or missing credential from a waiting key is told to wait; a bad one
 * otherwise counts as a failure (a missing one does not: that is a
 * misconfigured client, not a guess).
 */
export function authDecision(check: CredentialCheck, waitMs: number): AuthDecision {
  if (check === 'valid') return { kind: 'serve' };
  if (waitMs > 0) return { kind: 'rate-limited', retryAfterSeconds: Math.ceil(waitMs / 1000) };
  return { kind: 'unauthorized', countFailure: check === 'invalid' };
}
