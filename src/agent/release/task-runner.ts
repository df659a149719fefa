/**
 * One task from start to report: report `staging`, stage (skipped when the
 * release is on disk), verify the tree against its manifest (repairing it),
 * activate, report `succeeded` or `failed`, then prune.
 * Running the same task twice ends in the same state, so a task redelivered
 * after a restart simply finishes. A task with a deadline is dropped when it
 * passes (staging, hooks and health checks are stopped, and `current` is not
 * switched after it), and the drop is reported as `cancelled`.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { AgentReport, AgentTask, StagingProgress } from '../../api/schemas.js';
import { shortId } from '../../core/manifest.js';
import type { BlobCache } from '../../content/blob-cache.js';
import { activateRelease, readCurrentReleaseId, type Activation } from './activator.js';
import { deployLayout, releasesOnDisk, type DeployLayout } from './deploy-layout.js';
import { waitHealthy } from '../health/health-checker.js';
import { runHook } from './hook-runner.js';
import { releaseProcess, type ReleaseProcess } from './release-process.js';
import type { ManifestStore } from './manifest-store.js';
import { pruneReleases } from './release-pruner.js';
import { stageRelease, type ReleaseSource, type StageResult } from './release-stager.js';
import type { ReleaseVerifier } from './release-verifier.js';
import type { SystemActivator } from '../system/system-activator.js';
import { systemPartsOf } from '../system/release-system-parts.js';
import { releaseDir } from './deploy-layout.js';

/** How a task ended on this host. */
export type TaskOutcome =
  | { readonly kind: 'succeeded'; readonly staging: StageResult; readonly previousReleaseId: string | null; readonly pruned: readonly string[] }
  | { readonly kind: 'failed'; readonly error: string; readonly currentReleaseId: string | null }
  | { readonly kind: 'cancelled'; readonly reason: string; readonly currentReleaseId: string | null };

/** A task's deadline on this host: `signal` aborts when it passes; the server may move it later (staging progress). */
export interface TaskDeadline {
  readonly signal: AbortSignal;
  /** Moves the deadline to `remainingMs` after `since` (a performance.now() reading), never earlier than it was. */
  extend(since: number, remainingMs: number): void;
}

/**
 * Aborts when the task's deadline passes: `remainingMs` counted from now on
 * this host's monotonic clock (call it as the task arrives), so a skewed
 * wall clock cannot move it. Never aborts for a task without a deadline.
 */
export function taskDeadline(task: AgentTask): TaskDeadline {
  const controller = new AbortController();
  if (task.remainingMs === null || task.remainingMs === undefined) return { signal: controller.signal, extend: () => undefined };
  let due = performance.now() + task.remainingMs;
  const fire = (): void => {
    const left = due - performance.now();
    if (left > 0) {
      setTimeout(fire, left).unref();
      return;
    }
    controller.abort(new DOMException('the task deadline passed', 'TimeoutError'));
  };
  setTimeout(fire, task.remainingMs).unref();
  return {
    signal: controller.signal,
    extend: (since, remainingMs) => {
      if (!controller.signal.aborted) due = Math.max(due, since + remainingMs);
    },
  };
}

/** How often a host tells the server how far staging got (the server's host_timeout counts silence). */
export const PROGRESS_INTERVAL_MS = 1000;

