/**
 * The agent's side of the wire protocol (AGENT_ROUTES): one method per
 * route, responses validated with the shared schemas. Failures are
 * LockstepErrors whose kind says what to do: `unavailable` (no connection,
 * timeout, 5xx) is worth a retry, the rest is not.
 */
import type { z } from 'zod';
import {
  AGENT_ROUTES,
  API_PREFIX,
  agentReleaseAnswer,
  blobPutResponse,
  enrollResponse,
  firecallTrust,
  hostSettings,
  workResponse,
  type FirecallAgentReport,
  type FirecallTrust,
  type AgentReport,
  type BlobPutResponse,
  type CommandResult,
  type DriftReport,
  type FactsReport,
  type HostSettings,
} from '../api/schemas.js';
import { responseError } from '../api/errors.js';
import { LockstepError } from '../core/errors.js';
import type { ReleaseSource, UntrustedDelta, UntrustedManifest } from './release-stager.js';

/** The answer to an enrollment. */
export type Enrollment = z.infer<typeof enrollResponse>;
/** One long-poll's answer: a task, a command (each may be null) and the revision of the host's settings. */
export type WorkAnswer = z.infer<typeof workResponse>;

/** How long to wait for response headers (beyond a long poll's own wait), in ms. */
const RESPONSE_TIMEOUT_MS = 30_000;
/** How long an upload (at most 64 MiB) may take until the response headers arrive. */
const UPLOAD_TIMEOUT_MS = 120_000;
/** A blob download that receives nothing for this long is given up (and retried). */
const BODY_IDLE_TIMEOUT_MS = 60_000;

interface RequestOptions {
  readonly query?: Readonly<Record<string, string>>;
  readonly body?: unknown;
  /** Raw bytes to send instead of a JSON body. */
  readonly bytes?: Uint8Array | AsyncIterable<Uint8Array>;
  readonly signal: AbortSignal;
  readonly timeoutMs?: number;
}

/** Enrolls with a one-time token; needs no credential. */
export async function enroll(server: string, token: string, agentVersion: string | undefined, signal: AbortSignal): Promise<Enrollment> {
  const response = await send(server, undefined, 'POST', AGENT_ROUTES.enroll, {
    body: agentVersion === undefined ? { token } : { token, agentVersion },
    signal,
  });
  return parseBody(enrollResponse, await readJson(response), AGENT_ROUTES.enroll);
}

/** An enrolled agent's connection to the server. */
export class AgentClient implements ReleaseSource {
  constructor(
    private readonly server: string,
    private readonly host: string,
    private readonly credential: string,
  ) {}

  /** Long-polls for the next task or command, waiting up to `waitSeconds` on the server. */
  /** `started`: the first poll since this agent started, so that the server hands out again what the previous run left unanswered. */
  async work(waitSeconds: number, signal: AbortSignal, started = false): Promise<WorkAnswer> {
    const response = await this.request('GET', AGENT_ROUTES.work, {
      query: { host: this.host, wait: String(waitSeconds), ...(started ? { started: '1' } : {}) },
      signal,
      timeoutMs: waitSeconds * 1000 + RESPONSE_TIMEOUT_MS,
    });
    return parseBody(workResponse, await readJson(response), AGENT_ROUTES.work);
  }

  /** What this host should watch and how often to scan, from the applied config. */
  async settings(signal: AbortSignal): Promise<HostSettings> {
    const response = await this.request('GET', AGENT_ROUTES.settings, { query: { host: this.host }, signal });
    return parseBody(hostSettings, await readJson(response), AGENT_ROUTES.settings);
  }

  /** Sends the complete set of drift findings after a scan (once; the caller retries). */
  async driftReport(report: DriftReport, signal: AbortSignal): Promise<void> {
    await readJson(await this.request('POST', AGENT_ROUTES.drift, { body: report, signal }));
  }

  /** Answers a command (once; the caller retries). */
  async commandResult(commandId: number, result: CommandResult, signal: AbortSignal): Promise<void> {
    const route = AGENT_ROUTES.commandResult.replace(':id', encodeURIComponent(String(commandId)));
    await readJson(await this.request('POST', route, { body: result, signal }));
  }

