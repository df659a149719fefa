/**
 * The agent's side of the wire protocol: one method per agent route of the
 * route table, through the shared ApiClient over the transport the
 * composition root made (node:https pinned to the server's CA), every answer
 * validated with the route's response schema. Failures are
 * LockstepErrors whose kind says what to do: `unavailable` (no connection,
 * timeout, 5xx) is worth a retry, the rest is not.
 */
import type { z } from 'zod';
import { ApiClient, type Transport } from '../api/api-client.js';
import { HttpTransport } from '../api/http-transport.js';
import type { TlsTrust } from '../api/tls-trust.js';
import { ROUTE_SCHEMAS, type RouteSchemaSet } from '../api/route-schemas.js';
import { ROUTES, type RouteName } from '../api/routes.js';
import type { enrollResponse, workResponse, AgentReport, AgentReportResponse, BlobPutResponse, CommandResult, DriftReport, FactsReport, FirecallAgentReport, FirecallTrust, HostSettings } from '../api/schemas.js';
import { LockstepError } from '../core/errors.js';
import { readBlobFrames, type BlobFrame } from '../content/blob-frames.js';
import type { ReleaseSource, UntrustedDelta, UntrustedManifest } from './release/release-stager.js';

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

/** The agent's connection to `server` (--server): gzip accepted, TLS pinned to `trust`, headers awaited at most 30 s unless a call says otherwise. */
export function agentTransport(server: string, trust: TlsTrust): Transport {
  return new HttpTransport(server, { trust, acceptGzip: true, defaultTimeoutMs: RESPONSE_TIMEOUT_MS, serverSetting: '--server' });
}

/** Enrolls with a one-time token; needs no credential. */
export async function enroll(transport: Transport, token: string, agentVersion: string | undefined, signal: AbortSignal): Promise<Enrollment> {
  const client = new ApiClient(transport, undefined, validateResponse);
  return client.call('agentEnroll', { body: agentVersion === undefined ? { token } : { token, agentVersion }, signal });
}

/** An enrolled agent's connection to the server. */
export class AgentClient implements ReleaseSource {
  private readonly api: ApiClient;

  constructor(
    transport: Transport,
    private readonly host: string,
    credential: string,
  ) {
    this.api = new ApiClient(transport, credential, validateResponse);
  }

  /** Long-polls for the next task or command, waiting up to `waitSeconds` on the server. */
  /** `started`: the first poll since this agent started, so that the server hands out again what the previous run left unanswered. */
  async work(waitSeconds: number, signal: AbortSignal, started = false): Promise<WorkAnswer> {
    return this.api.call('agentWork', {
      query: { host: this.host, wait: waitSeconds, started: started ? '1' : undefined },
      signal,
      timeoutMs: waitSeconds * 1000 + RESPONSE_TIMEOUT_MS,
    });
  }

  /** What this host should watch and how often to scan, from the applied config. */
  async settings(signal: AbortSignal): Promise<HostSettings> {
    return this.api.call('agentSettings', { query: { host: this.host }, signal });
  }

  /** Sends the complete set of drift findings after a scan (once; the caller retries). */
  async driftReport(report: DriftReport, signal: AbortSignal): Promise<void> {
    await this.api.call('agentDrift', { body: report, signal });
  }

  /** Answers a command (once; the caller retries). */
  async commandResult(commandId: number, result: CommandResult, signal: AbortSignal): Promise<void> {
    await this.api.call('agentCommandResult', { params: { id: commandId }, body: result, signal });
  }