/** What `runTask` needs from the agent. */
export interface TaskContext {
  readonly host: string;
  readonly root: string;
  readonly cache: BlobCache;
  readonly source: ReleaseSource;
  /** The manifests of staged releases, for manifest deltas (optional: without it manifests come in full). */
  readonly manifests?: ManifestStore;
  /** Delivers a report, retrying transient failures itself; rejects only when the agent stops. Answers with the time left to switch when the server said. */
  readonly report: (report: AgentReport) => Promise<{ readonly remainingMs?: number | null | undefined } | undefined | void>;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** The task's deadline (from `taskDeadline` when the task arrived); absent: none. */
  readonly deadline?: AbortSignal | TaskDeadline;
  /**
   * The first scan after a deploy: the error that fails the step when the
   * activated release differs from its manifest (null: it matches).
   */
  readonly verify?: (releaseId: string) => Promise<string | null>;
  /**
   * Runs the switch (lockstep.env written, `current` re-pointed), so that the drift baseline moves with it at
   * that moment (see DriftMonitor.activation); without it the switch just runs.
   */
  readonly switching?: (releaseId: string, switchRelease: () => Promise<Activation>) => Promise<Activation>;
  /** Records staged trees and proves a tree matches its manifest before every switch, repairing it if not. */
  readonly verifier?: Pick<ReleaseVerifier, 'recordStaged' | 'verifyTree' | 'snapshotLeaving' | 'repairLeftBehind' | 'removingRelease' | 'retain'>;
  /**
   * Applies the release's system parts (managed files, packages) after verification and before the switch;
   * when the task fails before the switch, the parts of the release still current are applied again.
   */
  readonly system?: Pick<SystemActivator, 'apply'>;
}

/** Longest error text a report may carry (the schema's limit). */
const MAX_ERROR_LENGTH = 4000;

