/**
 * The environment's secrets on a host: one file per secret in
 * DEPLOY_TO/shared/secrets/, named after the secret, holding its value,
 * mode 0400, each written atomically. Lockstep owns the directory: whatever
 * else is in it (a removed secret, a temporary file a killed agent left) is
 * removed, so a secret removed on the server is gone after the next switch.
 */
import { lstat, mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ifMissing, LockstepError } from '../../core/errors.js';
import { SECRET_NAME } from '../../core/secret-name.js';
import { writeFileAtomic } from '../../content/atomic-file.js';
import { removeTree } from '../../content/remove-tree.js';
import type { DeployLayout } from './deploy-layout.js';

/** Name of the secrets directory in shared/. */
export const SECRETS_DIR = 'secrets';
/** Mode of a secret file: its owner (the agent's user) may read it, nobody may write it. */
export const SECRET_FILE_MODE = 0o400;

/** DEPLOY_TO/shared/secrets. */
export function secretsDir(layout: DeployLayout): string {
  return join(layout.sharedDir, SECRETS_DIR);
}

/**
 * Makes DEPLOY_TO/shared/secrets hold exactly `secrets` (name → value). A file that already holds its value at
 * 0400 is left alone; with no secrets and no directory, nothing is created. Refuses a secrets path that is not
 * a directory (a planted symlink must not redirect the writes).
 */
export async function writeSecretFiles(layout: DeployLayout, secrets: Readonly<Record<string, string>>): Promise<void> {
  const dir = secretsDir(layout);
  const names = Object.keys(secrets);
  // The server allows no other names; checked again here because each becomes a file name.
  for (const name of names) if (!SECRET_NAME.test(name)) throw new LockstepError('failed', `secret name "${name}" cannot be a file name`);
  const info = await ifMissing(lstat(dir));
  if (info === undefined && names.length === 0) return;
  if (info !== undefined && !info.isDirectory()) throw new LockstepError('failed', `${dir} exists and is not a directory; refusing to write secrets through it`);
  if (info === undefined) await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const name of names) {
    const value = secrets[name] ?? '';
    const file = join(dir, name);
    if (await holds(file, value)) continue;
    await writeFileAtomic(file, value, SECRET_FILE_MODE);
  }
  const wanted = new Set(names);
  for (const entry of (await ifMissing(readdir(dir))) ?? []) if (!wanted.has(entry)) await removeTree(join(dir, entry));
}

/** Whether `file` is a regular file of mode 0400 holding exactly `value`. */
async function holds(file: string, value: string): Promise<boolean> {
  const info = await ifMissing(lstat(file));
  if (info === undefined || !info.isFile() || (info.mode & 0o7777) !== SECRET_FILE_MODE) return false;
  return (await readFile(file, 'utf8')) === value;
}
