/**
 * A real Lockstep installation for end-to-end tests and benchmarks: the
 * `lockstep server` process on a free loopback port with its own data dir,
 * agents as real `lockstep agent` processes with sandbox roots, and the real
 * CLI. Nothing is mocked. The server speaks HTTPS with its own CA (unless
 * `tls: false`): agents pin it with --ca-fingerprint, CLI runs get
 * LOCKSTEP_CA, and direct requests (`http`, `fetch`) trust it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir, type TempDir } from './tmp.js';
import { trustedFetch, type TrustedInit } from './trusted-fetch.js';
import { pemCaFingerprint } from '../../src/api/tls-trust.js';

/** The compiled `lockstep` entry. */
export const LOCKSTEP_MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/main.js');

/** What a CLI run printed and how it exited. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** One sandbox host: an agent process with its own root. */
export interface AgentHandle {
  readonly name: string;
  readonly env: string;
  readonly root: string;
  readonly stateDir: string;
  /** The agent's process (replaced by restart()). */
  process: ChildProcess;
  /** DEPLOY_TO on this host, given the config's deploy_to. */
  path(hostPath: string): string;
  /** Sends a signal and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the agent again with its existing state (no enrollment token needed). */
  restart(): Promise<void>;
}

export interface Fleet {
  readonly url: string;
  readonly token: string;
  /** The server's CA (PEM), its file (DATA_DIR/tls/ca.pem) and fingerprint; undefined for a plain HTTP fleet. */
  readonly ca: { readonly pem: string; readonly file: string; readonly fingerprint: string } | undefined;
  /** The environment CLI runs get: LOCKSTEP_SERVER, LOCKSTEP_TOKEN, LOCKSTEP_CA, NO_COLOR. */
  readonly cliEnv: NodeJS.ProcessEnv;
  /** fetch against the server, trusting its CA. */
  fetch(input: string | URL, init?: TrustedInit): Promise<Response>;
  readonly dir: string;
  readonly dataDir: string;
  readonly agents: AgentHandle[];
  /** The server's process (replaced by startServer()). */
  readonly server: ChildProcess;
  /** Sends the server a signal (SIGKILL: a crash) and waits for it to exit. */
  killServer(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same address with the same data dir (after killServer). */
  startServer(): Promise<void>;
  /** Runs the real CLI with LOCKSTEP_SERVER and LOCKSTEP_TOKEN set (override with `env`). */
  cli(args: readonly string[], options?: { env?: Record<string, string>; cwd?: string }): Promise<CliResult>;
  /** Like cli(), but throws with stderr when the exit code is not 0. */
  ok(args: readonly string[]): Promise<string>;
  /** Writes and applies a lockstep.yaml. */
  applyConfig(yaml: string): Promise<void>;
  /** Registers a host and starts its agent; resolves when the agent is enrolled and polling. */
  /** `variables` are added to the agent's process environment (e.g. a per-host APP_PORT). */
  /** `server`: the URL the agent talks to instead of the server's own (a proxy in between). */
  addAgent(name: string, env: string, options?: { variables?: Record<string, string>; server?: string }): Promise<AgentHandle>;
  /** Calls the HTTP API directly (for what the CLI would never send). */
  http(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: unknown }>;
  /** Stops every process and removes the directory. */
  stop(): Promise<void>;
}

/** A config with short timeouts for tests; `deploy_to` is /srv/app under each agent's root. */
export function testConfig(overrides: { hostTimeout?: string; keep?: number } = {}): string {
  return `app: app
deploy_to: /srv/app
keep_releases: ${overrides.keep ?? 5}
environments:
  development:
    host_timeout: ${overrides.hostTimeout ?? '20s'}
    vars: { STAGE: dev }
  test:
    promote_from: development
    host_timeout: ${overrides.hostTimeout ?? '20s'}
    vars: { STAGE: test }
  production:
    promote_from: test
    host_timeout: ${overrides.hostTimeout ?? '20s'}
    vars: { STAGE: prod }
`;
}

/** Runs the real `lockstep` with exactly `env` in `cwd` (no server needed). */
export function runProcess(args: readonly string[], env: NodeJS.ProcessEnv, cwd: string): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [LOCKSTEP_MAIN, ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => child.once('exit', () => done()));
}

