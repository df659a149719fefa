/**
 * Who may call what. Every route has one access level in the route table
 * (src/api/routes.ts); this table says which token roles satisfy it. Environment scopes (`--env` on a token) are
 * checked where a route names an environment.
 */

import type { Access } from '../../api/routes.js';

export type { Access } from '../../api/routes.js';

import type { UserRole } from '../../core/token-roles.js';
import { authDecision, DEFAULT_FAILURE_RULE, recentFailures, waitFor, type CredentialCheck, type FailureRule } from '../../core/auth-failures.js';
import { LockstepError } from '../../core/errors.js';
import { hashToken } from './tokens.js';

// The roles are defined in core (the store's token rows use them too); re-exported for this module's callers.
export { USER_ROLES, type UserRole } from '../../core/token-roles.js';

const ALLOWED: Readonly<Record<Exclude<Access, 'public' | 'enroll' | 'agent'>, readonly UserRole[]>> = {
  viewer: ['viewer', 'deployer', 'approver', 'admin'],
  deployer: ['deployer', 'admin'],
  approver: ['approver', 'admin'],
  admin: ['admin'],
};

/** Whether a user token's role satisfies a route's access level. */
export function roleAllows(role: string, access: Access): boolean {
  if (access === 'public' || access === 'enroll' || access === 'agent') return false;
  return (ALLOWED[access] as readonly string[]).includes(role);
}

/**
 * Remembers failed authentications per key (a source address, a presented
 * token's fingerprint) in a sliding window; the decisions are core's
 * (core/auth-failures.ts). Memory is bounded: past `maxKeys`, the oldest key is forgotten.
 */
export class FailedAuthLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly rule: FailureRule = DEFAULT_FAILURE_RULE, private readonly maxKeys = 10_000) {}

  /** How long the longest-waiting of `keys` must still wait, in ms (0: none is blocked). */
  waitFor(keys: readonly string[], now: number): number {
    return Math.max(0, ...keys.map((key) => waitFor(this.failures.get(key) ?? [], now, this.rule)));
  }

  /** Records one failed attempt under each of `keys`. */
  fail(keys: readonly string[], now: number): void {
    for (const key of keys) {
      const recent = recentFailures(this.failures.get(key) ?? [], now, this.rule);
      recent.push(now);
      // Re-inserted, so the map's first key is the one failed least recently.
      this.failures.delete(key);
      this.failures.set(key, recent);
      if (this.failures.size > this.maxKeys) this.failures.delete(this.failures.keys().next().value as string);
    }
  }
}

/** The limiter's key for a source address. */
export function addressKey(address: string): string {
  return `address:${address}`;
}

/**
 * The limiter's key for a presented token: tokens carry no separate id, so a
 * fingerprint of the presented value (never the value itself, which the
 * limiter's memory must not hold). An agent credential belongs to one host,
 * so its key is that host's: a host's own failures limit it, not its address.
 */
export function tokenKey(token: string): string {
  return `token:${hashToken(token).slice(0, 32)}`;
}

/**
 * Refuses an attempt with a bad or missing credential under `keys` (its
 * address and, when one was presented, its token's key): a 429 (with
 * Retry-After, see the error handler) while a key must wait, else a 401
 * with `message`, the failure recorded where it counts. A valid credential
 * never comes here, so it is never refused for what others did.
 */
export function refuseAttempt(limiter: FailedAuthLimiter, keys: readonly string[], check: Exclude<CredentialCheck, 'valid'>, message: string): never {
  const now = Date.now();
  const decision = authDecision(check, limiter.waitFor(keys, now));
  if (decision.kind === 'rate-limited') throw rateLimited(decision.retryAfterSeconds);
  if (decision.kind === 'unauthorized' && decision.countFailure) limiter.fail(keys, now);
  throw new LockstepError('unauthorized', message);
}

/** The 429 error; its details carry the Retry-After seconds the error handler sends as a header. */
export function rateLimited(retryAfterSeconds: number): LockstepError {
  return new LockstepError('rate-limited', `too many failed authentications from this address or with this token; retry in ${retryAfterSeconds}s with a valid token`, { retryAfterSeconds });
}

/** A token that failed past the limit is refused before it costs a database lookup (a valid token never fails, so is never here). */
export function refuseSpentToken(limiter: FailedAuthLimiter, key: string): void {
  const decision = authDecision('invalid', limiter.waitFor([key], Date.now()));
  if (decision.kind === 'rate-limited') throw rateLimited(decision.retryAfterSeconds);
}
