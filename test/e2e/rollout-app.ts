/**
 * The sandbox application the rollout suites deploy: a release tree whose
 * bin/serve.mjs is a tiny HTTP server on the host's APP_PORT (an agent
 * variable), started by the after_activate / after_rollback hooks. Its
 * /healthz answers 200 "ok" unless the release holds a file named BAD (then
 * 500). Also: a real webhook receiver for alerts, the streaming CLI for
 * `deploy --json`, and clean-up of every server the hooks started.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { LOCKSTEP_MAIN, writeApp, type AgentHandle, type CliResult, type Fleet } from '../helpers/fleet.js';
import { DEPLOY_TO } from './host-tree.js';

/**
 * `node bin/serve.mjs` starts the server as a daemon and exits 0 once it
 * listens (so the hook neither returns before the new release serves nor
 * keeps the hook's output open). The daemon stops the previous release's
 * server (its pid is in DEPLOY_TO/shared/serve.pid) before taking the port,
 * and appends its version to DEPLOY_TO/shared/serve.log: the log of every
 * release that ever ran on the host.
 */
export const SERVE_MJS = `import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(import.meta.url);
const releaseDir = join(dirname(script), '..');
const shared = join(process.env.LOCKSTEP_DEPLOY_TO, 'shared');
const pidFile = join(shared, 'serve.pid');
const port = Number(process.env.APP_PORT);

if (process.argv[2] !== 'run') {
  const child = spawn(process.execPath, [script, 'run'], { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  const timer = setTimeout(() => { console.error('serve: not listening within 20s'); process.exit(1); }, 20000);
  child.once('message', () => { clearTimeout(timer); child.disconnect(); child.unref(); process.exit(0); });
  child.once('exit', (code) => { console.error('serve: exited with ' + code); process.exit(1); });
} else {
  mkdirSync(shared, { recursive: true });
  try {
    const previous = Number(readFileSync(pidFile, 'utf8'));
    // Only the previous server itself: a stale pid may belong to another process by now.
    if (previous > 0 && previous !== process.pid && readFileSync('/proc/' + previous + '/cmdline', 'utf8').includes('serve.mjs')) process.kill(previous, 'SIGTERM');
  } catch {}
  writeFileSync(pidFile, String(process.pid));
  const version = readFileSync(join(releaseDir, 'VERSION'), 'utf8').trim();
  const server = createServer((request, response) => {
    if (request.url === '/healthz') {
      const bad = existsSync(join(releaseDir, 'BAD'));
      response.writeHead(bad ? 500 : 200, { 'content-type': 'text/plain' });
      response.end(bad ? 'broken' : 'ok');
    } else {
      response.writeHead(200, { 'content-type': 'text/plain' });
      response.end(version);
    }
  });
  let attempts = 0;
  const listen = () => server.listen(port, '127.0.0.1');
  server.on('error', (error) => {
    // The previous server may still be closing its socket.
    if (error.code === 'EADDRINUSE' && ++attempts < 200) setTimeout(listen, 50);
    else process.exit(1);
  });
  server.on('listening', () => {
    appendFileSync(join(shared, 'serve.log'), version + '\\n');
    process.send?.('listening');
  });
  listen();
}
`;

/** Writes a release tree with bin/serve.mjs; `bad` adds the BAD marker that fails /healthz. */
export async function writeServedApp(dir: string, version: string, options: { bad?: boolean; extra?: string } = {}): Promise<string> {
  await writeApp(dir, version);
  await writeFile(join(dir, 'bin/serve.mjs'), SERVE_MJS);
  if (options.bad) await writeFile(join(dir, 'BAD'), 'this release fails its health check\n');
  if (options.extra) await writeFile(join(dir, 'public', options.extra), `<p>${version}</p>\n`);
  return dir;
}

/** The hooks that start the release's server and say so on stdout (captured into `lockstep logs`). */
export const START_HOOK = 'echo "started $LOCKSTEP_VERSION on $LOCKSTEP_HOST" && "$NODE" bin/serve.mjs';

/** An environment block with rollout, health, hooks and alerts, indented for `environments:`. */
export function servedEnvironment(options: {
  promoteFrom?: string;
  webhook: string;
  hostTimeout?: string;
  hooks?: string;
  watchInterval?: string;
}): string {
  return `    ${options.promoteFrom ? `promote_from: ${options.promoteFrom}` : 'vars: {}'}
    host_timeout: ${options.hostTimeout ?? '20s'}
    rollout: { canary: 1, batch: 2 }
    health:
      checks:
        - http: "http://127.0.0.1:\${APP_PORT}/healthz"
          timeout: 2s
      interval: 200ms
      healthy_after: 2
      timeout: 3s
      watch_interval: ${options.watchInterval ?? '1s'}
    hooks:
${options.hooks ?? `      after_activate: '${START_HOOK} && echo "after_activate done"'
      after_rollback: '${START_HOOK} && echo "after_rollback done"'
      timeout: 20s`}
    alerts:
      webhooks: ["${options.webhook}"]
`;
}

