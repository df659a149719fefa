/**
 * An environment's secrets on a host, against real directories: one 0400 file per secret in
 * shared/secrets/ (or lines of a 0600 lockstep.env), exactly the delivered set, nothing written through a
 * planted symlink, and temporary files a killed agent left removed at start.
 */
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { activateRelease } from '../../src/agent/release/activator.js';
import { deployLayout, type DeployLayout } from '../../src/agent/release/deploy-layout.js';
import { removeLeftovers } from '../../src/agent/release/leftover-cleaner.js';
import { secretsDir } from '../../src/agent/release/secret-files.js';
import { removeTree } from '../../src/content/remove-tree.js';

const A = 'a'.repeat(64);
let root: string;
let layout: DeployLayout;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'lockstep-agent-secrets-'));
  layout = deployLayout(root, '/srv/shop');
  await mkdir(join(layout.releasesDir, A), { recursive: true });
});
afterEach(async () => {
  await removeTree(root);
});

const mode = async (path: string) => (await lstat(path)).mode & 0o777;

describe('secret files', () => {
  it('writes each secret as a 0400 file, keeps lockstep.env to the vars, and removes what is no longer delivered', async () => {
    await activateRelease(layout, A, { STAGE: 'prod' }, undefined, { values: { DB_PASSWORD: 'pw-1', API_KEY: 'key-1\nline 2' }, inEnv: false });
    const dir = secretsDir(layout);
    assert.deepEqual((await readdir(dir)).sort(), ['API_KEY', 'DB_PASSWORD']);
    assert.equal(await readFile(join(dir, 'API_KEY'), 'utf8'), 'key-1\nline 2');
    assert.equal(await mode(join(dir, 'DB_PASSWORD')), 0o400);
    assert.equal(await readFile(join(layout.sharedDir, 'lockstep.env'), 'utf8'), 'STAGE=prod\n');
    assert.equal(await mode(join(layout.sharedDir, 'lockstep.env')), 0o640);

    // A hand-made file and a removed secret go; a changed value is replaced.
    await writeFile(join(dir, 'STRAY'), 'x');
    await activateRelease(layout, A, { STAGE: 'prod' }, undefined, { values: { DB_PASSWORD: 'pw-2' }, inEnv: false });
    assert.deepEqual(await readdir(dir), ['DB_PASSWORD']);
    assert.equal(await readFile(join(dir, 'DB_PASSWORD'), 'utf8'), 'pw-2');
    assert.equal(await mode(join(dir, 'DB_PASSWORD')), 0o400);
  });

  it('with inEnv the secrets are lines of a 0600 lockstep.env (replacing a var of that name) and the files are gone', async () => {
    await activateRelease(layout, A, { STAGE: 'dev' }, undefined, { values: { DB_PASSWORD: 'pw-1' }, inEnv: false });
    await activateRelease(layout, A, { STAGE: 'dev', DB_PASSWORD: 'from-vars' }, undefined, { values: { DB_PASSWORD: 'pw-1' }, inEnv: true });
    assert.equal(await readFile(join(layout.sharedDir, 'lockstep.env'), 'utf8'), 'DB_PASSWORD=pw-1\nSTAGE=dev\n');
    assert.equal(await mode(join(layout.sharedDir, 'lockstep.env')), 0o600);
    assert.deepEqual(await readdir(secretsDir(layout)), []);
    // Back to files: lockstep.env holds the vars only, at 0640 again.
    await activateRelease(layout, A, { STAGE: 'dev' }, undefined, { values: { DB_PASSWORD: 'pw-1' }, inEnv: false });
    assert.equal(await readFile(join(layout.sharedDir, 'lockstep.env'), 'utf8'), 'STAGE=dev\n');
    assert.equal(await mode(join(layout.sharedDir, 'lockstep.env')), 0o640);
  });

  it('creates no secrets directory when there are none, and refuses to write through a symlink planted in its place', async () => {
    await activateRelease(layout, A, {});
    await assert.rejects(lstat(secretsDir(layout)), { code: 'ENOENT' });
    const elsewhere = join(root, 'elsewhere');
    await mkdir(elsewhere);
    await symlink(elsewhere, secretsDir(layout));
    await assert.rejects(activateRelease(layout, A, {}, undefined, { values: { DB_PASSWORD: 'pw' }, inEnv: false }), /is not a directory; refusing/);
    assert.deepEqual(await readdir(elsewhere), []);
  });

  it('a 0400 file whose mode was changed is written again; temporary files a killed agent left are removed at start', async () => {
    await activateRelease(layout, A, {}, undefined, { values: { DB_PASSWORD: 'pw' }, inEnv: false });
    const file = join(secretsDir(layout), 'DB_PASSWORD');
    await chmod(file, 0o644);
    await activateRelease(layout, A, {}, undefined, { values: { DB_PASSWORD: 'pw' }, inEnv: false });
    assert.equal(await mode(file), 0o400);
    const leftover = join(secretsDir(layout), '.DB_PASSWORD.tmp-0123456789ab');
    await writeFile(leftover, 'half a secret', { mode: 0o400 });
    assert.deepEqual(await removeLeftovers(layout), [leftover]);
    assert.deepEqual(await readdir(secretsDir(layout)), ['DB_PASSWORD']);
  });
});
