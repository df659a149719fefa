/** What every route module needs: body parsing with every problem named, the caller, and long-poll abort signals. */
import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { LockstepError } from '../../core/errors.js';
import type { Principal } from '../context.js';
import type { UserPrincipal } from '../deployments/deployment-service.js';

/** Parses a body or query with a schema; every problem is reported, with its field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : 'body'}: ${issue.message}`);
  throw new LockstepError('bad-input', `invalid request: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (and ${problems.length - 5} more)` : ''}`, { problems });
}

/** The name of whoever calls (a token name). */
export function actorOf(request: FastifyRequest): string {
  return request.principal?.name ?? 'anonymous';
}

/** The person or script calling; refuses agents. */
export function userOf(request: FastifyRequest): UserPrincipal {
  const principal = request.principal;
  if (principal?.kind !== 'user') throw new LockstepError('forbidden', 'this route is for user tokens');
  return principal;
}

/** The agent calling; with `host`, refuses an agent speaking for another host. */
export function agentOf(request: FastifyRequest, host: string | undefined): Extract<Principal, { kind: 'agent' }> {
  const principal = request.principal;
  if (principal?.kind !== 'agent') throw new LockstepError('forbidden', 'this route is for agents');
  if (host !== undefined && host !== principal.host) throw new LockstepError('forbidden', `this credential belongs to host ${principal.host}, not ${host}`);
  return principal;
}

/** An AbortSignal that fires when the client goes away or the server shuts down, to end long polls early. */
export function abortOnClose(request: FastifyRequest, shutdown: AbortSignal): AbortSignal {
  const controller = new AbortController();
  request.raw.once('close', () => controller.abort());
  return AbortSignal.any([controller.signal, shutdown]);
}
