/**
 * The host agent's composition root and work loop: enroll (once), clean up
 * what a killed predecessor left, heartbeat, fetch the host settings and
 * start the drift monitor, then long-poll for tasks and commands and run them
 * one at a time until the signal aborts. Network failures never end the
 * loop; only a credential the server rejects does.
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { AgentCommand, AgentReport, AgentReportResponse, AgentTask, HealthSpec } from '../api/schemas.js';
import { LockstepError } from '../core/errors.js';
import { BlobCache } from '../content/blob-cache.js';
import { readCurrentReleaseId } from './release/activator.js';
import { AgentClient, agentTransport, enroll } from './agent-client.js';
import { resolveServerTrust } from './server-trust.js';
import type { Transport } from '../api/api-client.js';
import { readAgentState, readCredential, writeAgentState, writeCredential, type AgentCredential } from './agent-state.js';
import { deployLayout } from './release/deploy-layout.js';
import { createDriftMonitor } from './drift/create-drift-monitor.js';
import type { CommandOutcome } from './drift/drift-monitor.js';
import { checkCurrentRelease } from './health/health-checker.js';
import { removeLeftovers } from './release/leftover-cleaner.js';
import { ReleaseVerifier } from './release/release-verifier.js';
import { longPoll } from '../core/long-poll.js';
import { AGENT_BACKOFF, isTransient, retry } from './retry.js';
import { ManifestStore } from './release/manifest-store.js';
import { reportHostFacts } from './host-facts.js';
import { SettingsHolder } from './settings-holder.js';
import { runTask, taskDeadline } from './release/task-runner.js';
import { SystemActivator } from './system/system-activator.js';
import { reinstallReleasedPackage } from './system/package-revert.js';
import { captureHost } from './system/host-capture.js';
import { managedDigests, SystemState } from './system/system-state.js';
import { DEFAULT_SSHD_LOG, runFirecallDuties } from './firecall/firecall-agent.js';

/** Options of `runAgent`, as the CLI passes them. */
export interface AgentOptions {
  /** Base URL of the Lockstep server, e.g. http://lockstep.internal:8080. */
  server: string;
  /** One-time enrollment token; needed only while STATE_DIR/credential.json does not exist. */
  token?: string | undefined;
  /** The directory treated as `/` for every host path ('/' in production). */
  root: string;
  /** Where the credential, the remembered state and the blob cache live. */
  stateDir: string;
  logger: Logger;
  /** Seconds the server may hold a work request open (default 25, at most 30). */
  pollWaitSeconds?: number;
  /** The sshd log to collect fire-call logins from, as a host path (default /var/log/auth.log). */
  sshdLog?: string | undefined;
  /** --ca FILE: the server's CA certificate to pin. */
  caFile?: string | undefined;
  /** --ca-fingerprint: the fingerprint of the server's CA to pin (then kept in the state dir). */
  caFingerprint?: string | undefined;
}

/** How often the agent tells the server it is alive, besides once at start. */
const HEARTBEAT_INTERVAL_MS = 30_000;
const DEFAULT_POLL_WAIT_SECONDS = 25;
/** How long after a task the drift monitor waits before its report, so the rollout's reports go first (see DriftMonitor.resume). */
const POST_TASK_REPORT_DELAY_MS = 1000;

/** Runs the agent until `signal` aborts; rejects only when it cannot work at all (no or a rejected credential). */
export async function runAgent(options: AgentOptions, signal: AbortSignal): Promise<void> {
  try {
    await work(options, signal);
  } catch (error) {
    if (signal.aborted) return;
    throw error;
  }
}

