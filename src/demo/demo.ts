/**
 * `npm start`: a server and a local sandbox fleet in one command. On first
 * run it applies a configuration, registers development (1 host), test (2)
 * and production (3) hosts, each a real agent process with --root under the
 * data dir, creates two releases of a small sample application and deploys
 * them to development and test. A rerun continues from the same state.
 * Ctrl-C stops every process it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { LockstepClient } from '../client/lockstep-client.js';
import { uploadRelease } from '../cli/release-upload.js';
import { LockstepError } from '../core/errors.js';
import { startServer } from '../server/main.js';

const FLEET: readonly { name: string; env: string }[] = [
  { name: 'dev-1', env: 'development' },
  { name: 'test-1', env: 'test' },
  { name: 'test-2', env: 'test' },
  { name: 'prod-1', env: 'production' },
  { name: 'prod-2', env: 'production' },
  { name: 'prod-3', env: 'production' },
];

const DEMO_CONFIG = `# The demo's lockstep.yaml (see docs/configuration.md).
app: shop
deploy_to: /srv/shop
keep_releases: 5
# Changes here that no deployment made are drift (see docs/drift.md).
watch:
  - path: /etc/shop
drift:
  scan_interval: 1m
environments:
  development:
    vars: { LOG_LEVEL: debug, DATABASE_URL: "postgres://dev-db/shop" }
  test:
    promote_from: development
    host_timeout: 30s
    vars: { LOG_LEVEL: info, DATABASE_URL: "postgres://test-db/shop" }
    # lockstep parity test production: the database may differ, nothing else.
    declared_differences: [DATABASE_URL]
  production:
    promote_from: test
    host_timeout: 30s
    vars: { LOG_LEVEL: info, DATABASE_URL: "postgres://prod-db/shop" }
    declared_differences: [DATABASE_URL]
`;

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/** Runs the demo until SIGINT/SIGTERM. */
export async function runDemo(options: { dataDir: string; listen: string }): Promise<void> {
  const dataDir = resolve(options.dataDir);
  const demoDir = join(dataDir, 'demo');
  await mkdir(demoDir, { recursive: true, mode: 0o700 });
  const logger = pino({ base: { service: 'lockstep-server' } }, pino.destination({ dest: join(dataDir, 'server.log'), append: true, mkdir: true }));
  const server = await startServer({ dataDir, listen: options.listen, logger });
  // Plain HTTP on the default loopback listen; on any other the server serves HTTPS with its own CA, which the demo's agents and client pin.
  const url = server.url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//[::1]:');
  const token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
  const client = new LockstepClient({ server: url, token, trust: server.ca === undefined ? undefined : { kind: 'ca', pem: server.ca.pem, source: 'the demo server' } });
  const agents: ChildProcess[] = [];
  const stop = async () => {
    for (const agent of agents) agent.kill('SIGTERM');
    await Promise.all(agents.filter((agent) => agent.exitCode === null).map((agent) => new Promise((done) => agent.once('exit', done))));
    await server.close();
  };
  const stopped = new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  try {
    const firstRun = !(await exists(join(demoDir, 'fleet-ready')));
    if (firstRun) {
      say('first run: setting up the sandbox fleet (development 1 host, test 2, production 3)...');
      await writeFile(join(demoDir, 'lockstep.yaml'), DEMO_CONFIG);
      await client.applyConfig(DEMO_CONFIG, join(demoDir, 'lockstep.yaml'));
    }
    for (const host of FLEET) {
      const root = join(dataDir, 'hosts', host.name);
      const stateDir = join(root, 'var/lib/lockstep-agent');
      let enrollToken: string | undefined;
      if (firstRun) {
        // A hand-managed config file under the watched /etc/shop, as on a real host.
        await mkdir(join(root, 'etc/shop'), { recursive: true });
        await writeFile(join(root, 'etc/shop/shop.conf'), `listen 8080\nworkers 4\n`);
      }
      if (!(await exists(join(stateDir, 'credential.json')))) {
        const known = (await client.listHosts()).hosts.some((h) => h.name === host.name);
        if (known) throw new LockstepError('conflict', `demo host ${host.name} exists but its agent state is gone; remove ${dataDir} to start over`);
        enrollToken = (await client.addHost(host.name, host.env)).enrollToken;
      }
      agents.push(await spawnAgent(url, root, stateDir, enrollToken, server.ca?.fingerprint));
    }
    if (firstRun) {
      await waitForAgents(client, FLEET.length);
      for (const version of ['1.0.0', '1.1.0']) {
        const dir = await writeSampleApp(demoDir, version);
        const release = await uploadRelease(client, dir, version, undefined);
        for (const env of ['development', 'test']) {
          const result = await client.waitForDeployment(await client.deploy(release.id, env, 'demo setup'));
          if (result.state !== 'succeeded') throw new LockstepError('failed', `demo deployment of ${version} to ${env} failed: ${result.error ?? ''}`);
          say(`  deployed shop@${version} to ${env}`);
        }
      }
      await writeFile(join(demoDir, 'fleet-ready'), 'ok\n');
    }
    const cli = `node ${join(dirname(dirname(fileURLToPath(import.meta.url))), 'main.js')}`;
    say('');
    say(`Lockstep is running at ${url}`);
    say(`admin token: ${token}   (also in ${join(dataDir, 'admin.token')})`);
    say(`hosts run under ${join(dataDir, 'hosts')}/<host>/srv/shop; server log: ${join(dataDir, 'server.log')}`);
    say('');
    say('In another terminal, try:');
    const pin = server.ca === undefined ? '' : ` LOCKSTEP_CA=${join(dataDir, 'tls', 'ca.pem')}`;
    say(`  export LOCKSTEP_SERVER=${url} LOCKSTEP_TOKEN=${token}${pin}; alias lockstep="${cli}"`);
    say('  lockstep status');
    say('  lockstep deploy shop@1.1.0 --to production');
    say('  lockstep rollback test');
    say(`  echo 'workers 64' >> ${join(dataDir, 'hosts/test-1/etc/shop/shop.conf')}   # a hand edit: drift`);
    say('  lockstep drift test && lockstep drift revert test-1');
    say('  lockstep parity test production');
    say(`  cat ${join(dataDir, 'hosts/test-1/etc/nginx/sites-enabled/shop.conf')}   # a managed file, rendered per host`);
    say('  lockstep plan shop@1.1.0 --to production   # shows the rendered diff of managed files');
    say('');
    say('Ctrl-C stops the server and the agents; run npm start again to continue.');
    await stopped;
  } finally {
    say('stopping...');
    await stop();
  }
}

