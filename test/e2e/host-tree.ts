/**
 * Assertions about what a sandbox host holds on disk after a deployment,
 * shared by the end-to-end suites: `current` points at the release and the
 * release tree is exactly its manifest.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentHandle, Fleet } from '../helpers/fleet.js';

/** The config's deploy_to (see testConfig). */
export const DEPLOY_TO = '/srv/app';

/** A manifest entry as `lockstep release show --json` prints it. */
export type ShownEntry =
  | { readonly path: string; readonly type: 'file'; readonly mode: number; readonly size: number; readonly sha256: string }
  | { readonly path: string; readonly type: 'dir'; readonly mode: number }
  | { readonly path: string; readonly type: 'symlink'; readonly target: string };

/** `lockstep release show REF --json`. */
export interface ShownRelease {
  readonly id: string;
  readonly app: string;
  readonly version: string;
  readonly environments: readonly { env: string; succeededAt: string | null; rolledBackAt: string | null; current: boolean }[];
  readonly manifest: { readonly app: string; readonly version: string; readonly entries: readonly ShownEntry[] };
}

/** Runs `lockstep release show REF --json` and parses it. */
export async function showRelease(fleet: Fleet, ref: string): Promise<ShownRelease> {
  return JSON.parse(await fleet.ok(['release', 'show', ref, '--json'])) as ShownRelease;
}

/** Every path under `dir`, relative, '/'-separated, without following symlinks. */
async function walk(dir: string, prefix = ''): Promise<string[]> {
  const paths: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    paths.push(path);
    if (entry.isDirectory()) paths.push(...(await walk(join(dir, entry.name), path)));
  }
  return paths;
}

/** Asserts that the host's DEPLOY_TO/current is releases/<id> and that the tree there is exactly the manifest. */
export async function assertHostRuns(agent: AgentHandle, release: ShownRelease): Promise<void> {
  const current = agent.path(`${DEPLOY_TO}/current`);
  assert.ok((await lstat(current)).isSymbolicLink(), `${agent.name}: ${DEPLOY_TO}/current is a symlink`);
  assert.equal(await readlink(current), `releases/${release.id}`, `${agent.name}: current points at release ${release.version}`);
  const dir = agent.path(`${DEPLOY_TO}/releases/${release.id}`);
  const entries = release.manifest.entries;
  assert.deepEqual((await walk(dir)).sort(), entries.map((entry) => entry.path).sort(), `${agent.name}: the release tree holds exactly the manifest's paths`);
  for (const entry of entries) {
    const path = join(dir, entry.path);
    const info = await lstat(path);
    switch (entry.type) {
      case 'file': {
        assert.ok(info.isFile(), `${agent.name}: ${entry.path} is a regular file`);
        assert.equal(info.mode & 0o777, entry.mode, `${agent.name}: ${entry.path} has mode ${entry.mode.toString(8)}`);
        assert.equal(info.size, entry.size, `${agent.name}: ${entry.path} size`);
        const sha256 = createHash('sha256').update(await readFile(path)).digest('hex');
        assert.equal(sha256, entry.sha256, `${agent.name}: ${entry.path} content matches the manifest`);
        break;
      }
      case 'dir':
        assert.ok(info.isDirectory(), `${agent.name}: ${entry.path} is a directory`);
        assert.equal(info.mode & 0o777, entry.mode, `${agent.name}: ${entry.path} has mode ${entry.mode.toString(8)}`);
        break;
      case 'symlink':
        assert.ok(info.isSymbolicLink(), `${agent.name}: ${entry.path} is a symlink`);
        assert.equal(await readlink(path), entry.target, `${agent.name}: ${entry.path} points at ${entry.target}`);
        break;
    }
  }
}

/** The inode of a host's release directory (unchanged when the tree was reused, not re-staged). */
export async function releaseInode(agent: AgentHandle, releaseId: string): Promise<number> {
  return (await stat(agent.path(`${DEPLOY_TO}/releases/${releaseId}`))).ino;
}

/** Extracts the one 64-hex release id `lockstep release create` prints on stdout. */
export function releaseIdFrom(stdout: string): string {
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 1, `release create prints one line on stdout, got: ${stdout}`);
  const id = lines[0] ?? '';
  assert.match(id, /^[0-9a-f]{64}$/, 'release create prints a 64-hex release id');
  return id;
}

/** Asserts a CLI result's exit code, showing its output when it differs. */
export function assertExit(result: { code: number; stdout: string; stderr: string }, code: number, what: string): void {
  assert.equal(result.code, code, `${what}: expected exit ${code}, got ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
}