async function work(options: AgentOptions, signal: AbortSignal): Promise<void> {
  const { root, stateDir, logger } = options;
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const transport = agentTransport(options.server, await resolveServerTrust(options, signal));
  const identity = await loadOrEnroll(options, transport, signal);
  const log = logger.child({ host: identity.host, env: identity.env });
  const client = new AgentClient(transport, identity.host, identity.credential);

  const cache = new BlobCache(join(stateDir, 'blobs'));
  await cache.open();
  const manifests = new ManifestStore(join(stateDir, 'manifests'));
  const verifier = new ReleaseVerifier({
    stateDir,
    cache,
    manifests,
    fetchManifest: (releaseId, fetchSignal) => client.fetchManifest(releaseId, fetchSignal),
    fetchBlob: (hash, fetchSignal) => client.fetchBlob(hash, fetchSignal),
    logger: log,
  });
  const remembered = await readAgentState(stateDir);
  let deployTo = remembered.deployTo;
  // The health checks of the last task; re-run between deployments for continuous health.
  let health: HealthSpec | null = remembered.health;
  let busy = false;
  if (deployTo !== null) {
    const removed = await removeLeftovers(deployLayout(root, deployTo)).catch((error: unknown) => {
      log.warn({ err: error, deployTo }, 'could not remove leftovers of an interrupted run');
      return [];
    });
    if (removed.length > 0) log.info({ removed }, 'removed leftovers of an interrupted run');
  }

  const remember = async (next: { deployTo: string; health: HealthSpec | null }): Promise<void> => {
    if (next.deployTo === deployTo && JSON.stringify(next.health) === JSON.stringify(health)) return;
    ({ deployTo, health } = next);
    await writeAgentState(stateDir, { deployTo, health }).catch((error: unknown) =>
      log.warn({ err: error }, 'could not remember deploy_to; start-up cleanup will not know it'),
    );
  };
  // Settings (deploy_to, watch paths, scan intervals) arrive at start and whenever their revision changes.
  // Other parts of the agent read them through `settings.get` (a `() => HostSettings | null`).
  const settings = new SettingsHolder(client, log);
  const monitor = createDriftMonitor({
    host: identity.host,
    root,
    stateDir,
    cache,
    manifests,
    settings: settings.get,
    deployTo: () => deployTo,
    sink: client,
    fetchManifest: (releaseId, fetchSignal) => client.fetchManifest(releaseId, fetchSignal),
    fetchBlob: (hash, fetchSignal) => client.fetchBlob(hash, fetchSignal),
    verifier,
    // A package revert is Lockstep's own package operation: the package baseline moves with it.
    reinstallPackage: (name, version) =>
      monitor.ownPackageChange(() =>
        reinstallReleasedPackage({ root, deployTo, cache, manifests, source: client, fetchBlob: (hash, fetchSignal) => client.fetchBlob(hash, fetchSignal), signal }, name, version),
      ),
    logger: log,
    signal,
  });
  /** Tasks finished so far (host facts re-read after each). */
  let tasksRun = 0;
  // Managed files are written and packages installed as Lockstep's own change: never drift.
  const systemState = new SystemState(stateDir);
  const system = new SystemActivator({
    root,
    state: systemState,
    protectedDirs: [resolve(stateDir)],
    ownChange: (paths, change) => monitor.ownChange(paths, change),
    ownPackageChange: (change) => monitor.ownPackageChange(change),
  });
  settings.onChange((latest) => {
    // During a task its deploy_to is the authority; the settings' one is taken between tasks.
    void (async () => {
      if (latest.deployTo !== null && !busy) await remember({ deployTo: latest.deployTo, health });
      await monitor.settingsChanged();
    })().catch((error: unknown) => log.error({ err: error }, 'could not apply the new host settings to drift watching'));
  });
  monitor.start();
  void settings.refresh(signal);

  // What heartbeats name; a `current` that cannot be read is logged and named as none, so the host stays online.
  const currentReleaseId = async (): Promise<string | null> => {
    if (deployTo === null) return null;
    try {
      return await readCurrentReleaseId(deployLayout(root, deployTo));
    } catch (error) {
      log.warn({ err: error, deployTo }, 'cannot read the current release; the heartbeat names none');
      return null;
    }
  };
  // Heartbeats stop with the agent, and also when the work loop ends with an error.
  const stopHeartbeats = new AbortController();
  const healthNow = async (): Promise<{ healthy: boolean; detail: string } | undefined> => {
    if (busy || health === null || health.checks.length === 0 || deployTo === null) return undefined;
    return checkCurrentRelease(health.checks, { root, layout: deployLayout(root, deployTo), env: identity.env, host: identity.host }, signal);
  };
  const heartbeats = heartbeatLoop(client, currentReleaseId, healthNow, () => health?.watch_interval ?? HEARTBEAT_INTERVAL_MS, log, AbortSignal.any([signal, stopHeartbeats.signal]));
  const firecalls = runFirecallDuties({ root, stateDir, sshdLog: options.sshdLog ?? DEFAULT_SSHD_LOG, client, logger: log, ownChange: (paths, change) => monitor.ownChange(paths, change) }, AbortSignal.any([signal, stopHeartbeats.signal]));
  log.info({ server: options.server, root, stateDir }, 'agent started');
  // Host facts for `lockstep parity`; they stop with the heartbeats.
  const facts = reportHostFacts({ root, settings: settings.get, watchedSummary: () => monitor.watchedSummary(), watchedReady: () => monitor.baselineReady(), managed: async () => managedDigests(await systemState.applied()), send: (body, abort) => client.facts(body, abort), logger: log, changes: () => tasksRun }, AbortSignal.any([signal, stopHeartbeats.signal]));

  const report = async (body: AgentReport): Promise<AgentReportResponse | undefined> => {
    try {
      return await retry(() => client.report(body, signal), {
        signal,
        onRetry: (error, attempt, delayMs) => log.warn({ err: error, state: body.state, attempt, delayMs }, 'report failed; retrying'),
      });
    } catch (error) {
      if (signal.aborted) throw error;
      // The server refused it (e.g. the deployment is over); retrying cannot help.
      log.error({ err: error, deploymentId: body.deploymentId, state: body.state }, 'server refused the report');
      return undefined;
    }
  };

  const waitSeconds = Math.min(30, Math.max(0, options.pollWaitSeconds ?? DEFAULT_POLL_WAIT_SECONDS));
  // Until the first answer arrives, the server is told this agent just started (see AgentClient.work).
  let polledOnce = false;
  try {
    await longPoll({
      signal,
      backoff: AGENT_BACKOFF,
      poll: async (pollSignal) => {
        try {
          const answer = await client.work(waitSeconds, pollSignal, !polledOnce);
          polledOnce = true;
          return answer;
        } catch (error) {
          throw isCredentialRejected(error) ? credentialRejected(error, stateDir) : error;
        }
      },
      isPermanent: isCredentialRejected,
      // Transient trouble (a server restart) is routine: warn; anything else is worth an error line.
      onError: (error, delayMs) => (isTransient(error) ? log.warn({ err: error, delayMs }, 'cannot get work; retrying') : log.error({ err: error, delayMs }, 'cannot get work; retrying')),
      handle: async ({ task, command, settingsRevision }) => {
        if (settings.isStale(settingsRevision)) void settings.refresh(signal);
        if (task === null) {
          if (command !== null) await runCommand(command);
          return;
        }
        await runOneTask(task);
      },
    });
  } finally {
    stopHeartbeats.abort();
    await heartbeats;
    await firecalls;
    await facts;
    await monitor.close();
    await verifier.close();
  }

  /** Runs one deployment task with the drift monitor's periodic scans paused, then has the monitor re-scan and report. */
  async function runOneTask(task: AgentTask): Promise<void> {
    // The deadline counts from the task's arrival, before anything else takes time.
    const deadline = taskDeadline(task);
    await remember({ deployTo: task.deployTo, health: task.health });
    log.info({ deploymentId: task.deploymentId, kind: task.kind, version: task.version }, 'task received');
    busy = true;
    // The monitor's periodic scans wait for the task; its switch moves the baseline (switching, below), nothing else does.
    await monitor.pause();
    const taskDeployTo = task.deployTo;
    const outcome = await runTask(task, {
      host: identity.host,
      root,
      cache,
      manifests,
      source: client,
      report,
      logger: log,
      signal,
      deadline,
      verify: (releaseId) => monitor.verifyRelease(taskDeployTo, releaseId),
      switching: (releaseId, switchRelease) => monitor.activation(taskDeployTo, releaseId, switchRelease),
      verifier,
      system,
    }).finally(() => {
      busy = false;
    });
    // A task may have changed packages: host facts are re-read now, not at the next check.
    tasksRun++;
    // Not awaited: the next poll need not wait for the scan (a next task's pause() does).
    if (outcome.kind === 'succeeded' && outcome.pruned.length > 0) monitor.cachePruneDue();
    void monitor.resume(task.deploymentId, POST_TASK_REPORT_DELAY_MS).catch((error: unknown) => log.error({ err: error }, 'could not scan for drift after a task'));
    if (outcome.kind === 'failed') log.warn({ deploymentId: task.deploymentId, error: outcome.error }, 'task failed');
    if (outcome.kind === 'cancelled') log.warn({ deploymentId: task.deploymentId, reason: outcome.reason }, 'task dropped at its deadline');
  }

  /** `release capture`: uploads the host's .deb files and the given files, and answers with their list. */
  async function capture(packages: boolean, paths: readonly string[]): Promise<CommandOutcome> {
    try {
      const captured = await captureHost({ root, host: identity.host, upload: (hash, content, uploadSignal) => client.uploadBlob(hash, content, uploadSignal), signal }, packages, paths);
      return { ok: true, capture: captured, detail: `captured ${captured.packages.length} package(s) and ${captured.files.length} file(s)` };
    } catch (error) {
      if (signal.aborted) throw error;
      return { ok: false, error: `could not capture: ${error instanceof Error ? error.message : String(error)}`.slice(0, 4000) };
    }
  }

  /** Runs a drift or capture command and answers it; the answer is retried like a report. */
  async function runCommand(command: AgentCommand): Promise<void> {
    log.info({ commandId: command.id, kind: command.kind }, 'command received');
    const outcome = command.kind === 'release-capture' ? await capture(command.packages, command.paths) : await monitor.runCommand(command);
    try {
      await retry(() => client.commandResult(command.id, { host: identity.host, ...outcome }, signal), {
        signal,
        onRetry: (error, attempt, delayMs) => log.warn({ err: error, commandId: command.id, attempt, delayMs }, 'command result failed; retrying'),
      });
    } catch (error) {
      if (signal.aborted) throw error;
      log.error({ err: error, commandId: command.id }, 'server refused the command result');
    }
  }
}

