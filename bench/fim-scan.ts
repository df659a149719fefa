/**
 * File integrity scan against AIDE, side by side in one run on one generated
 * tree: cold baseline vs `aide --init`, a scan with no change and a scan after
 * 10 changed / 5 added / 5 removed files vs `aide --check` (same findings?),
 * realtime detection latency (edit -> watcher -> targeted re-scan -> finding)
 * over 50 edits, and the full re-hash throughput against `openssl speed -evp
 * sha256`. Prints figures; asserts nothing.
 *
 *   node dist/bench/fim-scan.js [--files 100000] [--mib 1000] [--edits 50] [--keep] [--json]
 *
 * Needs AIDE (Debian package `aide`): as root it is installed with apt-get
 * when missing (said on stderr); otherwise the benchmark exits 2.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { diffSnapshot, mergeRescan } from '../src/core/drift.js';
import type { SnapshotEntry } from '../src/core/drift.js';
import { scanTree } from '../src/fim/scanner.js';
import { loadStatCache, saveStatCache, StatCache, statCachePath } from '../src/fim/stat-cache.js';
import { watchTree } from '../src/fim/tree-watcher.js';
import { FimWorkerPool } from '../src/fim/worker-pool.js';
import { args, machine, summarize, table, timedRun } from './bench-util.js';

const argv = args(process.argv.slice(2));
const FILES = argv.number('--files', 100_000);
const MIB = argv.number('--mib', 1000);
const EDITS = argv.number('--edits', 50);
const asJson = argv.has('--json');
const log = (text: string): void => void process.stderr.write(`${text}\n`);

function ensureAide(): void {
  if (spawnSync('aide', ['--version'], { stdio: 'ignore' }).status === 0) return;
  if (process.getuid?.() !== 0) {
    log('fim-scan: AIDE is missing; install the Debian package: sudo apt-get install -y aide');
    process.exit(2);
  }
  log('fim-scan: AIDE is missing; INSTALLING the Debian package `aide` with apt-get');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const command of [['update'], ['install', '-y', '--no-install-recommends', 'aide']]) {
    if (spawnSync('apt-get', command, { stdio: 'inherit', env }).status !== 0) {
      log(`fim-scan: apt-get ${command.join(' ')} failed`);
      process.exit(2);
    }
  }
}

/** xorshift32: the same tree on every run. */
function random(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 0x1_0000_0000;
  };
}

const fileName = (index: number): string => `d${String(Math.floor(index / 1000)).padStart(3, '0')}/s${String(Math.floor(index / 100) % 10)}/f${String(index).padStart(6, '0')}.dat`;

/** 100 top directories x 10 sub-directories, file sizes 0..3x the mean (mean = total / files), pseudo-random content. */
async function generateTree(root: string): Promise<number> {
  const next = random(0x10c5 + FILES);
  const pool = Buffer.alloc(64 * 1024 * 1024);
  for (let offset = 0; offset < pool.length; offset += 4) pool.writeUInt32LE(Math.floor(next() * 0x1_0000_0000), offset);
  const mean = (MIB * 1024 * 1024) / FILES;
  let total = 0;
  for (let index = 0; index < FILES; index++) {
    if (index % 100 === 0) mkdirSync(join(root, fileName(index), '..'), { recursive: true });
    const size = Math.floor(mean * 3 * next() ** 2);
    const start = Math.floor(next() * (pool.length - size - 8));
    const content = Buffer.concat([Buffer.from(`${index}`.padStart(8, '0')), pool.subarray(start, start + size)]);
    writeFileSync(join(root, fileName(index)), content);
    total += content.length;
  }
  return total;
}

function aideConfig(root: string, dbDir: string): string {
  return [
    `database_in=file:${dbDir}/aide.db`,
    `database_out=file:${dbDir}/aide.db.new`,
    'gzip_dbout=no',
    // report_format applies to the report_url lines after it.
    'report_format=json',
    'report_url=stdout',
    // As many threads as our worker pool has (AIDE 0.18's default is 1).
    `num_workers=${new FimWorkerPool().size}`,
    // What Lockstep reports (type, permissions incl. suid/sgid/sticky, link target, owner, group, size,
    // SHA-256) plus what its stat cache compares to decide whether to re-hash (inode, mtime, ctime).
    'Lockstep = ftype+p+l+u+g+s+sha256+i+m+c',
    `${root} Lockstep`,
    '',
  ].join('\n');
}

