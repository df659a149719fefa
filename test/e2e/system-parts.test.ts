/**
 * System parts end to end, with real dpkg on sandbox roots (each host has its
 * own dpkg database under --root): a release with a templated site file, a
 * plain managed file and a .deb goes development → test → production; each
 * host's rendered file differs only by its environment's vars; rollback
 * reinstalls the previous package version (a downgrade), the previous file
 * content, and the pre-Lockstep content of a file the older release did not
 * manage; a .deb whose maintainer script fails fails the step and the host
 * keeps what it had; managed file writes are never drift.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { startFleet, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { until } from '../helpers/until.js';
import { assertExit, releaseIdFrom } from './host-tree.js';

const exec = promisify(execFile);

const SITE = '/etc/app/site.conf';
const EXISTING = '/etc/app/existing.conf';
const PACKAGE = 'lockstep-hello';

const config = `app: app
deploy_to: /srv/app
watch:
  - path: /etc/app
drift:
  scan_interval: 2s
environments:
  development:
    host_timeout: 20s
    vars: { SERVER_NAME: dev.example.com, WORKERS: "2" }
  test:
    promote_from: development
    host_timeout: 20s
    vars: { SERVER_NAME: test.example.com, WORKERS: "2" }
  production:
    promote_from: test
    host_timeout: 20s
    vars: { SERVER_NAME: www.example.com, WORKERS: "8" }
`;

/** The site template of a version, and what it renders to with an environment's vars. */
const siteTemplate = (version: string) => `# site ${version}\nserver_name {{ vars.SERVER_NAME }};\nworkers {{ vars.WORKERS }};\n`;
const siteRendered = (version: string, serverName: string, workers: string) => `# site ${version}\nserver_name ${serverName};\nworkers ${workers};\n`;

interface DriftItemJson {
  host: string;
  path: string;
  state: string;
}

/** Builds a .deb of PACKAGE at `version` with dpkg-deb; `failingPostinst` makes its configuration fail. */
async function buildDeb(dir: string, version: string, failingPostinst = false): Promise<string> {
  const tree = join(dir, `pkg-${version}`);
  await mkdir(join(tree, 'DEBIAN'), { recursive: true });
  await mkdir(join(tree, 'usr/share/lockstep-hello'), { recursive: true });
  await writeFile(join(tree, 'DEBIAN/control'), `Package: ${PACKAGE}\nVersion: ${version}\nArchitecture: all\nMaintainer: Lockstep tests <tests@example.com>\nDescription: a package for the system-parts test\n`);
  await writeFile(join(tree, 'usr/share/lockstep-hello/version'), `${version}\n`);
  if (failingPostinst) {
    await writeFile(join(tree, 'DEBIAN/postinst'), '#!/bin/sh\necho "postinst refuses to configure" >&2\nexit 1\n');
    await chmod(join(tree, 'DEBIAN/postinst'), 0o755);
  }
  const deb = join(dir, `${PACKAGE}_${version}_all.deb`);
  await exec('dpkg-deb', ['--root-owner-group', '--build', tree, deb]);
  return deb;
}

/** The installed version of PACKAGE on a host (undefined: not installed), from its own dpkg database. */
async function installedVersion(host: AgentHandle): Promise<string | undefined> {
  const { stdout } = await exec('dpkg-query', [`--admindir=${host.path('/var/lib/dpkg')}`, '--show', '--showformat=${Version} ${db:Status-Status}', PACKAGE]).catch(() => ({ stdout: '' }));
  const [version, status] = stdout.split(' ');
  return status === 'installed' ? version : undefined;
}

