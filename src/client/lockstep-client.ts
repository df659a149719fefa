/**
 * The CLI's client of the Lockstep API (also used by the demo): one method
 * per command's need, each a call of the route table through the shared
 * ApiClient over node:http. Error responses become LockstepErrors with the
 * server's kind and message.
 *
 * Responses are not schema-checked here: the CLI talks to its own server,
 * and loading the schema library would add ~150 ms to every command (measured).
 */
import { createReadStream } from 'node:fs';
import { ApiClient } from '../api/api-client.js';
import type { RouteInput } from '../api/route-schemas.js';
import type * as api from '../api/schemas.js';
import { HttpTransport } from '../api/http-transport.js';
import type { TlsTrust } from '../api/tls-trust.js';
import { IN_FLIGHT_DEPLOYMENT_STATES } from '../core/deployment-states.js';
import { longPoll } from '../core/long-poll.js';

export interface ClientOptions {
  readonly server: string;
  readonly token: string;
  /** How an https:// server's certificate is trusted (LOCKSTEP_CA, LOCKSTEP_CA_FINGERPRINT; default: the system's CAs). */
  readonly trust?: TlsTrust | undefined;
}

/** The typed client. */
export class LockstepClient {
  private readonly transport: HttpTransport;
  private readonly api: ApiClient;

  constructor(options: ClientOptions) {
    this.transport = new HttpTransport(options.server, { trust: options.trust });
    this.api = new ApiClient(this.transport, options.token);
  }

  /** Lets the process exit: closes idle keep-alive connections. */
  close(): void {
    this.transport.close();
  }