/** The stored credential, or a new one from enrolling with the token. */
async function loadOrEnroll(options: AgentOptions, transport: Transport, signal: AbortSignal): Promise<AgentCredential> {
  const stored = await readCredential(options.stateDir);
  if (stored !== undefined) {
    if (stored.server !== options.server) {
      options.logger.info({ enrolledWith: stored.server, server: options.server }, 'using the stored credential with a different server URL');
    }
    return stored;
  }
  if (options.token === undefined || options.token === '') {
    throw new LockstepError('bad-input', `this host is not enrolled yet (no ${join(options.stateDir, 'credential.json')}): pass --token`);
  }
  const token = options.token;
  let enrollment;
  try {
    enrollment = await retry(() => enroll(transport, token, undefined, signal), {
      signal,
      onRetry: (error, attempt, delayMs) => options.logger.warn({ err: error, attempt, delayMs }, 'cannot enroll yet; retrying'),
    });
  } catch (error) {
    if (error instanceof LockstepError && (error.kind === 'unauthorized' || error.kind === 'forbidden')) {
      throw new LockstepError('unauthorized', `the server rejected the enrollment token (invalid, expired or already used): ${error.message}`);
    }
    throw error;
  }
  const credential: AgentCredential = { server: options.server, host: enrollment.host, env: enrollment.env, credential: enrollment.credential };
  await writeCredential(options.stateDir, credential);
  options.logger.info({ host: credential.host, env: credential.env }, 'enrolled');
  return credential;
}

