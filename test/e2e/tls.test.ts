/**
 * TLS with trust pinned at enrollment, end to end: the server makes its own
 * CA on first start (keys 0600) and keeps it across restarts; `host add`
 * prints its fingerprint and GET /api/v1/ca serves it to anyone; an agent
 * given another fingerprint, or none, refuses to start and enrolls nothing;
 * the CLI with a wrong pin exits 6 with one line naming the fingerprint it
 * saw; a non-loopback listen serves HTTPS unless --insecure-http, which warns;
 * --tls-cert/--tls-key serve the operator's chain.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { cp, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { certificateFingerprint, pemCaFingerprint } from '../../src/api/tls-trust.js';
import { runProcess, spawnServer, startFleet, testConfig, writeApp, type Fleet } from '../helpers/fleet.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { trustedFetch } from '../helpers/trusted-fetch.js';

const WRONG = `sha256:${'0'.repeat(64)}`;

function stopped(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  child.kill('SIGTERM');
  return new Promise((done) => child.once('exit', () => done()));
}

/** What a plain-HTTP request to `url` gets: the status, or the error code when the server does not speak HTTP. */
function plainStatus(url: string): Promise<number | string> {
  return new Promise((resolve) => {
    httpRequest(url, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    })
      .on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
      .end();
  });
}

