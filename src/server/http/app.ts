/**
 * The HTTP application under /api/v1: authentication and the access check of
 * every route (its level comes from the route table, src/api/routes.ts), the
 * error format, and the handlers of the core routes. The composition root
 * (create-server.ts) binds these and the other route modules' handlers.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { API_PREFIX } from '../../api/paths.js';
import { JSON_BODY_MAX_BYTES, JSON_MAX_DEPTH, JSON_MAX_STRING_CHARS, ROUTES, type RouteName, type RouteSpec } from '../../api/routes.js';
import { jsonBoundsViolation } from './bounded-json.js';
import { HTTP_STATUS, LockstepError } from '../../core/errors.js';
import { errorBody } from '../../api/errors.js';
import { canonicalManifest } from '../../core/manifest.js';
import { environmentOf } from '../../core/config.js';
import { applyConfig, currentConfig } from '../config-service.js';
import type { Principal, ServerContext } from '../context.js';
import { addressKey, refuseAttempt, refuseSpentToken, roleAllows, tokenKey, type Access, type FailedAuthLimiter } from './access.js';
import { listChanges } from '../deployments/changes-service.js';
import { decideDeployment, deploymentView, recordReport, rejectRelease, startDeployment, startRollback, unrejectRelease, waitForDeployment } from '../deployments/deployment-service.js';
import { createToken, listTokens, revokeToken } from './token-service.js';
import { planRollout } from '../deployments/plan-service.js';
import { addHost, enroll, FetchScope, pollWork, recordHeartbeat } from '../hosts/host-service.js';
import { manifestOf, resolveRelease, summarize } from '../releases/release-service.js';
import { manifestDeltaOf } from '../releases/manifest-delta.js';
import { hashToken } from './tokens.js';
import { auditView, driftOverview, history, hostView, placementOverview, status } from './views.js';
import { parityView, recordFacts } from '../drift/parity-service.js';
import { abortOnClose, actorOf, agentOf, bodyTooLarge, userOf } from './route-helpers.js';
import type { RouteHandlers } from './route-binder.js';
import { reportCorruptBlob } from '../releases/blob-integrity.js';
import { blobBatchStream } from '../releases/blob-batch.js';
import { corruptBlobError } from '../../content/blob-store.js';

export type { Access } from './access.js';

/** Trusts the socket's peer (hop 0, the proxy) only, so the client is the address it appended to X-Forwarded-For. */
const trustOneProxyHop = (_address: string, hop: number): boolean => hop === 0;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route's name in the route table, which says who may call it. */
    route?: RouteName;
  }
  interface FastifyRequest {
    principal?: Principal;
  }
}

/**
 * Builds the Fastify application without routes (not yet listening): the
 * authentication hook, which enforces each route's access level, and the
 * error format. `limiter` counts failed authentications (enrollment too).
 * With `trustProxy`, a request's address is the last one in X-Forwarded-For,
 * the one the (single) reverse proxy appended: entries before it are the
 * client's to invent. Only behind such a proxy, otherwise any client could
 * pick the address its failures are counted under.
 */
