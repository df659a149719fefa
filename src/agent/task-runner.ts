/**
 * One task from start to report: report `staging`, stage (skipped when the
 * release is on disk), activate, report `succeeded` or `failed`, then prune.
 * Running the same task twice ends in the same state, so a task redelivered
 * after a restart simply finishes.
 */
import type { Logger } from 'pino';
import type { AgentReport, AgentTask } from '../api/schemas.js';
import { shortId } from '../core/manifest.js';
import type { BlobCache } from '../content/blob-cache.js';
import { activateRelease, readCurrentReleaseId } from './activator.js';
import { deployLayout, type DeployLayout } from './deploy-layout.js';
import { pruneReleases } from './release-pruner.js';
import { stageRelease, type ReleaseSource, type StageResult } from './release-stager.js';

/** How a task ended on this host. */
export type TaskOutcome =
  | { readonly kind: 'succeeded'; readonly staging: StageResult; readonly previousReleaseId: string | null; readonly pruned: readonly string[] }
  | { readonly kind: 'failed'; readonly error: string; readonly currentReleaseId: string | null };

/** What `runTask` needs from the agent. */
export interface TaskContext {
  readonly host: string;
  readonly root: string;
  readonly cache: BlobCache;
  readonly source: ReleaseSource;
  /** Delivers a report, retrying transient failures itself; rejects only when the agent stops. */
  readonly report: (report: AgentReport) => Promise<void>;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}

/** Longest error text a report may carry (the schema's limit). */
const MAX_ERROR_LENGTH = 4000;

/** Carries out one task and reports its progress; failures are reported and returned, not thrown. */
export async function runTask(task: AgentTask, context: TaskContext): Promise<TaskOutcome> {
  const { host, logger, signal } = context;
  const log = logger.child({ deploymentId: task.deploymentId, release: shortId(task.releaseId), kind: task.kind });
  const report = (state: AgentReport['state'], currentReleaseId: string | null, error?: string): Promise<void> =>
    context.report({ host, deploymentId: task.deploymentId, state, currentReleaseId, ...(error === undefined ? {} : { error }) });

  let layout: DeployLayout | undefined;
  let stagingReported: Promise<void> | undefined;
  try {
    layout = deployLayout(context.root, task.deployTo);
    // The staging report travels while the disk work runs; it is awaited
    // before the final report so the server sees them in order.
    stagingReported = report('staging', await readCurrentReleaseId(layout));
    // A rejected report means the agent is stopping; the awaits below surface it.
    stagingReported.catch(() => undefined);

    const started = performance.now();
    const staging = await stageRelease({ layout, releaseId: task.releaseId, source: context.source, cache: context.cache, logger: log, signal });
    signal.throwIfAborted();
    const { previousReleaseId } = await activateRelease(layout, task.releaseId, task.vars);
    const elapsedMs = Math.round(performance.now() - started);
    log.info({ staging: staging.kind, previous: previousReleaseId && shortId(previousReleaseId), elapsedMs }, 'release activated');

    await stagingReported;
    await report('succeeded', task.releaseId);
    const pruned = await prune(layout, task, previousReleaseId, log);
    return { kind: 'succeeded', staging, previousReleaseId, pruned };
  } catch (error) {
    if (signal.aborted) throw error;
    const message = oneLine(error);
    const currentReleaseId = layout === undefined ? null : await readCurrentReleaseId(layout).catch(() => null);
    log.error({ err: error }, 'task failed');
    await stagingReported?.catch(() => undefined);
    await report('failed', currentReleaseId, message);
    return { kind: 'failed', error: message, currentReleaseId };
  }
}

async function prune(layout: DeployLayout, task: AgentTask, previousReleaseId: string | null, log: Logger): Promise<string[]> {
  try {
    // A redelivered task finds `current` already switched, so "the release
    // before" is then the second most recently activated: keep at least two.
    const again = previousReleaseId === task.releaseId;
    const keep = again ? Math.max(task.keepReleases, 2) : task.keepReleases;
    const pruned = await pruneReleases(layout, { keep, protect: [task.releaseId, previousReleaseId] });
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
