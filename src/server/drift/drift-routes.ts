/**
 * The drift routes: what agents send (settings, drift reports, command
 * results) and what people ask (list,
 * scan, revert, accept, adopt, follow a command). Uploaded drifted files go
 * through the blob intake (releases/blob-routes.ts), which holds their quota.
 */
import { recordCommandResult, waitForCommand } from './agent-command-service.js';
import { currentConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';
import { adoptDrift } from './drift-adopt.js';
import { captureOutcome, requestCapture } from '../releases/release-capture.js';
import { recordDriftReport } from './drift-report-service.js';
import { listDrift, requestAccept, requestRevert, requestScan } from './drift-service.js';
import { hostSettingsOf } from '../hosts/host-settings.js';
import type { RouteHandlers } from '../http/route-binder.js';
import { abortOnClose, agentOf, userOf } from '../http/route-helpers.js';

/** The handlers of the drift routes. */
export function driftRouteHandlers(context: ServerContext): RouteHandlers {
  return {
    // ---- agents ----
    agentSettings: async ({ query }, request) => {
      const agent = agentOf(request, query.host);
      return hostSettingsOf(await currentConfig(context.store.read), agent.env);
    },
    agentDrift: async ({ body }, request) => {
      const agent = agentOf(request, body.host);
      await recordDriftReport(context, agent.host, agent.env, body);
      return { ok: true };
    },
    agentCommandResult: async ({ params, body }, request) => {
      const agent = agentOf(request, body.host);
      // A capture's answer becomes a release first (its content was uploaded before it); the outcome is what is stored.
      await recordCommandResult(context, agent.host, params.id, await captureOutcome(context, agent.host, params.id, body));
      return { ok: true };
    },

    // ---- people ----
    driftList: async ({ query }) => listDrift(context, query.target, query.all === '1' || query.all === 'true'),
    driftScan: async ({ body }, request) => requestScan(context, userOf(request), body.host, body.full),
    driftRevert: async ({ body }, request) => requestRevert(context, userOf(request), body.target, body.paths ?? null, body.reason?.trim() || null),
    driftAccept: async ({ body }, request) => requestAccept(context, userOf(request), body.host, body.paths, body.reason),
    driftAdopt: async ({ body }, request) => adoptDrift(context, userOf(request), body.host, body.version, body.reason),
    releaseCapture: async ({ body }, request) => requestCapture(context, userOf(request), body.host, body.version, body.packages, body.paths),
    command: async ({ params, query }, request) => waitForCommand(context, params.id, query.wait * 1000, abortOnClose(request, context.shutdown)),
  };
}

