/**
 * Incremental deploy: a release of 10,000 files (~200 MB), then releases that
 * each differ from it in 10 files. For one host, bytes transferred and wall
 * time to stage and activate, side by side with the classic releases-directory
 * approach, `rsync -a --link-dest` plus a symlink switch, in the same run.
 * Goal: bytes within 10% of the changed files' size; time no worse than rsync.
 *
 * Lockstep side: a real `lockstep server`, one real `lockstep agent` whose
 * connection to the server goes through a byte-counting TCP proxy on
 * loopback, and the real CLI (`release create`, `deploy`).
 * rsync side: `rsync --daemon` on loopback serving the same source trees,
 * pulled into a host releases/ dir with --link-dest to the previous release,
 * then `ln -sfn` + `mv -T` to switch `current`.
 *
 * The source tree of every new release is a hard-linked copy of v1 (same
 * inodes, so same mtimes: rsync's quick check skips the unchanged files
 * without reading them, its best case) with 10 files replaced by new content.
 *
 * Usage: node dist/bench/incremental-deploy.js [--files 10000] [--dirs 100] [--changed 10]
 *          [--iterations 5] [--cold] [--json]
 *   --cold  drop the page cache (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed step
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { LOCKSTEP_MAIN, startFleet, testConfig, type AgentHandle, type Fleet } from '../test/helpers/fleet.js';
import { args, bytes, dropCaches, incompressible, machine, mustSucceed, ms, summarize, table, timedRun, type Timed } from './bench-util.js';
import { prng } from '../test/helpers/prng.js';

const argv = args(process.argv.slice(2));
const FILES = argv.number('--files', 10_000);
const DIRS = argv.number('--dirs', 100);
const CHANGED = argv.number('--changed', 10);
const ITERATIONS = argv.number('--iterations', 5);
const MEAN_SIZE = argv.number('--mean-size', 20 * 1024);
const COLD = argv.has('--cold');
const JSON_OUTPUT = argv.has('--json');

const log = (text: string): void => void process.stderr.write(`${text}\n`);

// ---------------------------------------------------------------- the tree

interface TreeFile {
  readonly path: string;
  readonly size: number;
}

/** 10,000 files in 100 dirs, sizes uniform in [0.5, 1.5] x the mean. */
function layout(): TreeFile[] {
  const random = prng(20261126);
  const files: TreeFile[] = [];
  for (let index = 0; index < FILES; index++) {
    const dir = `d${String(index % DIRS).padStart(3, '0')}`;
    const size = Math.round(MEAN_SIZE * (0.5 + random()));
    files.push({ path: `${dir}/f${String(index).padStart(5, '0')}.bin`, size });
  }
  return files;
}

const content = incompressible;

async function writeTree(root: string, files: readonly TreeFile[]): Promise<number> {
  let total = 0;
  for (let dir = 0; dir < DIRS; dir++) await mkdir(join(root, `d${String(dir).padStart(3, '0')}`), { recursive: true });
  for (const file of files) {
    await writeFile(join(root, file.path), content(file.path, 0, file.size), { mode: 0o644 });
    total += file.size;
  }
  return total;
}

/** The files iteration `generation` changes: CHANGED distinct files, chosen by the seeded PRNG. */
function changedFiles(files: readonly TreeFile[], generation: number): TreeFile[] {
  const random = prng(1000 + generation);
  const picked = new Set<number>();
  while (picked.size < Math.min(CHANGED, files.length)) picked.add(Math.floor(random() * files.length));
  return [...picked].map((index) => files[index] as TreeFile);
}

/** A hard-linked copy of v1 with the changed files replaced (new inodes, new content, same sizes). */
async function makeVersion(sourceRoot: string, name: string, changed: readonly TreeFile[], generation: number): Promise<number> {
  mustSucceed('cp -al', await timedRun('cp', ['-al', join(sourceRoot, 'v1'), join(sourceRoot, name)]));
  let total = 0;
  for (const file of changed) {
    const path = join(sourceRoot, name, file.path);
    await rm(path);
    await writeFile(path, content(file.path, generation, file.size), { mode: 0o644 });
    total += file.size;
  }
  return total;
}

