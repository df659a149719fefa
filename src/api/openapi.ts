/**
 * The OpenAPI 3.1 document of the API, generated from the route table and
 * its schemas (JSON Schema 2020-12 through zod's toJSONSchema). The server
 * serves it at /api/v1/openapi.json; docs/openapi.json is the checked-in copy
 * (`npm run openapi`), and a test fails when the two differ.
 */
import { z } from 'zod';
import { HTTP_STATUS } from '../core/errors.js';
import { API_PREFIX } from './paths.js';
import { ROUTE_SCHEMAS, type RouteSchemaSet } from './route-schemas.js';
import { JSON_BODY_MAX_BYTES, ROUTE_NAMES, ROUTES, type RouteSpec } from './routes.js';
import * as api from './schemas.js';

type JsonSchema = Record<string, unknown>;

/** Schemas that many routes share, named once under components.schemas instead of repeated inline. */
const NAMED: Readonly<Record<string, z.ZodType>> = {
  DeploymentView: api.deploymentView,
  HostView: api.hostView,
  ReleaseSummary: api.releaseSummary,
  WireEntry: api.wireEntry,
  FirecallView: api.firecallView,
  FirecallSummary: api.firecallSummary,
  CommandView: api.commandView,
  DriftItemView: api.driftItemView,
  DriftEntryAttrs: api.driftEntryAttrs,
  AuditEventView: api.auditEventView,
  AgentTask: api.agentTask,
  AgentCommand: api.agentCommand,
  ManifestDelta: api.manifestDelta,
};

/**
 * Turns schemas into JSON Schema and collects the named ones they use as
 * components; a named schema whose request form differs from its response
 * form (defaults make fields optional) gets a second component, `…Input`.
 */
class SchemaCollector {
  readonly components: Record<string, JsonSchema> = {};
  /** Each component as first converted (its references still local), to tell a differing form. */
  private readonly raw = new Map<string, string>();
  private readonly registry = z.registry<{ id: string }>();

  constructor() {
    for (const [id, schema] of Object.entries(NAMED)) this.registry.add(schema, { id });
  }

  /** A schema as JSON Schema, as a request (`input`: defaults optional) or a response (`output`) carries it. */
  convert(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
    const { $schema: _dialect, $defs: defs, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any', metadata: this.registry }) as JsonSchema & { $defs?: Record<string, JsonSchema> };
    const names = new Map<string, string>();
    const bodies = new Map<string, string>();
    for (const [id, def] of Object.entries(defs ?? {})) {
      const { id: _id, ...body } = def;
      const text = JSON.stringify(body);
      const seen = this.raw.get(id);
      const name = seen === undefined || seen === text ? id : `${id}Input`;
      if (!this.raw.has(name)) this.raw.set(name, text);
      names.set(id, name);
      bodies.set(name, text);
    }
    const resolve = (text: string): JsonSchema =>
      JSON.parse(text.replace(/"#\/\$defs\/([A-Za-z]+)"/g, (_match, id: string) => JSON.stringify(`#/components/schemas/${names.get(id) ?? id}`))) as JsonSchema;
    for (const [name, text] of bodies) this.components[name] ??= resolve(text);
    return resolve(JSON.stringify(rest));
  }
}

/** The parameters of one location (path or query) from an object schema's properties. */
function parameters(schemas: SchemaCollector, schema: z.ZodType | undefined, location: 'path' | 'query'): JsonSchema[] {
  if (schema === undefined) return [];
  const object = schemas.convert(schema, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(object.properties ?? {}).map(([name, property]) => ({
    name,
    in: location,
    required: location === 'path' || (object.required ?? []).includes(name),
    schema: property,
  }));
}

const ERROR_BODY: JsonSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['kind', 'message', 'exitCode'],
      properties: { kind: { type: 'string', enum: [...Object.keys(HTTP_STATUS), 'internal'] }, message: { type: 'string' }, exitCode: { type: 'integer', description: 'what `lockstep` exits with for this error (docs/cli.md)' }, details: {} },
    },
  },
};

function operation(collector: SchemaCollector, name: string, spec: RouteSpec, schemas: RouteSchemaSet): JsonSchema {
  const open = spec.access === 'public' || spec.access === 'enroll';
  const requestBody =
    spec.request === 'stream' ? { required: true, content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } } }
    : schemas.body ? { required: spec.request !== 'optional-json', content: { 'application/json': { schema: collector.convert(schemas.body, 'input') } } }
    : undefined;
  const content =
    spec.response === 'stream' ? { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } }
    : spec.response === 'ndjson' ? { 'application/x-ndjson': { schema: { type: 'string' } } }
    : { 'application/json': { schema: schemas.response ? collector.convert(schemas.response, 'output') : {} } };
  return {
    operationId: name,
    summary: spec.summary,
    ...(open ? { security: [] } : {}),
    'x-lockstep-access': spec.access,
    ...(spec.scope ? { 'x-lockstep-scope': spec.scope } : {}),
    ...(spec.longPoll ? { 'x-lockstep-long-poll': true } : {}),
    // Every body has a limit: the route's own, or the default for small JSON bodies.
    ...(requestBody ? { 'x-lockstep-max-bytes': spec.maxBytes ?? JSON_BODY_MAX_BYTES } : {}),
    parameters: [...parameters(collector, schemas.params, 'path'), ...parameters(collector, schemas.query, 'query')],
    ...(requestBody ? { requestBody } : {}),
    responses: {
      [String(spec.status ?? 200)]: { description: 'success', content },
      default: { description: 'an error: its kind says what went wrong, its message how to fix it', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
    },
  };
}

/** Builds the OpenAPI 3.1 document of every route in the table. */
export function openApiDocument(): JsonSchema {
  const collector = new SchemaCollector();
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const name of ROUTE_NAMES) {
    const spec: RouteSpec = ROUTES[name];
    const path = spec.path.replace(/:([A-Za-z]+)/g, '{$1}');
    (paths[path] ??= {})[spec.method.toLowerCase()] = operation(collector, name, spec, ROUTE_SCHEMAS[name]);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Lockstep API',
      version: API_PREFIX.replace('/api/', ''),
      description: 'Generated from src/api/routes.ts and src/api/route-schemas.ts; regenerate docs/openapi.json with `npm run openapi`.',
    },
    servers: [{ url: API_PREFIX }],
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A user token (LOCKSTEP_TOKEN) or an agent credential' } },
      schemas: { Error: ERROR_BODY, ...Object.fromEntries(Object.entries(collector.components).sort(([a], [b]) => a.localeCompare(b))) },
    },
  };
}

/** The document as docs/openapi.json holds it. */
export function openApiText(): string {
  return `${JSON.stringify(openApiDocument(), null, 2)}\n`;
}
