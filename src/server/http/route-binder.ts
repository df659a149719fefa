/**
 * Binds handlers to the routes of the wire contract (src/api/routes.ts):
 * each route is registered with the method, path, access level and body
 * limit the table gives it, its parameters, query and body are validated with
 * its schemas and its environment scope checked before the handler runs, and
 * its success status comes from the table. Handlers live in their service's route module and only say what to do.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { API_PREFIX } from '../../api/paths.js';
import { ROUTE_SCHEMAS, type RouteOutput, type RouteSchemaSet } from '../../api/route-schemas.js';
import { ROUTE_NAMES, ROUTES, type RouteName, type RouteSpec } from '../../api/routes.js';
import { requireEnvironmentScope } from '../deployments/deployment-service.js';
import { bodyTooLarge, cappedBody, parse, userOf } from './route-helpers.js';

/** A route's validated request: params, query and JSON body parsed by its schemas, or the raw stream of a `stream` body. */
export interface RouteRequest<N extends RouteName> {
  readonly params: RouteOutput<N, 'params'>;
  readonly query: RouteOutput<N, 'query'>;
  readonly body: (typeof ROUTES)[N] extends { readonly request: 'stream' } ? Readable | undefined : RouteOutput<N, 'body'>;
}

/**
 * Handles one route: returns the response body (sent with the table's status),
 * or the reply itself when it sent the answer (streams, gzip).
 */
export type RouteHandler<N extends RouteName> = (input: RouteRequest<N>, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/** Handlers of some routes, by route name. */
export type RouteHandlers = { readonly [N in RouteName]?: RouteHandler<N> };

/**
 * Registers every route of the table with its handler. Fails (before the
 * server listens) when a route has no handler, a handler names no route, or
 * two modules handle the same route.
 */
export function bindRoutes(app: FastifyInstance, groups: readonly RouteHandlers[]): void {
  const handlers = new Map<string, RouteHandler<RouteName>>();
  for (const group of groups) {
    for (const [name, handler] of Object.entries(group) as [string, RouteHandler<RouteName>][]) {
      if (!(name in ROUTES)) throw new Error(`a handler is bound to route "${name}", which is not in the route table (src/api/routes.ts)`);
      if (handlers.has(name)) throw new Error(`route "${name}" has two handlers`);
      handlers.set(name, handler);
    }
  }
  const unbound = ROUTE_NAMES.filter((name) => !handlers.has(name));
  if (unbound.length > 0) throw new Error(`routes without a handler: ${unbound.map((name) => `${name} (${ROUTES[name].method} ${ROUTES[name].path})`).join(', ')}`);

  for (const name of ROUTE_NAMES) {
    const spec: RouteSpec = ROUTES[name];
    const schemas: RouteSchemaSet = ROUTE_SCHEMAS[name];
    const handler = handlers.get(name)!;
    app.route({
      method: spec.method,
      url: `${API_PREFIX}${spec.path}`,
      config: { route: name },
      // Agents poll and fetch blobs all day; their successful requests are not worth a log line each.
      ...(spec.access === 'agent' ? { logLevel: 'warn' as const } : {}),
      ...(spec.maxBytes === undefined ? {} : { bodyLimit: spec.maxBytes }),
      handler: async (request, reply) => {
        // A streamed body is never buffered, so Fastify's bodyLimit does not see it: refuse it from its Content-Length, else cap it as it flows.
        let stream = spec.request === 'stream' ? (request.body as Readable | undefined) : undefined;
        if (stream !== undefined && typeof stream.pipe === 'function' && spec.maxBytes !== undefined) {
          const length = Number(request.headers['content-length']);
          if (length > spec.maxBytes) throw bodyTooLarge(spec.maxBytes, length);
          stream = stream.pipe(cappedBody(spec.maxBytes));
        }
        const input: { readonly params: unknown; readonly query: unknown; readonly body: unknown } = {
          params: schemas.params ? parse(schemas.params, request.params) : undefined,
          query: schemas.query ? parse(schemas.query, request.query) : undefined,
          body:
            spec.request === 'stream' ? stream
            : schemas.body ? parse(schemas.body, spec.request === 'optional-json' ? (request.body ?? {}) : request.body)
            : undefined,
        };
        // A scope the request names itself is checked here; one reached through a deployment, host or fire call by the service that looks it up.
        if (spec.scope === 'body.env') requireEnvironmentScope(userOf(request), (input.body as { env: string }).env);
        if (spec.scope === 'params.env') requireEnvironmentScope(userOf(request), (input.params as { env: string }).env);
        const result = await handler(input as RouteRequest<RouteName>, request, reply);
        if (result === reply) return reply;
        return reply.status(spec.status ?? 200).send(result);
      },
    });
  }
}
