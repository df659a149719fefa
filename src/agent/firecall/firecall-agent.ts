/**
 * The agent's fire-call duties, beside its work loop: keep sshd's trust as
 * the server says (long-polled, so a close reaches the host at once), end the
 * sessions of closed fire calls, and ship what was recorded every second.
 * Never throws; stops when the signal aborts.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { FirecallTrust } from '../../api/schemas.js';
import { longPoll } from '../../core/long-poll.js';
import type { AgentClient } from '../agent-client.js';
import { FirecallCollector } from './firecall-collector.js';
import { endSessions } from './firecall-sessions.js';
import { AGENT_BACKOFF } from '../retry.js';
import { installSshdTrust, SSHD_TRUST_PATHS } from './sshd-trust.js';

/** The sshd log the agent reads when `--sshd-log` is not given (Debian, Ubuntu). */
export const DEFAULT_SSHD_LOG = '/var/log/auth.log';
const COLLECT_INTERVAL_MS = 1000;
/** How often the sshd log is read where the environment has no fire-call policy (nothing should name a fire call there). */
const IDLE_COLLECT_INTERVAL_MS = 30_000;
const POLL_WAIT_SECONDS = 25;

export interface FirecallAgentOptions {
  readonly root: string;
  readonly stateDir: string;
  /** The sshd log as a host path (joined to --root). */
  readonly sshdLog: string;
  readonly client: AgentClient;
  readonly logger: Logger;
  /** Runs an edit of host files that Lockstep makes itself, so that the drift monitor takes it as baseline, not drift. */
  readonly ownChange: <T>(hostPaths: readonly string[], change: () => Promise<T>) => Promise<T>;
}

/** Runs both fire-call loops until `signal` aborts. */
export async function runFirecallDuties(options: FirecallAgentOptions, signal: AbortSignal): Promise<void> {
  const transcripts = join(options.root, SSHD_TRUST_PATHS.transcripts);
  let closedKeyIds: readonly string[] = [];
  // Until the trust says the environment has a fire-call policy, nothing can log in under one: collect rarely.
  let enabled = false;
  await Promise.all([
    trustLoop(options, transcripts, (trust) => {
      closedKeyIds = trust.endSessions;
      enabled = trust.enabled;
    }, signal),
    collectLoop(options, transcripts, () => closedKeyIds, () => (enabled ? COLLECT_INTERVAL_MS : IDLE_COLLECT_INTERVAL_MS), signal),
  ]);
}

function trustLoop(options: FirecallAgentOptions, transcripts: string, onInstalled: (trust: FirecallTrust) => void, signal: AbortSignal): Promise<void> {
  const { client, logger } = options;
  let installed: string | undefined;
  // The whole round is retried: a trust that could not be installed is asked for (and answered) again at once.
  return longPoll({
    signal,
    backoff: AGENT_BACKOFF,
    poll: async (pollSignal) => {
      const trust: FirecallTrust = await client.firecallTrust(installed, POLL_WAIT_SECONDS, pollSignal);
      if (trust.revision === installed) return;
      const outcome = await options.ownChange(Object.values(SSHD_TRUST_PATHS), () => installSshdTrust(options.root, trust));
      onInstalled(trust);
      // Revocation first, then the sessions: a session ended cannot log in again.
      const ended = await endSessions(transcripts, trust.endSessions);
      if (outcome.changed || ended > 0) logger.info({ revision: trust.revision, enabled: trust.enabled, endedSessions: ended }, 'fire-call trust installed');
      if (outcome.error) logger.error({ error: outcome.error }, 'fire-call trust installed, but sshd was not reloaded');
      await client.firecallReport({ revision: trust.revision, ...(outcome.error ? { error: outcome.error } : {}), records: [] }, pollSignal);
      installed = trust.revision;
    },
    onError: (error, delayMs) => logger.warn({ err: error, delayMs }, 'cannot install fire-call trust; retrying'),
  });
}

async function collectLoop(options: FirecallAgentOptions, transcripts: string, closedKeyIds: () => readonly string[], intervalMs: () => number, signal: AbortSignal): Promise<void> {
  const collector = new FirecallCollector(join(options.root, options.sshdLog), transcripts, options.stateDir);
  await collector.open().catch((error: unknown) => options.logger.warn({ err: error }, 'cannot read the remembered fire-call offsets or the sshd log; collecting from the start'));
  await longPoll({
    signal,
    backoff: AGENT_BACKOFF,
    poll: async (pollSignal) => {
      // A session that logged in just before the revocation arrived is ended on the next round.
      await endSessions(transcripts, closedKeyIds());
      const collection = await collector.collect();
      if (collection.records.length > 0) await options.client.firecallReport({ records: collection.records }, pollSignal);
      await collector.commit(collection);
    },
    pauseMs: intervalMs,
    // Shipping is retried on the next round, which comes every interval anyway.
    backsOffOn: () => false,
    onError: (error) => options.logger.warn({ err: error }, 'cannot ship fire-call records; retrying'),
  });
}
