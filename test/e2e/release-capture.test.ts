/**
 * `lockstep release capture` with real dpkg under --root: a test host's
 * package set (with the .deb apt left in its cache) and a file become a
 * release; promoted to production, it installs exactly those packages and
 * writes that file, and `lockstep parity test production` reports the package
 * sets equal. Bad requests say what is wrong.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ParityResponse } from '../../src/api/schemas.js';
import { startFleet, writeApp, type Fleet } from '../helpers/fleet.js';
import { buildDeb, dpkgInstall, initDpkgRoot } from '../helpers/dpkg.js';
import { until } from '../helpers/until.js';
import { assertExit } from './host-tree.js';

const CONFIG = `app: app
deploy_to: /srv/app
environments:
  test:
    host_timeout: 20s
  production:
    promote_from: test
    host_timeout: 20s
`;

interface ShownJson {
  manifest: { system?: { files: { path: string; source: string }[]; packages: { kind: string; name: string; version: string }[] } };
}

describe('release capture', () => {
  let fleet: Fleet;
  const packageDifferences = async (): Promise<string[]> => {
    const result = await fleet.cli(['parity', 'test', 'production', '--json']);
    const parsed = JSON.parse(result.stdout) as ParityResponse;
    return parsed.differences.filter((difference) => difference.category === 'package').map((difference) => difference.name);
  };

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(CONFIG);
    const debs = join(fleet.dir, 'debs');
    await mkdir(debs, { recursive: true });
    const hello = await buildDeb(debs, 'hello', '2:1.2-3', { '/usr/share/hello/version': '1.2-3\n' });
    const tool = await buildDeb(debs, 'tool', '0.9', { '/usr/share/tool/version': '0.9\n' });
    const testRoot = join(fleet.dir, 'hosts', 'test-1');
    await initDpkgRoot(testRoot);
    await initDpkgRoot(join(fleet.dir, 'hosts', 'prod-1'));
    // What an administrator's apt-get upgrade on the test host leaves: the packages installed, their .deb files in apt's cache.
    await mkdir(join(testRoot, 'var/cache/apt/archives'), { recursive: true });
    for (const deb of [hello, tool]) await dpkgInstall(testRoot, deb);
    await copyFile(hello, join(testRoot, 'var/cache/apt/archives/hello_2%3a1.2-3_all.deb'));
    await copyFile(tool, join(testRoot, 'var/cache/apt/archives/tool_0.9_all.deb'));
    await mkdir(join(testRoot, 'etc/hello'), { recursive: true });
    await writeFile(join(testRoot, 'etc/hello/hello.conf'), 'greeting=tested\n');
    await Promise.all([fleet.addAgent('test-1', 'test'), fleet.addAgent('prod-1', 'production')]);
    const build = await writeApp(join(fleet.dir, 'build'), '1.0.0');
    await fleet.ok(['release', 'create', build, '--version', '1.0.0']);
    await fleet.ok(['deploy', 'app@1.0.0', '--to', 'test']);
    await fleet.ok(['deploy', 'app@1.0.0', '--to', 'production']);
  });

  after(async () => {
    await fleet?.stop();
  });

  it('refuses a capture of nothing and a path that is not a file, making no release', async () => {
    const nothing = await fleet.cli(['release', 'capture', 'test-1', '--version', '1.0.1']);
    assertExit(nothing, 2, 'capture without --packages or --path');
    assert.match(nothing.stderr, /nothing to capture: give --packages, --path P, or both/);
    const directory = await fleet.cli(['release', 'capture', 'test-1', '--version', '1.0.1', '--path', '/etc/hello']);
    assertExit(directory, 4, 'capture of a directory');
    assert.match(directory.stdout, /\/etc\/hello is not a regular file on test-1/);
    const list = JSON.parse(await fleet.ok(['release', 'list', '--json'])) as { version: string }[];
    assert.deepEqual(list.map((release) => release.version), ['1.0.0']);
  });

  it('captures the test host, promotes to production, and parity reports the package sets equal', async () => {
    await until('parity to see the packages production lacks', async () => (await packageDifferences()).length === 2, 60_000);
    const captured = await fleet.cli(['release', 'capture', 'test-1', '--version', '1.1.0', '--packages', '--path', '/etc/hello/hello.conf']);
    assertExit(captured, 0, 'release capture');
    const id = captured.stdout.trim().split('\n').at(-1) ?? '';
    assert.match(id, /^[0-9a-f]{64}$/);
    const shown = JSON.parse(await fleet.ok(['release', 'show', id, '--json'])) as ShownJson;
    assert.deepEqual(
      shown.manifest.system?.packages.map((entry) => [entry.kind, entry.name, entry.version]),
      [
        ['deb', 'hello', '2:1.2-3'],
        ['deb', 'tool', '0.9'],
      ],
      'both packages travel as the .deb files of the apt cache',
    );
    assert.deepEqual(shown.manifest.system?.files.map((file) => file.path), ['/etc/hello/hello.conf']);

    await fleet.ok(['deploy', 'app@1.1.0', '--to', 'test']);
    await fleet.ok(['deploy', 'app@1.1.0', '--to', 'production']);
    assert.equal(await readFile(join(fleet.dir, 'hosts/prod-1/usr/share/hello/version'), 'utf8'), '1.2-3\n');
    assert.equal(await readFile(join(fleet.dir, 'hosts/prod-1/etc/hello/hello.conf'), 'utf8'), 'greeting=tested\n');
    await until('parity to report the package sets equal', async () => (await packageDifferences()).length === 0, 60_000);
  });
});