/** Carries out one task and reports its progress; failures are reported and returned, not thrown. */
export async function runTask(task: AgentTask, context: TaskContext): Promise<TaskOutcome> {
  const { host, logger, signal } = context;
  const deadline = context.deadline === undefined ? new AbortController().signal : context.deadline instanceof AbortSignal ? context.deadline : context.deadline.signal;
  const extendDeadline = context.deadline instanceof AbortSignal ? undefined : context.deadline?.extend;
  // Everything the task does stops at the deadline; `signal` alone means the agent stops.
  const taskSignal = AbortSignal.any([signal, deadline]);
  /** What the task was doing, for the report of a drop. */
  let phase = 'waiting to start';
  let switched = false;
  const log = logger.child({ deploymentId: task.deploymentId, release: shortId(task.releaseId), kind: task.kind });
  // Hook and health-check output travels with the next report.
  let logs: { source: string; text: string }[] = [];
  const appendLog = (source: string, lines: readonly string[]) => {
    for (const text of lines) logs.push({ source, text: text.slice(0, 16_000) });
    if (logs.length > 1500) logs = logs.slice(-1500);
  };
  const report = async (state: AgentReport['state'], currentReleaseId: string | null, error?: string, progress?: StagingProgress): Promise<void> => {
    const sent = logs;
    logs = [];
    const since = performance.now();
    const answer = await context.report({
      host,
      deploymentId: task.deploymentId,
      state,
      taskKind: task.kind,
      currentReleaseId,
      ...(error === undefined ? {} : { error }),
      ...(sent.length > 0 ? { logs: sent } : {}),
      ...(progress === undefined ? {} : { progress }),
    });
    // Counted from when the report left: the server's deadline is never later than ours.
    if (answer && typeof answer.remainingMs === 'number') extendDeadline?.(since, answer.remainingMs);
  };
  /** Runs a hook's command (or an after_change command) with the hooks' timeout and environment. */
  const runCommand = async (name: string, command: string, where: ReleaseProcess, previousReleaseId: string | null, commandSignal: AbortSignal, extraEnv: Record<string, string> = {}) => {
    // A signal that already aborted never fires its listener: the hook would run on.
    commandSignal.throwIfAborted();
    const result = await runHook(command, {
      cwd: where.cwd,
      timeoutMs: task.hooks.timeout,
      signal: commandSignal,
      env: {
        ...where.env,
        LOCKSTEP_HOOK: name,
        LOCKSTEP_VERSION: task.version,
        LOCKSTEP_DEPLOYMENT: String(task.deploymentId),
        LOCKSTEP_PREVIOUS_RELEASE_ID: previousReleaseId ?? '',
        ...extraEnv,
      },
    });
    appendLog(`hook:${name}`, result.output);
    if (result.kind === 'failed') throw new Error(`${name} ${name === 'after_change' ? `command "${command}"` : 'hook'} ${result.reason}`);
  };
  const hook = async (name: 'before_activate' | 'after_activate' | 'after_rollback', where: ReleaseProcess, previousReleaseId: string | null) => {
    const command = task.hooks[name];
    if (command === undefined) return;
    await runCommand(name, command, where, previousReleaseId, taskSignal);
  };
  /** Makes the host's system parts those of `releaseId` (null: none), in its release dir. */
  const applySystem = async (target: DeployLayout, releaseId: string | null, previousReleaseId: string | null, applySignal: AbortSignal) => {
    if (context.system === undefined) return;
    const parts = releaseId === null ? undefined : await systemPartsOf(releaseId, { manifests: context.manifests, source: context.source }, applySignal);
    const where = releaseId === null ? undefined : releaseProcess({ root: context.root, layout: target, releaseId, env: task.env, host });
    await context.system.apply({
      releaseId,
      parts,
      releaseDir: releaseId === null ? null : releaseDir(target, releaseId),
      deployTo: task.deployTo,
      host,
      env: task.env,
      vars: task.vars,
      secrets: task.secrets,
      signal: applySignal,
      runAfterChange: async (command, paths) => {
        if (where !== undefined) await runCommand('after_change', command, where, previousReleaseId, applySignal, { LOCKSTEP_CHANGED_FILES: paths.join(' ') });
      },
      log: appendLog,
    });
  };
  /** Whether system parts may have been changed for this task (and `current` not switched yet). */
  let systemTouched = false;

  let layout: DeployLayout | undefined;
  let stagingReported: Promise<void> | undefined;
  let activatedReported: Promise<void> | undefined;
  try {
    layout = deployLayout(context.root, task.deployTo);
    // A task that arrives past its deadline (redelivered after a long outage) does nothing.
    taskSignal.throwIfAborted();
    // Hooks and exec health checks run in the release's directory with its variables.
    const where = releaseProcess({ root: context.root, layout, releaseId: task.releaseId, env: task.env, host });
    // The staging report travels while the disk work runs; it is awaited
    // before the final report so the server sees them in order.
    // A release already on disk needs no staging (a rollback, a revert): then
    // the report would only cost the server a transaction per host.
    const staged = await stat(join(layout.releasesDir, task.releaseId)).then(
      (info) => info.isDirectory(),
      () => false,
    );
    const onDisk = await readCurrentReleaseId(layout);
    phase = 'staging';
    if (!staged) {
      stagingReported = report('staging', onDisk);
      // A rejected report means the agent is stopping; the awaits below surface it.
      stagingReported.catch(() => undefined);
    }

    const started = performance.now();
    // While staging, the server hears every PROGRESS_INTERVAL_MS how far it got (each report after the one before).
    const progress = progressReporter(stagingReported ?? Promise.resolve(), (value) => report('staging', onDisk, undefined, value));
    const staging = await stageRelease({
      layout,
      releaseId: task.releaseId,
      source: context.source,
      cache: context.cache,
      logger: log,
      signal: taskSignal,
      ...(context.manifests === undefined ? {} : { manifests: context.manifests, baseReleaseId: onDisk }),
      ...(context.verifier === undefined ? {} : { recorder: context.verifier }),
      onProgress: progress.update,
    }).finally(() => {
      // Later reports wait for the last progress report, so the server sees them in order.
      stagingReported = progress.stop();
    });
    taskSignal.throwIfAborted();
    const before = await readCurrentReleaseId(layout);
    phase = 'the before_activate hook';
    if (task.kind === 'deploy') await hook('before_activate', where, before);
    phase = 'verification';
    // Only a tree proven to be its manifest is switched to (after the hook: it runs in the tree).
    const proven = await context.verifier?.verifyTree(layout, task.releaseId, taskSignal);
    if (proven !== undefined && proven.repaired.length > 0) {
      const listed = proven.repaired.slice(0, 10).join(', ');
      appendLog('verify', [`repaired ${proven.repaired.length} release ${proven.repaired.length === 1 ? 'entry' : 'entries'} that differed from the manifest before the switch: ${listed}${proven.repaired.length > 10 ? ', …' : ''}`]);
    }
    // System parts after verification (their sources are release files it proved) and before the switch.
    phase = 'system parts';
    systemTouched = true;
    await applySystem(layout, task.releaseId, before, taskSignal);
    // What differs in the tree about to be left is drift of `current`, to be put back after the switch (see below).
    const leaving = before !== null && before !== task.releaseId ? await context.verifier?.snapshotLeaving(layout, before, taskSignal).catch((error: unknown) => {
      if (taskSignal.aborted) throw error;
      log.warn({ err: error, release: shortId(before) }, 'could not check the active release before leaving it');
      return undefined;
    }) : undefined;
    phase = 'activation';
    // activateRelease checks the deadline once more right before the rename; the drift monitor
    // (context.switching) takes the new release as its baseline at that very moment.
    const target = layout;
    const switchRelease = () => activateRelease(target, task.releaseId, task.vars, taskSignal, { values: task.secrets, inEnv: task.secretsInEnv });
    const { previousReleaseId } = await (context.switching ? context.switching(task.releaseId, switchRelease) : switchRelease());
    switched = true;
    phase = 'the after hook and health checks';
    const elapsedMs = Math.round(performance.now() - started);
    log.info({ staging: staging.kind, manifest: staging.kind === 'staged' ? staging.manifest : undefined, rehashed: proven?.rehashed, repaired: proven?.repaired.length, previous: previousReleaseId && shortId(previousReleaseId), elapsedMs }, 'release activated');
    await stagingReported;
    const checks = task.health.checks.length > 0;
    const hookAfter = task.kind === 'deploy' ? task.hooks.after_activate : task.hooks.after_rollback;
    // The server learns at once that this host switched (it must come back if
    // the rollout stops). The report travels while the hook and the first
    // health round run (measured: awaiting it first cost ~110 ms per host);
    // it is awaited before the final report so the server sees them in order.
    if (checks || hookAfter !== undefined) {
      activatedReported = report('activated', task.releaseId);
      activatedReported.catch(() => undefined);
    }
    await hook(task.kind === 'deploy' ? 'after_activate' : 'after_rollback', where, previousReleaseId);
    // The first scan after the switch must match the manifest exactly. Only deploys: a rollback or revert is
    // the way back and must not be blocked by drift in the release it returns to (that drift is reported as
    // such instead). It runs while the health checks wait for the application (it re-hashes the release:
    // ~300 ms for 196 MiB), and a mismatch stops them at once.
    const stopHealth = new AbortController();
    const verified = task.kind === 'deploy' && context.verify !== undefined ? context.verify(task.releaseId) : Promise.resolve(null);
    verified.then((mismatch) => mismatch !== null && stopHealth.abort(), () => stopHealth.abort());
    const health = await waitHealthy(task.health, where, AbortSignal.any([taskSignal, stopHealth.signal]), (round) => appendLog('health', [`${round.healthy ? 'pass' : 'fail'}: ${round.detail}`])).catch((error: unknown) => {
      if (taskSignal.aborted || !stopHealth.signal.aborted) throw error;
      return undefined; // stopped by the check below
    });
    const mismatch = await verified;
    if (mismatch !== null) throw new Error(mismatch);
    if (health !== undefined && !health.healthy) throw new Error(`health check failed: ${health.detail}`);
    await activatedReported;
    await report('succeeded', task.releaseId);
    // The tree just left is put back to its release where it differed before the switch: that was drift of `current`
    // (closed by this deployment, or adopted); what changed in it since stays, as drift of a kept release.
    if (leaving !== undefined && previousReleaseId !== null && previousReleaseId === before) {
      await context.verifier?.repairLeftBehind(layout, previousReleaseId, leaving, signal).catch((error: unknown) => {
        if (signal.aborted) throw error;
        log.warn({ err: error, release: shortId(previousReleaseId) }, 'could not put the release left behind back to its manifest; it is repaired before any switch to it');
      });
    }
    const pruned = await prune(layout, task, previousReleaseId, log, context.verifier, signal);
    await context.manifests?.retain(await releasesOnDisk(layout)).catch((error: unknown) => log.warn({ err: error }, 'could not prune stored manifests'));
    await context.verifier?.retain(layout).catch((error: unknown) => log.warn({ err: error }, 'could not prune stat records'));
    return { kind: 'succeeded', staging, previousReleaseId, pruned };
  } catch (error) {
    if (signal.aborted) throw error;
    // The failure is what gets reported; a `current` that cannot be read as well is logged and reported as none.
    const currentReleaseId =
      layout === undefined
        ? null
        : await readCurrentReleaseId(layout).catch((readError: unknown) => {
            log.warn({ err: readError }, 'cannot read the current release after the task failed; reporting none');
            return null;
          });
    if (systemTouched && !switched && layout !== undefined && currentReleaseId !== task.releaseId) {
      // `current` still runs the release before: give the host back its system parts.
      await applySystem(layout, currentReleaseId, task.releaseId, signal).catch((restoreError: unknown) => {
        if (signal.aborted) throw restoreError;
        log.error({ err: restoreError }, 'could not restore the system parts of the current release after the task failed');
        appendLog('system', [`could not restore the system parts of the current release: ${oneLine(restoreError)}`]);
      });
    }
    if (deadline.aborted) {
      // The server decides from `currentReleaseId` whether this host must come back.
      const reason = `the deadline passed during ${phase}${switched ? ' (after the switch)' : '; current was not switched'}`;
      log.warn({ phase, switched }, 'task dropped at its deadline');
      appendLog('agent', [`task dropped: ${reason}`]);
      await stagingReported?.catch(() => undefined);
      await activatedReported?.catch(() => undefined);
      await report('cancelled', currentReleaseId, reason);
      return { kind: 'cancelled', reason, currentReleaseId };
    }
    const message = oneLine(error);
    log.error({ err: error }, 'task failed');
    await stagingReported?.catch(() => undefined);
    await activatedReported?.catch(() => undefined);
    await report('failed', currentReleaseId, message);
    return { kind: 'failed', error: message, currentReleaseId };
  }
}

