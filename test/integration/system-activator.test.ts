/**
 * The agent's system activator on a real directory treated as `/` (no
 * server): after_change once per deployment, nothing written when a template
 * cannot be rendered, originals given back when a release stops managing a
 * path, state kept readable by the agent only.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SystemActivator, type SystemApplyRequest } from '../../src/agent/system/system-activator.js';
import { SystemState } from '../../src/agent/system/system-state.js';
import type { SystemParts } from '../../src/core/system-parts.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

describe('system activator', () => {
  let temp: TempDir;
  let root: string;
  let releaseDir: string;
  let activator: SystemActivator;
  let state: SystemState;
  let commands: { command: string; paths: readonly string[] }[] = [];
  const owned: string[][] = [];

  const request = (releaseId: string | null, parts: SystemParts | undefined, vars: Record<string, string> = { NAME: 'www' }): SystemApplyRequest => ({
    releaseId,
    parts,
    releaseDir,
    host: 'h1',
    env: 'test',
    vars,
    secrets: {},
    signal: new AbortController().signal,
    runAfterChange: (command, paths) => {
      commands.push({ command, paths });
      return Promise.resolve();
    },
    log: () => undefined,
  });
  const parts = (version: string): SystemParts => ({
    files: [
      { path: '/etc/app/a.conf', source: 'a.conf', mode: 0o644, template: true, afterChange: 'reload app' },
      { path: '/etc/app/b.conf', source: 'b.conf', mode: 0o600, template: false, afterChange: 'reload app' },
      { path: '/etc/other.conf', source: `other-${version}.conf`, mode: 0o644, template: false },
    ],
    packages: [],
  });

  before(async () => {
    temp = await makeTempDir();
    root = join(temp.path, 'root');
    releaseDir = join(temp.path, 'release');
    await mkdir(join(root, 'etc/app'), { recursive: true });
    await mkdir(releaseDir, { recursive: true });
    await writeFile(join(releaseDir, 'a.conf'), 'name {{ vars.NAME }} on {{ host.name }}\n');
    await writeFile(join(releaseDir, 'b.conf'), 'b\n');
    await writeFile(join(releaseDir, 'other-1.conf'), 'other 1\n');
    await writeFile(join(releaseDir, 'other-2.conf'), 'other 2\n');
    await writeFile(join(releaseDir, 'broken.conf'), 'port {{ vars.PORT }}\n');
    // The host had b.conf before Lockstep; a.conf and other.conf did not exist.
    await writeFile(join(root, 'etc/app/b.conf'), 'hand-made\n', { mode: 0o640 });
    state = new SystemState(join(temp.path, 'state'));
    activator = new SystemActivator({
      root,
      state,
      ownChange: async (paths, change) => {
        owned.push([...paths]);
        return change();
      },
    });
  });

  after(async () => {
    await temp?.remove();
  });

  it('writes rendered files through the own-change path and runs a shared after_change once for all its files', async () => {
    commands = [];
    const result = await activator.apply(request('r1', parts('1')));
    assert.deepEqual(result.changedFiles, ['/etc/app/a.conf', '/etc/app/b.conf', '/etc/other.conf']);
    assert.deepEqual(commands, [{ command: 'reload app', paths: ['/etc/app/a.conf', '/etc/app/b.conf'] }]);
    assert.equal(await readFile(join(root, 'etc/app/a.conf'), 'utf8'), 'name www on h1\n');
    assert.equal((await stat(join(root, 'etc/app/b.conf'))).mode & 0o777, 0o600);
    assert.deepEqual(owned.at(-1), ['/etc/app/a.conf', '/etc/app/b.conf', '/etc/other.conf']);
    const applied = await state.applied();
    assert.equal(applied?.complete, true);
    assert.equal(applied?.releaseId, 'r1');
    assert.equal((await stat(join(state.dir, 'originals.json'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(state.dir, 'applied.json'))).mode & 0o777, 0o600);
  });

  it('applying the same parts again changes nothing and runs no after_change', async () => {
    commands = [];
    const result = await activator.apply(request('r1', parts('1')));
    assert.deepEqual(result.changedFiles, []);
    assert.deepEqual(commands, []);
  });

  it('after_change runs only for the files that changed', async () => {
    commands = [];
    const result = await activator.apply(request('r2', parts('2')));
    assert.deepEqual(result.changedFiles, ['/etc/other.conf']);
    assert.deepEqual(commands, []);
    commands = [];
    await activator.apply(request('r3', parts('2'), { NAME: 'api' }));
    assert.deepEqual(commands, [{ command: 'reload app', paths: ['/etc/app/a.conf'] }]);
  });

  it('a template that cannot be rendered fails before anything is written', async () => {
    const broken: SystemParts = { files: [{ path: '/etc/other.conf', source: 'other-1.conf', mode: 0o644, template: false }, { path: '/etc/app/a.conf', source: 'broken.conf', mode: 0o644, template: true }], packages: [] };
    await assert.rejects(activator.apply(request('r4', broken)), /template broken\.conf for \/etc\/app\/a\.conf: line 1: unknown name "vars\.PORT"/);
    assert.equal(await readFile(join(root, 'etc/other.conf'), 'utf8'), 'other 2\n', 'the other file was not written either');
    assert.equal((await state.applied())?.releaseId, 'r3');
  });

  it("refuses to write into the agent's state dir or DEPLOY_TO, before writing anything", async () => {
    const guarded = new SystemActivator({ root, state, protectedDirs: [join(root, 'var/lib/lockstep-agent')] });
    const into = (path: string): SystemParts => ({ files: [{ path: '/etc/other.conf', source: 'other-1.conf', mode: 0o644, template: false }, { path, source: 'b.conf', mode: 0o600, template: false }], packages: [] });
    await assert.rejects(guarded.apply(request('r5', into('/var/lib/lockstep-agent/credential.json'))), /managed file \/var\/lib\/lockstep-agent\/credential\.json would be written into .*var\/lib\/lockstep-agent, which Lockstep itself keeps/);
    await assert.rejects(guarded.apply({ ...request('r5', into('/srv/app/current/x')), deployTo: '/srv/app' }), /managed file \/srv\/app\/current\/x would be written into/);
    assert.equal(await readFile(join(root, 'etc/other.conf'), 'utf8'), 'other 2\n');
  });

  it('a release that manages nothing gives every path its original back: content and mode, or absence', async () => {
    const result = await activator.apply(request(null, undefined));
    assert.deepEqual([...result.restoredFiles].sort(), ['/etc/app/a.conf', '/etc/app/b.conf', '/etc/other.conf']);
    assert.equal(await readFile(join(root, 'etc/app/b.conf'), 'utf8'), 'hand-made\n');
    assert.equal((await stat(join(root, 'etc/app/b.conf'))).mode & 0o777, 0o640);
    await assert.rejects(stat(join(root, 'etc/app/a.conf')), { code: 'ENOENT' });
    await assert.rejects(stat(join(root, 'etc/other.conf')), { code: 'ENOENT' });
    assert.deepEqual((await state.applied())?.files, []);
  });
});