/** A free loopback port (bound once, then released). */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  await new Promise<void>((done) => server.close(() => done()));
  assert.ok(address && typeof address === 'object');
  return address.port;
}

/** Adds a host whose agent has APP_PORT (a free port) and NODE (this node binary) in its environment. */
export async function addServedAgent(fleet: Fleet, name: string, env: string): Promise<{ agent: AgentHandle; port: number }> {
  const port = await freePort();
  const agent = await fleet.addAgent(name, env, { variables: { APP_PORT: String(port), NODE: process.execPath } });
  return { agent, port };
}

/** GET on the host's application server: its status and body (status 0 when nothing answers). */
export async function getApp(port: number, path: string): Promise<{ status: number; body: string }> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
    return { status: response.status, body: await response.text() };
  } catch {
    return { status: 0, body: '' };
  }
}

/** The versions whose server ever started on the host, in order. */
export async function versionsServed(agent: AgentHandle): Promise<string[]> {
  const text = await readFile(agent.path(`${DEPLOY_TO}/shared/serve.log`), 'utf8').catch(() => '');
  return text.split('\n').filter((line) => line.length > 0);
}

/** The pid of the host's application server, if one was started. */
export async function servePid(agent: AgentHandle): Promise<number | undefined> {
  const text = await readFile(agent.path(`${DEPLOY_TO}/shared/serve.pid`), 'utf8').catch(() => '');
  const pid = Number(text);
  return pid > 0 ? pid : undefined;
}

/** Stops the host's application server (only if that pid still is our serve.mjs). */
export async function killServer(agent: AgentHandle): Promise<boolean> {
  const pid = await servePid(agent);
  if (pid === undefined) return false;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes('serve.mjs')) return false;
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops every agent first (so no hook can start another server), then every
 * application server the hooks started, then the fleet.
 */
export async function stopServedFleet(fleet: Fleet | undefined): Promise<void> {
  if (!fleet) return;
  await Promise.all(fleet.agents.map((agent) => agent.kill('SIGKILL')));
  for (const agent of fleet.agents) await killServer(agent);
  await fleet.stop();
}

/** What the webhook receiver got: one parsed JSON body per POST. */
export interface ReceivedAlert {
  readonly source: string;
  readonly kind: string;
  readonly env: string;
  readonly summary: string;
  readonly at: string;
  readonly details: Record<string, unknown>;
}

/** A real HTTP receiver for alert webhooks, in the test process. */
export interface WebhookReceiver {
  readonly url: string;
  readonly alerts: ReceivedAlert[];
  /** Polls until an alert matches, or fails after `timeoutMs` listing what arrived. */
  waitFor(what: string, match: (alert: ReceivedAlert) => boolean, timeoutMs?: number): Promise<ReceivedAlert>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const alerts: ReceivedAlert[] = [];
  const server: Server = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      if (request.method === 'POST' && request.headers['content-type']?.startsWith('application/json')) alerts.push(JSON.parse(body) as ReceivedAlert);
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  return {
    url: `http://127.0.0.1:${address.port}/hooks/lockstep`,
    alerts,
    async waitFor(what, match, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = alerts.find(match);
        if (found) return found;
        if (Date.now() > deadline) assert.fail(`no ${what} alert within ${timeoutMs} ms; received: ${JSON.stringify(alerts, null, 2)}`);
        await new Promise((done) => setTimeout(done, 100));
      }
    },
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((done) => setTimeout(done, 100));
  }
}

/** One NDJSON line of `deploy --json`. */
export interface DeployEvent {
  readonly event: 'deployment' | 'host' | 'finished';
  readonly id?: number;
  readonly state?: string;
  readonly host?: string;
  readonly batch?: number;
  readonly error?: string | null;
  readonly at?: string;
  readonly deployment?: {
    readonly id: number;
    readonly state: string;
    readonly error: string | null;
    readonly hosts: readonly { host: string; batch: number; state: string; error: string | null; updatedAt: string }[];
  };
}

/**
 * Runs `lockstep deploy ... --json` and calls `onEvent` with each NDJSON
 * event as it arrives (to act mid-rollout); resolves with the whole run.
 */
export function deployStreaming(fleet: Fleet, args: readonly string[], onEvent: (event: DeployEvent) => void): Promise<CliResult & { events: DeployEvent[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LOCKSTEP_MAIN, 'deploy', ...args, '--json'], {
      env: fleet.cliEnv,
      cwd: fleet.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const events: DeployEvent[] = [];
    let stdout = '';
    let pending = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const text = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (!text.trim()) continue;
        const event = JSON.parse(text) as DeployEvent;
        events.push(event);
        onEvent(event);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, events }));
  });
}
