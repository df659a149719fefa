/** Releases, what happened to each in each environment, and each environment's current release. */
import type { Selectable } from 'kysely';
import type { ReleaseEnvironmentsTable, ReleasesTable } from './schema.js';

/** One release (its manifest as canonical JSON). */
export type ReleaseRow = Selectable<ReleasesTable>;
/** What happened to one release in one environment. */
export type ReleaseEnvironmentRow = Selectable<ReleaseEnvironmentsTable>;

/** Reads of releases and environments. */
export interface ReleaseReadRepo {
  release(id: string): Promise<ReleaseRow | undefined>;
  releasesByPrefix(prefix: string, limit: number): Promise<ReleaseRow[]>;
  releaseByVersion(app: string, version: string): Promise<ReleaseRow | undefined>;
  /** Newest first, without manifests. */
  listReleases(limit: number): Promise<Omit<ReleaseRow, 'manifest'>[]>;
  releaseEnvironment(releaseId: string, env: string): Promise<ReleaseEnvironmentRow | undefined>;
  releaseEnvironments(releaseId: string): Promise<ReleaseEnvironmentRow[]>;
  /** Releases ever deployed to an environment (agents may fetch only these). */
  releaseIdsDeployedTo(env: string): Promise<string[]>;
  /**
   * Releases that succeeded in an environment, newest success first, rolled
   * back or not: which of them are known-good is core/known-good.ts's call.
   */
  succeededReleases(env: string): Promise<ReleaseEnvironmentRow[]>;
  environmentCurrent(env: string): Promise<string | undefined>;
}

/** Reads and writes of releases and environments. */
export interface ReleaseWriteRepo extends ReleaseReadRepo {
  insertRelease(row: ReleaseRow): Promise<void>;
  /** Creates the release's record in the environment (first deployed `at`) or applies `patch` to it. */
  upsertReleaseEnvironment(
    releaseId: string,
    env: string,
    patch: Partial<Pick<ReleaseEnvironmentRow, 'succeeded_at' | 'rolled_back_at' | 'rolled_back_reason' | 'rejected_at' | 'rejected_reason' | 'superseded_at'>>,
    at: string,
  ): Promise<void>;
  setEnvironmentCurrent(env: string, releaseId: string | null, at: string): Promise<void>;
}