describe('system parts: managed files and packages through the pipeline', () => {
  let fleet: Fleet;
  let dev: AgentHandle;
  let test: AgentHandle;
  let prod: AgentHandle;
  const ids: Record<string, string> = {};

  /** A release dir: the app, lockstep-release.yaml, the site template and the .deb of `packageVersion`. */
  async function create(version: string, packageVersion: string, options: { existing?: boolean; failingPostinst?: boolean; unhealthy?: boolean } = {}): Promise<string> {
    const dir = await writeApp(join(fleet.dir, `build-${version}`), `release ${version}`);
    if (options.unhealthy) await writeFile(join(dir, 'BAD'), 'this release fails its health check\n');
    await mkdir(join(dir, 'config'), { recursive: true });
    await mkdir(join(dir, 'debs'), { recursive: true });
    await writeFile(join(dir, 'config/site.conf'), siteTemplate(version));
    const deb = await buildDeb(join(fleet.dir, `debs-${version}`), packageVersion, options.failingPostinst);
    await writeFile(join(dir, 'debs', `${PACKAGE}.deb`), await readFile(deb));
    let yaml = `files:\n  - path: ${SITE}\n    source: config/site.conf\n    mode: "0640"\n    template: true\n    after_change: 'echo "$LOCKSTEP_CHANGED_FILES" >> "$LOCKSTEP_ROOT/after-change.log"'\n`;
    if (options.existing) {
      await writeFile(join(dir, 'config/existing.conf'), `managed by ${version}\n`);
      yaml += `  - path: ${EXISTING}\n    source: config/existing.conf\n    mode: "0644"\n`;
    }
    yaml += `packages:\n  - deb: debs/${PACKAGE}.deb\n`;
    await writeFile(join(dir, 'lockstep-release.yaml'), yaml);
    const result = await fleet.cli(['release', 'create', dir, '--version', version]);
    assertExit(result, 0, `release create ${version}`);
    return releaseIdFrom(result.stdout);
  }

  async function deploy(version: string, env: string, expectedExit = 0): Promise<{ stdout: string; stderr: string }> {
    const result = await fleet.cli(['deploy', ids[version] ?? '', '--to', env]);
    assertExit(result, expectedExit, `deploy ${version} to ${env}`);
    return result;
  }

  async function drift(target: string): Promise<DriftItemJson[]> {
    return JSON.parse(await fleet.ok(['drift', target, '--json'])) as DriftItemJson[];
  }

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(config);
    for (const name of ['dev-1', 'test-1', 'prod-1']) {
      const root = join(fleet.dir, 'hosts', name);
      // Each sandbox host has an (empty) dpkg database and a watched /etc/app before its agent starts.
      await mkdir(join(root, 'var/lib/dpkg/info'), { recursive: true });
      await mkdir(join(root, 'var/lib/dpkg/updates'), { recursive: true });
      await writeFile(join(root, 'var/lib/dpkg/status'), '');
      await mkdir(join(root, 'etc/app'), { recursive: true });
    }
    // Production had this file before Lockstep managed it.
    await writeFile(join(fleet.dir, 'hosts/prod-1', EXISTING), 'hand-made before lockstep\n');
    await chmod(join(fleet.dir, 'hosts/prod-1', EXISTING), 0o600);
    [dev, test, prod] = await Promise.all([fleet.addAgent('dev-1', 'development'), fleet.addAgent('test-1', 'test'), fleet.addAgent('prod-1', 'production')]);
    ids['1.0.0'] = await create('1.0.0', '1.0-1');
    ids['2.0.0'] = await create('2.0.0', '2.0-1', { existing: true });
    ids['3.0.0'] = await create('3.0.0', '3.0-1', { existing: true, failingPostinst: true });
    ids['4.0.0'] = await create('4.0.0', '4.0-1', { unhealthy: true });
  });

  after(async () => {
    await fleet?.stop();
  });

  it('release create refuses a bad lockstep-release.yaml with every problem and its line, uploading nothing', async () => {
    const dir = await writeApp(join(fleet.dir, 'build-bad-yaml'), 'bad yaml');
    await writeFile(join(dir, 'lockstep-release.yaml'), `files:\n  - path: /etc/app/x.conf\n    source: config/missing.conf\n    mode: 0644\n`);
    const result = await fleet.cli(['release', 'create', dir, '--version', 'bad-yaml']);
    assertExit(result, 2, 'release create with a bad lockstep-release.yaml');
    assert.match(result.stderr, /lockstep-release\.yaml:3:13: files\.0\.source: config\/missing\.conf is not a file of the release dir/);
    assert.match(result.stderr, /lockstep-release\.yaml:4:11: files\.0\.mode: expected permission bits up to 0777/);
    const list = JSON.parse(await fleet.ok(['release', 'list', '--json'])) as { version: string }[];
    assert.ok(!list.some((release) => release.version === 'bad-yaml'), 'no release was made');
  });

  it('a release with a template and a .deb goes development → test → production; each host renders its own vars', async () => {
    for (const env of ['development', 'test', 'production']) await deploy('1.0.0', env);
    assert.equal(await readFile(dev.path(SITE), 'utf8'), siteRendered('1.0.0', 'dev.example.com', '2'));
    assert.equal(await readFile(test.path(SITE), 'utf8'), siteRendered('1.0.0', 'test.example.com', '2'));
    assert.equal(await readFile(prod.path(SITE), 'utf8'), siteRendered('1.0.0', 'www.example.com', '8'), 'production differs only by its vars');
    assert.equal((await stat(prod.path(SITE))).mode & 0o777, 0o640);
    for (const host of [dev, test, prod]) {
      assert.equal(await installedVersion(host), '1.0-1', `${host.name}: the release's .deb is installed`);
      assert.equal(await readFile(host.path('/usr/share/lockstep-hello/version'), 'utf8'), '1.0-1\n');
      // after_change ran once, for the one file that changed.
      assert.equal(await readFile(host.path('/after-change.log'), 'utf8'), `${SITE}\n`);
    }
    assert.equal(await readFile(prod.path(EXISTING), 'utf8'), 'hand-made before lockstep\n', '1.0.0 does not manage existing.conf');
    // Parity compares what each host rendered: test and production differ in SERVER_NAME and WORKERS, which this
    // configuration does not declare, so the managed file is an undeclared difference, shown by digest only.
    const digest = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
    const file = await until('parity to compare the managed file of both environments', async () => {
      const parity = await fleet.cli(['parity', 'test', 'production', '--json']);
      const differences = (JSON.parse(parity.stdout) as { differences: { category: string; name: string; values: Record<string, string[]>; declared: boolean }[] }).differences;
      return differences.find((difference) => difference.category === 'file' && difference.name === SITE && difference.values.test?.length === 1 && difference.values.production?.length === 1);
    });
    assert.deepEqual(file.values, { test: [digest(siteRendered('1.0.0', 'test.example.com', '2'))], production: [digest(siteRendered('1.0.0', 'www.example.com', '8'))] });
    assert.equal(file.declared, false, 'SERVER_NAME and WORKERS are not declared differences');
  });

  it('release show lists the system parts; plan shows the package upgrade and the rendered diff per host', async () => {
    const shown = await fleet.cli(['release', 'show', ids['2.0.0'] ?? '']);
    assertExit(shown, 0, 'release show 2.0.0');
    assert.match(shown.stdout, /file {5}\/etc\/app\/site\.conf \(from config\/site\.conf, mode 0640, template, after_change: /);
    assert.match(shown.stdout, /file {5}\/etc\/app\/existing\.conf \(from config\/existing\.conf, mode 0644\)/);
    assert.match(shown.stdout, /package {2}lockstep-hello 2\.0-1 \(debs\/lockstep-hello\.deb, all\)/);
    for (const env of ['development', 'test']) await deploy('2.0.0', env);
    // Package changes start from the host's own package set, which its facts report after each deployment.
    const plan = await until('the plan to start from the package prod-1 has installed', async () => {
      const result = await fleet.cli(['plan', ids['2.0.0'] ?? '', '--to', 'production']);
      assertExit(result, 0, 'plan 2.0.0 to production');
      return result.stdout.includes('package upgrade') ? result : undefined;
    });
    assert.match(plan.stdout, /pass templates: 1 template renders with production's vars and secrets/);
    assert.match(plan.stdout, /system parts on prod-1:\n {2}package upgrade {3}lockstep-hello 1\.0-1 -> 2\.0-1\n/);
    assert.match(plan.stdout, /file {4}\/etc\/app\/existing\.conf: created\n.*\n.*\n.*\n {4}\+managed by 2\.0\.0\n/);
    // The diff is of production's rendering: its vars, not development's.
    assert.match(plan.stdout, /file {4}\/etc\/app\/site\.conf: changed\n {4}--- \/etc\/app\/site\.conf\n {4}\+\+\+ \/etc\/app\/site\.conf\n {4}@@ -1,3 \+1,3 @@\n {4}-# site 1\.0\.0\n {4}\+# site 2\.0\.0\n {5}server_name www\.example\.com;\n {5}workers 8;\n/);
  });

  it('a template naming a var the environment lacks is refused at plan and deploy time', async () => {
    const dir = await writeApp(join(fleet.dir, 'build-bad-template'), 'bad template');
    await mkdir(join(dir, 'config'), { recursive: true });
    await writeFile(join(dir, 'config/site.conf'), 'server_name {{ vars.SERVER_NAME }};\nport {{ vars.PORT }};\n');
    await writeFile(join(dir, 'lockstep-release.yaml'), `files:\n  - path: ${SITE}\n    source: config/site.conf\n    template: true\n`);
    const created = await fleet.cli(['release', 'create', dir, '--version', 'bad-template']);
    assertExit(created, 0, 'release create bad-template');
    const plan = await fleet.cli(['plan', 'app@bad-template', '--to', 'development']);
    assertExit(plan, 3, 'plan of a template with an unknown name');
    assert.match(plan.stdout, /FAIL templates: config\/site\.conf:2: unknown name "vars\.PORT"/);
    const deployed = await fleet.cli(['deploy', 'app@bad-template', '--to', 'development']);
    assertExit(deployed, 3, 'deploy of a template with an unknown name');
    assert.match(deployed.stderr, /templates: config\/site\.conf:2: unknown name "vars\.PORT"/);
    assert.equal(await readFile(dev.path(SITE), 'utf8'), siteRendered('2.0.0', 'dev.example.com', '2'), 'nothing was rendered on the host');
  });

  it('an upgrade installs the newer package and takes over a file the host already had', async () => {
    await deploy('2.0.0', 'production');
    assert.equal(await installedVersion(prod), '2.0-1');
    assert.equal(await readFile(prod.path(SITE), 'utf8'), siteRendered('2.0.0', 'www.example.com', '8'));
    assert.equal(await readFile(prod.path(EXISTING), 'utf8'), 'managed by 2.0.0\n');
    assert.equal(await readFile(prod.path('/after-change.log'), 'utf8'), `${SITE}\n${SITE}\n`, 'after_change ran once more');
  });

  it('managed file writes are never drift', async () => {
    // A hand edit elsewhere in the watched dir proves a scan ran after the deployments.
    await writeFile(prod.path('/etc/app/hand-edit.conf'), 'by hand\n');
    const items = await until('the hand edit listed as drift', async () => {
      const open = await drift('production');
      return open.some((item) => item.path === '/etc/app/hand-edit.conf') ? open : undefined;
    });
    assert.deepEqual(
      items.map((item) => item.path),
      ['/etc/app/hand-edit.conf'],
      'only the hand edit is drift, not the files the deployments wrote',
    );
  });

  it('rollback reinstalls the previous package version and restores files, the pre-Lockstep one included', async () => {
    const result = await fleet.cli(['rollback', 'production', '--reason', 'system parts rollback']);
    assertExit(result, 0, 'rollback production');
    assert.equal(await installedVersion(prod), '1.0-1', 'the package was downgraded from the cached .deb of 1.0.0');
    assert.equal(await readFile(prod.path('/usr/share/lockstep-hello/version'), 'utf8'), '1.0-1\n');
    assert.equal(await readFile(prod.path(SITE), 'utf8'), siteRendered('1.0.0', 'www.example.com', '8'));
    assert.equal(await readFile(prod.path(EXISTING), 'utf8'), 'hand-made before lockstep\n', 'the content the file had before Lockstep managed it');
    assert.equal((await stat(prod.path(EXISTING))).mode & 0o777, 0o600, 'and its mode');
  });

  it('a .deb whose maintainer script fails fails the step; the host keeps its release, package and files', async () => {
    const failed = await deploy('3.0.0', 'development', 4);
    assert.match(failed.stdout + failed.stderr, /dpkg --install failed/);
    assert.equal(await installedVersion(dev), '2.0-1', 'the release before is installed again');
    assert.equal(await readFile(dev.path(SITE), 'utf8'), siteRendered('2.0.0', 'dev.example.com', '2'));
    assert.equal(await readFile(dev.path(EXISTING), 'utf8'), 'managed by 2.0.0\n');
    const status = JSON.parse(await fleet.ok(['status', 'development', '--json'])) as { environments: { current: { id: string } | null }[] };
    assert.equal(status.environments[0]?.current?.id, ids['2.0.0']);
  });

  it('a release that fails its health check after the switch is reverted, and the revert brings back the files and package it replaced', async () => {
    // development now checks health: a release holding BAD is unhealthy.
    await fleet.applyConfig(config.replace('    vars: { SERVER_NAME: dev.example.com, WORKERS: "2" }\n', '    vars: { SERVER_NAME: dev.example.com, WORKERS: "2" }\n    health:\n      timeout: 3s\n      checks:\n        - exec: test ! -f BAD\n'));
    const failed = await deploy('4.0.0', 'development', 4);
    assert.match(failed.stdout + failed.stderr, /health check failed/);
    await until('dev-1 back on 2.0.0 with its package', async () => ((await installedVersion(dev)) === '2.0-1' ? true : undefined));
    assert.equal(await readFile(dev.path(SITE), 'utf8'), siteRendered('2.0.0', 'dev.example.com', '2'));
    assert.equal(await readFile(dev.path(EXISTING), 'utf8'), 'managed by 2.0.0\n', 'a file 4.0.0 does not manage is written back by the revert to 2.0.0');
  });
});
