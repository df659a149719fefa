/**
 * The HTTP API under /api/v1. Every route declares who may call it in one
 * table (`access`); the authentication hook enforces it before any handler
 * runs, so a route without a rule cannot exist.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { z } from 'zod';
import * as api from '../api/schemas.js';
import { HTTP_STATUS, LockstepError } from '../core/errors.js';
import { canonicalManifest } from '../core/manifest.js';
import { environmentOf } from '../core/config.js';
import { applyConfig, currentConfig } from './config-service.js';
import type { Principal, ServerContext } from './context.js';
import { FailedAuthLimiter, roleAllows, type Access } from './access.js';
import { listChanges } from './changes-service.js';
import { decideDeployment, deploymentView, recordReport, rejectRelease, startDeployment, startRollback, unrejectRelease, waitForDeployment, requireEnvironmentScope } from './deployment-service.js';
import { createToken, listTokens, revokeToken } from './token-service.js';
import { planRollout } from './plan-service.js';
import { addHost, enroll, FetchScope, pollWork, recordHeartbeat } from './host-service.js';
import { createRelease, manifestOf, resolveRelease, summarize } from './release-service.js';
import { manifestDeltaOf } from './manifest-delta.js';
import { hashToken } from './tokens.js';
import { auditView, driftOverview, history, hostView, placementOverview, status } from './views.js';
import { parityView, recordFacts } from './parity-service.js';
import { abortOnClose, actorOf, agentOf, parse, userOf } from './route-helpers.js';
import { registerDriftRoutes } from './drift-routes.js';
import { reportCorruptBlob } from './blob-integrity.js';
import { corruptBlobError } from '../content/blob-store.js';

export type { Access } from './access.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal?: Principal;
  }
}

const hostQuery = z.object({ host: z.string().max(63) });
const idParam = z.object({ id: z.coerce.number().int().positive() });

/** Builds the Fastify application (not yet listening). */
export async function buildApp(context: ServerContext): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({ loggerInstance: context.logger as FastifyBaseLogger, bodyLimit: 256 * 1024 * 1024 });
  const scope = new FetchScope(context);

  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));

  const routes: { method: string; url: string; access: Access }[] = [];
  app.decorate('lockstepRoutes', routes);
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith(api.API_PREFIX)) return;
    const access = route.config?.access;
    if (!access) throw new Error(`route ${route.method} ${route.url} declares no access rule`);
    for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push({ method, url: route.url, access });
  });

  const limiter = new FailedAuthLimiter();
  app.addHook('onRequest', async (request) => {
    const access = request.routeOptions.config.access;
    if (access === undefined || access === 'public') return;
    if (limiter.blocked(request.ip, Date.now())) throw new LockstepError('rate-limited', 'too many failed authentications from this address; wait a minute');
    if (access === 'enroll') return;
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    if (!token) throw new LockstepError('unauthorized', 'missing token; set LOCKSTEP_TOKEN (the admin token is in DATA_DIR/admin.token)');
    const row = await context.store.read.tokenByHash(hashToken(token));
    // One message for every bad token: it never tells whether a name exists.
    if (!row || row.revoked_at !== null || row.role === 'enroll') {
      limiter.fail(request.ip, Date.now());
      throw new LockstepError('unauthorized', 'invalid or revoked token');
    }
    if (row.role === 'agent') {
      if (access !== 'agent' || row.host === null) throw new LockstepError('forbidden', 'agent credentials may only call agent routes');
      const host = await context.store.read.host(row.host);
      if (!host) throw new LockstepError('unauthorized', 'invalid or revoked token');
      request.principal = { kind: 'agent', name: row.name, host: host.name, env: host.env };
      return;
    }
    if (access === 'agent') throw new LockstepError('forbidden', 'this route is for agents');
    if (!roleAllows(row.role, access)) throw new LockstepError('forbidden', `token ${row.name} (role ${row.role}) may not do this; it needs the ${access} role`);
    request.principal = { kind: 'user', name: row.name, role: row.role, envs: row.envs ? (JSON.parse(row.envs) as string[]) : null };
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply: FastifyReply) => {
    // A stream that failed before its first byte (a corrupt blob found at once)
    // leaves the headers of the body it was meant to be: the answer is JSON now.
    reply.removeHeader('content-length').type('application/json; charset=utf-8');
    if (error instanceof LockstepError) {
      return reply.status(HTTP_STATUS[error.kind]).send({ error: { kind: error.kind, message: error.message, details: error.details } });
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.status(error.statusCode).send({ error: { kind: 'bad-input', message: error.message } });
    }
    request.log.error({ err: error, url: request.url }, 'request failed');
    return reply.status(500).send({ error: { kind: 'internal', message: 'internal server error (see the server log)' } });
  });

  app.setNotFoundHandler((request, reply) => reply.status(404).send({ error: { kind: 'not-found', message: `no route ${request.method} ${request.url}` } }));

  const p = api.API_PREFIX;
  const access = (level: Access) => ({ config: { access: level } });
  // Agents poll and fetch blobs all day; their successful requests are not worth a log line each.
  const quiet = (level: Access) => ({ config: { access: level }, logLevel: 'warn' as const });

  app.get(`${p}/health`, access('public'), async () => ({ ok: true }));

  // ---- configuration ----
  app.post(`${p}/config`, access('admin'), async (request) => {
    const body = parse(api.applyConfigRequest, request.body);
    return applyConfig(context, actorOf(request), body.yaml, body.file);
  });
  app.get(`${p}/config`, access('viewer'), async () => {
    const row = await context.store.read.latestConfig();
    if (!row) throw new LockstepError('not-found', 'no lockstep.yaml has been applied yet');
    return { version: row.version, yaml: row.yaml, appliedBy: row.applied_by, appliedAt: row.applied_at };
  });

  // ---- blobs and releases ----
  app.post(`${p}/blobs/missing`, access('deployer'), async (request) => {
    const body = parse(api.missingBlobsRequest, request.body);
    return { missing: await context.blobs.missing(body.hashes) };
  });
  app.put(`${p}/blobs/:hash`, { ...access('deployer'), bodyLimit: 16 * 1024 * 1024 * 1024 }, async (request) => {
    const { hash } = parse(z.object({ hash: z.string().regex(/^[0-9a-f]{64}$/, 'expected a SHA-256 hex digest') }), request.params);
    if (!(request.body && typeof (request.body as Readable).pipe === 'function')) throw new LockstepError('bad-input', 'send the blob as application/octet-stream');
    return context.blobs.put(hash, request.body as Readable);
  });
  app.post(`${p}/releases`, access('deployer'), async (request) => createRelease(context, actorOf(request), parse(api.createReleaseRequest, request.body)));
  app.get(`${p}/releases`, access('viewer'), async (request) => {
    const { limit } = parse(z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }), request.query);
    const rows = await context.store.read.listReleases(limit);
    return { releases: await Promise.all(rows.map((row) => summarize(context.store.read, row))) };
  });
  app.get(`${p}/releases/:ref`, access('viewer'), async (request) => {
    const { ref } = parse(z.object({ ref: z.string().min(1).max(200) }), request.params);
    const row = await resolveRelease(context.store.read, ref);
    return { release: await summarize(context.store.read, row), manifest: manifestOf(row) };
  });

  // ---- hosts ----
  app.post(`${p}/hosts`, access('admin'), async (request) => {
    const body = parse(api.addHostRequest, request.body);
    requireEnvironmentScope(userOf(request), body.env);
    return addHost(context, actorOf(request), body.name, body.env);
  });
  app.get(`${p}/hosts`, access('viewer'), async () => {
    const drift = await driftOverview(context.store.read);
    const config = await currentConfig(context.store.read);
    const placement = await placementOverview(context.store.read, config);
    return { hosts: await Promise.all((await context.store.read.listHosts()).map((row) => hostView(context, row, drift, config, placement))) };
  });

  // ---- deployments ----
  app.post(`${p}/plan`, access('viewer'), async (request) => planRollout(context, actorOf(request), parse(api.deployRequest, request.body)));
  app.post(`${p}/deployments/:id/approve`, access('approver'), async (request) => {
    const { id } = parse(idParam, request.params);
    const body = parse(z.strictObject({ comment: z.string().max(2000).optional() }), request.body ?? {});
    return decideDeployment(context, userOf(request), id, 'approve', body.comment);
  });
  app.post(`${p}/deployments/:id/reject`, access('approver'), async (request) => {
    const { id } = parse(idParam, request.params);
    const body = parse(z.strictObject({ reason: z.string().min(1, 'a reason is required').max(2000) }), request.body);
    return decideDeployment(context, userOf(request), id, 'reject', body.reason);
  });

  // ---- tokens ----
  app.post(`${p}/tokens`, access('admin'), async (request, reply) => {
    const body = parse(api.createTokenRequest, request.body);
    return reply.status(201).send(await createToken(context, actorOf(request), body));
  });
  app.get(`${p}/tokens`, access('admin'), async () => ({ tokens: await listTokens(context) }));
  app.delete(`${p}/tokens/:name`, access('admin'), async (request) => {
    const { name } = parse(z.object({ name: z.string().max(64) }), request.params);
    await revokeToken(context, actorOf(request), name);
    return { ok: true };
  });
  app.get(`${p}/changes`, access('viewer'), async (request) => {
    const query = parse(z.object({ env: z.string().max(32).optional(), since: z.string().max(40).default('24h') }), request.query);
    return listChanges(context, query.env, query.since);
  });
  app.post(`${p}/deployments`, access('deployer'), async (request, reply) => {
    const body = parse(api.deployRequest, request.body);
    return reply.status(201).send(await startDeployment(context, userOf(request), body));
  });
  app.get(`${p}/deployments/:id`, access('viewer'), async (request) => {
    const { id } = parse(idParam, request.params);
    const query = parse(z.object({ since: z.coerce.number().int().min(0).optional(), wait: z.coerce.number().min(0).max(30).default(0) }), request.query);
    if (query.since === undefined || query.wait === 0) return deploymentView(context, id);
    return waitForDeployment(context, id, query.since, query.wait * 1000, abortOnClose(request, context.shutdown));
  });
  app.get(`${p}/deployments/:id/logs`, access('viewer'), async (request) => {
    const { id } = parse(idParam, request.params);
    const { host } = parse(z.object({ host: z.string().max(63).optional() }), request.query);
    await deploymentView(context, id);
    const rows = await context.store.read.deploymentLogs(id, host);
    return { logs: rows.map((row) => ({ host: row.host, at: row.at, source: row.source, text: row.text })) };
  });
  app.post(`${p}/releases/:ref/reject`, access('deployer'), async (request) => {
    const { ref } = parse(z.object({ ref: z.string().min(1).max(200) }), request.params);
    const body = parse(z.strictObject({ env: z.string().max(32), reason: z.string().min(1, 'a reason is required').max(2000) }), request.body);
    requireEnvironmentScope(userOf(request), body.env);
    await rejectRelease(context, actorOf(request), ref, body.env, body.reason);
    return { ok: true };
  });
  app.post(`${p}/releases/:ref/unreject`, access('admin'), async (request) => {
    const { ref } = parse(z.object({ ref: z.string().min(1).max(200) }), request.params);
    const body = parse(z.strictObject({ env: z.string().max(32), reason: z.string().max(2000).optional() }), request.body);
    requireEnvironmentScope(userOf(request), body.env);
    await unrejectRelease(context, actorOf(request), ref, body.env, body.reason);
    return { ok: true };
  });
  app.post(`${p}/environments/:env/rollback`, access('deployer'), async (request, reply) => {
    const { env } = parse(z.object({ env: z.string().max(32) }), request.params);
    const body = parse(api.rollbackRequest, request.body ?? {});
    return reply.status(201).send(await startRollback(context, userOf(request), env, body));
  });
  /** A filter naming an environment must name one in the applied config (`status UNKNOWN` and `history UNKNOWN` exit 2 alike). */
  const knownEnvironment = async (env: string | undefined): Promise<void> => {
    if (env === undefined) return;
    const config = await currentConfig(context.store.read);
    if (config !== undefined) environmentOf(config, env);
    else throw new LockstepError('not-found', `environment "${env}" is not in lockstep.yaml (none has been applied yet)`);
  };
  app.get(`${p}/status`, access('viewer'), async (request) => {
    const { env } = parse(z.object({ env: z.string().max(32).optional() }), request.query);
    await knownEnvironment(env);
    return status(context, env);
  });
  app.get(`${p}/history`, access('viewer'), async (request) => {
    const query = parse(z.object({ env: z.string().max(32).optional(), limit: z.coerce.number().int().min(1).max(1000).default(50) }), request.query);
    await knownEnvironment(query.env);
    return { deployments: await history(context.store.read, query.env, query.limit) };
  });
  app.get(`${p}/audit`, access('viewer'), async (request) => {
    const query = parse(z.object({ after: z.coerce.number().int().min(0).default(0), limit: z.coerce.number().int().min(1).max(10000).default(1000) }), request.query);
    return { events: (await context.store.read.listAudit({ afterSeq: query.after, limit: query.limit })).map(auditView) };
  });

  // ---- agents ----
  app.post(`${p}${api.AGENT_ROUTES.enroll}`, access('enroll'), async (request) => {
    const body = parse(api.enrollRequest, request.body);
    try {
      return await enroll(context, body.token, body.agentVersion);
    } catch (error) {
      // A bad enrollment token counts like a bad bearer token.
      if (error instanceof LockstepError && error.kind === 'unauthorized') limiter.fail(request.ip, Date.now());
      throw error;
    }
  });
  app.get(`${p}${api.AGENT_ROUTES.work}`, quiet('agent'), async (request) => {
    const query = parse(hostQuery.extend({ wait: z.coerce.number().min(0).max(30).default(25), started: z.enum(['1']).optional() }), request.query);
    const agent = agentOf(request, query.host);
    // The first poll of a (re)started agent: commands it was given before and never answered died with its predecessor.
    if (query.started === '1') await context.store.transaction((repo) => repo.requeueSentCommands(agent.host));
    return pollWork(context, agent.host, agent.env, query.wait * 1000, abortOnClose(request, context.shutdown));
  });
  app.get(`${p}${api.AGENT_ROUTES.release}`, quiet('agent'), async (request, reply) => {
    const { id } = parse(z.object({ id: z.string().regex(/^[0-9a-f]{64}$/, 'expected a release id') }), request.params);
    const query = parse(hostQuery.extend({ base: z.string().regex(/^[0-9a-f]{64}$/, 'expected a release id').optional() }), request.query);
    const agent = agentOf(request, query.host);
    const row = await context.store.read.release(id);
    if (!row || !(await scope.releaseAllowed(agent.env, id))) throw new LockstepError('forbidden', `release ${id} was never deployed to ${agent.env}`);
    // A delta only against a base this environment may see (the same rule as
    // for fetching it); an unknown or foreign base gets the full manifest.
    const base = query.base !== undefined && query.base !== id ? await context.store.read.release(query.base) : undefined;
    const body =
      base && (await scope.releaseAllowed(agent.env, base.id))
        ? { delta: manifestDeltaOf(base.id, manifestOf(base), manifestOf(row)) }
        : { manifest: canonicalManifest(manifestOf(row)) };
    return sendJson(request, reply, body);
  });
  app.get(`${p}${api.AGENT_ROUTES.blob}`, quiet('agent'), async (request, reply) => {
    const { hash } = parse(z.object({ hash: z.string().regex(/^[0-9a-f]{64}$/, 'expected a SHA-256 hex digest') }), request.params);
    const agent = agentOf(request, parse(hostQuery, request.query).host);
    if (!(await scope.blobAllowed(agent.env, hash))) throw new LockstepError('forbidden', `blob ${hash} belongs to no release deployed to ${agent.env}`);
    const blob = await context.blobs.openVerified(hash, (corrupt) => reportCorruptBlob(context, corrupt, agent.host));
    if (blob === undefined) {
      if (await context.blobs.isQuarantined(hash)) throw corruptBlobError(hash);
      throw new LockstepError('not-found', `blob ${hash} is missing from the server's store`);
    }
    return reply.header('content-type', 'application/octet-stream').header('content-length', blob.size).send(blob.stream);
  });
  app.post(`${p}${api.AGENT_ROUTES.report}`, quiet('agent'), async (request) => {
    const body = parse(api.agentReport, request.body);
    const agent = agentOf(request, body.host);
    await recordReport(context, agent.host, body);
    return { ok: true };
  });
  app.post(`${p}${api.AGENT_ROUTES.heartbeat}`, quiet('agent'), async (request) => {
    const body = parse(api.heartbeatRequest, request.body);
    const agent = agentOf(request, body.host);
    await recordHeartbeat(context, agent.host, body);
    return { ok: true };
  });

  registerDriftRoutes(app, context);

  // ---- host facts and parity (parity-service.ts) ----
  app.post(`${p}${api.AGENT_ROUTES.facts}`, quiet('agent'), async (request) => {
    const body = parse(api.factsReport, request.body);
    const agent = agentOf(request, body.host);
    await recordFacts(context, agent.host, body);
    return { ok: true };
  });
  app.get(`${p}/parity`, access('viewer'), async (request) => {
    const query = parse(z.object({ a: z.string().min(1).max(32), b: z.string().min(1).max(32) }), request.query);
    return parityView(context, query.a, query.b);
  });

  return app;
}

const gzipAsync = promisify(gzip);
/** Bodies at least this large are gzipped for clients that accept it. */
const GZIP_MIN_BYTES = 64 * 1024;

/**
 * Sends a JSON body, gzipped (level 1) when large and the client accepts gzip.
 * A full 10,000-entry manifest is 1.35 MiB of JSON; level 1 makes it ~3x
 * smaller in ~20 ms (level 6 gains 2% more for 6x the time).
 */
async function sendJson(request: FastifyRequest, reply: FastifyReply, body: unknown): Promise<FastifyReply> {
  const text = JSON.stringify(body);
  reply.header('content-type', 'application/json; charset=utf-8').header('vary', 'accept-encoding');
  const accepts = String(request.headers['accept-encoding'] ?? '');
  if (text.length < GZIP_MIN_BYTES || !/\bgzip\b/.test(accepts)) return reply.send(text);
  return reply.header('content-encoding', 'gzip').send(await gzipAsync(text, { level: 1 }));
}