/**
 * Sends a heartbeat at start and then every interval (the health checks'
 * watch_interval when there are checks) with the result of a round of
 * health checks, until the signal aborts; never throws.
 */
function heartbeatLoop(
  client: AgentClient,
  currentReleaseId: () => Promise<string | null>,
  healthNow: () => Promise<{ healthy: boolean; detail: string } | undefined>,
  intervalMs: () => number,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  return longPoll({
    signal,
    poll: async (pollSignal) => client.heartbeat(await currentReleaseId(), undefined, pollSignal, await healthNow()),
    pauseMs: intervalMs,
    backoff: AGENT_BACKOFF,
    // A refused heartbeat is not fixed by asking again soon: it waits for the next round.
    backsOffOn: isTransient,
    onError: (error, delayMs) => log.warn({ err: error, delayMs }, 'heartbeat failed'),
  });
}

function isCredentialRejected(error: unknown): boolean {
  return error instanceof LockstepError && (error.kind === 'unauthorized' || error.kind === 'forbidden');
}

function credentialRejected(error: unknown, stateDir: string): LockstepError {
  const detail = error instanceof Error ? error.message : String(error);
  return new LockstepError('unauthorized', `the server rejected this agent's credential; delete ${join(stateDir, 'credential.json')} and enroll again with a new token (${detail})`);
}
