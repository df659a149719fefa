/**
 * Integrity end to end, written as the attack: release files are hard links
 * into the agent's blob cache, so one in-place edit reaches every tree that
 * shares the inode. Real server, a real agent on a sandbox root, the real CLI.
 * Each edit-then-act case runs five times: after `drift revert`, a rollback
 * activates the original bytes; a kept release edited in place is listed by
 * `lockstep drift`, a rollback to it activates the original bytes, and its
 * `drift revert` repairs it with the active tree sharing the inode; a
 * redeploy of an already-staged release that was edited succeeds with the
 * original bytes instead of failing its post-deploy check.
 */
import assert from 'node:assert/strict';
import { appendFile, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { until } from '../helpers/until.js';
import { assertExit, DEPLOY_TO, releaseIdFrom } from './host-tree.js';

interface DriftItemJson {
  readonly host: string;
  readonly scope: string;
  readonly path: string;
  readonly kinds: readonly string[];
  readonly state: string;
}

/** The same bytes in every version: one inode shared by every release tree and the cache. */
const STYLE = 'body { color: black }\n';
const ATTEMPTS = 5;

describe('integrity: no edit reaches an activated tree', () => {
  let fleet: Fleet;
  let host: AgentHandle;
  const ids: Record<string, string> = {};
  const builds: Record<string, string> = {};

  const onHost = (path: string): string => host.path(`${DEPLOY_TO}/${path}`);
  const original = (version: string, path: string): Promise<string> => readFile(join(builds[version] ?? '', path), 'utf8');
  const cli = async (args: string[], what: string): Promise<void> => assertExit(await fleet.cli(args), 0, what);
  const drift = async (): Promise<DriftItemJson[]> => JSON.parse(await fleet.ok(['drift', 'dev-1', '--json'])) as DriftItemJson[];
  const runs = async (version: string): Promise<void> => assert.equal(await readlink(onHost('current')), `releases/${ids[version]}`, `current points at ${version}`);

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(`${testConfig()}drift:\n  scan_interval: 1s\n`);
    host = await fleet.addAgent('dev-1', 'development');
    for (const version of ['1.0.0', '2.0.0']) {
      const dir = await writeApp(join(fleet.dir, `build-${version}`), `release ${version}`);
      await writeFile(join(dir, 'public/style.css'), STYLE);
      builds[version] = dir;
      const created = await fleet.cli(['release', 'create', dir, '--version', version]);
      assertExit(created, 0, `release create ${version}`);
      ids[version] = releaseIdFrom(created.stdout);
    }
    await cli(['deploy', 'app@1.0.0', '--to', 'development'], 'deploy 1.0.0');
  });

  after(async () => {
    await fleet?.stop();
  });

  it('after `drift revert` of an edit through current, a rollback activates the original bytes', async () => {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      await cli(['deploy', 'app@2.0.0', '--to', 'development'], `attempt ${attempt}: deploy 2.0.0`);
      await appendFile(onHost('current/public/style.css'), 'x\n');
      const path = `${DEPLOY_TO}/current/public/style.css`;
      await until(`attempt ${attempt}: the edit listed as drift`, async () => ((await drift()).some((item) => item.path === path) ? true : undefined));
      await cli(['drift', 'revert', 'dev-1', '--reason', 'not ours'], `attempt ${attempt}: drift revert`);
      await cli(['rollback', 'development', '--to', 'app@1.0.0'], `attempt ${attempt}: rollback to 1.0.0`);
      await runs('1.0.0');
      assert.equal(await readFile(onHost('current/public/style.css'), 'utf8'), STYLE, `attempt ${attempt}: the original bytes are live`);
      assert.equal(await readFile(onHost(`releases/${ids['2.0.0']}/public/style.css`), 'utf8'), STYLE, `attempt ${attempt}: the other tree sharing the inode is right too`);
    }
  });

  it('a kept release edited in place is listed as drift, and a rollback to it activates the original bytes', async () => {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      await cli(['deploy', 'app@2.0.0', '--to', 'development'], `attempt ${attempt}: deploy 2.0.0`);
      await appendFile(onHost(`releases/${ids['1.0.0']}/public/page-0.html`), '<script src="//evil"></script>\n');
      const path = `${DEPLOY_TO}/releases/${ids['1.0.0']}/public/page-0.html`;
      const item = await until(`attempt ${attempt}: the kept release's edit listed as drift`, async () => (await drift()).find((candidate) => candidate.path === path));
      assert.equal(item.scope, 'release');
      assert.deepEqual(item.kinds, ['content']);
      await cli(['rollback', 'development', '--to', 'app@1.0.0'], `attempt ${attempt}: rollback to 1.0.0`);
      await runs('1.0.0');
      assert.equal(await readFile(onHost('current/public/page-0.html'), 'utf8'), await original('1.0.0', 'public/page-0.html'), `attempt ${attempt}: the original bytes are live`);
      await until(`attempt ${attempt}: the kept release's drift closed`, async () => ((await drift()).some((candidate) => candidate.path === path) ? undefined : true));
    }
  });

  it('`drift revert` of a kept release edited in place puts back that tree and the active one sharing the inode', async () => {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      if ((await readlink(onHost('current'))) !== `releases/${ids['2.0.0']}`) await cli(['deploy', 'app@2.0.0', '--to', 'development'], `attempt ${attempt}: deploy 2.0.0`);
      // Through the kept tree, into the inode the active release shares with it.
      await appendFile(onHost(`releases/${ids['1.0.0']}/public/style.css`), 'x\n');
      assert.equal(await readFile(onHost('current/public/style.css'), 'utf8'), `${STYLE}x\n`, 'the edit of the kept tree reached the active one');
      const path = `${DEPLOY_TO}/releases/${ids['1.0.0']}/public/style.css`;
      await until(`attempt ${attempt}: the kept release's edit listed as drift`, async () => ((await drift()).some((item) => item.path === path) ? true : undefined));
      await cli(['drift', 'revert', 'dev-1', '--path', path, '--reason', 'not ours'], `attempt ${attempt}: drift revert of the kept release`);
      assert.equal(await readFile(onHost(`releases/${ids['1.0.0']}/public/style.css`), 'utf8'), STYLE, `attempt ${attempt}: the kept tree is right again`);
      assert.equal(await readFile(onHost('current/public/style.css'), 'utf8'), STYLE, `attempt ${attempt}: and so is the active tree that shared the inode`);
    }
  });

  it('a redeploy of an already-staged release edited in place succeeds with the original bytes', async () => {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      if ((await readlink(onHost('current'))) !== `releases/${ids['1.0.0']}`) await cli(['rollback', 'development', '--to', 'app@1.0.0'], `attempt ${attempt}: back to 1.0.0`);
      await appendFile(onHost(`releases/${ids['2.0.0']}/public/page-0.html`), 'defaced\n');
      await appendFile(onHost(`releases/${ids['2.0.0']}/public/style.css`), 'defaced\n');
      await cli(['deploy', 'app@2.0.0', '--to', 'development'], `attempt ${attempt}: redeploy 2.0.0`);
      await runs('2.0.0');
      assert.equal(await readFile(onHost('current/public/page-0.html'), 'utf8'), await original('2.0.0', 'public/page-0.html'), `attempt ${attempt}: page-0 is the original`);
      assert.equal(await readFile(onHost('current/public/style.css'), 'utf8'), STYLE, `attempt ${attempt}: style.css is the original`);
      assert.equal(await readFile(onHost(`releases/${ids['1.0.0']}/public/style.css`), 'utf8'), STYLE, `attempt ${attempt}: and so is the kept tree sharing it`);
    }
  });
});