  applyConfig(yaml: string, file: string) {
    return this.api.call('applyConfig', { body: { yaml, file } });
  }
  missingBlobs(hashes: readonly string[]) {
    return this.api.call('missingBlobs', { body: { hashes: [...hashes] } });
  }
  /** Uploads one file as a blob; the server verifies its hash. */
  async uploadBlob(hash: string, file: string, size: number): Promise<void> {
    await this.api.call('uploadBlob', { params: { hash }, bytes: createReadStream(file), size });
  }
  /** Opens an upload session for the blobs of a release being created; the answer names the ones the server lacks. */
  openUpload(blobs: readonly { hash: string; size: number }[]) {
    return this.api.call('openUpload', { body: { blobs: [...blobs] } });
  }
  /** Sends one batch of framed blobs (content/blob-frames.ts) of `size` bytes into an open session. */
  uploadBatch(session: number, frames: AsyncIterable<Uint8Array>, size: number) {
    return this.api.call('uploadBatch', { params: { id: session }, bytes: frames, size });
  }
  /** Removes (or lists, with dryRun) blobs nothing references any more. */
  gc(dryRun: boolean) {
    return this.api.call('gc', { body: { dryRun } });
  }
  createRelease(request: api.CreateReleaseRequest) {
    return this.api.call('createRelease', { body: request });
  }
  listReleases(limit = 100) {
    return this.api.call('listReleases', { query: { limit } });
  }
  showRelease(ref: string) {
    return this.api.call('showRelease', { params: { ref } });
  }
  addHost(name: string, env: string) {
    return this.api.call('addHost', { body: { name, env } });
  }
  listHosts() {
    return this.api.call('listHosts');
  }
  plan(release: string, env: string) {
    return this.api.call('plan', { body: { release, env } });
  }
  deploy(release: string, env: string, reason?: string, override?: boolean) {
    return this.api.call('deploy', { body: { release, env, ...(reason !== undefined ? { reason } : {}), ...(override ? { override: true } : {}) } });
  }
  approve(id: number, comment?: string) {
    return this.api.call('approveDeployment', { params: { id }, body: comment !== undefined ? { comment } : {} });
  }
  rejectDeployment(id: number, reason: string) {
    return this.api.call('rejectDeployment', { params: { id }, body: { reason } });
  }
  /** `role` as the user typed it: the server checks it and names the roles there are. */
  createToken(name: string, role: string, envs: readonly string[]) {
    return this.api.call('createToken', { body: { name, role: role as RouteInput<'createToken', 'body'>['role'], ...(envs.length ? { envs: [...envs] } : {}) } });
  }
  listTokens() {
    return this.api.call('listTokens');
  }
  revokeToken(name: string) {
    return this.api.call('revokeToken', { params: { name } });
  }
  changes(env: string | undefined, since: string) {
    return this.api.call('changes', { query: { since, env } });
  }
  rollback(env: string, to?: string, reason?: string) {
    return this.api.call('rollback', { params: { env }, body: { ...(to !== undefined ? { to } : {}), ...(reason !== undefined ? { reason } : {}) } });
  }
  /** The deployment; with `since`, waits up to `waitSeconds` for a revision newer than it. */
  deployment(id: number, since?: number, waitSeconds = 25, signal?: AbortSignal) {
    return this.api.call('deployment', { params: { id }, query: since === undefined ? {} : { since, wait: waitSeconds }, ...(signal ? { signal } : {}) });
  }
  /** Long-polls a deployment until it is no longer running; calls `onChange` with every new revision. */
  async waitForDeployment(first: api.DeploymentView, onChange?: (view: api.DeploymentView) => void): Promise<api.DeploymentView> {
    let view = first;
    if (!IN_FLIGHT_DEPLOYMENT_STATES.includes(view.state)) return view;
    const finished = new AbortController();
    await longPoll({
      signal: finished.signal,
      // The server holds each request up to 25 s and answers at the next change.
      poll: () => this.deployment(view.id, view.revision, 25),
      handle: (next) => {
        view = next;
        onChange?.(next);
        if (!IN_FLIGHT_DEPLOYMENT_STATES.includes(next.state)) finished.abort();
      },
      // A failed request ends the wait with its error (exit 6 when the server is gone; `deploy --follow ID` reattaches).
      backoff: { attempts: 1, firstDelayMs: 0 },
    });
    return view;
  }
  logs(id: number, host?: string) {
    return this.api.call('deploymentLogs', { params: { id }, query: { host } });
  }
  rejectRelease(ref: string, env: string, reason: string) {
    return this.api.call('rejectRelease', { params: { ref }, body: { env, reason } });
  }
  unrejectRelease(ref: string, env: string, reason?: string) {
    return this.api.call('unrejectRelease', { params: { ref }, body: { env, ...(reason !== undefined ? { reason } : {}) } });
  }
  status(env?: string) {
    return this.api.call('status', { query: { env } });
  }
  history(env?: string, limit = 50) {
    return this.api.call('history', { query: { limit, env } });
  }
  audit(after = 0, limit = 1000) {
    return this.api.call('audit', { query: { after, limit } });
  }
  listSecrets(env: string) {
    return this.api.call('listSecrets', { params: { env } });
  }
  setSecret(env: string, name: string, value: string) {
    return this.api.call('setSecret', { params: { env, name }, body: { value } });
  }
  removeSecret(env: string, name: string) {
    return this.api.call('removeSecret', { params: { env, name } });
  }
  firecallCa(env: string) {
    return this.api.call('firecallCa', { params: { env } });
  }
  openFirecall(request: RouteInput<'openFirecall', 'body'>) {
    return this.api.call('openFirecall', { body: request });
  }
  listFirecalls(env?: string) {
    return this.api.call('listFirecalls', { query: { env } });
  }
  showFirecall(id: number) {
    return this.api.call('showFirecall', { params: { id } });
  }
  approveFirecall(id: number) {
    return this.api.call('approveFirecall', { params: { id }, body: {} });
  }
  closeFirecall(id: number, note?: string) {
    return this.api.call('closeFirecall', { params: { id }, body: note !== undefined ? { note } : {} });
  }
  reconcileFirecall(id: number, mode: 'revert' | 'adopt', version?: string) {
    return this.api.call('reconcileFirecall', { params: { id }, body: { mode, ...(version !== undefined ? { version } : {}) } });
  }
  /** The server's checkpoint verification key (one line, for --pubkey). */
  auditPubkey() {
    return this.api.call('auditPubkey');
  }
  /** The audit export as a stream of JSON lines; `since` is an ISO time. */
  auditExport(since?: string): Promise<AsyncIterable<Uint8Array>> {
    return this.api.open('auditExport', { query: { since } });
  }
  /** The server's anchor file (JSON lines of checkpoints). */
  async auditAnchor(): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.api.open('auditAnchor')) chunks.push(Buffer.from(chunk));
    return Buffer.concat(chunks).toString('utf8');
  }

  /** Drift items of every host, an environment or a host; open ones unless `all`. */
  drift(target: string | undefined, all: boolean) {
    return this.api.call('driftList', { query: { target, all: all ? '1' : undefined } });
  }
  driftScan(host: string, full: boolean) {
    return this.api.call('driftScan', { body: { host, full } });
  }
  driftRevert(target: string, paths: readonly string[] | undefined, reason: string | undefined) {
    return this.api.call('driftRevert', { body: { target, ...(paths?.length ? { paths: [...paths] } : {}), ...(reason !== undefined ? { reason } : {}) } });
  }
  driftAccept(host: string, paths: readonly string[], reason: string) {
    return this.api.call('driftAccept', { body: { host, paths: [...paths], reason } });
  }
  driftAdopt(host: string, version: string, reason: string) {
    return this.api.call('driftAdopt', { body: { host, version, reason } });
  }
  /** Asks a host's agent to capture its packages and files into release `version` (follow the command). */
  releaseCapture(host: string, version: string, packages: boolean, paths: readonly string[]) {
    return this.api.call('releaseCapture', { body: { host, version, packages, paths: [...paths] } });
  }
  /** An agent command; with `waitSeconds`, waits up to that long for it to finish. */
  command(id: number, waitSeconds = 0) {
    return this.api.call('command', { params: { id }, query: { wait: waitSeconds > 0 ? waitSeconds : undefined } });
  }
  /** Long-polls a command until its host answered, or `timeoutMs` passed (then it is returned unfinished). */
  async waitForCommand(first: api.CommandView, timeoutMs: number): Promise<api.CommandView> {
    const deadline = Date.now() + timeoutMs;
    let view = first;
    while ((view.state === 'pending' || view.state === 'sent') && Date.now() < deadline) {
      view = await this.command(view.id, Math.max(1, Math.min(25, Math.ceil((deadline - Date.now()) / 1000))));
    }
    return view;
  }
  /** `lockstep parity A B`: environment `a` compared with environment `b`. */
  parity(a: string, b: string) {
    return this.api.call('parity', { query: { a, b } });
  }
}
