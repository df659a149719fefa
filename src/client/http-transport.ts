/**
 * The CLI's transport: node:http(s) with one keep-alive agent. Not the global
 * fetch: loading fetch compiles its WebAssembly HTTP parser, which kept every
 * short CLI process alive ~400 ms longer (measured: 647 ms vs 244 ms for one
 * request), and a rollback's latency includes the CLI's start and exit.
 */
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Transport, WireRequest, WireResponse } from '../api/api-client.js';
import { LockstepError } from '../core/errors.js';

/** Sends requests to the server at `server` (LOCKSTEP_SERVER) over node:http or node:https. */
export class HttpTransport implements Transport {
  private readonly base: URL;
  private readonly agent: HttpAgent;

  constructor(private readonly server: string) {
    let base: URL;
    try {
      base = new URL(server.replace(/\/+$/, ''));
    } catch {
      throw new LockstepError('bad-input', `LOCKSTEP_SERVER "${server}" is not a URL such as http://127.0.0.1:7400`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new LockstepError('bad-input', `LOCKSTEP_SERVER "${server}" must be an http:// or https:// URL`);
    this.base = base;
    this.agent = base.protocol === 'https:' ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  }

  send(request: WireRequest): Promise<WireResponse> {
    const url = new URL(this.base.pathname.replace(/\/+$/, '') + request.path, this.base);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const headers: Record<string, string> = { ...request.headers };
    const { body } = request;
    const fixed = typeof body === 'string' ? Buffer.from(body) : body instanceof Uint8Array ? body : undefined;
    if (fixed !== undefined) headers['content-length'] = String(fixed.length);
    return new Promise((resolve, reject) => {
      const outgoing: ClientRequest = send(url, { method: request.method, headers, agent: this.agent, ...(request.signal ? { signal: request.signal } : {}) }, (incoming: IncomingMessage) => {
        clearTimeout(timer);
        resolve({ status: incoming.statusCode ?? 0, text: () => textOf(incoming), stream: incoming });
      });
      const timer = request.timeoutMs === undefined ? undefined : setTimeout(() => outgoing.destroy(new Error('timed out')), request.timeoutMs);
      outgoing.on('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (error.name === 'AbortError') return reject(error);
        reject(new LockstepError('unavailable', `cannot reach the Lockstep server at ${this.server} (${error.code ?? error.message}); is it running? set LOCKSTEP_SERVER`));
      });
      if (body === undefined || fixed !== undefined) outgoing.end(fixed);
      // A file that cannot be read fails the request with its error.
      else pipeline(Readable.from(body as AsyncIterable<Uint8Array>), outgoing).catch((error: unknown) => outgoing.destroy(error as Error));
    });
  }

  /** Lets the process exit: closes idle keep-alive connections. */
  close(): void {
    this.agent.destroy();
  }
}

async function textOf(incoming: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of incoming) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
