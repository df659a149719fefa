/**
 * The fire-call routes: people open, close, list, show and reconcile fire
 * calls and read an environment's CA key; agents long-poll the sshd trust
 * of their host and report what they installed and recorded.
 */
import type { RouteHandlers } from '../http/route-binder.js';
import { abortOnClose, agentOf, userOf } from '../http/route-helpers.js';
import { approveFirecall, closeFirecall, firecallCaPublicKey, listFirecalls, openFirecall, pollFirecallTrust, reconcileFirecall, recordFirecallReport, showFirecall, type FirecallContext } from './firecall-service.js';

/** The handlers of the fire-call routes. */
export function firecallRouteHandlers(context: FirecallContext): RouteHandlers {
  return {
    firecallCa: async ({ params }) => firecallCaPublicKey(context, params.env),
    openFirecall: async ({ body }, request) => openFirecall(context, userOf(request), body),
    listFirecalls: async ({ query }) => ({ firecalls: await listFirecalls(context, query.env, query.limit) }),
    showFirecall: async ({ params }) => showFirecall(context, params.id),
    approveFirecall: async ({ params }, request) => approveFirecall(context, userOf(request), params.id),
    closeFirecall: async ({ params, body }, request) => closeFirecall(context, userOf(request), params.id, body.note),
    reconcileFirecall: async ({ params, body }, request) => reconcileFirecall(context, userOf(request), params.id, body),
    agentFirecallTrust: async ({ query }, request) => {
      const agent = agentOf(request, query.host);
      return pollFirecallTrust(context, agent.host, agent.env, query.since, query.wait * 1000, abortOnClose(request, context.shutdown));
    },
    agentFirecallReport: async ({ body }, request) => {
      const agent = agentOf(request, body.host);
      await recordFirecallReport(context, agent.host, agent.env, body);
      return { ok: true };
    },
  };
}
