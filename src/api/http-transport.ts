/**
 * The one transport of the CLI and the agent: node:http(s) with one
 * keep-alive agent. Not the global fetch: loading fetch compiles its
 * WebAssembly HTTP parser, which kept every short CLI process alive ~400 ms
 * longer (measured: 647 ms vs 244 ms for one request), and Node 20's fetch
 * cannot be given a CA to trust, which pinning the server's CA needs.
 */
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { Transport, WireRequest, WireResponse } from './api-client.js';
import { LockstepError } from '../core/errors.js';
import { isUntrustedCertificate, mismatchMessage, pemCaFingerprint, pinCa, presentedChain, untrustedMessage, type TlsTrust } from './tls-trust.js';

/** How a transport connects and what it says when it cannot. */
export interface HttpTransportOptions {
  /** Which certificate an https:// server must present (default: one the system's CA list trusts). */
  readonly trust?: TlsTrust | undefined;
  /** Ask for gzip and decompress (the server gzips large manifests). */
  readonly acceptGzip?: boolean | undefined;
  /** How long to wait for response headers when a request names no timeout (default: no limit). */
  readonly defaultTimeoutMs?: number | undefined;
  /** Where the server's URL came from, for messages (default LOCKSTEP_SERVER). */
  readonly serverSetting?: string | undefined;
}

/** Sends requests to the server at `server` over node:http or node:https. */
export class HttpTransport implements Transport {
  private readonly base: URL;
  private agent: Promise<HttpAgent> | undefined;
  private readonly agents: HttpAgent[] = [];

  constructor(
    private readonly server: string,
    private readonly options: HttpTransportOptions = {},
  ) {
    const setting = options.serverSetting ?? 'LOCKSTEP_SERVER';
    let base: URL;
    try {
      base = new URL(server.replace(/\/+$/, ''));
    } catch {
      throw new LockstepError('bad-input', `${setting} "${server}" is not a URL such as https://lockstep.example:7400`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new LockstepError('bad-input', `${setting} "${server}" must be an http:// or https:// URL`);
    this.base = base;
  }

  send(request: WireRequest): Promise<WireResponse> {
    return this.connection().then((agent) => this.sendWith(agent, request));
  }

  /** The keep-alive agent, made once the server's CA is known (a fingerprint is resolved on the first request). */
  private connection(): Promise<HttpAgent> {
    this.agent ??= this.makeAgent();
    // A failed resolution (server down) is tried again by the next request.
    this.agent.catch(() => (this.agent = undefined));
    return this.agent;
  }

  private async makeAgent(): Promise<HttpAgent> {
    if (this.base.protocol === 'http:') return this.keep(new HttpAgent({ keepAlive: true }));
    const trust = this.options.trust ?? { kind: 'system' };
    if (trust.kind === 'system') return this.keep(new HttpsAgent({ keepAlive: true }));
    if (trust.kind === 'ca') return this.keep(new HttpsAgent({ keepAlive: true, ca: trust.pem }));
    const pinned = pinCa(await presentedChain(this.base), trust.fingerprint);
    if (pinned.kind === 'mismatch') throw new LockstepError('unavailable', mismatchMessage(this.base, pinned.seen, pinned.expected, 'LOCKSTEP_CA_FINGERPRINT'));
    return this.keep(new HttpsAgent({ keepAlive: true, ca: pinned.pem }));
  }

  private keep(agent: HttpAgent): HttpAgent {
    this.agents.push(agent);
    return agent;
  }

  private sendWith(agent: HttpAgent, request: WireRequest): Promise<WireResponse> {
    const url = new URL(this.base.pathname.replace(/\/+$/, '') + request.path, this.base);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const headers: Record<string, string> = { ...request.headers };
    if (this.options.acceptGzip === true) headers['accept-encoding'] = 'gzip';
    const { body } = request;
    const fixed = typeof body === 'string' ? Buffer.from(body) : body instanceof Uint8Array ? body : undefined;
    if (fixed !== undefined) headers['content-length'] = String(fixed.length);
    const timeoutMs = request.timeoutMs ?? this.options.defaultTimeoutMs;
    return new Promise((resolve, reject) => {
      const outgoing: ClientRequest = send(url, { method: request.method, headers, agent, ...(request.signal ? { signal: request.signal } : {}) }, (incoming: IncomingMessage) => {
        clearTimeout(timer);
        const stream = incoming.headers['content-encoding'] === 'gzip' ? incoming.pipe(createGunzip()) : incoming;
        // A broken gzip stream fails the read, as a broken connection does.
        if (stream !== incoming) incoming.once('error', (error) => stream.destroy(error));
        resolve({ status: incoming.statusCode ?? 0, text: () => textOf(stream), stream });
      });
      let timedOut = false;
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              timedOut = true;
              outgoing.destroy(new Error('timed out'));
            }, timeoutMs);
      outgoing.on('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (request.signal?.aborted) return reject(request.signal.reason as Error);
        if (isUntrustedCertificate(error)) return void this.untrusted(error).then(reject, reject);
        const why = timedOut ? 'timed out' : (error.code ?? error.message);
        reject(new LockstepError('unavailable', `cannot reach the Lockstep server at ${this.server} (${why}); is it running? check ${this.options.serverSetting ?? 'LOCKSTEP_SERVER'}`, { cause: error }));
      });
      if (body === undefined || fixed !== undefined) outgoing.end(fixed);
      // A file that cannot be read fails the request with its error.
      else pipeline(Readable.from(body as AsyncIterable<Uint8Array>), outgoing).catch((error: unknown) => outgoing.destroy(error as Error));
    });
  }

  /** The error for a certificate that failed verification: names the CA fingerprint the server showed and the one expected. */
  private async untrusted(error: NodeJS.ErrnoException): Promise<LockstepError> {
    const seen = await presentedChain(this.base).then(
      (chain) => chain.topFingerprint,
      () => undefined,
    );
    const trust = this.options.trust ?? { kind: 'system' };
    const expected = trust.kind === 'ca' ? pemCaFingerprint(trust.pem, trust.source) : trust.kind === 'fingerprint' ? trust.fingerprint : undefined;
    const how = trust.kind === 'ca' ? trust.source : 'LOCKSTEP_CA_FINGERPRINT';
    return new LockstepError('unavailable', untrustedMessage(this.base, error.code ?? error.message, seen, expected, how), { cause: error });
  }

  /** Lets the process exit: closes idle keep-alive connections. */
  close(): void {
    for (const agent of this.agents) agent.destroy();
  }
}

async function textOf(incoming: AsyncIterable<unknown>): Promise<string> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of incoming) chunks.push(chunk as Buffer);
  } catch (error) {
    throw new LockstepError('unavailable', `the server's response could not be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
  }
  return Buffer.concat(chunks).toString('utf8');
}
