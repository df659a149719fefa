/**
 * A typed HTTP client of the Lockstep API, used by the CLI (and the demo).
 * Error responses become LockstepErrors with the server's kind and message.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type * as api from '../api/schemas.js';
import { API_PREFIX } from '../api/paths.js';
import { LockstepError, type ErrorKind } from '../core/errors.js';

const KINDS = new Set<string>(['bad-input', 'not-found', 'refused', 'conflict', 'failed', 'unauthorized', 'forbidden', 'rate-limited', 'unavailable']);

export interface ClientOptions {
  readonly server: string;
  readonly token: string;
}

/** The typed client. */
export class LockstepClient {
  private readonly base: string;

  constructor(private readonly options: ClientOptions) {
    this.base = options.server.replace(/\/+$/, '') + API_PREFIX;
  }

  private async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const init: RequestInit = { method, headers: { authorization: `Bearer ${this.options.token}` } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
    }
    if (signal) init.signal = signal;
    const response = await this.fetch(path, init);
    return this.decode<T>(response);
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

  // Responses are not schema-checked here: the CLI talks to its own server,
  // and loading the schema library would add ~150 ms to every command (measured).
  private async decode<T>(response: Response): Promise<T> {
    const text = await response.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw new LockstepError('unavailable', `the server answered ${response.status} with a body that is not JSON`);
    }
    if (!response.ok) {
      const error = (json as { error?: { kind?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
      const kind = typeof error?.kind === 'string' && KINDS.has(error.kind) ? (error.kind as ErrorKind) : 'unavailable';
      const message = typeof error?.message === 'string' ? error.message : `the server answered ${response.status}`;
      throw new LockstepError(kind, message, error?.details);
    }
    if (json === null || typeof json !== 'object') throw new LockstepError('unavailable', `the server's answer to ${response.url} is not a JSON object`);
    return json as T;
  }

  applyConfig(yaml: string, file: string) {
    return this.request<api.ApplyConfigResponse>('POST', '/config', { yaml, file });
  }
  missingBlobs(hashes: readonly string[]) {
    return this.request<api.MissingBlobsResponse>('POST', '/blobs/missing', { hashes });
  }
  /** Uploads one file as a blob; the server verifies its hash. */
  async uploadBlob(hash: string, file: string): Promise<void> {
    const response = await this.fetch(`/blobs/${hash}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${this.options.token}`, 'content-type': 'application/octet-stream' },
      body: Readable.toWeb(createReadStream(file)) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    await this.decode<api.BlobPutResponse>(response);
  }
  createRelease(request: api.CreateReleaseRequest) {
    return this.request<api.CreateReleaseResponse>('POST', '/releases', request);
  }
  listReleases(limit = 100) {
    return this.request<api.ReleaseListResponse>('GET', `/releases?limit=${limit}`);
  }
  showRelease(ref: string) {
    return this.request<api.ReleaseShowResponse>('GET', `/releases/${encodeURIComponent(ref)}`);
  }
  addHost(name: string, env: string) {
    return this.request<api.AddHostResponse>('POST', '/hosts', { name, env });
  }
  listHosts() {
    return this.request<api.HostListResponse>('GET', '/hosts');
  }
  plan(release: string, env: string) {
    return this.request<api.PlanResponse>('POST', '/plan', { release, env });
  }
  deploy(release: string, env: string, reason?: string, override?: boolean) {
    return this.request<api.DeploymentView>('POST', '/deployments', { release, env, ...(reason !== undefined ? { reason } : {}), ...(override ? { override: true } : {}) });
  }
  approve(id: number, comment?: string) {
    return this.request<api.DeploymentView>('POST', `/deployments/${id}/approve`, comment !== undefined ? { comment } : {});
  }
  rejectDeployment(id: number, reason: string) {
    return this.request<api.DeploymentView>('POST', `/deployments/${id}/reject`, { reason });
  }
  createToken(name: string, role: string, envs: readonly string[]) {
    return this.request<api.CreateTokenResponse>('POST', '/tokens', { name, role, ...(envs.length ? { envs } : {}) });
  }
  listTokens() {
    return this.request<api.TokenListResponse>('GET', '/tokens');
  }
  revokeToken(name: string) {
    return this.request<{ ok: true }>('DELETE', `/tokens/${encodeURIComponent(name)}`);
  }
  changes(env: string | undefined, since: string) {
    return this.request<api.ChangesResponse>('GET', `/changes?since=${encodeURIComponent(since)}${env ? `&env=${encodeURIComponent(env)}` : ''}`);
  }
  rollback(env: string, to?: string, reason?: string) {
    return this.request<api.DeploymentView>('POST', `/environments/${encodeURIComponent(env)}/rollback`, {
      ...(to !== undefined ? { to } : {}),
      ...(reason !== undefined ? { reason } : {}),
    });
  }
  /** The deployment; with `since`, waits up to `waitSeconds` for a revision newer than it. */
  deployment(id: number, since?: number, waitSeconds = 25, signal?: AbortSignal) {
    const query = since === undefined ? '' : `?since=${since}&wait=${waitSeconds}`;
    return this.request<api.DeploymentView>('GET', `/deployments/${id}${query}`, undefined, signal);
  }
  /** Long-polls a deployment until it is no longer running; calls `onChange` with every new revision. */
  async waitForDeployment(first: api.DeploymentView, onChange?: (view: api.DeploymentView) => void): Promise<api.DeploymentView> {
    let view = first;
    while (view.state === 'running' || view.state === 'rolling_back' || view.state === 'awaiting_approval') {
      view = await this.deployment(view.id, view.revision, 25);
      onChange?.(view);
    }
    return view;
  }
  logs(id: number, host?: string) {
    return this.request<api.LogsResponse>('GET', `/deployments/${id}/logs${host ? `?host=${encodeURIComponent(host)}` : ''}`);
  }
  rejectRelease(ref: string, env: string, reason: string) {
    return this.request<{ ok: true }>('POST', `/releases/${encodeURIComponent(ref)}/reject`, { env, reason });
  }
  unrejectRelease(ref: string, env: string, reason?: string) {
    return this.request<{ ok: true }>('POST', `/releases/${encodeURIComponent(ref)}/unreject`, { env, ...(reason !== undefined ? { reason } : {}) });
  }
  status(env?: string) {
    return this.request<api.StatusResponse>('GET', `/status${env ? `?env=${encodeURIComponent(env)}` : ''}`);
  }
  history(env?: string, limit = 50) {
    return this.request<api.HistoryResponse>('GET', `/history?limit=${limit}${env ? `&env=${encodeURIComponent(env)}` : ''}`);
  }
  audit(after = 0, limit = 1000) {
    return this.request<api.AuditResponse>('GET', `/audit?after=${after}&limit=${limit}`);
  }
  /** The server's checkpoint verification key (one line, for --pubkey). */
  auditPubkey() {
    return this.request<{ publicKey: string; keyId: string }>('GET', '/audit/pubkey');
  }
  /** The audit export as a stream of JSON lines; `since` is an ISO time. */
  async auditExport(since?: string): Promise<ReadableStream<Uint8Array>> {
    const response = await this.fetch(`/audit/export${since !== undefined ? `?since=${encodeURIComponent(since)}` : ''}`, { headers: { authorization: `Bearer ${this.options.token}` } });
    if (!response.ok || !response.body) return this.decode<never>(response);
    return response.body;
  }
  /** The server's anchor file (JSON lines of checkpoints). */
  async auditAnchor(): Promise<string> {
    const response = await this.fetch('/audit/anchor', { headers: { authorization: `Bearer ${this.options.token}` } });
    if (!response.ok) return this.decode<never>(response);
    return response.text();
  }
}
