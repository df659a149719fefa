/**
 * The absorbed-edit race, end to end (issue 10, scenario 2): a real server, a
 * real agent on a sandbox root with a watched /etc/shop, the real CLI. An
 * edit made the moment `lockstep deploy` or `lockstep rollback` returns, or
 * while the deployment runs, and a release file edited right after a
 * rollback, must each be open drift with the content before the edit as
 * expected: baselines change only through Lockstep's own writes, accept and
 * adopt, never by reading the disk after a task. Each race runs 5 times.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { until } from '../helpers/until.js';

interface DriftItemJson {
  host: string;
  scope: string;
  path: string;
  kinds: string[];
  state: string;
  expected: { sha256?: string } | null;
  actual: { sha256?: string } | null;
}

const WATCHED = '/etc/shop/app.conf';
const ORIGINAL = 'pool=10\n';
const RELEASE_FILE = '/srv/app/current/public/page-0.html';
const ROUNDS = 5;
/** Generous: the machine may be busy; the waits end as soon as the item shows. */
const WAIT_MS = 120_000;
const sha = (content: string | Buffer): string => createHash('sha256').update(content).digest('hex');

/** Holds a deployment in its before_activate hook while the file `hold` exists under the host's root. */
const HOLDING_HOOK =
  'if [ -e "$LOCKSTEP_DEPLOY_TO/../../hold" ]; then touch "$LOCKSTEP_DEPLOY_TO/../../hook-running"; while [ -e "$LOCKSTEP_DEPLOY_TO/../../hold" ]; do sleep 0.05; done; fi';

describe('edits right after or during a deployment are drift (the absorbed-edit race)', () => {
  let fleet: Fleet;
  let prod: AgentHandle;
  const builds = new Map<string, string>();

  async function drift(all = false): Promise<DriftItemJson[]> {
    return JSON.parse(await fleet.ok(['drift', 'prod-1', '--json', ...(all ? ['--all'] : [])])) as DriftItemJson[];
  }
  const openItem = (path: string) => until(`open drift at ${path}`, async () => (await drift()).find((item) => item.path === path && item.state === 'open'), WAIT_MS);

  async function release(version: string): Promise<void> {
    const dir = await writeApp(join(fleet.dir, `build-${version}`), version);
    builds.set(version, dir);
    await fleet.ok(['release', 'create', dir, '--version', version]);
  }

  /** Reverts every open item and waits until the host reports none. */
  async function revertAll(): Promise<void> {
    await fleet.ok(['drift', 'revert', 'prod-1', '--reason', 'test round']);
    await until('no open drift', async () => ((await drift()).length === 0 ? true : undefined), WAIT_MS);
  }

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(`app: app
deploy_to: /srv/app
keep_releases: 3
watch:
  - path: /etc/shop
environments:
  production:
    host_timeout: 5m
    hooks:
      before_activate: '${HOLDING_HOOK}'
      timeout: 5m
`);
    await mkdir(join(fleet.dir, 'hosts/prod-1/etc/shop'), { recursive: true });
    await writeFile(join(fleet.dir, 'hosts/prod-1', WATCHED), ORIGINAL);
    prod = await fleet.addAgent('prod-1', 'production');
    await release('1.0.0');
    await fleet.ok(['deploy', 'app@1.0.0', '--to', 'production']);
  });

  after(async () => {
    await fleet?.stop();
  });

  it('a watched file edited the moment `lockstep deploy` returns is open drift with the content before the edit expected (5 times)', async () => {
    for (let round = 1; round <= ROUNDS; round++) {
      const version = `1.1.${round}`;
      await release(version);
      await fleet.ok(['deploy', `app@${version}`, '--to', 'production']);
      await writeFile(prod.path(WATCHED), `pool=${100 + round}\n`);
      const item = await openItem(WATCHED);
      assert.equal(item.scope, 'watch');
      assert.equal(item.expected?.sha256, sha(ORIGINAL), `round ${round}: expected is the content before the edit`);
      assert.equal(item.actual?.sha256, sha(`pool=${100 + round}\n`));
      await revertAll();
      assert.equal(await readFile(prod.path(WATCHED), 'utf8'), ORIGINAL);
    }
  });

  it('a watched file and a release file edited the moment `lockstep rollback` returns are open drift against what was there before (5 times)', async () => {
    await release('1.2.0');
    await fleet.ok(['deploy', 'app@1.2.0', '--to', 'production']);
    for (let round = 1; round <= ROUNDS; round++) {
      const version = `1.3.${round}`;
      await release(version);
      await fleet.ok(['deploy', `app@${version}`, '--to', 'production']);
      await fleet.ok(['rollback', 'production', '--to', 'app@1.2.0']);
      await writeFile(prod.path(WATCHED), `pool=${200 + round}\n`);
      // Replaced as an editor does (a new file renamed over it), so the release's other hard links stay intact.
      await writeFile(prod.path(`${RELEASE_FILE}.new`), `<h1>defaced ${round}</h1>\n`);
      await rename(prod.path(`${RELEASE_FILE}.new`), prod.path(RELEASE_FILE));
      const watched = await openItem(WATCHED);
      assert.equal(watched.expected?.sha256, sha(ORIGINAL), `round ${round}: expected is the content before the edit`);
      const released = await openItem(RELEASE_FILE);
      assert.equal(released.scope, 'release');
      assert.equal(released.expected?.sha256, sha(await readFile(join(builds.get('1.2.0') ?? '', 'public/page-0.html'))), `round ${round}: expected is the rolled-back-to release's file`);
      assert.equal(released.actual?.sha256, sha(`<h1>defaced ${round}</h1>\n`));
      await revertAll();
    }
  });

  it('a watched file edited while a deployment runs is open drift with the content before the edit expected (5 times)', async () => {
    const hold = prod.path('/hold');
    const running = prod.path('/hook-running');
    for (let round = 1; round <= ROUNDS; round++) {
      const version = `1.4.${round}`;
      await release(version);
      await writeFile(hold, '');
      const deployed = fleet.cli(['deploy', `app@${version}`, '--to', 'production']);
      await until('the before_activate hook to run', () => access(running).then(() => true, () => undefined), WAIT_MS);
      await writeFile(prod.path(WATCHED), `pool=${300 + round}\n`);
      await rm(running);
      await rm(hold);
      const result = await deployed;
      assert.equal(result.code, 0, result.stderr);
      const item = await openItem(WATCHED);
      assert.equal(item.expected?.sha256, sha(ORIGINAL), `round ${round}: expected is the content before the edit`);
      assert.equal(item.actual?.sha256, sha(`pool=${300 + round}\n`));
      await revertAll();
    }
  });
});
