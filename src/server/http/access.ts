/**
 * Who may call what. Every route has one access level in the route table
 * (src/api/routes.ts); this table says which token roles satisfy it. Environment scopes (`--env` on a token) are
 * checked where a route names an environment.
 */

import type { Access } from '../../api/routes.js';

export type { Access } from '../../api/routes.js';

import type { UserRole } from '../../core/token-roles.js';

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
 * Counts failed authentications per client address in a sliding minute and
 * refuses further attempts past a limit, so tokens cannot be guessed online.
 */
export class FailedAuthLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly limit = 20, private readonly windowMs = 60_000) {}

  /** Whether `client` is currently blocked. */
  blocked(client: string, now: number): boolean {
    return this.recent(client, now).length >= this.limit;
  }

  /** Records one failed attempt. */
  fail(client: string, now: number): void {
    const recent = this.recent(client, now);
    recent.push(now);
    this.failures.set(client, recent);
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value as string);
  }

  private recent(client: string, now: number): number[] {
    return (this.failures.get(client) ?? []).filter((at) => now - at < this.windowMs);
  }
}