/** `https`: the key and certificate chain to serve TLS with (absent: plain HTTP). */
export function buildApp(context: ServerContext, limiter: FailedAuthLimiter, options: { readonly trustProxy?: boolean | undefined; readonly https?: { readonly key: string; readonly cert: string } | undefined } = {}): FastifyInstance {
  // Routes that need more say so (maxBytes in the route table); a body over the limit is refused from its Content-Length before it is read, or as soon as a chunked one crosses it.
  const base = { loggerInstance: context.logger as FastifyBaseLogger, bodyLimit: JSON_BODY_MAX_BYTES, trustProxy: options.trustProxy === true ? trustOneProxyHop : false };
  // An https.Server is an http.Server for every use here (routes, address, close); Fastify's types tell them apart.
  const app: FastifyInstance = options.https === undefined ? Fastify(base) : (Fastify({ ...base, https: { key: options.https.key, cert: options.https.cert } }) as unknown as FastifyInstance);

  // Blobs pass through as streams, to disk; never buffered here.
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = String(body);
    const name = request.routeOptions.config.route;
    const spec: RouteSpec | undefined = name === undefined ? undefined : ROUTES[name];
    const violation = jsonBoundsViolation(text, { maxDepth: JSON_MAX_DEPTH, maxStringChars: spec?.maxStringChars ?? JSON_MAX_STRING_CHARS });
    if (violation === undefined) return parseJson(request, text, done);
    done(Object.assign(new Error(violation.message), { statusCode: violation.kind === 'too-deep' ? 400 : 413 }), undefined);
  });

  const routes: { method: string; url: string; access: Access }[] = [];
  app.decorate('lockstepRoutes', routes);
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith(API_PREFIX)) return;
    const name = route.config?.route;
    if (name === undefined) throw new Error(`route ${route.method} ${route.url} is not in the route table (src/api/routes.ts)`);
    const access = ROUTES[name].access;
    for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push({ method, url: route.url, access });
  });

  app.addHook('onRequest', async (request) => {
    const name = request.routeOptions.config.route;
    const access = name === undefined ? undefined : ROUTES[name].access;
    if (access === undefined || access === 'public') return;
    // Enrollment is settled in its handler, where the token (in the body) is.
    if (access === 'enroll') return;
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    const address = addressKey(request.ip);
    if (!token) refuseAttempt(limiter, [address], 'missing', 'missing token; set LOCKSTEP_TOKEN (the admin token is in DATA_DIR/admin.token)');
    const presented = tokenKey(token);
    refuseSpentToken(limiter, presented);
    const found = await context.store.read.tokenByHash(hashToken(token));
    const row = found && found.revoked_at === null && found.role !== 'enroll' ? found : undefined;
    const agentHost = row?.role === 'agent' && row.host !== null ? await context.store.read.host(row.host) : undefined;
    // One message for every bad token: it never tells whether a name exists. A removed host's credential is bad too.
    if (row === undefined || (row.role === 'agent' && row.host !== null && agentHost === undefined)) refuseAttempt(limiter, [address, presented], 'invalid', 'invalid or revoked token');
    if (row.role === 'agent') {
      if (access !== 'agent' || agentHost === undefined) throw new LockstepError('forbidden', 'agent credentials may only call agent routes');
      request.principal = { kind: 'agent', name: row.name, host: agentHost.name, env: agentHost.env };
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
      const retryAfter = (error.details as { retryAfterSeconds?: unknown } | undefined)?.retryAfterSeconds;
      if (error.kind === 'rate-limited' && typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
      return reply.status(HTTP_STATUS[error.kind]).send(errorBody(error.kind, error.message, { details: error.details }));
    }
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.status(413).send(errorBody('bad-input', bodyTooLarge(request.routeOptions.bodyLimit ?? JSON_BODY_MAX_BYTES, Number(request.headers['content-length'])).message));
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.status(error.statusCode).send(errorBody('bad-input', error.message));
    }
    request.log.error({ err: error, url: request.url }, 'request failed');
    return reply.status(500).send(errorBody('internal', 'internal server error (see the server log)'));
  });

  app.setNotFoundHandler((request, reply) => reply.status(404).send(errorBody('not-found', `no route ${request.method} ${request.url}`)));

  return app;
}

