/**
 * Activation: renders the per-environment variables into shared/lockstep.env,
 * the environment's secrets into shared/secrets/ (or lockstep.env), and
 * switches DEPLOY_TO/current to a staged release with one rename(2), so a
 * host is on the old release or the new one, never between.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readlink, rename, rm, symlink, utimes } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ifMissing, LockstepError } from '../../core/errors.js';
import { shortId } from '../../core/manifest.js';
import { fsyncDirectory, writeFileAtomic } from '../../content/atomic-file.js';
import { isReleaseId, releaseDir, type DeployLayout } from './deploy-layout.js';
import { writeSecretFiles } from './secret-files.js';

/** Name of the rendered variables file in shared/. */
export const ENV_FILE = 'lockstep.env';
/** Mode of the variables file: it may hold secrets, so the group may read, others not. */
export const ENV_FILE_MODE = 0o640;
/** Mode of the variables file when the environment's secrets are in it (secrets_in_env): its owner only. */
export const ENV_FILE_WITH_SECRETS_MODE = 0o600;
/** Prefix of the temporary symlink made next to `current`; leftovers carry it after a crash. */
export const CURRENT_TMP_PREFIX = 'current.tmp-';

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** What activation changed. */
export interface Activation {
  /** The release `current` pointed at before (null: none). */
  readonly previousReleaseId: string | null;
}

/** The release `current` points at: the basename of its link target, or null when there is none (or it is not a release). */
export async function readCurrentReleaseId(layout: DeployLayout): Promise<string | null> {
  try {
    const id = basename(await readlink(layout.currentLink));
    return isReleaseId(id) ? id : null;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EINVAL') return null;
    throw error;
  }
}

/** The text of lockstep.env: KEY=VALUE lines sorted by key. Refuses keys and values the format cannot carry. */
export function renderEnvFile(vars: Readonly<Record<string, string>>): string {
  const keys = Object.keys(vars).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const lines: string[] = [];
  for (const key of keys) {
    const value = vars[key] ?? '';
    if (!ENV_KEY.test(key)) throw new LockstepError('failed', `variable name "${key}" is not a valid environment variable name`);
    if (/[\r\n\0]/.test(value)) throw new LockstepError('failed', `variable ${key} contains a line break or NUL byte, which ${ENV_FILE} cannot hold`);
    lines.push(`${key}=${value}\n`);
  }
  return lines.join('');
}

/** Writes DEPLOY_TO/shared/lockstep.env atomically with `mode` (0640 unless it holds secrets). */
export async function writeEnvFile(layout: DeployLayout, vars: Readonly<Record<string, string>>, mode = ENV_FILE_MODE): Promise<void> {
  const content = renderEnvFile(vars);
  await mkdir(layout.sharedDir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(join(layout.sharedDir, ENV_FILE), content, mode);
}

/** The environment's secrets as a task carries them, and where they go. */
export interface SecretDelivery {
  /** Name → value. */
  readonly values: Readonly<Record<string, string>>;
  /** true: as lines of lockstep.env (a secret replaces a var of the same name); false: files in shared/secrets/. */
  readonly inEnv: boolean;
}

/** No secrets: shared/secrets/ is emptied. */
export const NO_SECRETS: SecretDelivery = { values: {}, inEnv: false };

/**
 * Writes lockstep.env and shared/secrets/ for a switch: with `inEnv`, the secrets go into lockstep.env (0600) and
 * shared/secrets/ is emptied; otherwise lockstep.env holds the vars only (0640) and each secret is its own file.
 */
export async function writeSharedFiles(layout: DeployLayout, vars: Readonly<Record<string, string>>, secrets: SecretDelivery): Promise<void> {
  if (secrets.inEnv) await writeEnvFile(layout, { ...vars, ...secrets.values }, ENV_FILE_WITH_SECRETS_MODE);
  else await writeEnvFile(layout, vars);
  await writeSecretFiles(layout, secrets.inEnv ? {} : secrets.values);
}

/** The target `current` has when `releaseId` is active. */
export function currentTarget(releaseId: string): string {
  return `releases/${releaseId}`;
}

/** Points `current` at a staged release with one rename(2), durably; refuses to replace anything but a symlink. */
export async function pointCurrent(layout: DeployLayout, releaseId: string): Promise<void> {
  const current = await ifMissing(lstat(layout.currentLink));
  if (current !== undefined && !current.isSymbolicLink()) {
    throw new LockstepError('failed', `${layout.currentLink} exists and is not a symlink; refusing to replace it`);
  }
  const tmpLink = join(layout.deployTo, `${CURRENT_TMP_PREFIX}${randomBytes(6).toString('hex')}`);
  await symlink(currentTarget(releaseId), tmpLink);
  try {
    await rename(tmpLink, layout.currentLink);
  } catch (error) {
    await rm(tmpLink, { force: true });
    throw error;
  }
  // The switch must be durable before it is reported.
  await fsyncDirectory(layout.deployTo);
}

/**
 * Makes `releaseId` (already staged) the active release: variables and secrets
 * first, then a new symlink renamed over `current`, then the release dir's times
 * touched so pruning knows it was the most recently activated. Once `signal`
 * aborted (the task's deadline passed) nothing is switched.
 */
export async function activateRelease(layout: DeployLayout, releaseId: string, vars: Readonly<Record<string, string>>, signal?: AbortSignal, secrets: SecretDelivery = NO_SECRETS): Promise<Activation> {
  const dir = releaseDir(layout, releaseId);
  const info = await ifMissing(lstat(dir));
  if (!info?.isDirectory()) throw new LockstepError('failed', `release ${shortId(releaseId)} is not staged on this host`);

  signal?.throwIfAborted();
  await writeSharedFiles(layout, vars, secrets);
  const previousReleaseId = await readCurrentReleaseId(layout);

  // The last moment to drop a task whose deadline passed: after it, the host runs the release.
  signal?.throwIfAborted();
  await pointCurrent(layout, releaseId);
  const now = new Date();
  await utimes(dir, now, now);
  return { previousReleaseId };
}