/**
 * Sends the latest staging progress every PROGRESS_INTERVAL_MS while it
 * changes, one report at a time, each after `after` (the staging report).
 * `stop` ends it and returns the chain of reports sent, to await before the next report.
 */
function progressReporter(after: Promise<void>, send: (progress: StagingProgress) => Promise<void>): { update: (progress: StagingProgress) => void; stop: () => Promise<void> } {
  let latest: StagingProgress | undefined;
  let sentBytes = -1;
  let chain = after;
  let busy = false;
  const timer = setInterval(() => {
    if (busy || latest === undefined || latest.bytes === sentBytes) return;
    const value = latest;
    sentBytes = value.bytes;
    busy = true;
    chain = chain.then(() => send(value)).finally(() => {
      busy = false;
    });
    chain.catch(() => undefined);
  }, PROGRESS_INTERVAL_MS);
  timer.unref();
  return {
    update: (progress) => {
      latest = progress;
    },
    stop: () => {
      clearInterval(timer);
      return chain;
    },
  };
}

async function prune(layout: DeployLayout, task: AgentTask, previousReleaseId: string | null, log: Logger, verifier: TaskContext['verifier'], signal: AbortSignal): Promise<string[]> {
  try {
    // A redelivered task finds `current` already switched, so "the release
    // before" is then the second most recently activated: keep at least two.
    const again = previousReleaseId === task.releaseId;
    const keep = again ? Math.max(task.keepReleases, 2) : task.keepReleases;
    const pruned = await pruneReleases(layout, {
      keep,
      protect: [task.releaseId, previousReleaseId],
      ...(verifier === undefined ? {} : { removing: (releaseId: string, remove: () => Promise<void>) => verifier.removingRelease(layout, releaseId, remove, signal) }),
    });
    if (pruned.length > 0) log.info({ pruned: pruned.map(shortId) }, 'pruned old releases');
    return pruned;
  } catch (error) {
    // The deployment already succeeded; an old release left on disk is only a warning.
    log.warn({ err: error }, 'could not prune old releases');
    return [];
  }
}


function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const line = text.split('\n', 1)[0] ?? '';
  return (line.trim() || 'unknown error').slice(0, MAX_ERROR_LENGTH);
}
