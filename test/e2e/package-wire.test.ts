/**
 * Lockstep's own package operations and package drift, with real dpkg under
 * --root: deploying a release with a .deb and rolling back (a downgrade)
 * raise no package finding; a hand `dpkg -i` afterwards raises exactly one,
 * and `drift revert` reinstalls the released version from the release's .deb;
 * a hand install of a package the baseline lacked is removed by a revert; a
 * package Lockstep never shipped cannot be reverted, and the command says why;
 * `drift adopt` of a hand upgrade makes a release declaring the .deb apt left
 * in its cache, and deploying it closes the finding.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { startFleet, writeApp, type Fleet } from '../helpers/fleet.js';
import { buildDeb, dpkgInstall, initDpkgRoot } from '../helpers/dpkg.js';
import { until } from '../helpers/until.js';
import { assertExit } from './host-tree.js';

const exec = promisify(execFile);

interface DriftItemJson {
  path: string;
  scope: string;
  state: string;
  expected: { version?: string } | null;
  actual: { version?: string } | null;
}

const CONFIG = `app: app
deploy_to: /srv/app
drift:
  scan_interval: 2s
environments:
  production:
    host_timeout: 20s
`;

describe('package drift and Lockstep\'s own package operations', () => {
  let fleet: Fleet;
  let root: string;
  const debs: Record<string, string> = {};

  const drift = async (): Promise<DriftItemJson[]> => JSON.parse(await fleet.ok(['drift', 'prod-1', '--json'])) as DriftItemJson[];
  const installed = async (name: string): Promise<string | undefined> => {
    const { stdout } = await exec('dpkg-query', [`--admindir=${join(root, 'var/lib/dpkg')}`, '--show', '--showformat=${Version} ${db:Status-Status}', name]).catch(() => ({ stdout: '' }));
    const [version, status] = stdout.split(' ');
    return status === 'installed' ? version : undefined;
  };

  /** A release whose lockstep-release.yaml declares the hello .deb of `packageVersion`. */
  async function create(version: string, packageVersion: string): Promise<void> {
    const dir = await writeApp(join(fleet.dir, `build-${version}`), `release ${version}`);
    await mkdir(join(dir, 'debs'), { recursive: true });
    await writeFile(join(dir, 'debs/hello.deb'), await readFile(debs[packageVersion] ?? ''));
    await writeFile(join(dir, 'lockstep-release.yaml'), 'packages:\n  - deb: debs/hello.deb\n');
    assertExit(await fleet.cli(['release', 'create', dir, '--version', version]), 0, `release create ${version}`);
  }

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(CONFIG);
    const dir = join(fleet.dir, 'debs');
    await mkdir(dir, { recursive: true });
    for (const version of ['1.0-1', '2.0-1', '3.0-1']) debs[version] = await buildDeb(dir, 'hello', version, { '/usr/share/hello/version': `${version}\n` });
    debs['tool-1'] = await buildDeb(dir, 'tool', '1', { '/usr/share/tool/version': '1\n' });
    debs['base-1'] = await buildDeb(dir, 'base', '1', { '/usr/share/base/version': '1\n' });
    debs['base-2'] = await buildDeb(dir, 'base', '2', { '/usr/share/base/version': '2\n' });
    root = join(fleet.dir, 'hosts', 'prod-1');
    await initDpkgRoot(root);
    // A package the host had before Lockstep: no release ships it.
    await dpkgInstall(root, debs['base-1'] ?? '');
    await fleet.addAgent('prod-1', 'production');
    await create('1.0.0', '1.0-1');
    await create('2.0.0', '2.0-1');
  });

  after(async () => {
    await fleet?.stop();
  });

  it('deploy and rollback of a release .deb raise no package drift; a hand dpkg -i afterwards raises exactly one finding', async () => {
    await fleet.ok(['deploy', 'app@1.0.0', '--to', 'production']);
    await fleet.ok(['deploy', 'app@2.0.0', '--to', 'production']);
    assert.equal(await installed('hello'), '2.0-1');
    assertExit(await fleet.cli(['rollback', 'production', '--reason', 'back to 1.0.0']), 0, 'rollback');
    assert.equal(await installed('hello'), '1.0-1', 'the rollback downgraded the package');
    await fleet.ok(['drift', 'scan', 'prod-1']);
    assert.deepEqual(await drift(), [], 'install, upgrade and downgrade by Lockstep are not drift');

    await dpkgInstall(root, debs['3.0-1'] ?? '');
    await until('the package finding', async () => (await drift()).some((item) => item.path === 'package:hello'), 60_000);
    await fleet.ok(['drift', 'scan', 'prod-1']);
    const items = await drift();
    assert.deepEqual(items.map((item) => [item.scope, item.path, item.expected?.version, item.actual?.version]), [['package', 'package:hello', '1.0-1', '3.0-1']]);
  });

  it('drift revert reinstalls the released version from the release .deb and resolves the finding', async () => {
    const reverted = await fleet.cli(['drift', 'revert', 'prod-1', '--path', 'package:hello', '--reason', 'untested upgrade']);
    assertExit(reverted, 0, 'drift revert of a package finding');
    assert.equal(await installed('hello'), '1.0-1', 'the host is back at the released version');
    assert.equal(await readFile(join(root, 'usr/share/hello/version'), 'utf8'), '1.0-1\n');
    await fleet.ok(['drift', 'scan', 'prod-1']);
    assert.deepEqual(await drift(), [], 'the finding is resolved and the revert itself is not drift');
  });

  it('a hand-installed package is removed by a revert; one Lockstep never shipped cannot be reverted and the command says why', async () => {
    await dpkgInstall(root, debs['tool-1'] ?? '');
    await dpkgInstall(root, debs['base-2'] ?? '');
    await until('two package findings', async () => (await drift()).filter((item) => item.scope === 'package').length === 2, 60_000);

    assertExit(await fleet.cli(['drift', 'revert', 'prod-1', '--path', 'package:tool', '--reason', 'not ours']), 0, 'revert of a hand install');
    assert.equal(await installed('tool'), undefined, 'the hand-installed package is gone');

    const refused = await fleet.cli(['drift', 'revert', 'prod-1', '--path', 'package:base', '--reason', 'try']);
    assert.notEqual(refused.code, 0, 'a package no release ships cannot be reverted');
    assert.match(refused.stdout, /base 1 cannot be reinstalled: the active release [0-9a-f]{12} does not declare it, so Lockstep holds no \.deb of that version/);
    assert.equal(await installed('base'), '2', 'nothing was changed');
    await fleet.ok(['drift', 'scan', 'prod-1']);
    assert.deepEqual((await drift()).map((item) => item.path), ['package:base'], 'only the package that could not be reverted stays drifted');
  });

  it('drift adopt of a hand upgrade makes a release declaring the .deb of the apt cache; deploying it closes the finding', async () => {
    await fleet.ok(['drift', 'accept', 'prod-1', '--path', 'package:base', '--reason', 'the image ships it']);
    await until('no open drift', async () => (await drift()).length === 0, 60_000);
    // What apt-get install leaves behind: the package installed, its .deb in apt's cache.
    await mkdir(join(root, 'var/cache/apt/archives'), { recursive: true });
    await copyFile(debs['3.0-1'] ?? '', join(root, 'var/cache/apt/archives/hello_3.0-1_all.deb'));
    await dpkgInstall(root, debs['3.0-1'] ?? '');
    await until('the package finding with its uploaded .deb', async () => (await drift()).some((item) => item.path === 'package:hello' && (item.actual as { sha256?: string } | null)?.sha256 !== undefined), 60_000);

    assertExit(await fleet.cli(['drift', 'adopt', 'prod-1', '--version', '3.0.0', '--reason', 'tested by hand']), 0, 'drift adopt of a package finding');
    const shown = JSON.parse(await fleet.ok(['release', 'show', 'app@3.0.0', '--json'])) as { manifest: { system?: { packages: { kind: string; name: string; version: string; deb?: string }[] } } };
    assert.deepEqual(shown.manifest.system?.packages, [{ kind: 'deb', name: 'hello', version: '3.0-1', deb: 'lockstep-capture/debs/hello_3.0-1_all.deb', architecture: 'all' }]);
    await fleet.ok(['deploy', 'app@3.0.0', '--to', 'production']);
    assert.equal(await installed('hello'), '3.0-1');
    await fleet.ok(['drift', 'scan', 'prod-1']);
    await until('the adopted finding closed', async () => (await drift()).length === 0, 60_000);
  });
});
