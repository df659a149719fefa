/**
 * Secrets per environment end to end: a real server, one agent per
 * environment, the real CLI. A secret set for production reaches only
 * production's hosts (a 0400 file, or a lockstep.env line where
 * secrets_in_env is set), and its value appears nowhere else: not in any GET
 * answer to an admin, not in the server's or the agents' logs, not in
 * `plan`, `parity`, `changes`, `audit` or `secret list` output, not in the
 * database file. Removing it removes the file at the next deployment.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROUTES, routePath } from '../../src/api/routes.js';
import { API_PREFIX } from '../../src/api/paths.js';
import type { ParityResponse } from '../../src/api/schemas.js';
import { LOCKSTEP_MAIN, startFleet, writeApp, type AgentHandle, type CliResult, type Fleet } from '../helpers/fleet.js';
import { until } from '../helpers/until.js';
import { assertExit, DEPLOY_TO, releaseIdFrom } from './host-tree.js';

const CONFIG = `app: app
deploy_to: ${DEPLOY_TO}
watch:
  - path: ${DEPLOY_TO}/shared
environments:
  development:
    host_timeout: 20s
    secrets_in_env: true
    vars: { STAGE: dev }
  test:
    host_timeout: 20s
    vars: { STAGE: test }
  production:
    promote_from: test
    host_timeout: 20s
    vars: { STAGE: prod }
`;

const unique = (label: string) => `${label}-${randomBytes(12).toString('hex')}`;
const PROD_DB_PASSWORD = unique('prod-db-password');
const TEST_DB_PASSWORD = unique('test-db-password');
const DEV_DB_PASSWORD = unique('dev-db-password');
const API_KEY = unique('api-key');
const ROTATED_DB_PASSWORD = unique('rotated-db-password');
/** Everything that must never be shown anywhere but on its environment's hosts. */
const VALUES = [PROD_DB_PASSWORD, TEST_DB_PASSWORD, DEV_DB_PASSWORD, API_KEY, ROTATED_DB_PASSWORD];

/** Runs the CLI with `input` on its standard input. */
function cliWithInput(fleet: Fleet, args: readonly string[], input: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LOCKSTEP_MAIN, ...args], { env: fleet.cliEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

/** Every file under `dir` as [relative path, content]. */
async function filesUnder(dir: string, prefix = ''): Promise<[string, Buffer][]> {
  const found: [string, Buffer][] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await filesUnder(path, `${prefix}${entry.name}/`)));
    else if (entry.isFile()) found.push([`${prefix}${entry.name}`, await readFile(path)]);
  }
  return found;
}

/** The names of `values` found in `text`. */
function leaked(text: string | Buffer, values: readonly string[] = VALUES): string[] {
  const haystack = Buffer.isBuffer(text) ? text : Buffer.from(text);
  return values.filter((value) => haystack.includes(Buffer.from(value)));
}

