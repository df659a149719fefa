/**
 * `lockstep parity` end to end: a real server, agents whose sandbox roots hold
 * their own etc/os-release and var/lib/dpkg/status, and the real CLI. An
 * undeclared var and a different package version fail the gate (exit 1);
 * once they are declared it passes (exit 0); a host that differs from the
 * others of its environment is named.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ParityResponse } from '../../src/api/schemas.js';
import { startFleet, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { assertExit, releaseIdFrom } from './host-tree.js';
import { until } from '../helpers/until.js';

function config(productionDeclared: readonly string[]): string {
  return `app: app
deploy_to: /srv/app
watch:
  - path: /etc/shop
environments:
  test:
    host_timeout: 20s
    vars: { DB_HOST: db.test, DB_POOL: "10", LOG_LEVEL: info }
  production:
    promote_from: test
    host_timeout: 20s
    vars: { DB_HOST: db.production, DB_POOL: "20", LOG_LEVEL: info }
    declared_differences: [${productionDeclared.join(', ')}]
`;
}

function dpkgStatus(packages: Record<string, string>): string {
  return Object.entries(packages)
    .map(([name, version]) => `Package: ${name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: ${version}\nDescription: ${name}\n its long description\n`)
    .join('\n');
}

/** Writes the files an agent reads its facts from, under the host's future root. */
async function prepareRoot(fleet: Fleet, host: string, packages: Record<string, string>): Promise<void> {
  const root = join(fleet.dir, 'hosts', host);
  await mkdir(join(root, 'etc/shop'), { recursive: true });
  await writeFile(join(root, 'etc/shop/app.conf'), 'pool=10\n');
  await mkdir(join(root, 'var/lib/dpkg'), { recursive: true });
  await writeFile(join(root, 'etc/os-release'), 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n');
  await writeFile(join(root, 'var/lib/dpkg/status'), dpkgStatus(packages));
}

describe('lockstep parity', () => {
  let fleet: Fleet;
  let web2: AgentHandle;

  const parityJson = async (): Promise<ParityResponse> => JSON.parse((await fleet.cli(['parity', 'test', 'production', '--json'])).stdout) as ParityResponse;

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(config(['DB_HOST']));
    await prepareRoot(fleet, 'test1', { nginx: '1.22.1-9', openssl: '3.0.11-1' });
    await prepareRoot(fleet, 'web1', { nginx: '1.22.1-10', openssl: '3.0.11-1' });
    await prepareRoot(fleet, 'web2', { nginx: '1.22.1-10', openssl: '3.0.11-1' });
    await fleet.addAgent('test1', 'test');
    await fleet.addAgent('web1', 'production');
    web2 = await fleet.addAgent('web2', 'production');

    const dir = await writeApp(join(fleet.dir, 'build'), 'v1');
    const id = releaseIdFrom(await fleet.ok(['release', 'create', dir, '--version', '1.0.0']));
    assertExit(await fleet.cli(['deploy', id, '--to', 'test']), 0, 'deploy to test');
    assertExit(await fleet.cli(['deploy', id, '--to', 'production']), 0, 'deploy to production');
    // Agents report facts at start; wait until the server has them from every host.
    await until('facts from every host', async () => ((await parityJson()).hosts.every((host) => host.factsAt !== null) ? true : undefined));
  });

  after(async () => {
    await fleet?.stop();
  });

  it('an undeclared var value and a different package version are reported, and the gate fails with exit 1', async () => {
    const result = await fleet.cli(['parity', 'test', 'production']);
    assertExit(result, 1, 'parity with undeclared differences');
    const lines = result.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^parity test vs production: \d+(\.\d)?% \(\d+ items compared: \d+ equal, 1 declared, 2 undeclared\)$/);
    assert.deepEqual(lines.slice(1), ['vars:', '  declared  var DB_HOST: test=db.test production=db.production', '  undeclared  var DB_POOL: test=10 production=20', 'packages:', '  undeclared  package nginx: test=1.22.1-9 production=1.22.1-10']);
    assert.match(result.stderr, /2 undeclared differences between test and production; declare intended ones under declared_differences/);

    const json = await fleet.cli(['parity', 'test', 'production', '--json']);
    assertExit(json, 1, 'parity --json with undeclared differences');
    const parsed = JSON.parse(json.stdout) as ParityResponse;
    assert.equal(json.stderr, '', '--json prints no message on stderr');
    assert.ok(parsed.score < 100);
    assert.deepEqual(
      parsed.differences.map((difference) => [difference.category, difference.name, difference.declared]),
      [
        ['var', 'DB_HOST', true],
        ['var', 'DB_POOL', false],
        ['package', 'nginx', false],
      ],
      'the same release runs in both, and the hosts agree on os, kernel and arch',
    );
    assert.deepEqual(parsed.notes, []);
  });

  it('with only declared differences left the gate passes with exit 0 and a score of 100', async () => {
    await fleet.applyConfig(config(['DB_HOST', 'DB_POOL', 'package:nginx']));
    const result = await fleet.cli(['parity', 'test', 'production']);
    assertExit(result, 0, 'parity with only declared differences');
    assert.deepEqual(result.stdout.trim().split('\n').slice(1), [
      'vars:',
      '  declared  var DB_HOST: test=db.test production=db.production',
      '  declared  var DB_POOL: test=10 production=20',
      'packages:',
      '  declared  package nginx: test=1.22.1-9 production=1.22.1-10',
    ]);
    const parsed = await parityJson();
    assert.equal(parsed.score, 100);
    assert.equal(parsed.undeclared, 0);
  });

  it('a host that differs from the others of its environment is named, against a host that does not', async () => {
    await writeFile(join(web2.root, 'var/lib/dpkg/status'), dpkgStatus({ nginx: '1.22.1-10', openssl: '3.0.11-1', curl: '7.88.1-10' }));
    // Facts are re-read every minute; a restarted agent sends them at once.
    await web2.restart();
    const parsed = await until('the new package of web2', async () => {
      const view = await parityJson();
      return view.differences.some((difference) => difference.name === 'curl') ? view : undefined;
    });
    const within = parsed.differences.filter((difference) => difference.within !== null);
    assert.deepEqual(within, [{ category: 'package', name: 'curl', values: { web1: [], web2: ['7.88.1-10'] }, declared: false, within: { env: 'production', host: 'web2', reference: 'web1' } }]);
    const result = await fleet.cli(['parity', 'test', 'production']);
    assertExit(result, 1, 'parity with a host that differs');
    assert.ok(result.stdout.includes('undeclared  host web2 differs from web1 in production: package curl: web1=(not installed) web2=7.88.1-10'), result.stdout);
    assert.ok(result.stdout.includes('undeclared  package curl: test=(not installed) production=7.88.1-10'), result.stdout);
  });

  it('after an agent restart, parity never shows its watched paths as (absent): facts wait for the first baseline', async () => {
    // What the agent sent is in its log ("host facts sent", with how many watched entries): a report without
    // them would make parity show the paths as (absent) until the next one, a minute later.
    const log = join(web2.root, 'agent.log');
    const offset = (await readFile(log)).length;
    const sentSince = async (): Promise<{ watched: number }[]> =>
      (await readFile(log))
        .subarray(offset)
        .toString('utf8')
        .split('\n')
        .flatMap((line) => {
          try {
            const entry = JSON.parse(line) as { msg?: string; watched?: number };
            return entry.msg === 'host facts sent' ? [{ watched: entry.watched ?? 0 }] : [];
          } catch {
            return [];
          }
        });
    await web2.restart();
    const sent = await until('facts sent by the restarted web2', async () => {
      const lines = await sentSince();
      return lines.length > 0 ? lines : undefined;
    });
    assert.ok(sent.every((facts) => facts.watched > 0), `every facts report names the watched paths: ${JSON.stringify(sent)}`);
    const parsed = await parityJson();
    // Every host has the same /etc/shop: no watched difference, and none with a host lacking the path.
    assert.deepEqual(parsed.differences.filter((difference) => difference.category === 'watched'), []);
    assert.doesNotMatch((await fleet.cli(['parity', 'test', 'production'])).stdout, /\(absent\)/);
  });

  it('an unknown environment, or the same one twice, is bad input (exit 2) with one line saying what to do', async () => {
    const unknown = await fleet.cli(['parity', 'test', 'nowhere']);
    assertExit(unknown, 2, 'parity with an unknown environment');
    assert.equal(unknown.stderr, 'lockstep: environment "nowhere" is not in lockstep.yaml (environments: test, production)\n');
    const same = await fleet.cli(['parity', 'test', 'test']);
    assertExit(same, 2, 'parity of an environment with itself');
    assert.match(same.stderr, /^lockstep: compare two different environments, e\.g\. lockstep parity production test\n$/);
  });

  it("the server validates an agent's facts and refuses more than 50,000 packages", async () => {
    const { credential } = JSON.parse(await readFile(join(web2.stateDir, 'credential.json'), 'utf8')) as { credential: string };
    const installed = Object.fromEntries(Array.from({ length: 50_001 }, (_, index) => [`package-${index}`, '1.0']));
    const facts = { os: { id: 'debian', version: '12' }, kernel: '6.1', arch: 'x64', packages: { manager: 'dpkg', installed }, watched: {} };
    const tooMany = await fleet.http('POST', '/api/v1/agent/facts', { host: 'web2', facts }, credential);
    assert.equal(tooMany.status, 400);
    assert.match(JSON.stringify(tooMany.json), /at most 50000 packages/);
    const relative = await fleet.http('POST', '/api/v1/agent/facts', { host: 'web2', facts: { ...facts, packages: null, watched: { 'etc/x': 'file' } } }, credential);
    assert.equal(relative.status, 400);
    const otherHost = await fleet.http('POST', '/api/v1/agent/facts', { host: 'web1', facts: { ...facts, packages: null } }, credential);
    assert.equal(otherHost.status, 403);
  });
});
