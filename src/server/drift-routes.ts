/**
 * The drift routes: what agents send (settings, drift reports, command
 * results, uploaded content of drifted files) and what people ask (list,
 * scan, revert, accept, adopt, follow a command).
 */
import type { FastifyInstance } from 'fastify';
import { Transform, type Readable } from 'node:stream';
import { z } from 'zod';
import * as api from '../api/schemas.js';
import { LockstepError } from '../core/errors.js';
import type { Access } from './access.js';
import { recordCommandResult, waitForCommand } from './agent-command-service.js';
import { currentConfig } from './config-service.js';
import type { ServerContext } from './context.js';
import { adoptDrift } from './drift-adopt.js';
import { recordDriftReport } from './drift-report-service.js';
import { listDrift, requestAccept, requestRevert, requestScan } from './drift-service.js';
import { hostSettingsOf } from './host-settings.js';
import { abortOnClose, agentOf, parse, userOf } from './route-helpers.js';

/** The largest drifted file an agent may upload (the protocol's cap). */
export const DRIFT_BLOB_MAX_BYTES = 64 * 1024 * 1024;

const hostQuery = z.object({ host: z.string().max(63) });
const idParam = z.object({ id: z.coerce.number().int().positive() });
const hashParam = z.object({ hash: z.string().regex(/^[0-9a-f]{64}$/, 'expected a SHA-256 hex digest') });
const absolutePath = z.string().min(1).max(4096).refine((path) => path.startsWith('/') && !path.split('/').includes('..') && !path.includes('\0'), 'expected an absolute path without ".." segments');
const reason = z.string().trim().min(1, 'a reason is required').max(2000);

/** Adds the drift routes to the app (before it listens). */
export function registerDriftRoutes(app: FastifyInstance, context: ServerContext): void {
  const p = api.API_PREFIX;
  const access = (level: Access) => ({ config: { access: level } });
  const quiet = (level: Access) => ({ config: { access: level }, logLevel: 'warn' as const });

  // ---- agents ----
  app.get(`${p}${api.AGENT_ROUTES.settings}`, quiet('agent'), async (request) => {
    const agent = agentOf(request, parse(hostQuery, request.query).host);
    return hostSettingsOf(await currentConfig(context.store.read), agent.env);
  });
  app.post(`${p}${api.AGENT_ROUTES.drift}`, quiet('agent'), async (request) => {
    const body = parse(api.driftReport, request.body);
    const agent = agentOf(request, body.host);
    await recordDriftReport(context, agent.host, agent.env, body);
    return { ok: true };
  });
  app.post(`${p}${api.AGENT_ROUTES.commandResult}`, quiet('agent'), async (request) => {
    const { id } = parse(idParam, request.params);
    const body = parse(api.commandResult, request.body);
    const agent = agentOf(request, body.host);
    await recordCommandResult(context, agent.host, id, body);
    return { ok: true };
  });
  app.put(`${p}${api.AGENT_ROUTES.blobUpload}`, { ...quiet('agent'), bodyLimit: DRIFT_BLOB_MAX_BYTES }, async (request) => {
    const { hash } = parse(hashParam, request.params);
    agentOf(request, parse(hostQuery, request.query).host);
    const body = request.body as Readable | undefined;
    if (!(body && typeof body.pipe === 'function')) throw new LockstepError('bad-input', 'send the blob as application/octet-stream');
    const length = Number(request.headers['content-length']);
    if (Number.isFinite(length) && length > DRIFT_BLOB_MAX_BYTES) throw new LockstepError('bad-input', `a drifted file may be at most ${DRIFT_BLOB_MAX_BYTES} bytes; this one has ${length}`);
    return context.blobs.put(hash, body.pipe(capped(DRIFT_BLOB_MAX_BYTES)));
  });

  // ---- people ----
  app.get(`${p}/drift`, access('viewer'), async (request) => {
    const query = parse(z.object({ target: z.string().min(1).max(63).optional(), all: z.enum(['0', '1', 'true', 'false']).optional() }), request.query);
    return listDrift(context, query.target, query.all === '1' || query.all === 'true');
  });
  app.post(`${p}/drift/scan`, access('deployer'), async (request, reply) => {
    const body = parse(z.strictObject({ host: z.string().min(1).max(63), full: z.boolean().default(false) }), request.body);
    return reply.status(201).send(await requestScan(context, userOf(request), body.host, body.full));
  });
  app.post(`${p}/drift/revert`, access('deployer'), async (request, reply) => {
    const body = parse(z.strictObject({ target: z.string().min(1).max(63), paths: z.array(absolutePath).min(1).max(1000).optional(), reason: z.string().max(2000).optional() }), request.body);
    return reply.status(201).send(await requestRevert(context, userOf(request), body.target, body.paths ?? null, body.reason?.trim() || null));
  });
  app.post(`${p}/drift/accept`, access('admin'), async (request, reply) => {
    const body = parse(z.strictObject({ host: z.string().min(1).max(63), paths: z.array(absolutePath).min(1).max(1000), reason }), request.body);
    return reply.status(201).send(await requestAccept(context, userOf(request), body.host, body.paths, body.reason));
  });
  app.post(`${p}/drift/adopt`, access('deployer'), async (request, reply) => {
    const body = parse(z.strictObject({ host: z.string().min(1).max(63), version: api.createReleaseRequest.shape.version, reason }), request.body);
    return reply.status(201).send(await adoptDrift(context, userOf(request), body.host, body.version, body.reason));
  });
  app.get(`${p}/commands/:id`, access('viewer'), async (request) => {
    const { id } = parse(idParam, request.params);
    const { wait } = parse(z.object({ wait: z.coerce.number().min(0).max(30).default(0) }), request.query);
    return waitForCommand(context, id, wait * 1000, abortOnClose(request, context.shutdown));
  });
}

/** Passes at most `max` bytes through and fails the stream beyond, whatever the request claimed. */
function capped(max: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > max) return done(new LockstepError('bad-input', `a drifted file may be at most ${max} bytes`));
      done(null, chunk);
    },
  });
}
