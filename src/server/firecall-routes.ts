/**
 * The fire-call routes: people open, close, list, show and reconcile fire
 * calls and read an environment's CA key; agents long-poll the sshd trust
 * of their host and report what they installed and recorded.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import * as api from '../api/schemas.js';
import { abortOnClose, agentOf, parse, userOf } from './route-helpers.js';
import { closeFirecall, firecallCaPublicKey, listFirecalls, openFirecall, pollFirecallTrust, reconcileFirecall, recordFirecallReport, showFirecall, type FirecallContext } from './firecall-service.js';

const idParam = z.object({ id: z.coerce.number().int().positive() });

/** Adds the fire-call routes to the app (before it listens). */
export function registerFirecallRoutes(app: FastifyInstance, context: FirecallContext): void {
  const p = api.API_PREFIX;
  const access = (level: 'viewer' | 'deployer' | 'agent') => ({ config: { access: level } });

  app.get(`${p}/firecall/ca/:env`, access('viewer'), async (request) => {
    const { env } = parse(z.object({ env: z.string().max(32) }), request.params);
    return firecallCaPublicKey(context, env);
  });
  app.post(`${p}/firecalls`, access('deployer'), async (request, reply) => {
    const body = parse(api.openFirecallRequest, request.body);
    return reply.status(201).send(await openFirecall(context, userOf(request), body));
  });
  app.get(`${p}/firecalls`, access('viewer'), async (request) => {
    const query = parse(z.object({ env: z.string().max(32).optional(), limit: z.coerce.number().int().min(1).max(1000).default(100) }), request.query);
    return { firecalls: await listFirecalls(context, query.env, query.limit) };
  });
  app.get(`${p}/firecalls/:id`, access('viewer'), async (request) => showFirecall(context, parse(idParam, request.params).id));
  app.post(`${p}/firecalls/:id/close`, access('deployer'), async (request) => {
    const { id } = parse(idParam, request.params);
    const body = parse(api.closeFirecallRequest, request.body ?? {});
    return closeFirecall(context, userOf(request), id, body.note);
  });
  app.post(`${p}/firecalls/:id/reconcile`, access('deployer'), async (request) => {
    const { id } = parse(idParam, request.params);
    const body = parse(api.reconcileFirecallRequest, request.body);
    return reconcileFirecall(context, userOf(request), id, body);
  });

  app.get(`${p}${api.AGENT_ROUTES.firecall}`, { ...access('agent'), logLevel: 'warn' }, async (request) => {
    const query = parse(z.object({ host: z.string().max(63), since: z.string().max(128).optional(), wait: z.coerce.number().min(0).max(30).default(0) }), request.query);
    const agent = agentOf(request, query.host);
    return pollFirecallTrust(context, agent.host, agent.env, query.since, query.wait * 1000, abortOnClose(request, context.shutdown));
  });
  app.post(`${p}${api.AGENT_ROUTES.firecall}`, { ...access('agent'), logLevel: 'warn' }, async (request) => {
    const body = parse(api.firecallAgentReport, request.body);
    const agent = agentOf(request, body.host);
    await recordFirecallReport(context, agent.host, agent.env, body);
    return { ok: true };
  });
}