// ------------------------------------------------------- counting proxy

/** A loopback TCP proxy that counts the bytes in each direction. */
interface CountingProxy {
  readonly port: number;
  readonly toClient: () => number;
  readonly toServer: () => number;
  close(): Promise<void>;
}

async function startProxy(targetPort: number): Promise<CountingProxy> {
  let toClient = 0;
  let toServer = 0;
  const sockets = new Set<{ destroy(): void }>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    client.on('data', (chunk: Buffer) => (toServer += chunk.length));
    upstream.on('data', (chunk: Buffer) => (toClient += chunk.length));
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    port: address.port,
    toClient: () => toClient,
    toServer: () => toServer,
    close: () =>
      new Promise((resolve) => {
        // Keep-alive connections would hold close() open; nothing more is counted now.
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function waitForPort(port: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`nothing listens on port ${port}`);
}

// --------------------------------------------------------- Lockstep side

/** Starts an agent whose server URL is the counting proxy (the fleet helper's addAgent connects directly). */
async function addProxiedAgent(fleet: Fleet, name: string, env: string, proxyUrl: string): Promise<AgentHandle> {
  const added = JSON.parse(await fleet.ok(['host', 'add', name, '--env', env, '--json'])) as { enrollToken: string };
  const root = join(fleet.dir, 'hosts', name);
  const stateDir = join(root, 'var/lib/lockstep-agent');
  await mkdir(root, { recursive: true });
  const start = (token?: string): ChildProcess => {
    const logFile = createWriteStream(join(root, 'agent.log'), { flags: 'a' });
    const child = spawn(process.execPath, [LOCKSTEP_MAIN, 'agent', '--server', proxyUrl, '--root', root, '--state-dir', stateDir, ...(token ? ['--token', token] : [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.pipe(logFile);
    child.stderr?.pipe(logFile);
    return child;
  };
  const exited = (child: ChildProcess) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((done) => child.once('exit', () => done())));
  const handle: AgentHandle = {
    name,
    env,
    root,
    stateDir,
    process: start(added.enrollToken),
    path: (hostPath) => join(root, hostPath),
    async kill(signal = 'SIGTERM') {
      if (handle.process.exitCode === null && handle.process.signalCode === null) handle.process.kill(signal);
      await exited(handle.process);
    },
    async restart() {
      await handle.kill();
      handle.process = start();
    },
  };
  // fleet.stop() kills every agent in this list.
  fleet.agents.push(handle);
  for (let attempt = 0; attempt < 300; attempt++) {
    const hosts = ((await fleet.http('GET', '/api/v1/hosts')).json as { hosts: { name: string; enrolled: boolean; online: boolean }[] }).hosts;
    if (hosts.some((host) => host.name === name && host.enrolled && host.online)) return handle;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`agent ${name} did not come online`);
}

/** Sizes of the verified blobs in the agent's cache (not the per-mode variants), by hash. */
async function cachedBlobs(stateDir: string): Promise<Map<string, number>> {
  const root = join(stateDir, 'blobs');
  const result = new Map<string, number>();
  for (const shard of await readdir(root).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{2}$/.test(shard)) continue;
    for (const name of await readdir(join(root, shard))) {
      // A blob is stored once, as `<hash>` (0444) or as the mode variant its first use needed (`<hash>.644`).
      const hash = /^([0-9a-f]{64})(\.[0-7]{3})?$/.exec(name)?.[1];
      if (hash !== undefined && !result.has(hash)) result.set(hash, (await lstat(join(root, shard, name))).size);
    }
  }
  return result;
}

interface AgentLogFigures {
  readonly stageActivateMs: number;
  readonly blobsFetched: number;
  readonly bytesFetched: number;
}

/** The agent's own account of a deployment: stage+activate time and blobs fetched (from its pino log). */
async function agentFigures(agent: AgentHandle, deploymentId: number): Promise<AgentLogFigures> {
  const text = await readFile(join(agent.root, 'agent.log'), 'utf8');
  let stageActivateMs = Number.NaN;
  let blobsFetched = 0;
  let bytesFetched = 0;
  for (const line of text.split('\n')) {
    if (!line.includes(`"deploymentId":${deploymentId},`) && !line.includes(`"deploymentId":${deploymentId}}`)) continue;
    const entry = JSON.parse(line) as { msg?: string; elapsedMs?: number; blobs?: number; bytes?: number };
    if (entry.msg === 'release activated' && entry.elapsedMs !== undefined) stageActivateMs = entry.elapsedMs;
    if (entry.msg === 'fetched missing blobs') {
      blobsFetched = entry.blobs ?? 0;
      bytesFetched = entry.bytes ?? 0;
    }
  }
  return { stageActivateMs, blobsFetched, bytesFetched };
}

interface LockstepRun {
  readonly createMs: number;
  readonly uploadedBytes: number;
  readonly deployMs: number;
  readonly serverMs: number;
  readonly stageActivateMs: number;
  readonly blobBytes: number;
  readonly blobsFetched: number;
  readonly wireToAgent: number;
  readonly wireFromAgent: number;
}

interface RsyncRun {
  readonly rsyncMs: number;
  readonly switchMs: number;
  readonly totalMs: number;
  readonly received: number;
  readonly sent: number;
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const rsyncVersion = await timedRun('rsync', ['--version']).catch(() => undefined);
  if (rsyncVersion === undefined || rsyncVersion.code !== 0) {
    log('rsync is not installed; this benchmark compares against it. Install it with: apt-get install -y rsync');
    process.exitCode = 2;
    return;
  }
  const rsyncName = rsyncVersion.stdout.split('\n', 1)[0] ?? 'rsync';
  if (COLD && !(await dropCaches())) {
    log('--cold: cannot drop the page cache here (needs root and a writable /proc/sys/vm/drop_caches)');
    process.exitCode = 2;
    return;
  }
  log(`incremental-deploy: ${FILES} files in ${DIRS} dirs, ${CHANGED} changed per release, ${ITERATIONS} iterations, ${COLD ? 'cold' : 'warm'} page cache`);

  // Plain HTTP, as in the figures recorded before TLS: the ratios compare like with like.
  const fleet = await startFleet({ tls: false });
  let rsyncd: ChildProcess | undefined;
  let proxy: CountingProxy | undefined;
  try {
    const work = join(fleet.dir, 'bench');
    const sourceRoot = join(work, 'src');
    const files = layout();
    const started = performance.now();
    const totalBytes = await writeTree(join(sourceRoot, 'v1'), files);
    log(`v1 written: ${files.length} files, ${bytes(totalBytes)} in ${ms(performance.now() - started)}`);

    // Lockstep: server, counting proxy, one agent in development.
    await fleet.applyConfig(testConfig({ keep: ITERATIONS + 3, hostTimeout: '600s' }));
    proxy = await startProxy(Number(new URL(fleet.url).port));
    const agent = await addProxiedAgent(fleet, 'host-1', 'development', `http://127.0.0.1:${proxy.port}`);
    const env = { ...process.env, LOCKSTEP_SERVER: fleet.url, LOCKSTEP_TOKEN: fleet.token, NO_COLOR: '1' };
    const cli = (cliArgs: readonly string[]): Promise<Timed> => timedRun(process.execPath, [LOCKSTEP_MAIN, ...cliArgs], { env, cwd: fleet.dir });

    // rsync: a daemon on loopback serving the source releases, and a host releases dir.
    const port = await freePort();
    const config = join(work, 'rsyncd.conf');
    await writeFile(
      config,
      `use chroot = no\nuid = ${process.getuid?.() ?? 0}\ngid = ${process.getgid?.() ?? 0}\npid file = ${join(work, 'rsyncd.pid')}\nlog file = ${join(work, 'rsyncd.log')}\n[src]\n  path = ${sourceRoot}\n  read only = yes\n`,
    );
    rsyncd = spawn('rsync', ['--daemon', '--no-detach', `--port=${port}`, `--address=127.0.0.1`, `--config=${config}`], { stdio: 'ignore' });
    await waitForPort(port);
    const hostDir = join(work, 'rsync-host');
    await mkdir(join(hostDir, 'releases'), { recursive: true });
    const rsyncPull = async (name: string, linkDest?: string): Promise<RsyncRun> => {
      const pulled = mustSucceed(
        'rsync',
        await timedRun('rsync', ['-a', '--stats', ...(linkDest ? [`--link-dest=${join(hostDir, 'releases', linkDest)}`] : []), `rsync://127.0.0.1:${port}/src/${name}/`, join(hostDir, 'releases', name) + '/']),
      );
      const switched = mustSucceed('switch', await timedRun('sh', ['-c', `ln -sfn releases/${name} current.tmp && mv -T current.tmp current`], { cwd: hostDir }));
      const number = (label: string): number => Number((new RegExp(`${label}: ([\\d,]+)`).exec(pulled.stdout)?.[1] ?? 'NaN').replace(/,/g, ''));
      return { rsyncMs: pulled.ms, switchMs: switched.ms, totalMs: pulled.ms + switched.ms, received: number('Total bytes received'), sent: number('Total bytes sent') };
    };
    const maybeDrop = async (): Promise<void> => {
      if (COLD) await dropCaches();
    };

    // Initial releases (not the subject, shown for context).
    await maybeDrop();
    const createV1 = mustSucceed('release create v1', await cli(['release', 'create', join(sourceRoot, 'v1'), '--version', 'v1', '--json']));
    const v1 = JSON.parse(createV1.stdout) as { id: string };
    const before1 = { toAgent: proxy.toClient(), fromAgent: proxy.toServer() };
    await maybeDrop();
    const deployV1 = mustSucceed('deploy v1', await cli(['deploy', v1.id, '--to', 'development']));
    const initialLockstep = { createMs: createV1.ms, deployMs: deployV1.ms, wireToAgent: proxy.toClient() - before1.toAgent };
    await maybeDrop();
    const initialRsync = await rsyncPull('v1');
    log(`initial: lockstep create ${ms(createV1.ms)}, deploy ${ms(deployV1.ms)} (${bytes(initialLockstep.wireToAgent)} to the agent); rsync ${ms(initialRsync.totalMs)} (${bytes(initialRsync.received)} received)`);

    const lockstepRuns: LockstepRun[] = [];
    const rsyncRuns: RsyncRun[] = [];
    const changedSizes: number[] = [];
    let manifestJsonBytes = 0;
    for (let generation = 1; generation <= ITERATIONS; generation++) {
      const name = `v2.${generation}`;
      const changed = changedFiles(files, generation);
      changedSizes.push(await makeVersion(sourceRoot, name, changed, generation));

      const runLockstep = async (): Promise<LockstepRun> => {
        await maybeDrop();
        const created = mustSucceed('release create', await cli(['release', 'create', join(sourceRoot, name), '--version', name, '--json']));
        const release = JSON.parse(created.stdout) as { id: string; uploaded: { bytes: number } };
        const blobsBefore = await cachedBlobs(agent.stateDir);
        await maybeDrop();
        const wireBefore = { toAgent: proxy!.toClient(), fromAgent: proxy!.toServer() };
        const deployed = mustSucceed('deploy', await cli(['deploy', release.id, '--to', 'development']));
        const wireToAgent = proxy!.toClient() - wireBefore.toAgent;
        const wireFromAgent = proxy!.toServer() - wireBefore.fromAgent;
        // Outside the timed region: where the host points, what it fetched, what the server saw.
        const target = await readlink(agent.path('/srv/app/current'));
        if (target !== `releases/${release.id}`) throw new Error(`host-1 current -> ${target}, expected releases/${release.id}`);
        await expectContent(agent.path(`/srv/app/current`), changed, generation);
        let blobBytes = 0;
        for (const [hash, size] of await cachedBlobs(agent.stateDir)) if (!blobsBefore.has(hash)) blobBytes += size;
        const history = JSON.parse(await fleet.ok(['history', 'development', '--limit', '1', '--json'])) as { id: number; createdAt: string; finishedAt: string }[];
        const deployment = history[0];
        if (!deployment) throw new Error('no deployment in history');
        const figures = await agentFigures(agent, deployment.id);
        if (manifestJsonBytes === 0) {
          const shown = JSON.parse(await fleet.ok(['release', 'show', release.id, '--json'])) as { manifest: unknown };
          manifestJsonBytes = Buffer.byteLength(JSON.stringify(shown.manifest));
        }
        return {
          createMs: created.ms,
          uploadedBytes: release.uploaded.bytes,
          deployMs: deployed.ms,
          serverMs: Date.parse(deployment.finishedAt) - Date.parse(deployment.createdAt),
          stageActivateMs: figures.stageActivateMs,
          blobBytes,
          blobsFetched: figures.blobsFetched,
          wireToAgent,
          wireFromAgent,
        };
      };
      const runRsync = async (): Promise<RsyncRun> => {
        await maybeDrop();
        const run = await rsyncPull(name, 'v1');
        await expectContent(join(hostDir, 'current'), changed, generation);
        return run;
      };
      // Alternate which goes first, so neither always finds the other's cache state.
      if (generation % 2 === 1) {
        lockstepRuns.push(await runLockstep());
        rsyncRuns.push(await runRsync());
      } else {
        rsyncRuns.push(await runRsync());
        lockstepRuns.push(await runLockstep());
      }
      const l = lockstepRuns.at(-1) as LockstepRun;
      const r = rsyncRuns.at(-1) as RsyncRun;
      log(
        `${name}: changed ${bytes(changedSizes.at(-1) ?? 0)}; lockstep create ${ms(l.createMs)}, deploy ${ms(l.deployMs)} (agent ${ms(l.stageActivateMs)}), ` +
          `blobs ${bytes(l.blobBytes)}, wire to agent ${bytes(l.wireToAgent)}; rsync ${ms(r.totalMs)}, received ${bytes(r.received)}`,
      );
    }

    const changedMedian = summarize(changedSizes).median;
    const med = (values: number[]) => summarize(values).median;
    const lockstep = {
      createMs: summarize(lockstepRuns.map((run) => run.createMs)),
      deployMs: summarize(lockstepRuns.map((run) => run.deployMs)),
      serverMs: summarize(lockstepRuns.map((run) => run.serverMs)),
      stageActivateMs: summarize(lockstepRuns.map((run) => run.stageActivateMs)),
      blobBytes: med(lockstepRuns.map((run) => run.blobBytes)),
      wireToAgent: med(lockstepRuns.map((run) => run.wireToAgent)),
      wireFromAgent: med(lockstepRuns.map((run) => run.wireFromAgent)),
      uploadedBytes: med(lockstepRuns.map((run) => run.uploadedBytes)),
    };
    const rsync = {
      totalMs: summarize(rsyncRuns.map((run) => run.totalMs)),
      rsyncMs: summarize(rsyncRuns.map((run) => run.rsyncMs)),
      switchMs: summarize(rsyncRuns.map((run) => run.switchMs)),
      received: med(rsyncRuns.map((run) => run.received)),
      sent: med(rsyncRuns.map((run) => run.sent)),
    };
    const result = {
      benchmark: 'incremental-deploy',
      machine: machine(),
      rsync: rsyncName,
      cache: COLD ? 'cold (page cache dropped before every timed step)' : 'warm',
      tree: { files: FILES, dirs: DIRS, bytes: totalBytes, changedFiles: CHANGED, changedBytesMedian: changedMedian },
      iterations: ITERATIONS,
      initial: { lockstep: initialLockstep, rsync: initialRsync },
      manifestJsonBytes,
      lockstepSummary: lockstep,
      rsyncSummary: rsync,
      perRun: { lockstep: lockstepRuns, rsync: rsyncRuns, changedBytes: changedSizes },
    };
    if (JSON_OUTPUT) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    const ratio = (value: number) => `${(value / changedMedian).toFixed(2)}x`;
    process.stdout.write(
      `\nincremental deploy: ${FILES} files (${bytes(totalBytes)}), ${CHANGED} changed (median ${bytes(changedMedian)}), ${ITERATIONS} iterations, ${result.cache} cache, ${result.machine.cpus} CPUs\n\n` +
        table([
          ['one host, new release differing in 10 files', 'median time', 'min', 'max', 'bytes to host', 'x changed'],
          ['lockstep deploy (CLI spawn -> exit 0)', ms(lockstep.deployMs.median), ms(lockstep.deployMs.min), ms(lockstep.deployMs.max), bytes(lockstep.wireToAgent), ratio(lockstep.wireToAgent)],
          ['  server: deployment created -> finished', ms(lockstep.serverMs.median), ms(lockstep.serverMs.min), ms(lockstep.serverMs.max), '', ''],
          ['  agent: stage + activate', ms(lockstep.stageActivateMs.median), ms(lockstep.stageActivateMs.min), ms(lockstep.stageActivateMs.max), '', ''],
          ['  blob payload fetched (new blobs in cache)', '', '', '', bytes(lockstep.blobBytes), ratio(lockstep.blobBytes)],
          ['  wire, agent -> server', '', '', '', bytes(lockstep.wireFromAgent), ''],
          ['rsync -a --link-dest + ln/mv switch', ms(rsync.totalMs.median), ms(rsync.totalMs.min), ms(rsync.totalMs.max), bytes(rsync.received), ratio(rsync.received)],
          ['  rsync alone', ms(rsync.rsyncMs.median), ms(rsync.rsyncMs.min), ms(rsync.rsyncMs.max), '', ''],
          ['  rsync bytes sent (host -> daemon)', '', '', '', bytes(rsync.sent), ''],
          ['lockstep release create (hash + upload)', ms(lockstep.createMs.median), ms(lockstep.createMs.min), ms(lockstep.createMs.max), bytes(lockstep.uploadedBytes), ratio(lockstep.uploadedBytes)],
        ]) +
        `\n\nmanifest of one release as JSON: ${bytes(manifestJsonBytes)} (the agent downloads it once per new release)\n` +
        `initial release (context): lockstep create ${ms(initialLockstep.createMs)}, deploy ${ms(initialLockstep.deployMs)}, ${bytes(initialLockstep.wireToAgent)} to the agent; ` +
        `rsync ${ms(initialRsync.totalMs)}, ${bytes(initialRsync.received)} received\n` +
        `goal: bytes within 10% of the changed files (<= ${bytes(changedMedian * 1.1)}): ${lockstep.wireToAgent <= changedMedian * 1.1 ? 'met' : 'MISSED'} on the wire, ` +
        `${lockstep.blobBytes <= changedMedian * 1.1 ? 'met' : 'MISSED'} for blob payload; time no worse than rsync: ${lockstep.deployMs.median <= rsync.totalMs.median ? 'met' : 'MISSED'} ` +
        `(agent stage+activate alone: ${lockstep.stageActivateMs.median <= rsync.totalMs.median ? 'met' : 'MISSED'})\n`,
    );
  } finally {
    rsyncd?.kill('SIGTERM');
    await fleet.stop();
    await proxy?.close();
  }
}

/** Checks that the changed files under `root` have the new generation's content (outside the timed region). */
async function expectContent(root: string, changed: readonly TreeFile[], generation: number): Promise<void> {
  for (const file of changed) {
    const actual = await readFile(join(root, file.path));
    if (!actual.equals(content(file.path, generation, file.size))) throw new Error(`${root}/${file.path} does not have the new content`);
  }
  const info = await stat(root);
  if (!info.isDirectory()) throw new Error(`${root} is not a directory`);
}

await main();