describe('TLS with the server CA pinned at enrollment', () => {
  let fleet: Fleet;
  const servers: ChildProcess[] = [];
  const temps: TempDir[] = [];
  /** The CA of a second server with its own CA: a pin that is not this fleet's. */
  let otherCa = '';
  let otherFingerprint = '';

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(testConfig());
    const other = await makeTempDir('lockstep-tls-');
    temps.push(other);
    const second = await spawnServer(other.path, join(other.path, 'data'), '127.0.0.1:0', undefined, ['--tls-own-ca']);
    servers.push(second.process);
    otherCa = join(other.path, 'data', 'tls', 'ca.pem');
    otherFingerprint = pemCaFingerprint(await readFile(otherCa, 'utf8'), otherCa);
  });

  after(async () => {
    await Promise.all(servers.map(stopped));
    await fleet?.stop();
    await Promise.all(temps.map((temp) => temp.remove()));
  });

  it('makes its own CA with 0600 keys, prints its fingerprint with host add and serves it at /api/v1/ca without a token', async () => {
    const ca = fleet.ca;
    assert.ok(ca, 'the fleet serves HTTPS');
    assert.ok(fleet.url.startsWith('https://'));
    for (const key of ['ca-key.pem', 'server-key.pem']) assert.equal((await stat(join(fleet.dataDir, 'tls', key))).mode & 0o777, 0o600, key);
    assert.equal(ca.fingerprint, certificateFingerprint(new X509Certificate(await readFile(ca.file)).raw));

    const human = await fleet.cli(['host', 'add', 'web-1', '--env', 'production']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, new RegExp(`^server CA fingerprint: ${ca.fingerprint}$`, 'm'));
    assert.match(human.stdout, new RegExp(`--ca-fingerprint ${ca.fingerprint} --token `));
    const json = JSON.parse(await fleet.ok(['host', 'add', 'web-2', '--env', 'production', '--json'])) as { caFingerprint: string };
    assert.equal(json.caFingerprint, ca.fingerprint);

    const served = await fleet.fetch(`${fleet.url}/api/v1/ca`);
    assert.equal(served.status, 200);
    const body = (await served.json()) as { fingerprint: string; pem: string };
    assert.equal(body.fingerprint, ca.fingerprint);
    assert.equal(pemCaFingerprint(body.pem, 'GET /api/v1/ca'), ca.fingerprint);
  });

  it('an agent pinned to another fingerprint refuses the server, says which CA it saw, and enrolls nothing', async () => {
    const added = JSON.parse(await fleet.ok(['host', 'add', 'pinned-wrong', '--env', 'production', '--json'])) as { enrollToken: string; caFingerprint: string };
    const root = join(fleet.dir, 'hosts', 'pinned-wrong');
    await mkdir(root, { recursive: true });
    const refused = await runProcess(['agent', '--server', fleet.url, '--root', root, '--ca-fingerprint', WRONG, '--token', added.enrollToken], { ...process.env, NO_COLOR: '1' }, fleet.dir);
    assert.equal(refused.code, 6, refused.stderr);
    const lines = refused.stderr.trim().split('\n');
    assert.equal(lines.length, 1, refused.stderr);
    assert.match(lines[0] ?? '', new RegExp(`^lockstep: refusing the server: .*whose CA is ${added.caFingerprint}, not the pinned ${WRONG}`));
    await assert.rejects(stat(join(root, 'var/lib/lockstep-agent/credential.json')), { code: 'ENOENT' });
    const hosts = (await fleet.http('GET', '/api/v1/hosts')).json as { hosts: { name: string; enrolled: boolean }[] };
    assert.equal(hosts.hosts.find((host) => host.name === 'pinned-wrong')?.enrolled, false);

    // Another server's CA file: refused the same way, naming that file.
    const wrongFile = await runProcess(['agent', '--server', fleet.url, '--root', root, '--ca', otherCa, '--token', added.enrollToken], { ...process.env, NO_COLOR: '1' }, fleet.dir);
    assert.equal(wrongFile.code, 6, wrongFile.stderr);
    assert.match(wrongFile.stderr, new RegExp(`^lockstep: refusing the server: .*whose CA is ${added.caFingerprint}, not the pinned ${otherFingerprint} \\(--ca [^\\n]*\\n$`));
    await assert.rejects(stat(join(root, 'var/lib/lockstep-agent/credential.json')), { code: 'ENOENT' });

    // Nothing pinned at all: one line saying what to pass, before any connection.
    const unpinned = await runProcess(['agent', '--server', fleet.url, '--root', root, '--token', added.enrollToken], { ...process.env, NO_COLOR: '1' }, fleet.dir);
    assert.equal(unpinned.code, 2, unpinned.stderr);
    assert.match(unpinned.stderr, /^lockstep: --server https:\/\/\S+ is https:\/\/ but no CA is pinned; pass --ca-fingerprint sha256:… \(printed by `lockstep host add`\) or --ca FILE\n$/);
  });

  it('an agent pinned to the right fingerprint enrolls, keeps the CA and deploys over HTTPS', async () => {
    const agent = await fleet.addAgent('pinned-right', 'development');
    assert.equal(pemCaFingerprint(await readFile(join(agent.stateDir, 'server-ca.pem'), 'utf8'), 'server-ca.pem'), fleet.ca?.fingerprint);
    const app = await writeApp(join(fleet.dir, 'app'), 'tls-1');
    const release = JSON.parse(await fleet.ok(['release', 'create', app, '--version', '1.0.0', '--json'])) as { id: string };
    await fleet.ok(['deploy', release.id, '--to', 'development']);
    assert.equal(await readFile(agent.path('/srv/app/current/VERSION'), 'utf8'), 'tls-1\n');
  });

  it('the CLI with a wrong pin or none exits 6 with one line naming the fingerprint it saw', async () => {
    const seen = fleet.ca?.fingerprint ?? '';
    const wrongFingerprint = await fleet.cli(['status'], { env: { LOCKSTEP_CA: '', LOCKSTEP_CA_FINGERPRINT: WRONG } });
    assert.equal(wrongFingerprint.code, 6);
    assert.match(wrongFingerprint.stderr, new RegExp(`^lockstep: the server at https://\\S+ presented a certificate chain whose CA is ${seen}, not the pinned ${WRONG} \\(LOCKSTEP_CA_FINGERPRINT\\)[^\\n]*\\n$`));

    // The CA file of another server.
    const wrongFile = await fleet.cli(['status'], { env: { LOCKSTEP_CA: otherCa } });
    assert.equal(wrongFile.code, 6);
    assert.match(wrongFile.stderr, new RegExp(`^lockstep: the server at https://\\S+ presented a certificate chain whose CA is ${seen}, not the pinned ${otherFingerprint} \\(LOCKSTEP_CA ${otherCa.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)[^\\n]*\\n$`));

    const none = await fleet.cli(['status'], { env: { LOCKSTEP_CA: '' } });
    assert.equal(none.code, 6);
    assert.match(none.stderr, new RegExp(`^lockstep: the server at https://\\S+ presented a certificate this machine does not trust \\(SELF_SIGNED_CERT_IN_CHAIN; its CA is ${seen}\\)[^\\n]*\\n$`));

    const right = await fleet.cli(['status', '--json'], { env: { LOCKSTEP_CA: '', LOCKSTEP_CA_FINGERPRINT: seen } });
    assert.equal(right.code, 0, right.stderr);
  });

  it('keeps its CA across restarts', async () => {
    const before = fleet.ca?.fingerprint;
    await fleet.killServer('SIGTERM');
    await fleet.startServer();
    const served = (await (await fleet.fetch(`${fleet.url}/api/v1/ca`)).json()) as { fingerprint: string };
    assert.equal(served.fingerprint, before);
  });

  it('a non-loopback listen serves HTTPS with its own CA; --insecure-http serves plain HTTP and warns', async () => {
    const temp = await makeTempDir('lockstep-tls-');
    temps.push(temp);
    const secure = await spawnServer(temp.path, join(temp.path, 'secure'), '0.0.0.0:0', undefined);
    servers.push(secure.process);
    assert.match(secure.url, /^https:\/\/0\.0\.0\.0:\d+$/);
    const port = new URL(secure.url).port;
    const caPem = await readFile(join(temp.path, 'secure', 'tls', 'ca.pem'), 'utf8');
    const health = await trustedFetch(caPem)(`https://127.0.0.1:${port}/api/v1/health`);
    assert.equal(health.status, 200);
    assert.notEqual(await plainStatus(`http://127.0.0.1:${port}/api/v1/health`), 200);

    const insecure = await spawnServer(temp.path, join(temp.path, 'insecure'), '0.0.0.0:0', undefined, ['--insecure-http']);
    servers.push(insecure.process);
    assert.match(insecure.url, /^http:\/\/0\.0\.0\.0:\d+$/);
    assert.equal(await plainStatus(`http://127.0.0.1:${new URL(insecure.url).port}/api/v1/health`), 200);
    const log = await readFile(join(temp.path, 'server.log'), 'utf8');
    assert.match(log, /"level":40[^\n]*serving plain HTTP on a non-loopback address \(--insecure-http\)/);
  });

  it("--tls-cert and --tls-key serve the operator's chain, whose last certificate is the CA to pin", async () => {
    const temp = await makeTempDir('lockstep-tls-');
    temps.push(temp);
    const tls = join(fleet.dataDir, 'tls');
    const chain = `${await readFile(join(tls, 'server.pem'), 'utf8')}${await readFile(join(tls, 'ca.pem'), 'utf8')}`;
    const chainFile = join(temp.path, 'chain.pem');
    await cp(join(tls, 'server-key.pem'), join(temp.path, 'key.pem'));
    await writeFile(chainFile, chain);
    const half = await runProcess(['server', '--data-dir', join(temp.path, 'half'), '--listen', '127.0.0.1:0', '--tls-cert', chainFile], { ...process.env }, temp.path);
    assert.equal(half.code, 2);
    assert.match(half.stderr, /^lockstep: --tls-cert and --tls-key go together[^\n]*\n$/);
    // A key of another certificate: one line, and nothing written (no data dir, no database).
    const wrongKey = await runProcess(['server', '--data-dir', join(temp.path, 'wrong-key'), '--listen', '127.0.0.1:0', '--tls-cert', chainFile, '--tls-key', join(tls, 'ca-key.pem')], { ...process.env }, temp.path);
    assert.equal(wrongKey.code, 2);
    assert.match(wrongKey.stderr, /^lockstep: --tls-key \S+ca-key\.pem is not the key of the first certificate in --tls-cert \S+chain\.pem\n$/);
    await assert.rejects(stat(join(temp.path, 'wrong-key')), { code: 'ENOENT' });

    const operator = await spawnServer(temp.path, join(temp.path, 'data'), '127.0.0.1:0', undefined, ['--tls-cert', chainFile, '--tls-key', join(temp.path, 'key.pem')]);
    servers.push(operator.process);
    const served = (await (await trustedFetch(fleet.ca?.pem)(`${operator.url}/api/v1/ca`)).json()) as { fingerprint: string };
    assert.equal(served.fingerprint, fleet.ca?.fingerprint);
  });
});
