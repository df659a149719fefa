/**
 * The schemas of every route of the contract (routes.ts), joined by route
 * name: path parameters, query, request body and response body. The server
 * validates every request with them, the agent every response, and the
 * OpenAPI document is generated from them. A separate module from routes.ts
 * so that the CLI, which does not validate, never loads zod.
 */
import { z } from 'zod';
import * as api from './schemas.js';
import { packageNameOf } from '../core/drift-items.js';
import type { RouteName } from './routes.js';

/** What is validated of one route; absent: the route has none of it (or it is a stream). */
export interface RouteSchemaSet {
  readonly params?: z.ZodType;
  readonly query?: z.ZodType;
  readonly body?: z.ZodType;
  readonly response?: z.ZodType;
}

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a SHA-256 hex digest');
const releaseId = z.string().regex(/^[0-9a-f]{64}$/, 'expected a release id');
const idParam = z.object({ id: z.coerce.number().int().positive().max(api.MAX_STORED_INT) });
const hashParam = z.object({ hash: sha256 });
const refParam = z.object({ ref: z.string().min(1).max(200) });
const envParam = z.object({ env: z.string().max(32) });
/** The name is checked by the service, which says what a secret name may be. */
const secretParams = envParam.extend({ name: z.string().max(128) });
const hostQuery = z.object({ host: z.string().max(63) });
const ok = z.object({ ok: z.literal(true) });
const reason = z.string().trim().min(1, 'a reason is required').max(2000);
const absolutePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((path) => (path.startsWith('/') && !path.split('/').includes('..') && !path.includes('\0')) || packageNameOf(path) !== undefined, 'expected an absolute path without ".." segments, or package:NAME');
/** Seconds a long poll may wait on the server. */
const waitSeconds = (fallback: number) => z.coerce.number().min(0).max(30).default(fallback);
const limit = (fallback: number, max: number) => z.coerce.number().int().min(1).max(max).default(fallback);