/** Starts `lockstep server` listening on `listen` (its stdout appended to DIR/server.log); resolves with the process and its URL once it listens. */
export async function spawnServer(dir: string, dataDir: string, listen: string, database: string | undefined, extraArgs: readonly string[] = []): Promise<{ process: ChildProcess; url: string }> {
  const server = spawn(process.execPath, [LOCKSTEP_MAIN, 'server', '--data-dir', dataDir, '--listen', listen, ...(database ? ['--database', database] : []), ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stdout?.pipe(createWriteStream(join(dir, 'server.log'), { flags: 'a' }));
  const url = await new Promise<string>((resolveUrl, reject) => {
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`server did not start within 30s: ${stderr}`)), 30_000);
    server.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const match = /server listening on (https?:\/\/\S+)/.exec(stderr);
      if (match?.[1]) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    });
    server.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${stderr}`));
    });
  });
  return { process: server, url };
}

/**
 * Starts a server (SQLite unless `database` is given; `serverArgs` are added to its command line) in a fresh temp dir,
 * serving HTTPS with its own CA unless `tls` is false.
 */
export async function startFleet(options: { database?: string; token?: string; serverArgs?: readonly string[]; tls?: boolean } = {}): Promise<Fleet> {
  const temp: TempDir = await makeTempDir('lockstep-e2e-');
  const dataDir = join(temp.path, 'server');
  const serverArgs = [...(options.tls === false ? [] : ['--tls-own-ca']), ...(options.serverArgs ?? [])];
  const first = await spawnServer(temp.path, dataDir, '127.0.0.1:0', options.database, serverArgs);
  let server = first.process;
  const url = first.url;
  // A server sharing a database with an earlier one creates no admin token of its own.
  const token = options.token ?? (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
  const caFile = join(dataDir, 'tls', 'ca.pem');
  const caPem = options.tls === false ? undefined : await readFile(caFile, 'utf8');
  const ca = caPem === undefined ? undefined : { pem: caPem, file: caFile, fingerprint: pemCaFingerprint(caPem, caFile) };
  const baseEnv: NodeJS.ProcessEnv = { ...process.env, LOCKSTEP_SERVER: url, LOCKSTEP_TOKEN: token, NO_COLOR: '1', ...(ca === undefined ? {} : { LOCKSTEP_CA: ca.file }) };
  const fetchTrusted = trustedFetch(ca?.pem);
  const agents: AgentHandle[] = [];

  const cli: Fleet['cli'] = (args, cliOptions = {}) => runProcess(args, { ...baseEnv, ...cliOptions.env }, cliOptions.cwd ?? temp.path);
  const ok: Fleet['ok'] = async (args) => {
    const result = await cli(args);
    if (result.code !== 0) throw new Error(`lockstep ${args.join(' ')} exited ${result.code}: ${result.stderr}${result.stdout}`);
    return result.stdout;
  };

  async function startAgent(handle: { name: string; root: string; stateDir: string; variables: Record<string, string>; server?: string | undefined }, enrollToken?: string): Promise<ChildProcess> {
    const log = createWriteStream(join(handle.root, 'agent.log'), { flags: 'a' });
    const child = spawn(
      process.execPath,
      [LOCKSTEP_MAIN, 'agent', '--server', handle.server ?? url, '--root', handle.root, '--state-dir', handle.stateDir, ...(ca === undefined ? [] : ['--ca-fingerprint', ca.fingerprint]), ...(enrollToken ? ['--token', enrollToken] : [])],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...handle.variables } },
    );
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    return child;
  }

  /**
   * Waits until the server sees the host enrolled and online and the agent
   * has stored its credential (the server records the enrollment before the
   * agent receives the answer and writes credential.json).
   */
  async function waitOnline(name: string, stateDir: string): Promise<void> {
    for (let attempt = 0; attempt < 300; attempt++) {
      const result = await fleet.http('GET', '/api/v1/hosts');
      const hosts = (result.json as { hosts: { name: string; enrolled: boolean; online: boolean }[] }).hosts;
      const credentialStored = await access(join(stateDir, 'credential.json')).then(
        () => true,
        () => false,
      );
      if (credentialStored && hosts.some((host) => host.name === name && host.enrolled && host.online)) return;
      await new Promise((done) => setTimeout(done, 100));
    }
    throw new Error(`agent ${name} did not come online within 30s`);
  }

  const fleet: Fleet = {
    url,
    token,
    ca,
    cliEnv: baseEnv,
    fetch: fetchTrusted,
    dir: temp.path,
    dataDir,
    agents,
    get server() {
      return server;
    },
    async killServer(signal = 'SIGKILL') {
      if (server.exitCode === null && server.signalCode === null) server.kill(signal);
      await exited(server);
    },
    async startServer() {
      // Agents know this address: the new process must listen on the same port.
      ({ process: server } = await spawnServer(temp.path, dataDir, new URL(url).host, options.database, serverArgs));
    },
    cli,
    ok,
    async applyConfig(yaml) {
      const file = join(temp.path, 'lockstep.yaml');
      await writeFile(file, yaml);
      await ok(['apply', '-f', file]);
    },
    async addAgent(name, env, agentOptions = {}) {
      const variables = agentOptions.variables ?? {};
      const added = JSON.parse(await ok(['host', 'add', name, '--env', env, '--json'])) as { enrollToken: string };
      const root = join(temp.path, 'hosts', name);
      const stateDir = join(root, 'var/lib/lockstep-agent');
      await mkdir(root, { recursive: true });
      const handle: AgentHandle = {
        name,
        env,
        root,
        stateDir,
        process: await startAgent({ name, root, stateDir, variables, server: agentOptions.server }, added.enrollToken),
        path: (hostPath) => join(root, hostPath),
        async kill(signal = 'SIGTERM') {
          const child = handle.process;
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          await exited(child);
        },
        async restart() {
          await handle.kill();
          handle.process = await startAgent({ ...handle, variables, server: agentOptions.server });
        },
      };
      agents.push(handle);
      await waitOnline(name, stateDir);
      return handle;
    },
    async http(method, path, body, bearer = token) {
      const headers: Record<string, string> = { authorization: `Bearer ${bearer}` };
      if (body !== undefined) headers['content-type'] = 'application/json';
      const response = await fetchTrusted(url + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      const text = await response.text();
      return { status: response.status, json: text ? (JSON.parse(text) as unknown) : undefined };
    },
    async stop() {
      await Promise.all(agents.map((agent) => agent.kill('SIGKILL')));
      if (server.exitCode === null) server.kill('SIGTERM');
      await exited(server);
      await temp.remove();
    },
  };
  return fleet;
}

/** Writes a small application tree for a release; `marker` makes each version's content differ. */
export async function writeApp(dir: string, marker: string, files = 3): Promise<string> {
  await mkdir(join(dir, 'bin'), { recursive: true });
  await mkdir(join(dir, 'public'), { recursive: true });
  for (let index = 0; index < files; index++) await writeFile(join(dir, 'public', `page-${index}.html`), `<h1>${marker} page ${index}</h1>\n`);
  await writeFile(join(dir, 'VERSION'), `${marker}\n`);
  await writeFile(join(dir, 'bin/start'), '#!/bin/sh\necho start\n', { mode: 0o755 });
  return dir;
}
