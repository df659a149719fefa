/** Temporary directories for tests: real directories, removed afterwards. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A temporary directory and the function that removes it. */
export interface TempDir {
  readonly path: string;
  remove(): Promise<void>;
}

/** Creates an empty directory under the system temp dir; `remove()` deletes it with its contents. */
export async function makeTempDir(prefix = 'lockstep-test-'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }) };
}

/** Runs `work` with a fresh temporary directory that is removed afterwards, even if `work` throws. */
export async function withTempDir<T>(work: (path: string) => Promise<T>, prefix?: string): Promise<T> {
  const dir = await makeTempDir(prefix);
  try {
    return await work(dir.path);
  } finally {
    await dir.remove();
  }
}
