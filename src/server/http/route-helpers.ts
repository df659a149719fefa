/** What every route module needs: body parsing with every problem named, the caller, and long-poll abort signals. */
import type { FastifyRequest } from 'fastify';
import { Transform } from 'node:stream';
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

/** The 413 of a body over a route's limit: one line naming the limit, and the body's size when its Content-Length said it. */
export function bodyTooLarge(limit: number, contentLength: number): Error & { statusCode: 413 } {
  const message =
    Number.isFinite(contentLength) && contentLength > limit ? `request body is ${contentLength} bytes; this route takes at most ${limit}` : `request body is more than ${limit} bytes, the most this route takes`;
  return Object.assign(new Error(message), { statusCode: 413 as const });
}

/** Passes a streamed body through, failing with bodyTooLarge() once it crosses `limit` (Fastify counts only the bodies it buffers). */
export function cappedBody(limit: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > limit) return done(bodyTooLarge(limit, Number.NaN));
      done(null, chunk);
    },
  });
}