interface AideReport {
  readonly added: string[];
  readonly removed: string[];
  readonly changed: string[];
}

/** Paths from AIDE's JSON report (0.18: objects keyed by path under added/removed/changed). */
function parseAide(stdout: string): AideReport {
  const report = JSON.parse(stdout) as Record<string, unknown>;
  const paths = (value: unknown): string[] => (value && typeof value === 'object' ? (Array.isArray(value) ? value.map(String) : Object.keys(value)) : []);
  return { added: paths(report.added), removed: paths(report.removed), changed: paths(report.changed) };
}

async function main(): Promise<void> {
  ensureAide();
  const work = await mkdtemp(join(tmpdir(), 'lockstep-fim-bench-'));
  const tree = join(work, 'tree');
  const state = join(work, 'state');
  const aideDir = join(work, 'aide');
  mkdirSync(tree);
  mkdirSync(state);
  mkdirSync(aideDir);
  const figures: Record<string, unknown> = { machine: machine(), loadBefore: loadavg(), files: FILES };
  try {
    log(`fim-scan: generating ${FILES} files (~${MIB} MiB) in ${tree}`);
    let started = performance.now();
    const bytes = await generateTree(tree);
    figures.treeBytes = bytes;
    log(`fim-scan: generated ${(bytes / 1024 / 1024).toFixed(0)} MiB in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const conf = join(aideDir, 'aide.conf');
    await writeFile(conf, aideConfig(tree, aideDir));
    figures.aideConfig = aideConfig(tree, aideDir);
    // Settle: files written within the racy window (1 s) are not cached, by design.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const aide = (mode: string) => timedRun('aide', [mode, '-c', conf]);

    // 1. Cold baseline. Both sides read a page-cache-warm tree (it was just written).
    log('fim-scan: aide --init');
    const aideInit = await aide('--init');
    if (aideInit.code !== 0) throw new Error(`aide --init exited ${aideInit.code}: ${aideInit.stderr}`);
    renameSync(join(aideDir, 'aide.db.new'), join(aideDir, 'aide.db'));
    log('fim-scan: lockstep cold baseline');
    started = performance.now();
    const pool = new FimWorkerPool();
    const cache = new StatCache(tree);
    const baselineScan = await scanTree(tree, { cache, pool, full: true });
    await saveStatCache(statCachePath(state), cache);
    const coldMs = performance.now() - started;
    const baseline = baselineScan.entries;

    // 2. No change.
    log('fim-scan: aide --check (no change)');
    const aideNoChange = await aide('--check');
    const noChangeRuns: number[] = [];
    let noChangeFindings = 0;
    let noChangeHashed = 0;
    for (let run = 0; run < 5; run++) {
      const scan = await scanTree(tree, { cache, pool });
      noChangeRuns.push(scan.elapsedMs);
      noChangeFindings = diffSnapshot(baseline, scan.entries).length;
      noChangeHashed = scan.counters.hashedFiles;
    }
    // As a freshly started agent would: load the cache file and start the threads first.
    started = performance.now();
    const loaded = await loadStatCache(statCachePath(state), tree);
    const freshPool = new FimWorkerPool();
    const freshScan = await scanTree(tree, { cache: loaded.cache, pool: freshPool });
    const freshMs = performance.now() - started;
    await freshPool.close();

    // 3. 10 changed, 5 added, 5 removed.
    const changed = Array.from({ length: 10 }, (_, i) => fileName(((i + 1) * 7919) % FILES));
    const removed = Array.from({ length: 5 }, (_, i) => fileName(((i + 1) * 104729) % FILES));
    const added = Array.from({ length: 5 }, (_, i) => fileName(i * 1000).replace(/f\d+\.dat$/, `new-${i}.dat`));
    for (const path of changed) appendFileSync(join(tree, path), 'changed');
    for (const path of removed) unlinkSync(join(tree, path));
    for (const path of added) writeFileSync(join(tree, path), `added ${path}`);
    log('fim-scan: aide --check (20 changes)');
    const aideChanges = await aide('--check');
    const changeScan = await scanTree(tree, { cache, pool });
    const findings = diffSnapshot(baseline, changeScan.entries);
    const ours = {
      added: findings.filter((f) => f.kind === 'added').map((f) => f.path),
      removed: findings.filter((f) => f.kind === 'removed').map((f) => f.path),
      changed: [...new Set(findings.filter((f) => f.kind !== 'added' && f.kind !== 'removed').map((f) => f.path))],
    };
    let aideReport: AideReport | undefined;
    try {
      aideReport = parseAide(aideChanges.stdout);
    } catch (error) {
      log(`fim-scan: could not parse AIDE's report: ${String(error)}`);
    }
    const relative = (path: string): string => (path.startsWith(`${tree}/`) ? path.slice(tree.length + 1) : path === tree ? '' : path);
    const aideFiles = aideReport && {
      added: aideReport.added.map(relative).sort(),
      removed: aideReport.removed.map(relative).sort(),
      // Directories whose mtime/ctime changed because an entry was added or removed: we report the entry, not the directory.
      changed: aideReport.changed.map(relative).filter((path) => path.endsWith('.dat')).sort(),
      changedDirectories: aideReport.changed.map(relative).filter((path) => !path.endsWith('.dat')).sort(),
    };
    const same = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && [...a].sort().every((value, i) => value === [...b].sort()[i]);
    const sameFindings = aideFiles !== undefined && same(aideFiles.added, ours.added) && same(aideFiles.removed, ours.removed) && same(aideFiles.changed, ours.changed);

    // 4. Realtime: edit -> watcher -> targeted re-scan -> a content finding for that path.
    log(`fim-scan: realtime detection over ${EDITS} edits`);
    let snapshot: readonly SnapshotEntry[] = changeScan.entries;
    const waiting = new Map<string, (at: number) => void>();
    const watcher = watchTree(tree, {
      onChange: (paths) => {
        void scanTree(tree, { cache, pool, paths }).then((rescan) => {
          const previous = snapshot;
          snapshot = mergeRescan(previous, rescan.scannedPaths, rescan.entries);
          const now = performance.now();
          for (const finding of diffSnapshot(previous.filter((entry) => paths.some((p) => entry.path === p || entry.path.startsWith(`${p}/`))), rescan.entries)) {
            waiting.get(finding.path)?.(now);
          }
        });
      },
    });
    const watchStarted = performance.now();
    await watcher.ready;
    const watchSetupMs = performance.now() - watchStarted;
    const latencies: number[] = [];
    let missed = 0;
    for (let edit = 0; edit < EDITS; edit++) {
      const path = fileName((edit * 1009 + 17) % FILES);
      const detected = new Promise<number | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), 10_000);
        waiting.set(path, (at) => {
          clearTimeout(timer);
          resolve(at);
        });
      });
      const editedAt = performance.now();
      appendFileSync(join(tree, path), `edit ${edit}`);
      const at = await detected;
      waiting.delete(path);
      if (at === undefined) missed += 1;
      else latencies.push(at - editedAt);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const watchedDirectories = watcher.watchedDirectories();
    watcher.close();

    // 5. Full re-hash throughput vs openssl (one core, 16 KiB blocks) times the worker count.
    log('fim-scan: full re-hash');
    const full = await scanTree(tree, { cache, pool, full: true });
    const rehashBytesPerSecond = full.counters.hashedBytes / (full.elapsedMs / 1000);
    const openssl = execFileSync('openssl', ['speed', '-elapsed', '-evp', 'sha256', '-seconds', '3', '-bytes', '16384'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const opensslLine = openssl.split('\n').find((line) => line.startsWith('sha256'));
    const opensslKBps = Number(opensslLine?.trim().split(/\s+/).at(-1)?.replace(/k$/, ''));
    const opensslBytesPerSecond = opensslKBps * 1000;
    await pool.close();

    const noChange = summarize(noChangeRuns);
    const latency = latencies.length > 0 ? summarize(latencies) : undefined;
    Object.assign(figures, {
      loadAfter: loadavg(),
      coldBaseline: { lockstepMs: coldMs, aideInitMs: aideInit.ms, hashedFiles: baselineScan.counters.hashedFiles, hashedBytes: baselineScan.counters.hashedBytes, entries: baseline.length },
      noChange: { lockstepMs: noChange, lockstepFreshProcessMs: freshMs, freshCacheHits: freshScan.counters.cacheHits, aideCheckMs: aideNoChange.ms, aideExit: aideNoChange.code, findings: noChangeFindings, hashedFiles: noChangeHashed },
      changes: { lockstepMs: changeScan.elapsedMs, aideCheckMs: aideChanges.ms, aideExit: aideChanges.code, hashedFiles: changeScan.counters.hashedFiles, ours, aide: aideFiles, sameFindings, expected: { changed, added, removed } },
      realtime: { edits: EDITS, missed, latencyMs: latency, watchedDirectories, watchSetupMs },
      fullRehash: { ms: full.elapsedMs, bytes: full.counters.hashedBytes, bytesPerSecond: rehashBytesPerSecond, workers: pool.size, opensslBytesPerSecondOneCore: opensslBytesPerSecond },
    });
    if (asJson) {
      process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
    } else {
      const s = (value: number): string => `${(value / 1000).toFixed(2)} s`;
      const m = (value: number): string => `${value.toFixed(0)} ms`;
      const mbs = (value: number): string => `${(value / 1e6).toFixed(0)} MB/s`;
      const ratio = (a: number, b: number): string => `${(a / b).toFixed(1)}x`;
      console.log(`machine: ${JSON.stringify(figures.machine)}`);
      console.log(`load average before: ${(figures.loadBefore as number[]).map((v) => v.toFixed(2)).join(' ')}, after: ${loadavg().map((v) => v.toFixed(2)).join(' ')}`);
      console.log(`tree: ${FILES} files, ${(bytes / 1024 / 1024).toFixed(0)} MiB, ${baseline.length} entries\n`);
      console.log(
        table([
          ['step', 'lockstep', 'aide', 'aide / lockstep'],
          ['cold baseline (vs --init)', s(coldMs), s(aideInit.ms), ratio(aideInit.ms, coldMs)],
          [`no change, median of ${noChange.n} (vs --check)`, m(noChange.median), s(aideNoChange.ms), ratio(aideNoChange.ms, noChange.median)],
          ['no change, fresh process (load cache, start threads)', m(freshMs), s(aideNoChange.ms), ratio(aideNoChange.ms, freshMs)],
          ['10 changed + 5 added + 5 removed (vs --check)', m(changeScan.elapsedMs), s(aideChanges.ms), ratio(aideChanges.ms, changeScan.elapsedMs)],
        ]),
      );
      console.log(`\nno-change scans: ${noChangeHashed} files hashed, ${noChangeFindings} findings; AIDE exit ${aideNoChange.code}`);
      console.log(`after changes: ours added ${ours.added.length}, removed ${ours.removed.length}, changed ${ours.changed.length}; hashed ${changeScan.counters.hashedFiles} files`);
      console.log(`after changes: aide added ${aideFiles?.added.length ?? '?'}, removed ${aideFiles?.removed.length ?? '?'}, changed files ${aideFiles?.changed.length ?? '?'} (+ ${aideFiles?.changedDirectories.length ?? '?'} directories with new mtime/ctime)`);
      console.log(`same findings (files): ${sameFindings ? 'yes' : 'NO'}`);
      console.log(`\nrealtime: ${EDITS} edits, ${missed} missed (10 s timeout), ${watchedDirectories} directories watched (set-up ${m(watchSetupMs)})`);
      if (latency) console.log(`realtime latency: median ${m(latency.median)}, p95 ${m(latency.p95)}, min ${m(latency.min)}, max ${m(latency.max)}`);
      console.log(`\nfull re-hash: ${(full.counters.hashedBytes / 1024 / 1024).toFixed(0)} MiB in ${s(full.elapsedMs)} = ${mbs(rehashBytesPerSecond)} with ${pool.size} workers`);
      console.log(`openssl speed -evp sha256 -elapsed (wall clock, 16 KiB blocks, one core): ${mbs(opensslBytesPerSecond)}; x${pool.size} = ${mbs(opensslBytesPerSecond * pool.size)}`);
      console.log(`\nAIDE configuration:\n${aideConfig(tree, aideDir)}`);
    }
  } finally {
    if (!argv.has('--keep')) rmSync(work, { recursive: true, force: true });
    else log(`fim-scan: kept ${work}`);
  }
}

await main();
