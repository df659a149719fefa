/**
 * Package drift end to end with real dpkg: a package upgraded by hand on a
 * production host (dpkg -i under its --root) is ONE `package` finding naming
 * dpkg and the versions, not one finding per file it changed; a hand edit of
 * a packaged file stays a file finding marked with its package; `drift accept`
 * of the package makes the new version the baseline.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, writeApp, type Fleet } from '../helpers/fleet.js';
import { buildDeb, dpkgInstall, initDpkgRoot } from '../helpers/dpkg.js';
import { until } from '../helpers/until.js';

interface DriftItemJson {
  scope: string;
  path: string;
  kinds: string[];
  state: string;
  expected: { version?: string; ownedBy?: string } | null;
  actual: { version?: string; detail?: string; ownedBy?: string } | null;
}

const CONFIG = `app: app
deploy_to: /srv/app
watch:
  - path: /etc/hello
drift:
  scan_interval: 2s
environments:
  test:
    host_timeout: 20s
  production:
    promote_from: test
    host_timeout: 20s
`;

describe('package drift with real dpkg', () => {
  let fleet: Fleet;
  let prodRoot: string;
  let upgrade: string;

  const drift = async (all = false): Promise<DriftItemJson[]> => JSON.parse(await fleet.ok(['drift', 'prod-1', '--json', ...(all ? ['--all'] : [])])) as DriftItemJson[];

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(CONFIG);
    const debs = join(fleet.dir, 'debs');
    await mkdir(debs, { recursive: true });
    const files = (marker: string) => ({ '/etc/hello/hello.conf': `greeting=${marker}\n`, '/etc/hello/extra.conf': `extra=${marker}\n`, '/usr/share/hello/README': `hello ${marker}\n` });
    const first = await buildDeb(debs, 'hello', '1.0-1', files('1.0'));
    upgrade = await buildDeb(debs, 'hello', '1.0-1+deb12u1', files('1.0+fix'));
    for (const name of ['test-1', 'prod-1']) {
      const root = join(fleet.dir, 'hosts', name);
      await initDpkgRoot(root);
      await dpkgInstall(root, first);
    }
    prodRoot = join(fleet.dir, 'hosts', 'prod-1');
    await Promise.all([fleet.addAgent('test-1', 'test'), fleet.addAgent('prod-1', 'production')]);
    const build = await writeApp(join(fleet.dir, 'build'), '1.0.0');
    await fleet.ok(['release', 'create', build, '--version', '1.0.0']);
    await fleet.ok(['deploy', 'app@1.0.0', '--to', 'test']);
    await fleet.ok(['deploy', 'app@1.0.0', '--to', 'production']);
  });

  after(async () => {
    await fleet?.stop();
  });

  it('a hand dpkg upgrade on production is one package finding naming dpkg and both versions, not one per file', async () => {
    await fleet.ok(['drift', 'scan', 'prod-1']);
    assert.deepEqual(await drift(), [], 'the package installed before the deployment is the baseline');

    await dpkgInstall(prodRoot, upgrade);
    const item = await until('the package finding', async () => (await drift()).find((candidate) => candidate.path === 'package:hello'), 60_000);
    // One more scan: what it reports is the settled picture, not a moment between two scans.
    await fleet.ok(['drift', 'scan', 'prod-1']);
    const items = await drift();
    assert.deepEqual(
      items.map((open) => [open.scope, open.path, open.kinds]),
      [['package', 'package:hello', ['package']]],
      'the two watched files dpkg rewrote are part of the package finding',
    );
    assert.equal(item.expected?.version, '1.0-1');
    assert.equal(item.actual?.version, '1.0-1+deb12u1');
    assert.match(item.actual?.detail ?? '', /^upgrade by dpkg at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(dpkg\.log\); 2 files changed with it$/);

    const listed = await fleet.ok(['drift', 'prod-1']);
    assert.match(listed, /package:hello +package +1\.0-1 +1\.0-1\+deb12u1 \(upgrade by dpkg at /);
  });

  it('a hand edit of a packaged file stays a file finding marked with its package; accept makes the new version the baseline', async () => {
    await writeFile(join(prodRoot, 'etc/hello/hello.conf'), 'greeting=edited by hand\n');
    const edited = await until('the file finding', async () => (await drift()).find((candidate) => candidate.path === '/etc/hello/hello.conf'), 60_000);
    assert.equal(edited.scope, 'watch');
    assert.equal(edited.actual?.ownedBy, 'hello');
    assert.match(await fleet.ok(['drift', 'prod-1']), /\(package hello\)/);

    await fleet.ok(['drift', 'accept', 'prod-1', '--path', 'package:hello', '--reason', 'security update, tested']);
    const closed = await until('the package item accepted', async () => (await drift(true)).find((candidate) => candidate.path === 'package:hello' && candidate.state === 'accepted'), 60_000);
    assert.equal(closed.actual?.version, '1.0-1+deb12u1');
    await fleet.ok(['drift', 'scan', 'prod-1']);
    assert.deepEqual(
      (await drift()).map((open) => open.path),
      ['/etc/hello/hello.conf'],
      'the file dpkg rewrote was accepted with the package; the hand edit stays',
    );
  });
});