/** The handlers of the routes served here (configuration, releases, hosts, deployments, tokens, agents, parity); the other route modules add theirs. */
export function coreRouteHandlers(context: ServerContext, limiter: FailedAuthLimiter): RouteHandlers {
  const scope = new FetchScope(context);
  /** A filter naming an environment must name one in the applied config (`status UNKNOWN` and `history UNKNOWN` exit 2 alike). */
  const knownEnvironment = async (env: string | undefined): Promise<void> => {
    if (env === undefined) return;
    const config = await currentConfig(context.store.read);
    if (config !== undefined) environmentOf(config, env);
    else throw new LockstepError('not-found', `environment "${env}" is not in lockstep.yaml (none has been applied yet)`);
  };
  return {
    health: async () => ({ ok: true }),

    // ---- configuration ----
    applyConfig: async ({ body }, request) => applyConfig(context, actorOf(request), body.yaml, body.file),
    getConfig: async () => {
      const row = await context.store.read.latestConfig();
      if (!row) throw new LockstepError('not-found', 'no lockstep.yaml has been applied yet');
      return { version: row.version, yaml: row.yaml, appliedBy: row.applied_by, appliedAt: row.applied_at };
    },

    // ---- blobs and releases ----
    missingBlobs: async ({ body }) => ({ missing: await context.blobs.missing(body.hashes) }),
    listReleases: async ({ query }) => {
      const rows = await context.store.read.listReleases(query.limit);
      return { releases: await Promise.all(rows.map((row) => summarize(context.store.read, row))) };
    },
    showRelease: async ({ params }) => {
      const row = await resolveRelease(context.store.read, params.ref);
      return { release: await summarize(context.store.read, row), manifest: manifestOf(row) };
    },
    rejectRelease: async ({ params, body }, request) => {
      await rejectRelease(context, actorOf(request), params.ref, body.env, body.reason);
      return { ok: true };
    },
    unrejectRelease: async ({ params, body }, request) => {
      await unrejectRelease(context, actorOf(request), params.ref, body.env, body.reason);
      return { ok: true };
    },

    // ---- hosts ----
    addHost: async ({ body }, request) => addHost(context, actorOf(request), body.name, body.env),
    listHosts: async () => {
      const drift = await driftOverview(context.store.read);
      const config = await currentConfig(context.store.read);
      const placement = await placementOverview(context.store.read, config);
      return { hosts: await Promise.all((await context.store.read.listHosts()).map((row) => hostView(context, row, drift, config, placement))) };
    },

    // ---- deployments ----
    plan: async ({ body }, request) => planRollout(context, actorOf(request), body),
    deploy: async ({ body }, request) => startDeployment(context, userOf(request), body),
    deployment: async ({ params, query }, request) => {
      if (query.since === undefined || query.wait === 0) return deploymentView(context, params.id);
      return waitForDeployment(context, params.id, query.since, query.wait * 1000, abortOnClose(request, context.shutdown));
    },
    deploymentLogs: async ({ params, query }) => {
      await deploymentView(context, params.id);
      const rows = await context.store.read.deploymentLogs(params.id, query.host);
      return { logs: rows.map((row) => ({ host: row.host, at: row.at, source: row.source, text: row.text })) };
    },
    approveDeployment: async ({ params, body }, request) => decideDeployment(context, userOf(request), params.id, 'approve', body.comment),
    rejectDeployment: async ({ params, body }, request) => decideDeployment(context, userOf(request), params.id, 'reject', body.reason),
    rollback: async ({ params, body }, request) => startRollback(context, userOf(request), params.env, body),
    status: async ({ query }) => {
      await knownEnvironment(query.env);
      return status(context, query.env);
    },
    history: async ({ query }) => {
      await knownEnvironment(query.env);
      return { deployments: await history(context.store.read, query.env, query.limit) };
    },
    changes: async ({ query }) => listChanges(context, query.env, query.since),

    // ---- tokens and the audit log ----
    createToken: async ({ body }, request) => createToken(context, actorOf(request), body),
    listTokens: async () => ({ tokens: await listTokens(context) }),
    revokeToken: async ({ params }, request) => {
      await revokeToken(context, actorOf(request), params.name);
      return { ok: true };
    },
    audit: async ({ query }) => ({ events: (await context.store.read.listAudit({ afterSeq: query.after, limit: query.limit })).map(auditView) }),

    // ---- agents ----
    agentEnroll: async ({ body }, request) => {
      const presented = tokenKey(body.token);
      refuseSpentToken(limiter, presented);
      try {
        return await enroll(context, body.token, body.agentVersion);
      } catch (error) {
        // A bad enrollment token counts like a bad bearer token; a valid one is served from any address.
        if (error instanceof LockstepError && error.kind === 'unauthorized') refuseAttempt(limiter, [addressKey(request.ip), presented], 'invalid', error.message);
        throw error;
      }
    },
    agentWork: async ({ query }, request) => {
      const agent = agentOf(request, query.host);
      // The first poll of a (re)started agent: commands it was given before and never answered died with its predecessor.
      if (query.started === '1') await context.store.transaction((repo) => repo.requeueSentCommands(agent.host));
      return pollWork(context, agent.host, agent.env, query.wait * 1000, abortOnClose(request, context.shutdown));
    },
    agentRelease: async ({ params, query }, request, reply) => {
      const { id } = params;
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
    },
    agentBlob: async ({ params, query }, request, reply) => {
      const { hash } = params;
      const agent = agentOf(request, query.host);
      if (!(await scope.blobAllowed(agent.env, hash))) throw new LockstepError('forbidden', `blob ${hash} belongs to no release deployed to ${agent.env}`);
      const blob = await context.blobs.openVerified(hash, (corrupt) => reportCorruptBlob(context, corrupt, agent.host));
      if (blob === undefined) {
        if (await context.blobs.isQuarantined(hash)) throw corruptBlobError(hash);
        throw new LockstepError('not-found', `blob ${hash} is missing from the server's store`);
      }
      return reply.header('content-type', 'application/octet-stream').header('content-length', blob.size).send(blob.stream);
    },
    agentBlobs: async ({ body }, request, reply) => {
      const agent = agentOf(request, body.host);
      // The scope is checked once for the whole request: every blob must be one of this release's.
      const allowed = await scope.releaseBlobs(agent.env, body.releaseId);
      if (allowed === undefined) throw new LockstepError('forbidden', `release ${body.releaseId} was never deployed to ${agent.env}`);
      const foreign = body.hashes.find((hash) => !allowed.has(hash));
      if (foreign !== undefined) throw new LockstepError('forbidden', `blob ${foreign} is not part of release ${body.releaseId}`);
      const stream = blobBatchStream(context.blobs, [...new Set(body.hashes)], (corrupt) => reportCorruptBlob(context, corrupt, agent.host));
      return reply.header('content-type', 'application/octet-stream').send(stream);
    },
    agentReport: async ({ body }, request) => {
      const agent = agentOf(request, body.host);
      const { remainingMs } = await recordReport(context, agent.host, body);
      return { ok: true, remainingMs };
    },
    agentHeartbeat: async ({ body }, request) => {
      const agent = agentOf(request, body.host);
      await recordHeartbeat(context, agent.host, body);
      return { ok: true };
    },

    // ---- host facts and parity (parity-service.ts) ----
    agentFacts: async ({ body }, request) => {
      const agent = agentOf(request, body.host);
      await recordFacts(context, agent.host, body);
      return { ok: true };
    },
    parity: async ({ query }) => parityView(context, query.a, query.b),
  };
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