async function spawnAgent(server: string, root: string, stateDir: string, token: string | undefined, caFingerprint: string | undefined): Promise<ChildProcess> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const log = createWriteStream(join(root, 'agent.log'), { flags: 'a' });
  const main = join(dirname(dirname(fileURLToPath(import.meta.url))), 'main.js');
  const args = [main, 'agent', '--server', server, '--root', root, '--state-dir', stateDir, ...(caFingerprint ? ['--ca-fingerprint', caFingerprint] : []), ...(token ? ['--token', token] : [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  return child;
}

async function waitForAgents(client: LockstepClient, count: number): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt++) {
    const { hosts } = await client.listHosts();
    if (hosts.filter((host) => host.enrolled && host.online).length >= count) return;
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new LockstepError('failed', 'the demo agents did not come online within 30s; see lockstep-data/hosts/*/agent.log');
}

async function writeSampleApp(demoDir: string, version: string): Promise<string> {
  const dir = join(demoDir, `shop-${version}`);
  await mkdir(join(dir, 'public'), { recursive: true });
  await mkdir(join(dir, 'bin'), { recursive: true });
  await writeFile(join(dir, 'public/index.html'), `<!doctype html><title>shop</title><h1>shop ${version}</h1>\n`);
  await writeFile(join(dir, 'VERSION'), `${version}\n`);
  await writeFile(join(dir, 'bin/start'), '#!/bin/sh\n# reads DEPLOY_TO/shared/lockstep.env, then serves public/\nset -a; . "$(dirname "$0")/../../../shared/lockstep.env"; set +a\nexec python3 -m http.server --directory "$(dirname "$0")/../public" 8080\n');
  await chmod(join(dir, 'bin/start'), 0o755);
  // A managed config file: a template rendered on each host from its environment's vars (see docs/system-changes.md).
  await mkdir(join(dir, 'config'), { recursive: true });
  await writeFile(
    join(dir, 'config/nginx-site.conf'),
    `# managed by Lockstep (shop ${version}): change it through a release\nserver {\n  server_name shop.{{ env }}.example.com;\n  access_log /var/log/nginx/shop.log {{ vars.LOG_LEVEL }};\n  root /srv/shop/current/public;\n}\n`,
  );
  await writeFile(
    join(dir, 'lockstep-release.yaml'),
    `# System parts of this release (see docs/system-changes.md).\nfiles:\n  - path: /etc/nginx/sites-enabled/shop.conf\n    source: config/nginx-site.conf\n    mode: "0644"\n    template: true\n    after_change: echo "nginx would reload now"\n`,
  );
  return dir;
}