describe('secrets per environment', () => {
  let fleet: Fleet;
  let dev1: AgentHandle;
  let test1: AgentHandle;
  let web1: AgentHandle;
  let releaseId = '';
  let deploymentId = 0;
  /** Every CLI output captured, to grep for values at the end. */
  const captured: string[] = [];
  const run = async (args: readonly string[], code = 0): Promise<CliResult> => {
    const result = await fleet.cli(args);
    captured.push(result.stdout, result.stderr);
    assertExit(result, code, `lockstep ${args.join(' ')}`);
    return result;
  };
  const deploy = async (release: string, env: string): Promise<number> => {
    const result = await run(['deploy', release, '--to', env, '--json']);
    const events = result.stdout.trim().split('\n').map((text) => JSON.parse(text) as { deployment?: { id: number }; id?: number });
    const id = events.map((event) => event.deployment?.id ?? event.id).find((value) => typeof value === 'number');
    assert.ok(id !== undefined, `a deployment id in ${result.stdout}`);
    return id;
  };
  /** No captured CLI output, log line or file of the server's data dir holds a value. */
  const assertNothingLeaked = async (): Promise<void> => {
    for (const text of captured) assert.deepEqual(leaked(text), [], 'CLI output');
    const serverLog = await readFile(join(fleet.dir, 'server.log'));
    assert.ok(serverLog.length > 0, 'the server logged');
    assert.deepEqual(leaked(serverLog), [], 'server log');
    for (const agent of [dev1, test1, web1]) {
      const log = await readFile(join(agent.root, 'agent.log'));
      assert.ok(log.length > 0, `${agent.name} logged`);
      assert.deepEqual(leaked(log), [], `${agent.name}'s log`);
    }
    for (const [path, content] of await filesUnder(fleet.dataDir)) assert.deepEqual(leaked(content), [], `server data dir: ${path}`);
  };
  const secretFile = (agent: AgentHandle, name: string) => agent.path(`${DEPLOY_TO}/shared/secrets/${name}`);

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(CONFIG);
    dev1 = await fleet.addAgent('dev1', 'development');
    test1 = await fleet.addAgent('test1', 'test');
    web1 = await fleet.addAgent('web1', 'production');

    // Standard input loses one trailing line break (what `echo VALUE |` adds); --from-file is taken as it is.
    const set = await cliWithInput(fleet, ['secret', 'set', 'production', 'DB_PASSWORD'], `${PROD_DB_PASSWORD}\n`);
    captured.push(set.stdout, set.stderr);
    assertExit(set, 0, 'secret set from stdin');
    assert.match(set.stdout, /secret DB_PASSWORD set in production as version 1/);
    for (const [env, name, value] of [['test', 'DB_PASSWORD', TEST_DB_PASSWORD], ['development', 'DB_PASSWORD', DEV_DB_PASSWORD], ['production', 'API_KEY', API_KEY], ['test', 'API_KEY', API_KEY]] as const) {
      const file = join(fleet.dir, `${env}-${name}.txt`);
      await writeFile(file, value);
      await run(['secret', 'set', env, name, '--from-file', file]);
    }

    const dir = await writeApp(join(fleet.dir, 'build-v1'), 'v1');
    releaseId = releaseIdFrom(await fleet.ok(['release', 'create', dir, '--version', '1.0.0']));
    await deploy(releaseId, 'development');
    await deploy(releaseId, 'test');
    deploymentId = await deploy(releaseId, 'production');
  });

  after(async () => {
    await fleet?.stop();
  });

  it("each host of the environment has its secrets as 0400 files, and no other environment's values anywhere under its root", async () => {
    assert.equal(await readFile(secretFile(web1, 'DB_PASSWORD'), 'utf8'), PROD_DB_PASSWORD);
    assert.equal(await readFile(secretFile(web1, 'API_KEY'), 'utf8'), API_KEY);
    for (const name of ['DB_PASSWORD', 'API_KEY']) assert.equal((await lstat(secretFile(web1, name))).mode & 0o777, 0o400, `${name} mode`);
    assert.deepEqual((await readdir(web1.path(`${DEPLOY_TO}/shared/secrets`))).sort(), ['API_KEY', 'DB_PASSWORD']);
    assert.equal(await readFile(secretFile(test1, 'DB_PASSWORD'), 'utf8'), TEST_DB_PASSWORD);

    for (const [agent, own] of [[web1, [PROD_DB_PASSWORD, API_KEY]], [test1, [TEST_DB_PASSWORD, API_KEY]], [dev1, [DEV_DB_PASSWORD]]] as const) {
      const others = VALUES.filter((value) => !own.includes(value));
      for (const [path, content] of await filesUnder(agent.root)) assert.deepEqual(leaked(content, others), [], `${agent.name}:${path} holds another environment's secret`);
    }
  });

  it('with secrets_in_env the secrets are lines of lockstep.env, then 0600, and there are no secret files', async () => {
    const envFile = dev1.path(`${DEPLOY_TO}/shared/lockstep.env`);
    assert.equal(await readFile(envFile, 'utf8'), `DB_PASSWORD=${DEV_DB_PASSWORD}\nSTAGE=dev\n`);
    assert.equal((await lstat(envFile)).mode & 0o777, 0o600);
    await assert.rejects(lstat(dev1.path(`${DEPLOY_TO}/shared/secrets`)), { code: 'ENOENT' });
    // Where secrets are files, lockstep.env keeps the vars only, at 0640.
    assert.equal(await readFile(web1.path(`${DEPLOY_TO}/shared/lockstep.env`), 'utf8'), 'STAGE=prod\n');
    assert.equal((await lstat(web1.path(`${DEPLOY_TO}/shared/lockstep.env`))).mode & 0o777, 0o640);
  });

  it("writing the secrets under a watched path is Lockstep's own change, never drift", async () => {
    const deployed = (await fleet.http('GET', `/api/v1/deployments/${deploymentId}`)).json as { finishedAt: string | null };
    const since = deployed.finishedAt ?? new Date().toISOString();
    const host = await until('a drift report from web1 after the deployment', async () => {
      const hosts = ((await fleet.http('GET', '/api/v1/hosts')).json as { hosts: { name: string; driftReportAt: string | null; openDrift: number }[] }).hosts;
      const web = hosts.find((candidate) => candidate.name === 'web1');
      return web?.driftReportAt !== null && web?.driftReportAt !== undefined && web.driftReportAt > since ? web : undefined;
    }, 60_000);
    assert.equal(host.openDrift, 0);
    await run(['drift', 'production', '--exit-code']);
  });

  it('list shows names, versions and who set them, never values; parity says which secrets differ; changes and audit name them', async () => {
    const list = JSON.parse((await run(['secret', 'list', 'production', '--json'])).stdout) as { secrets: { name: string; version: number; setBy: string; deployed: boolean }[] };
    assert.deepEqual(list.secrets.map((secret) => [secret.name, secret.version, secret.setBy, secret.deployed]), [['API_KEY', 1, 'admin', true], ['DB_PASSWORD', 1, 'admin', true]]);
    assert.match((await run(['secret', 'list', 'production'])).stdout, /DB_PASSWORD\s+1\s+admin\s+\S+\s+yes/);

    const parity = JSON.parse((await run(['parity', 'test', 'production', '--json'], 1)).stdout) as ParityResponse;
    const secrets = parity.differences.filter((difference) => difference.category === 'secret');
    assert.deepEqual(secrets.map((difference) => [difference.name, difference.values]), [['DB_PASSWORD', { test: ['differs'], production: ['differs'] }]], 'API_KEY is the same in both');
    assert.match((await run(['parity', 'test', 'production'], 1)).stdout, /undeclared {2}secret DB_PASSWORD: test=differs production=differs/);

    const changes = (await run(['changes', '--env', 'production'])).stdout;
    assert.match(changes, /secret DB_PASSWORD set to version 1 in production/);
    const audit = (await run(['audit', 'log', '--json'])).stdout;
    const events = (JSON.parse(audit) as { action: string; details: unknown }[]).filter((event) => event.action.startsWith('secret.'));
    assert.equal(events.length, 5);
    for (const event of events) assert.deepEqual(Object.keys(event.details as object).sort(), ['env', 'name', 'version']);
    await run(['plan', releaseId, '--to', 'production']);
    await run(['plan', releaseId, '--to', 'production', '--json']);
    await run(['audit', 'log']);
    await run(['status']);
    await run(['host', 'list']);
  });

  it('bad input is one line with exit 2, a viewer may list but not set, and nothing is stored', async () => {
    const file = join(fleet.dir, 'value.txt');
    await writeFile(file, PROD_DB_PASSWORD);
    const wrongEnv = await fleet.cli(['secret', 'set', 'nowhere', 'DB_PASSWORD', '--from-file', file]);
    assertExit(wrongEnv, 2, 'wrong environment');
    assert.equal(wrongEnv.stderr, 'lockstep: environment "nowhere" is not in lockstep.yaml (environments: development, test, production)\n');
    const badName = await fleet.cli(['secret', 'set', 'production', 'db-password', '--from-file', file]);
    assertExit(badName, 2, 'bad name');
    assert.match(badName.stderr, /^lockstep: secret name "db-password" is not allowed: use letters, digits and _, not starting with a digit \(e\.g\. DB_PASSWORD\)\n$/);
    const empty = await cliWithInput(fleet, ['secret', 'set', 'production', 'EMPTY'], '\n');
    assertExit(empty, 2, 'empty value');
    assert.match(empty.stderr, /^lockstep: the secret value is empty/);
    const twoLines = await cliWithInput(fleet, ['secret', 'set', 'development', 'TWO_LINES'], 'first\nsecond\n');
    assertExit(twoLines, 2, 'a line break where secrets go into lockstep.env');
    assert.match(twoLines.stderr, /^lockstep: development has secrets_in_env: true, and lockstep.env cannot hold a line break/);
    assertExit(await fleet.cli(['secret', 'rm', 'nowhere', 'DB_PASSWORD']), 2, 'rm in a wrong environment');
    assertExit(await fleet.cli(['secret', 'rm', 'production', 'NO_SUCH']), 2, 'rm of a missing secret');

    const viewer = JSON.parse(await fleet.ok(['token', 'create', 'watcher', '--role', 'viewer', '--json'])) as { token: string };
    const asViewer = (args: readonly string[]) => fleet.cli(args, { env: { LOCKSTEP_TOKEN: viewer.token } });
    assertExit(await asViewer(['secret', 'set', 'production', 'DB_PASSWORD', '--from-file', file]), 5, 'a viewer sets');
    assertExit(await asViewer(['secret', 'rm', 'production', 'DB_PASSWORD']), 5, 'a viewer removes');
    assertExit(await asViewer(['secret', 'list', 'production']), 0, 'a viewer lists');
    const list = JSON.parse((await run(['secret', 'list', 'production', '--json'])).stdout) as { secrets: { name: string; version: number }[] };
    assert.deepEqual(list.secrets.map((secret) => [secret.name, secret.version]), [['API_KEY', 1], ['DB_PASSWORD', 1]]);
    assert.deepEqual((JSON.parse((await run(['secret', 'list', 'development', '--json'])).stdout) as { secrets: { name: string }[] }).secrets.map((secret) => secret.name), ['DB_PASSWORD']);
  });

  it('no GET route answers an admin with a value, and neither the logs nor the database file hold one', async () => {
    const fill: Record<string, string> = { env: 'production', ref: releaseId, id: String(deploymentId), name: 'admin' };
    const queries: Partial<Record<string, string>> = { parity: '?a=test&b=production', driftList: '?all=1', listHosts: '', changes: '?since=1h' };
    let walked = 0;
    for (const [name, spec] of Object.entries(ROUTES)) {
      if (spec.method !== 'GET' || spec.access === 'agent') continue;
      const params = Object.fromEntries([...spec.path.matchAll(/:([A-Za-z]+)/g)].map((match) => [match[1] ?? '', fill[match[1] ?? ''] ?? 'x']));
      const path = `${API_PREFIX}${routePath(name as keyof typeof ROUTES, params)}${queries[name] ?? ''}`;
      const response = await fleet.fetch(fleet.url + path, { headers: { authorization: `Bearer ${fleet.token}` } });
      const text = await response.text();
      captured.push(text);
      assert.deepEqual(leaked(text), [], `GET ${path} (${response.status})`);
      walked++;
    }
    assert.ok(walked >= 20, `walked ${walked} GET routes`);
    await assertNothingLeaked();
    const key = await lstat(join(fleet.dataDir, 'secrets.key'));
    assert.equal(key.mode & 0o777, 0o600);
    assert.equal(key.size, 32);
  });

  it('a new version replaces the file and a removed secret is removed, both at the next deployment', async () => {
    // A new version is a change the hosts have not got yet.
    const rotated = join(fleet.dir, 'rotated.txt');
    await writeFile(rotated, ROTATED_DB_PASSWORD);
    await run(['secret', 'set', 'production', 'DB_PASSWORD', '--from-file', rotated]);
    assert.match((await run(['secret', 'list', 'production'])).stdout, /DB_PASSWORD\s+2\s+admin\s+\S+\s+at the next deployment/);
    const removed = await run(['secret', 'rm', 'production', 'API_KEY', '--json']);
    assert.deepEqual(JSON.parse(removed.stdout), { env: 'production', name: 'API_KEY', version: 1 });
    assert.match((await run(['changes', '--env', 'production'])).stdout, /secret API_KEY \(version 1\) removed from production/);
    // Still there until a deployment delivers the new set.
    assert.equal(await readFile(secretFile(web1, 'API_KEY'), 'utf8'), API_KEY);
    const dir = await writeApp(join(fleet.dir, 'build-v2'), 'v2');
    const v2 = releaseIdFrom(await fleet.ok(['release', 'create', dir, '--version', '2.0.0']));
    await deploy(v2, 'test');
    await deploy(v2, 'production');
    await assert.rejects(lstat(secretFile(web1, 'API_KEY')), { code: 'ENOENT' });
    assert.equal(await readFile(secretFile(web1, 'DB_PASSWORD'), 'utf8'), ROTATED_DB_PASSWORD);
    assert.deepEqual(await readdir(web1.path(`${DEPLOY_TO}/shared/secrets`)), ['DB_PASSWORD']);
    const list = JSON.parse((await run(['secret', 'list', 'production', '--json'])).stdout) as { secrets: { name: string; version: number; deployed: boolean }[] };
    assert.deepEqual(list.secrets.map((secret) => [secret.name, secret.version, secret.deployed]), [['DB_PASSWORD', 2, true]]);
    // Another environment's secret of that name stays.
    assert.equal(await readFile(secretFile(test1, 'API_KEY'), 'utf8'), API_KEY);
    await assertNothingLeaked();
  });
});
