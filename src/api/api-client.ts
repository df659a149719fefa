/**
 * The one client of the API, for the CLI and the agent alike: it builds each
 * request from the route table (method, path with its parameters, query,
 * body) and turns every error response into a LockstepError through the one
 * decoder (errors.ts). How bytes travel is a Transport's business
 * (http-transport.ts, node:http(s) with the server's CA pinned); whether answers are validated is the
 * caller's (the agent checks them with the route schemas; the CLI, which must
 * not load zod, trusts its own server).
 */
import { LockstepError } from '../core/errors.js';
import { responseError } from './errors.js';
import { API_PREFIX } from './paths.js';
import type { RouteInput, RouteOutput } from './route-schemas.js';
import { ROUTES, routePath, type RouteName } from './routes.js';

/** One HTTP request as a transport sends it. */
export interface WireRequest {
  readonly method: string;
  /** The path under the server's URL, with API_PREFIX and the query string. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** A JSON text, or raw bytes (application/octet-stream). */
  readonly body?: string | Uint8Array | AsyncIterable<Uint8Array> | undefined;
  readonly signal?: AbortSignal | undefined;
  /** How long to wait for the response headers. */
  readonly timeoutMs?: number | undefined;
}

/** One HTTP response: its status, then either its text or its bytes (once). */
export interface WireResponse {
  readonly status: number;
  text(): Promise<string>;
  readonly stream: AsyncIterable<Uint8Array>;
}

/** Sends requests to one server; fails with a LockstepError `unavailable` when the server cannot be reached. */
export interface Transport {
  send(request: WireRequest): Promise<WireResponse>;
}

type Query = Readonly<Record<string, string | number | boolean | undefined>>;

/** What a call of route `N` sends; `bytes` (with its `size` when known) for routes whose body is a stream. */
export interface CallInput<N extends RouteName> {
  readonly params?: Readonly<Record<string, string | number>>;
  readonly query?: RouteInput<N, 'query'> extends undefined ? never : Query;
  readonly body?: RouteInput<N, 'body'>;
  readonly bytes?: Uint8Array | AsyncIterable<Uint8Array>;
  readonly size?: number;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

/** The answer of route `N` as its schema describes it. */
export type CallOutput<N extends RouteName> = RouteOutput<N, 'response'>;

/** Checks an answer against route `N`'s response schema and returns it parsed, or throws. */
export type ResponseValidator = (name: RouteName, body: unknown) => unknown;

/** The typed, transport-agnostic client of the route table. */
export class ApiClient {
  constructor(
    private readonly transport: Transport,
    private readonly credential: string | undefined,
    private readonly validate?: ResponseValidator,
  ) {}

  /** Calls a route that answers JSON; returns the answer (validated when the client validates). */
  async call<N extends RouteName>(name: N, input: CallInput<N> = {}): Promise<CallOutput<N>> {
    const request = this.request(name, input);
    const response = await this.transport.send(request);
    const text = await response.text();
    if (response.status < 200 || response.status >= 300) throw responseError(response.status, text, what(request));
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new LockstepError('unavailable', `the server answered ${response.status} with a body that is not JSON`);
    }
    if (json === null || typeof json !== 'object') throw new LockstepError('unavailable', `the server's answer to ${what(request)} is not a JSON object`);
    return (this.validate ? this.validate(name, json) : json) as CallOutput<N>;
  }

  /** Calls a route whose successful answer is read as bytes (a blob, JSON lines); an error answer is decoded as any other. */
  async open<N extends RouteName>(name: N, input: CallInput<N> = {}): Promise<AsyncIterable<Uint8Array>> {
    const request = this.request(name, input);
    const response = await this.transport.send(request);
    if (response.status >= 200 && response.status < 300) return response.stream;
    throw responseError(response.status, await response.text(), what(request));
  }

  /** The request for a route: method and path from the table, the query string, the credential and the body. */
  request<N extends RouteName>(name: N, input: CallInput<N>): WireRequest {
    const spec = ROUTES[name];
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries((input.query ?? {}) as Query)) if (value !== undefined) query.set(key, String(value));
    const search = query.size > 0 ? `?${query.toString()}` : '';
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.credential !== undefined) headers.authorization = `Bearer ${this.credential}`;
    let body: WireRequest['body'];
    if (input.bytes !== undefined) {
      body = input.bytes;
      headers['content-type'] = 'application/octet-stream';
      if (input.size !== undefined) headers['content-length'] = String(input.size);
    } else if (input.body !== undefined) {
      body = JSON.stringify(input.body);
      headers['content-type'] = 'application/json';
    }
    return { method: spec.method, path: `${API_PREFIX}${routePath(name, input.params)}${search}`, headers, body, signal: input.signal, timeoutMs: input.timeoutMs };
  }
}

/** A request in one line for error messages: method and path, without the query. */
function what(request: WireRequest): string {
  return `${request.method} ${request.path.split('?')[0] ?? ''}`;
}
