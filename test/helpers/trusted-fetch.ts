/**
 * fetch for tests that talk to a fleet's server directly, trusting the
 * server's own CA: Node 20's fetch cannot be given a CA, so this sends the
 * request over node:http(s) and answers with a standard Response (gzip
 * decoded as fetch would, the content-encoding header kept for the tests
 * that look at it).
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { gunzipSync } from 'node:zlib';

/** What the tests pass to fetch. */
export interface TrustedInit {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string | Uint8Array;
  readonly signal?: AbortSignal;
}

/** A fetch that trusts `ca` (PEM) for https:// URLs; plain http:// URLs need none. */
export function trustedFetch(ca: string | undefined): (input: string | URL, init?: TrustedInit) => Promise<Response> {
  return (input, init = {}) => {
    const url = new URL(input);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const headers: Record<string, string> = { ...init.headers };
    if (init.body !== undefined) headers['content-length'] = String(Buffer.byteLength(init.body));
    return new Promise<Response>((resolve, reject) => {
      const outgoing = send(url, { method: init.method ?? 'GET', headers, ...(ca === undefined ? {} : { ca }), ...(init.signal ? { signal: init.signal } : {}) }, (incoming: IncomingMessage) => {
        const chunks: Buffer[] = [];
        incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
        incoming.on('error', reject);
        incoming.on('end', () => {
          const raw = Buffer.concat(chunks);
          const body = incoming.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(incoming.headers)) if (value !== undefined) responseHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
          const status = incoming.statusCode ?? 0;
          resolve(new Response([101, 204, 205, 304].includes(status) ? null : body, { status, headers: responseHeaders }));
        });
      });
      outgoing.on('error', reject);
      outgoing.end(init.body);
    });
  };
}