  /** Uploads the content of a drifted file; the server checks that it hashes to `hash`. */
  async uploadBlob(hash: string, content: Uint8Array | AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<BlobPutResponse> {
    const route = AGENT_ROUTES.blobUpload.replace(':hash', encodeURIComponent(hash));
    const response = await this.request('PUT', route, { query: { host: this.host }, bytes: content, signal, timeoutMs: UPLOAD_TIMEOUT_MS });
    return parseBody(blobPutResponse, await readJson(response), AGENT_ROUTES.blobUpload);
  }

  /**
   * The manifest of a release, as the server sent it (validated by the
   * stager); with `base`, possibly a delta against that release. fetch asks
   * for gzip and decompresses (the server gzips large manifests).
   */
  async fetchManifest(releaseId: string, signal: AbortSignal, base?: string): Promise<UntrustedManifest | UntrustedDelta> {
    const route = AGENT_ROUTES.release.replace(':id', encodeURIComponent(releaseId));
    const response = await this.request('GET', route, { query: base === undefined ? { host: this.host } : { host: this.host, base }, signal });
    const answer = parseBody(agentReleaseAnswer, await readJson(response), AGENT_ROUTES.release);
    return 'delta' in answer ? answer.delta : answer.manifest;
  }

  /** The bytes of one blob, streamed; a stalled or broken transfer fails as `unavailable`. */
  async fetchBlob(hash: string, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const idle = new AbortController();
    const route = AGENT_ROUTES.blob.replace(':hash', encodeURIComponent(hash));
    let response: Response;
    try {
      response = await this.request('GET', route, { query: { host: this.host }, signal: AbortSignal.any([signal, idle.signal]) });
    } catch (error) {
      // 409: the server found its stored copy corrupt. Its sentence ("… re-upload
      // the release") is the step's error as it is; no retry can help.
      if (error instanceof LockstepError && error.kind === 'conflict') throw new LockstepError('failed', error.message, error.details);
      throw error;
    }
    const body = response.body;
    if (body === null) throw new LockstepError('unavailable', `the server sent no body for blob ${hash}`);
    return streamWithIdleTimeout(body, idle, signal, hash);
  }

  /** Sends one report (once; the caller retries). */
  async report(report: AgentReport, signal: AbortSignal): Promise<void> {
    await readJson(await this.request('POST', AGENT_ROUTES.report, { body: report, signal }));
  }

  /** Tells the server the agent is alive and what `current` points at. */
  async heartbeat(currentReleaseId: string | null, agentVersion: string | undefined, signal: AbortSignal, health?: { healthy: boolean; detail: string }): Promise<void> {
    const body = {
      host: this.host,
      currentReleaseId,
      ...(agentVersion === undefined ? {} : { agentVersion }),
      ...(health === undefined ? {} : { health: { healthy: health.healthy, detail: health.detail.slice(0, 4000) } }),
    };
    await readJson(await this.request('POST', AGENT_ROUTES.heartbeat, { body, signal }));
  }

  /** Long-polls the host's fire-call trust: answers at once when it differs from `since`. */
  async firecallTrust(since: string | undefined, waitSeconds: number, signal: AbortSignal): Promise<FirecallTrust> {
    const response = await this.request('GET', AGENT_ROUTES.firecall, {
      query: { host: this.host, wait: String(waitSeconds), ...(since === undefined ? {} : { since }) },
      signal,
      timeoutMs: waitSeconds * 1000 + RESPONSE_TIMEOUT_MS,
    });
    return parseBody(firecallTrust, await readJson(response), AGENT_ROUTES.firecall);
  }

  /** Reports the installed trust revision and what was recorded (once; the caller retries). */
  async firecallReport(report: Omit<FirecallAgentReport, 'host'>, signal: AbortSignal): Promise<void> {
    await readJson(await this.request('POST', AGENT_ROUTES.firecall, { body: { host: this.host, ...report }, signal }));
  }

  /** Sends the host's facts for parity (once; the caller retries). */
  async facts(facts: FactsReport['facts'], signal: AbortSignal): Promise<void> {
    await readJson(await this.request('POST', AGENT_ROUTES.facts, { body: { host: this.host, facts } satisfies FactsReport, signal }));
  }

  private request(method: string, route: string, options: RequestOptions): Promise<Response> {
    return send(this.server, this.credential, method, route, options);
  }
}

async function send(server: string, credential: string | undefined, method: string, route: string, options: RequestOptions): Promise<Response> {
  const url = new URL(`${server.replace(/\/+$/, '')}${API_PREFIX}${route}`);
  for (const [key, value] of Object.entries(options.query ?? {})) url.searchParams.set(key, value);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (credential !== undefined) headers.authorization = `Bearer ${credential}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.bytes !== undefined) headers['content-type'] = 'application/octet-stream';

  // The timeout only covers waiting for the response headers; bodies are read after it is cleared.
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), options.timeoutMs ?? RESPONSE_TIMEOUT_MS);
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers,
      signal: AbortSignal.any([options.signal, timeout.signal]),
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      // A streamed body needs duplex 'half' (undici); a Uint8Array is sent as is.
      ...(options.bytes === undefined ? {} : { body: options.bytes as NonNullable<RequestInit['body']>, duplex: 'half' }),
    } as RequestInit);
  } catch (error) {
    if (options.signal.aborted) throw options.signal.reason;
    const why = timeout.signal.aborted ? 'timed out' : describe(error);
    throw new LockstepError('unavailable', `cannot reach the Lockstep server at ${server}: ${why}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
  if (response.ok) return response;
  throw await httpError(response, `${method} ${API_PREFIX}${route}`);
}

/** Turns a non-2xx response into a LockstepError through the API's one decoder. */
async function httpError(response: Response, what: string): Promise<LockstepError> {
  return responseError(response.status, await response.text().catch(() => ''), what);
}

async function readJson(response: Response): Promise<unknown> {
  try {
    return (await response.json()) as unknown;
  } catch (error) {
    throw new LockstepError('unavailable', `the server's response could not be read: ${describe(error)}`);
  }
}

function parseBody<T extends z.ZodType>(schema: T, body: unknown, route: string): z.infer<T> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new LockstepError('failed', `the server's answer to ${route} does not match the protocol (is the server a different version?)`, parsed.error.issues);
  }
  return parsed.data;
}

async function* streamWithIdleTimeout(
  body: ReadableStream<Uint8Array>,
  idle: AbortController,
  signal: AbortSignal,
  hash: string,
): AsyncGenerator<Uint8Array> {
  let timer = setTimeout(() => idle.abort(), BODY_IDLE_TIMEOUT_MS);
  try {
    for await (const chunk of body) {
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(), BODY_IDLE_TIMEOUT_MS);
      yield chunk;
    }
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw new LockstepError('unavailable', `download of blob ${hash} broke off: ${idle.signal.aborted ? 'no data for 60 s' : describe(error)}`);
  } finally {
    clearTimeout(timer);
  }
}

/** One line about a fetch failure, including the system error behind undici's "fetch failed". */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as Error & { cause?: unknown }).cause;
  if (cause instanceof Error) return `${error.message} (${(cause as NodeJS.ErrnoException).code ?? cause.message})`;
  return error.message;
}