/** Every route's schemas, by route name (completeness is checked by the type). */
export const ROUTE_SCHEMAS = {
  health: { response: ok },
  openapi: { response: z.record(z.string(), z.unknown()) },
  serverCa: { response: api.serverCaResponse },

  applyConfig: { body: api.applyConfigRequest, response: api.applyConfigResponse },
  getConfig: { response: z.object({ version: z.number(), yaml: z.string(), appliedBy: z.string(), appliedAt: z.string() }) },

  missingBlobs: { body: api.missingBlobsRequest, response: api.missingBlobsResponse },
  uploadBlob: { params: hashParam, response: api.blobPutResponse },
  openUpload: { body: api.openUploadRequest, response: api.uploadSessionView },
  uploadBatch: { params: idParam, response: api.uploadBatchResponse },
  gc: { body: api.gcRequest, response: api.gcResponse },
  createRelease: { body: api.createReleaseRequest, response: api.createReleaseResponse },
  listReleases: { query: z.object({ limit: limit(100, 1000) }), response: api.releaseListResponse },
  showRelease: { params: refParam, response: api.releaseShowResponse },
  rejectRelease: { params: refParam, body: z.strictObject({ env: z.string().max(32), reason: z.string().min(1, 'a reason is required').max(2000) }), response: ok },
  unrejectRelease: { params: refParam, body: z.strictObject({ env: z.string().max(32), reason: z.string().max(2000).optional() }), response: ok },

  addHost: { body: api.addHostRequest, response: api.addHostResponse },
  listHosts: { response: api.hostListResponse },

  plan: { body: api.deployRequest, response: api.planResponse },
  deploy: { body: api.deployRequest, response: api.deploymentView },
  deployment: { params: idParam, query: z.object({ since: z.coerce.number().int().min(0).max(api.MAX_STORED_INT).optional(), wait: waitSeconds(0) }), response: api.deploymentView },
  deploymentLogs: { params: idParam, query: z.object({ host: z.string().max(63).optional() }), response: api.logsResponse },
  approveDeployment: { params: idParam, body: z.strictObject({ comment: z.string().max(2000).optional() }), response: api.deploymentView },
  rejectDeployment: { params: idParam, body: z.strictObject({ reason: z.string().min(1, 'a reason is required').max(2000) }), response: api.deploymentView },
  rollback: { params: envParam, body: api.rollbackRequest, response: api.deploymentView },
  status: { query: z.object({ env: z.string().max(32).optional() }), response: api.statusResponse },
  history: { query: z.object({ env: z.string().max(32).optional(), limit: limit(50, 1000) }), response: api.historyResponse },
  changes: { query: z.object({ env: z.string().max(32).optional(), since: z.string().max(40).default('24h') }), response: api.changesResponse },

  createToken: { body: api.createTokenRequest, response: api.createTokenResponse },
  listTokens: { response: api.tokenListResponse },
  revokeToken: { params: z.object({ name: z.string().max(64) }), response: ok },
  audit: { query: z.object({ after: z.coerce.number().int().min(0).default(0), limit: limit(1000, 10_000) }), response: api.auditResponse },
  auditPubkey: { response: z.object({ publicKey: z.string(), keyId: z.string() }) },
  auditAnchor: {},
  auditExport: { query: z.object({ since: z.string().optional() }) },

  driftList: { query: z.object({ target: z.string().min(1).max(63).optional(), all: z.enum(['0', '1', 'true', 'false']).optional() }), response: api.driftListResponse },
  driftScan: { body: z.strictObject({ host: z.string().min(1).max(63), full: z.boolean().default(false) }), response: api.commandView },
  driftRevert: {
    body: z.strictObject({ target: z.string().min(1).max(63), paths: z.array(absolutePath).min(1).max(1000).optional(), reason: z.string().max(2000).optional() }),
    response: api.driftRevertResponse,
  },
  driftAccept: { body: z.strictObject({ host: z.string().min(1).max(63), paths: z.array(absolutePath).min(1).max(1000), reason }), response: api.commandView },
  driftAdopt: { body: z.strictObject({ host: z.string().min(1).max(63), version: api.createReleaseRequest.shape.version, reason }), response: api.driftAdoptResponse },
  releaseCapture: {
    body: z.strictObject({ host: z.string().min(1).max(63), version: api.createReleaseRequest.shape.version, packages: z.boolean().default(false), paths: z.array(absolutePath).max(1000).default([]) }),
    response: api.commandView,
  },
  command: { params: idParam, query: z.object({ wait: waitSeconds(0) }), response: api.commandView },

  parity: { query: z.object({ a: z.string().min(1).max(32), b: z.string().min(1).max(32) }), response: api.parityResponse },

  listSecrets: { params: envParam, response: api.secretListResponse },
  setSecret: { params: secretParams, body: api.setSecretRequest, response: api.secretView },
  removeSecret: { params: secretParams, response: api.removeSecretResponse },

  firecallCa: { params: envParam, response: z.object({ env: z.string(), publicKey: z.string() }) },
  openFirecall: { body: api.openFirecallRequest, response: api.openFirecallResponse },
  listFirecalls: { query: z.object({ env: z.string().max(32).optional(), limit: limit(100, 1000) }), response: api.firecallListResponse },
  showFirecall: { params: idParam, response: api.firecallShowResponse },
  approveFirecall: { params: idParam, body: z.strictObject({}), response: api.openFirecallResponse },
  closeFirecall: { params: idParam, body: api.closeFirecallRequest, response: api.closeFirecallResponse },
  reconcileFirecall: { params: idParam, body: api.reconcileFirecallRequest, response: z.object({ firecall: api.firecallView, outcome: z.string() }) },

  agentEnroll: { body: api.enrollRequest, response: api.enrollResponse },
  agentWork: { query: hostQuery.extend({ wait: waitSeconds(25), started: z.enum(['1']).optional() }), response: api.workResponse },
  agentRelease: { params: z.object({ id: releaseId }), query: hostQuery.extend({ base: releaseId.optional() }), response: api.agentReleaseAnswer },
  agentBlob: { params: hashParam, query: hostQuery },
  agentBlobs: { body: api.agentBlobsRequest },
  agentBlobUpload: { params: hashParam, query: hostQuery, response: api.blobPutResponse },
  agentReport: { body: api.agentReport, response: api.agentReportResponse },
  agentHeartbeat: { body: api.heartbeatRequest, response: ok },
  agentSettings: { query: hostQuery, response: api.hostSettings },
  agentDrift: { body: api.driftReport, response: ok },
  agentCommandResult: { params: idParam, body: api.commandResult, response: ok },
  agentFacts: { body: api.factsReport, response: ok },
  agentFirecallTrust: { query: z.object({ host: z.string().max(63), since: z.string().max(128).optional(), wait: waitSeconds(0) }), response: api.firecallTrust },
  agentFirecallReport: { body: api.firecallAgentReport, response: ok },
} as const satisfies { readonly [N in RouteName]: RouteSchemaSet };

type Schemas = typeof ROUTE_SCHEMAS;
type Part = 'params' | 'query' | 'body' | 'response';
/** The parsed (output) type of one part of a route; undefined when the route has none. */
export type RouteOutput<N extends RouteName, P extends Part> = Schemas[N] extends { readonly [K in P]: infer S extends z.ZodType } ? z.output<S> : undefined;
/** What a caller sends (input type: defaults may be left out) for one part of a route. */
export type RouteInput<N extends RouteName, P extends Part> = Schemas[N] extends { readonly [K in P]: infer S extends z.ZodType } ? z.input<S> : undefined;