  /** Uploads the content of a drifted file; the server checks that it hashes to `hash`. */
  async uploadBlob(hash: string, content: Uint8Array | AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<BlobPutResponse> {
    return this.api.call('agentBlobUpload', { params: { hash }, query: { host: this.host }, bytes: content, signal, timeoutMs: UPLOAD_TIMEOUT_MS });
  }

  /**
   * The manifest of a release, as the server sent it (validated by the
   * stager); with `base`, possibly a delta against that release. The transport asks
   * for gzip and decompresses (the server gzips large manifests).
   */
  async fetchManifest(releaseId: string, signal: AbortSignal, base?: string): Promise<UntrustedManifest | UntrustedDelta> {
    const answer = await this.api.call('agentRelease', { params: { id: releaseId }, query: { host: this.host, base }, signal });
    return 'delta' in answer ? answer.delta : answer.manifest;
  }

  /** The bytes of one blob, streamed; a stalled or broken transfer fails as `unavailable`. */
  async fetchBlob(hash: string, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const idle = new AbortController();
    let body: AsyncIterable<Uint8Array>;
    try {
      body = await this.api.open('agentBlob', { params: { hash }, query: { host: this.host }, signal: AbortSignal.any([signal, idle.signal]) });
    } catch (error) {
      // 409: the server found its stored copy corrupt. Its sentence ("… re-upload
      // the release") is the step's error as it is; no retry can help.
      if (error instanceof LockstepError && error.kind === 'conflict') throw new LockstepError('failed', error.message, error.details);
      throw error;
    }
    return streamWithIdleTimeout(body, idle, signal, `blob ${hash}`);
  }

  /**
   * Many blobs of one release in one framed stream (content/blob-frames.ts);
   * `sizes`: the manifest's size of each hash asked for. A stalled or broken
   * transfer fails as `unavailable` (the caller retries what it did not get).
   */
  async fetchBlobs(releaseId: string, sizes: ReadonlyMap<string, number>, signal: AbortSignal): Promise<AsyncIterable<BlobFrame>> {
    const idle = new AbortController();
    const body = await this.api.open('agentBlobs', { body: { host: this.host, releaseId, hashes: [...sizes.keys()] }, signal: AbortSignal.any([signal, idle.signal]) });
    return readBlobFrames(streamWithIdleTimeout(body, idle, signal, `${sizes.size} blobs`), sizes);
  }

  /** Sends one report (once; the caller retries); the answer says how long the host has left to switch. */
  async report(report: AgentReport, signal: AbortSignal): Promise<AgentReportResponse> {
    return this.api.call('agentReport', { body: report, signal });
  }

  /** Tells the server the agent is alive and what `current` points at. */
  async heartbeat(currentReleaseId: string | null, agentVersion: string | undefined, signal: AbortSignal, health?: { healthy: boolean; detail: string }): Promise<void> {
    const body = {
      host: this.host,
      currentReleaseId,
      ...(agentVersion === undefined ? {} : { agentVersion }),
      ...(health === undefined ? {} : { health: { healthy: health.healthy, detail: health.detail.slice(0, 4000) } }),
    };
    await this.api.call('agentHeartbeat', { body, signal });
  }

  /** Long-polls the host's fire-call trust: answers at once when it differs from `since`. */
  async firecallTrust(since: string | undefined, waitSeconds: number, signal: AbortSignal): Promise<FirecallTrust> {
    return this.api.call('agentFirecallTrust', {
      query: { host: this.host, wait: waitSeconds, since },
      signal,
      timeoutMs: waitSeconds * 1000 + RESPONSE_TIMEOUT_MS,
    });
  }

  /** Reports the installed trust revision and what was recorded (once; the caller retries). */
  async firecallReport(report: Omit<FirecallAgentReport, 'host'>, signal: AbortSignal): Promise<void> {
    await this.api.call('agentFirecallReport', { body: { host: this.host, ...report }, signal });
  }

  /** Sends the host's facts for parity (once; the caller retries). */
  async facts(facts: FactsReport['facts'], signal: AbortSignal): Promise<void> {
    await this.api.call('agentFacts', { body: { host: this.host, facts } satisfies FactsReport, signal });
  }
}

/** Checks an answer with its route's response schema: a server of another version is named as such. */
function validateResponse(name: RouteName, body: unknown): unknown {
  const schema = (ROUTE_SCHEMAS[name] as RouteSchemaSet).response;
  if (schema === undefined) return body;
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new LockstepError('failed', `the server's answer to ${ROUTES[name].path} does not match the protocol (is the server a different version?)`, parsed.error.issues);
  }
  return parsed.data;
}

async function* streamWithIdleTimeout(
  body: AsyncIterable<Uint8Array>,
  idle: AbortController,
  signal: AbortSignal,
  what: string,
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
    throw new LockstepError('unavailable', `download of ${what} broke off: ${idle.signal.aborted ? 'no data for 60 s' : describe(error)}`);
  } finally {
    clearTimeout(timer);
  }
}

/** One line about a failure, including the system error behind it. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as Error & { cause?: unknown }).cause;
  if (cause instanceof Error) return `${error.message} (${(cause as NodeJS.ErrnoException).code ?? cause.message})`;
  return error.message;
}
