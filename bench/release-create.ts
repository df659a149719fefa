/**
 * `lockstep release create` of a large tree (default 20,000 files, ~300 MB)
 * against `rsync -a` of the same tree to an empty directory, side by side in
 * one run, several rounds, medians. Goal (issue 12): ≤ 1.5× rsync.
 *
 * Lockstep side: a real `lockstep server` (fresh data dir each round, so every
 * blob is missing) and the real CLI, timed from spawn to exit: hashing the
 * tree, the upload session, the framed batches (4 streams, fsynced by batch
 * on the server) and the release's creation. rsync side: `rsync -a SRC/ DST/`
 * into an empty directory on the same filesystem (rsync does not fsync).
 * The page cache is warm for both (the tree was just written); the load
 * average is printed with the figures because the machine is shared, and
 * CPU seconds (user + system: the CLI and the server's share for Lockstep,
 * rsync's processes) are printed too, since they depend far less on the load.
 *
 * Usage: node dist/bench/release-create.js [--files 20000] [--mean-size 15000] [--rounds 3] [--json]
 */
import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOCKSTEP_MAIN, startFleet, testConfig } from '../test/helpers/fleet.js';
import { prng } from '../test/helpers/prng.js';
import { args, bytes, machine, ms, mustSucceed, summarize, table, timedRun } from './bench-util.js';

const argv = args(process.argv.slice(2));
const FILES = argv.number('--files', 20_000);
const MEAN_SIZE = argv.number('--mean-size', 15_000);
const ROUNDS = argv.number('--rounds', 3);
const DIRS = 200;
const JSON_OUTPUT = argv.has('--json');

const log = (text: string): void => void process.stderr.write(`${text}\n`);

/** CPU seconds (user + system) a process has used so far, from /proc (clock ticks of 10 ms). */
async function cpuSecondsOf(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Runs a command under /usr/bin/time; returns its wall time and CPU seconds (user + system, its children included). */
async function timedWithCpu(command: string, argv: readonly string[], env?: NodeJS.ProcessEnv): Promise<{ ms: number; cpu: number; stdout: string }> {
  const file = join(tmpdir(), `lockstep-bench-time-${process.pid}`);
  const run = mustSucceed(command, await timedRun('/usr/bin/time', ['-f', '%U %S', '-o', file, command, ...argv], env ? { env } : {}));
  const [user, system] = (await readFile(file, 'utf8')).trim().split(/\s+/).slice(-2).map(Number);
  await rm(file, { force: true });
  return { ms: run.ms, cpu: (user ?? 0) + (system ?? 0), stdout: run.stdout };
}

/** Incompressible, deterministic content. */
function content(path: string, size: number): Buffer {
  const key = createHash('sha256').update(`lockstep-bench:${path}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

async function writeTree(root: string): Promise<number> {
  const random = prng(20261129);
  let total = 0;
  for (let dir = 0; dir < DIRS; dir++) await mkdir(join(root, `d${String(dir).padStart(3, '0')}`), { recursive: true });
  for (let index = 0; index < FILES; index++) {
    const path = `d${String(index % DIRS).padStart(3, '0')}/f${String(index).padStart(5, '0')}.bin`;
    const size = Math.round(MEAN_SIZE * (0.5 + random()));
    await writeFile(join(root, path), content(path, size));
    total += size;
  }
  return total;
}

async function main(): Promise<void> {
  if ((await timedRun('rsync', ['--version'])).code !== 0) {
    log('rsync is missing: apt-get install -y rsync');
    process.exit(2);
  }
  const work = join(tmpdir(), `lockstep-bench-create-${process.pid}`);
  const tree = join(work, 'tree');
  await mkdir(tree, { recursive: true });
  const figures: Record<string, unknown> = { machine: machine(), loadBefore: loadavg(), files: FILES };
  try {
    const total = await writeTree(tree);
    figures.bytes = total;
    log(`tree: ${FILES} files, ${bytes(total)}`);
    const lockstep: number[] = [];
    const rsync: number[] = [];
    const lockstepCpu: number[] = [];
    const rsyncCpu: number[] = [];
    const loads: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const target = join(work, `rsync-${round}`);
      await mkdir(target);
      loads.push(loadavg()[0] ?? 0);
      const copied = await timedWithCpu('rsync', ['-a', `${tree}/`, `${target}/`]);
      rsync.push(copied.ms);
      rsyncCpu.push(copied.cpu);
      await rm(target, { recursive: true, force: true });

      const fleet = await startFleet({ tls: false });
      try {
        await fleet.applyConfig(testConfig());
        const env = { ...process.env, LOCKSTEP_SERVER: fleet.url, LOCKSTEP_TOKEN: fleet.token };
        const serverPid = fleet.server.pid as number;
        const serverBefore = await cpuSecondsOf(serverPid);
        const created = await timedWithCpu(process.execPath, [LOCKSTEP_MAIN, 'release', 'create', tree, '--version', `bench-${round}`, '--json'], env);
        const serverCpu = (await cpuSecondsOf(serverPid)) - serverBefore;
        const summary = JSON.parse(created.stdout) as { files: number; uploaded: { blobs: number } };
        if (summary.uploaded.blobs !== FILES) throw new Error(`expected ${FILES} blobs uploaded, got ${summary.uploaded.blobs}`);
        lockstep.push(created.ms);
        lockstepCpu.push(created.cpu + serverCpu);
        log(`  cpu: release create ${created.cpu.toFixed(2)} s + server ${serverCpu.toFixed(2)} s; rsync ${rsyncCpu.at(-1)?.toFixed(2)} s`);
      } finally {
        await fleet.stop();
      }
      log(`round ${round}: release create ${ms(lockstep.at(-1) ?? 0)}, rsync -a ${ms(rsync.at(-1) ?? 0)} (${((lockstep.at(-1) ?? 0) / (rsync.at(-1) ?? 1)).toFixed(2)}x), load ${loads.at(-1)?.toFixed(1)}`);
    }
    const a = summarize(lockstep);
    const b = summarize(rsync);
    figures.lockstepMs = lockstep;
    figures.rsyncMs = rsync;
    figures.ratio = a.median / b.median;
    // Each round's two runs share its load, so the median of per-round ratios is the steadier figure on a shared machine.
    const paired = summarize(lockstep.map((value, index) => value / (rsync[index] ?? value)));
    figures.pairedRatioMedian = paired.median;
    const cpuA = summarize(lockstepCpu);
    const cpuB = summarize(rsyncCpu);
    figures.lockstepCpuSeconds = lockstepCpu;
    figures.rsyncCpuSeconds = rsyncCpu;
    figures.loadDuring = loads;
    figures.loadAfter = loadavg();
    if (JSON_OUTPUT) {
      process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      `${table([
        ['measure', 'median', 'min', 'max'],
        ['lockstep release create', ms(a.median), ms(a.min), ms(a.max)],
        ['rsync -a to an empty dir', ms(b.median), ms(b.min), ms(b.max)],
        ['lockstep CPU (CLI + server)', `${cpuA.median.toFixed(2)} s`, `${cpuA.min.toFixed(2)} s`, `${cpuA.max.toFixed(2)} s`],
        ['rsync CPU (both processes)', `${cpuB.median.toFixed(2)} s`, `${cpuB.min.toFixed(2)} s`, `${cpuB.max.toFixed(2)} s`],
      ])}\n\nratio of medians: ${(a.median / b.median).toFixed(2)}x, median of per-round ratios: ${paired.median.toFixed(2)}x (goal ≤ 1.5x); ${FILES} files, ${bytes(total)}; load ${loads.map((load) => load.toFixed(1)).join(', ')}\n`,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
