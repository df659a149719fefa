/**
 * A typed HTTP client of the Lockstep API, used by the CLI (and the demo).
 * Error responses become LockstepErrors with the server's kind and message.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { z } from 'zod';
import * as api from '../api/schemas.js';
import { LockstepError, type ErrorKind } from '../core/errors.js';
import type { Manifest } from '../core/manifest.js';

const KINDS = new Set<string>(['bad-input', 'not-found', 'refused', 'conflict', 'failed', 'unauthorized', 'forbidden', 'unavailable']);

export interface ClientOptions {
  readonly server: string;
  readonly token: string;
}

/** The typed client. */
export class LockstepClient {
  private readonly base: string;

  constructor(private readonly options: ClientOptions) {
    this.base = options.server.replace(/\/+$/, '') + api.API_PREFIX;
  }

  private async request<S extends z.ZodType>(method: string, path: string, schema: S, body?: unknown, signal?: AbortSignal): Promise<z.output<S>> {
    const init: RequestInit = { method, headers: { authorization: `Bearer ${this.options.token}` } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
    }
    if (signal) init.signal = signal;
    const response = await this.fetch(path, init);
    return this.decode(response, schema);
  }

  private async fetch(path: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(this.base + path, init);
    } catch (error) {
      if ((error as Error).name === 'AbortError') throw error;
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
      throw new LockstepError('unavailable', `cannot reach the Lockstep server at ${this.options.server} (${cause}); is it running? set LOCKSTEP_SERVER`);
    }
  }

  private async decode<S extends z.ZodType>(response: Response, schema: S): Promise<z.output<S>> {
    const text = await response.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw new LockstepError('unavailable', `the server answered ${response.status} with a body that is not JSON`);
    }
    if (!response.ok) {
      const parsed = api.errorBody.safeParse(json);
      const kind = parsed.success && KINDS.has(parsed.data.error.kind) ? (parsed.data.error.kind as ErrorKind) : 'unavailable';
      const message = parsed.success ? parsed.data.error.message : `the server answered ${response.status}`;
      throw new LockstepError(kind, message, parsed.success ? parsed.data.error.details : undefined);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw new LockstepError('unavailable', `the server's answer to ${response.url} does not match the protocol: ${parsed.error.issues[0]?.message ?? ''}`);
    return parsed.data;
  }

  applyConfig(yaml: string, file: string) {
    return this.request('POST', '/config', api.applyConfigResponse, { yaml, file });
  }
  missingBlobs(hashes: readonly string[]) {
    return this.request('POST', '/blobs/missing', api.missingBlobsResponse, { hashes });
  }
  /** Uploads one file as a blob; the server verifies its hash. */
  async uploadBlob(hash: string, file: string): Promise<void> {
    const response = await this.fetch(`/blobs/${hash}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${this.options.token}`, 'content-type': 'application/octet-stream' },
      body: Readable.toWeb(createReadStream(file)) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    await this.decode(response, api.blobPutResponse);
  }
  createRelease(request: api.CreateReleaseRequest) {
    return this.request('POST', '/releases', api.createReleaseResponse, request);
  }
  listReleases(limit = 100) {
    return this.request('GET', `/releases?limit=${limit}`, api.releaseListResponse);
  }
  showRelease(ref: string) {
    return this.request('GET', `/releases/${encodeURIComponent(ref)}`, api.releaseShowResponse) as Promise<{ release: api.ReleaseSummary; manifest: Manifest }>;
  }
  addHost(name: string, env: string) {
    return this.request('POST', '/hosts', api.addHostResponse, { name, env });
  }
  listHosts() {
    return this.request('GET', '/hosts', api.hostListResponse);
  }
  plan(release: string, env: string) {
    return this.request('POST', '/plan', api.planResponse, { release, env });
  }
  deploy(release: string, env: string, reason?: string) {
    return this.request('POST', '/deployments', api.deploymentView, { release, env, ...(reason !== undefined ? { reason } : {}) });
  }
  rollback(env: string, to?: string, reason?: string) {
    return this.request('POST', `/environments/${encodeURIComponent(env)}/rollback`, api.deploymentView, {
      ...(to !== undefined ? { to } : {}),
      ...(reason !== undefined ? { reason } : {}),
    });
  }
  /** The deployment; with `since`, waits up to `waitSeconds` for a revision newer than it. */
  deployment(id: number, since?: number, waitSeconds = 25, signal?: AbortSignal) {
    const query = since === undefined ? '' : `?since=${since}&wait=${waitSeconds}`;
    return this.request('GET', `/deployments/${id}${query}`, api.deploymentView, undefined, signal);
  }
  /** Long-polls a deployment until it is no longer running; calls `onChange` with every new revision. */
  async waitForDeployment(first: api.DeploymentView, onChange?: (view: api.DeploymentView) => void): Promise<api.DeploymentView> {
    let view = first;
    while (view.state === 'running') {
      view = await this.deployment(view.id, view.revision, 25);
      onChange?.(view);
    }
    return view;
  }
  status(env?: string) {
    return this.request('GET', `/status${env ? `?env=${encodeURIComponent(env)}` : ''}`, api.statusResponse);
  }
  history(env?: string, limit = 50) {
    return this.request('GET', `/history?limit=${limit}${env ? `&env=${encodeURIComponent(env)}` : ''}`, api.historyResponse);
  }
  audit(after = 0, limit = 1000) {
    return this.request('GET', `/audit?after=${after}&limit=${limit}`, api.auditResponse);
  }
}
