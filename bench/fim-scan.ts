/**
 * File integrity scan against AIDE, Tripwire and integrit, all four side by
 * side in one run on one generated tree: cold baseline vs each tool's init, a
 * scan with no change and a scan after 10 changed / 5 added / 5 removed files
 * vs each tool's check (how many findings each reports), realtime detection
 * latency (edit -> watcher -> targeted re-scan -> finding) over 50 edits; the
 * full re-hash in MB per CPU-second against `openssl speed -evp sha256` (one
 * core), the no-change scan against a `find -printf` lstat walk of the same
 * tree, and the throughput a co-located CPU-bound process keeps during a full
 * re-hash with the default scan priority (and without it). Prints figures;
 * asserts nothing.
 *
 *   node dist/bench/fim-scan.js [--files 100000] [--mib 1000] [--edits 50] [--keep] [--json]
 *
 * Needs AIDE, Tripwire and integrit (Debian packages `aide`, `tripwire`,
 * `integrit`): as root they are installed with apt-get when missing (said on
 * stderr); otherwise the benchmark exits 2.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
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
import { DEFAULT_SCAN_PRIORITY } from '../src/core/drift.js';
import { args, machine, summarize, table, timedRun } from './bench-util.js';

const argv = args(process.argv.slice(2));
const FILES = argv.number('--files', 100_000);
const MIB = argv.number('--mib', 1000);
const EDITS = argv.number('--edits', 50);
const asJson = argv.has('--json');
const log = (text: string): void => void process.stderr.write(`${text}\n`);

/** The Debian packages of the other tools, and a command that tells whether each is installed. */
const TOOLS = [
  { package: 'aide', probe: ['aide', '--version'] },
  { package: 'tripwire', probe: ['twadmin', '--help'] },
  { package: 'integrit', probe: ['integrit', '-V'] },
] as const;

function ensureTools(): void {
  const missing = TOOLS.filter((tool) => spawnSync(tool.probe[0], tool.probe.slice(1), { stdio: 'ignore' }).error !== undefined).map((tool) => tool.package);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    log(`fim-scan: missing ${missing.join(', ')}; install the Debian packages: sudo apt-get install -y ${missing.join(' ')}`);
    process.exit(2);
  }
  log(`fim-scan: missing ${missing.join(', ')}; INSTALLING the Debian packages with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const command of [['update'], ['install', '-y', '--no-install-recommends', ...missing]]) {
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

/** What a tool reported after the changes: every path it named (files and directories), relative to the tree. */
interface ToolReport {
  readonly added: string[];
  readonly removed: string[];
  readonly changed: string[];
}

/** One of the other integrity checkers: how to take its baseline and check against it, and how to read its report. */
interface Checker {
  readonly name: string;
  readonly initLabel: string;
  readonly checkLabel: string;
  /** The configuration used, for the README. */
  readonly config: string;
  init(): Promise<number>;
  check(): Promise<{ ms: number; exit: number; report: ToolReport | undefined }>;
}

const TRIPWIRE_PASSPHRASE = 'lockstep-bench';

/** Tripwire 2.4: keys, a signed config and policy in its own dir; SHA-1 is its strongest hash (no SHA-256). */
function tripwire(root: string, dir: string, relative: (path: string) => string): Checker {
  mkdirSync(dir, { recursive: true });
  const site = ['--site-keyfile', join(dir, 'site.key'), '--site-passphrase', TRIPWIRE_PASSPHRASE];
  const config = [
    `POLFILE=${dir}/tw.pol`, `DBFILE=${dir}/tw.twd`, `REPORTFILE=${dir}/report.twr`, `SITEKEYFILE=${dir}/site.key`, `LOCALKEYFILE=${dir}/local.key`,
    'ROOT=/usr/sbin', 'EDITOR=/bin/false', 'LATEPROMPTING=false', 'LOOSEDIRECTORYCHECKING=false', 'MAILNOTIFYVIOLATIONS=false',
    'EMAILREPORTLEVEL=3', 'REPORTLEVEL=3', 'SYSLOGREPORTING=false', 'MAILMETHOD=SENDMAIL', 'MAILPROGRAM=/bin/true', '',
  ].join('\n');
  // Type, permissions, inode, links, owner, group, size, mtime, ctime, SHA-1: the closest to what Lockstep compares.
  const policy = `${root} -> +pinugstmcS ;\n`;
  const paths = { cfg: join(dir, 'tw.cfg'), pol: join(dir, 'tw.pol') };
  const files = ['--cfgfile', paths.cfg, '--polfile', paths.pol];
  return {
    name: 'tripwire',
    initLabel: 'tripwire --init',
    checkLabel: 'tripwire --check',
    config: `twcfg.txt:\n${config}\ntwpol.txt:\n${policy}`,
    async init() {
      writeFileSync(join(dir, 'twcfg.txt'), config);
      writeFileSync(join(dir, 'twpol.txt'), policy);
      execFileSync('twadmin', ['--generate-keys', ...site], { stdio: 'ignore' });
      execFileSync('twadmin', ['--generate-keys', '--local-keyfile', join(dir, 'local.key'), '--local-passphrase', TRIPWIRE_PASSPHRASE], { stdio: 'ignore' });
      execFileSync('twadmin', ['--create-cfgfile', '--cfgfile', paths.cfg, ...site, join(dir, 'twcfg.txt')], { stdio: 'ignore' });
      execFileSync('twadmin', ['--create-polfile', ...files, ...site, join(dir, 'twpol.txt')], { stdio: 'ignore' });
      const run = await timedRun('tripwire', ['--init', ...files, '--local-passphrase', TRIPWIRE_PASSPHRASE]);
      if (run.code !== 0) throw new Error(`tripwire --init exited ${run.code}: ${run.stderr}`);
      return run.ms;
    },
    async check() {
      // Exit status is a bit mask: 1 added, 2 removed, 4 changed.
      const run = await timedRun('tripwire', ['--check', ...files]);
      return { ms: run.ms, exit: run.code, report: parseTripwire(run.stdout, relative) };
    },
  };
}

/** Paths under "Added:", "Removed:" and "Modified:" of a Tripwire report (report level 3). */
function parseTripwire(stdout: string, relative: (path: string) => string): ToolReport {
  const report: ToolReport = { added: [], removed: [], changed: [] };
  let section: string[] | undefined;
  for (const line of stdout.split('\n')) {
    if (line === 'Added:') section = report.added;
    else if (line === 'Removed:') section = report.removed;
    else if (line === 'Modified:') section = report.changed;
    else if (line.startsWith('"') && section) section.push(relative(line.slice(1, -1)));
    else if (line.startsWith('====')) section = undefined;
  }
  return report;
}

/** integrit 4.1: its default checks (SHA-1, inode, permissions, links, owner, group, size, mtime, ctime). */
function integrit(root: string, dir: string, relative: (path: string) => string): Checker {
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'integrit.conf');
  const config = `root=${root}\nknown=${dir}/known.cdb\ncurrent=${dir}/current.cdb\n`;
  return {
    name: 'integrit',
    initLabel: 'integrit -u',
    checkLabel: 'integrit -c',
    config,
    async init() {
      writeFileSync(conf, config);
      const run = await timedRun('integrit', ['-C', conf, '-u']);
      if (run.code !== 0) throw new Error(`integrit -u exited ${run.code}: ${run.stderr}`);
      renameSync(join(dir, 'current.cdb'), join(dir, 'known.cdb'));
      return run.ms;
    },
    async check() {
      // A check alone does not look for missing files ("not doing update, so no check for missing files").
      const run = await timedRun('integrit', ['-C', conf, '-c']);
      return { ms: run.ms, exit: run.code, report: parseIntegrit(run.stdout, relative) };
    },
  };
}

/** Paths of integrit's "new:", "missing:" and "changed:" lines (a path may have several lines). */
function parseIntegrit(stdout: string, relative: (path: string) => string): ToolReport {
  const sets = { added: new Set<string>(), removed: new Set<string>(), changed: new Set<string>() };
  for (const line of stdout.split('\n')) {
    const match = /^(new|missing|changed):\s+(\S+)/.exec(line);
    if (!match) continue;
    const kind = match[1] === 'new' ? 'added' : match[1] === 'missing' ? 'removed' : 'changed';
    sets[kind].add(relative(match[2] ?? ''));
  }
  return { added: [...sets.added], removed: [...sets.removed], changed: [...sets.changed] };
}

/** AIDE 0.18 with the attributes Lockstep compares, JSON report on stdout. */
function aide(root: string, dir: string, relative: (path: string) => string): Checker {
  const conf = join(dir, 'aide.conf');
  const config = aideConfig(root, dir);
  return {
    name: 'aide',
    initLabel: 'aide --init',
    checkLabel: 'aide --check',
    config,
    async init() {
      await writeFile(conf, config);
      const run = await timedRun('aide', ['--init', '-c', conf]);
      if (run.code !== 0) throw new Error(`aide --init exited ${run.code}: ${run.stderr}`);
      renameSync(join(dir, 'aide.db.new'), join(dir, 'aide.db'));
      return run.ms;
    },
    async check() {
      const run = await timedRun('aide', ['--check', '-c', conf]);
      let report: ToolReport | undefined;
      try {
        const parsed = parseAide(run.stdout);
        report = { added: parsed.added.map(relative), removed: parsed.removed.map(relative), changed: parsed.changed.map(relative) };
      } catch (error) {
        if (run.stdout.trim() !== '') log(`fim-scan: could not parse AIDE's report: ${String(error)}`);
      }
      return { ms: run.ms, exit: run.code, report };
    },
  };
}

/** Wall-clock MB/s of `openssl speed -evp sha256` over `seconds` (a CPU-bound process: what it gets done per second). */
function opensslRun(seconds: number, elapsed: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', ['speed', ...(elapsed ? ['-elapsed'] : []), '-evp', 'sha256', '-seconds', String(seconds), '-bytes', '16384'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('close', () => {
      const line = out.split('\n').find((candidate) => candidate.startsWith('sha256'));
      resolve((Number(line?.trim().split(/\s+/).at(-1)?.replace(/k$/, '')) * 1000) / 1e6);
    });
  });
}

/** CPU seconds of this process, every thread. */
function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/** Wall ms of `find DIR -printf` with lstat fields: the bare walk the no-change scan is compared with. */
async function findWalk(dir: string): Promise<number> {
  const run = await timedRun('sh', ['-c', `find "$1" -printf '%i %s %T@ %C@ %m %U %G %p\\n' > /dev/null`, 'find', dir]);
  if (run.code !== 0) throw new Error(`find exited ${run.code}: ${run.stderr}`);
  return run.ms;
}

async function main(): Promise<void> {
  ensureTools();
  const work = await mkdtemp(join(tmpdir(), 'lockstep-fim-bench-'));
  const tree = join(work, 'tree');
  const state = join(work, 'state');
  mkdirSync(tree);
  mkdirSync(state);
  mkdirSync(join(work, 'aide'));
  const relative = (path: string): string => (path.startsWith(`${tree}/`) ? path.slice(tree.length + 1) : path === tree ? '' : path);
  const checkers = [aide(tree, join(work, 'aide'), relative), tripwire(tree, join(work, 'tripwire'), relative), integrit(tree, join(work, 'integrit'), relative)];
  const figures: Record<string, unknown> = { machine: machine(), loadBefore: loadavg(), files: FILES };
  try {
    log(`fim-scan: generating ${FILES} files (~${MIB} MiB) in ${tree}`);
    let started = performance.now();
    const bytes = await generateTree(tree);
    figures.treeBytes = bytes;
    log(`fim-scan: generated ${(bytes / 1024 / 1024).toFixed(0)} MiB in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    figures.configs = Object.fromEntries(checkers.map((checker) => [checker.name, checker.config]));
    // Settle: files written within the racy window (1 s) are not cached, by design.
    await new Promise((resolve) => setTimeout(resolve, 1500));

    // 1. Cold baseline. Every side reads a page-cache-warm tree (it was just written).
    const initMs: Record<string, number> = {};
    for (const checker of checkers) {
      log(`fim-scan: ${checker.initLabel}`);
      initMs[checker.name] = await checker.init();
    }
    log('fim-scan: lockstep cold baseline');
    started = performance.now();
    const pool = new FimWorkerPool();
    const cache = new StatCache(tree);
    const baselineScan = await scanTree(tree, { cache, pool, full: true });
    await saveStatCache(statCachePath(state), cache);
    const coldMs = performance.now() - started;
    const baseline = baselineScan.entries;

    // 2. No change: the other tools' checks, then 5 Lockstep scans interleaved with 5 `find` lstat walks.
    const noChangeChecks: Record<string, { ms: number; exit: number }> = {};
    for (const checker of checkers) {
      log(`fim-scan: ${checker.checkLabel} (no change)`);
      const { ms, exit } = await checker.check();
      noChangeChecks[checker.name] = { ms, exit };
    }
    const noChangeRuns: number[] = [];
    const noChangeCpu: number[] = [];
    const findRuns: number[] = [];
    let noChangeFindings = 0;
    let noChangeHashed = 0;
    for (let run = 0; run < 5; run++) {
      const cpuBefore = cpuSeconds();
      const scan = await scanTree(tree, { cache, pool });
      noChangeCpu.push((cpuSeconds() - cpuBefore) * 1000);
      noChangeRuns.push(scan.elapsedMs);
      noChangeFindings = diffSnapshot(baseline, scan.entries).length;
      noChangeHashed = scan.counters.hashedFiles;
      findRuns.push(await findWalk(tree));
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
    const changeChecks: Record<string, { ms: number; exit: number; report: ToolReport | undefined; findings: number | undefined; files: number | undefined }> = {};
    for (const checker of checkers) {
      log(`fim-scan: ${checker.checkLabel} (20 changes)`);
      const { ms, exit, report } = await checker.check();
      const all = report && [...new Set([...report.added, ...report.removed, ...report.changed])];
      changeChecks[checker.name] = { ms, exit, report, findings: all?.length, files: all?.filter((path) => path.endsWith('.dat')).length };
    }
    const changeScan = await scanTree(tree, { cache, pool });
    const findings = diffSnapshot(baseline, changeScan.entries);
    const ours = {
      added: findings.filter((f) => f.kind === 'added').map((f) => f.path),
      removed: findings.filter((f) => f.kind === 'removed').map((f) => f.path),
      changed: [...new Set(findings.filter((f) => f.kind !== 'added' && f.kind !== 'removed').map((f) => f.path))],
    };
    const ourFindings = new Set([...ours.added, ...ours.removed, ...ours.changed]).size;
    const same = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && [...a].sort().every((value, i) => value === [...b].sort()[i]);
    const exact = same(ours.added, added) && same(ours.removed, removed) && same(ours.changed, changed);

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

    // 5. Full re-hash: MB per CPU-second of this process (every thread) against openssl's per CPU-second, one core.
    log('fim-scan: full re-hash');
    const cpuBefore = cpuSeconds();
    const full = await scanTree(tree, { cache, pool, full: true });
    const fullCpuSeconds = cpuSeconds() - cpuBefore;
    const opensslPerCpuSecond = await opensslRun(3, false);
    await pool.close();

    // 6. A co-located CPU-bound process (openssl speed, wall-clock throughput): alone, then during full re-hashes
    // with the default scan priority (nice 10, idle I/O), then during full re-hashes at the agent's own priority.
    const colocated = async (priority: 'default' | 'none'): Promise<number> => {
      const busyPool = new FimWorkerPool(undefined, priority === 'default' ? { priority: () => DEFAULT_SCAN_PRIORITY } : {});
      let stop = false;
      const rehashing = (async () => {
        while (!stop) await scanTree(tree, { pool: busyPool, full: true });
      })();
      await new Promise((resolve) => setTimeout(resolve, 500));
      const mbs = await opensslRun(5, true);
      stop = true;
      await rehashing;
      await busyPool.close();
      return mbs;
    };
    log('fim-scan: co-located CPU-bound process, solo / during re-hash (default priority) / during re-hash (no priority)');
    const solo = await opensslRun(5, true);
    const withDefault = await colocated('default');
    const withNone = await colocated('none');
    const soloAfter = await opensslRun(5, true);

    const noChange = summarize(noChangeRuns);
    const find = summarize(findRuns);
    const latency = latencies.length > 0 ? summarize(latencies) : undefined;
    const rehashMbPerCpuSecond = full.counters.hashedBytes / 1e6 / fullCpuSeconds;
    Object.assign(figures, {
      loadAfter: loadavg(),
      coldBaseline: { lockstepMs: coldMs, initMs, hashedFiles: baselineScan.counters.hashedFiles, hashedBytes: baselineScan.counters.hashedBytes, entries: baseline.length },
      noChange: { lockstepMs: noChange, lockstepCpuMs: summarize(noChangeCpu), findMs: find, lockstepFreshProcessMs: freshMs, freshCacheHits: freshScan.counters.cacheHits, checks: noChangeChecks, findings: noChangeFindings, hashedFiles: noChangeHashed },
      changes: { lockstepMs: changeScan.elapsedMs, checks: changeChecks, hashedFiles: changeScan.counters.hashedFiles, ours, ourFindings, exact, expected: { changed, added, removed } },
      realtime: { edits: EDITS, missed, latencyMs: latency, watchedDirectories, watchSetupMs },
      fullRehash: { wallMs: full.elapsedMs, cpuSeconds: fullCpuSeconds, bytes: full.counters.hashedBytes, mbPerCpuSecond: rehashMbPerCpuSecond, workers: pool.size, opensslMbPerCpuSecondOneCore: opensslPerCpuSecond },
      colocated: { soloMbs: solo, soloAfterMbs: soloAfter, duringDefaultPriorityMbs: withDefault, duringNoPriorityMbs: withNone },
    });
    if (asJson) {
      process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
    } else {
      const s = (value: number): string => `${(value / 1000).toFixed(2)} s`;
      const m = (value: number): string => `${value.toFixed(0)} ms`;
      const ratio = (a: number, b: number): string => `${(a / b).toFixed(1)}x`;
      console.log(`machine: ${JSON.stringify(figures.machine)}`);
      console.log(`load average before: ${(figures.loadBefore as number[]).map((v) => v.toFixed(2)).join(' ')}, after: ${loadavg().map((v) => v.toFixed(2)).join(' ')}`);
      console.log(`tree: ${FILES} files, ${(bytes / 1024 / 1024).toFixed(0)} MiB, ${baseline.length} entries\n`);
      const rows: string[][] = [['step', 'lockstep', ...checkers.map((checker) => checker.name), ...checkers.map((checker) => `${checker.name} / lockstep`)]];
      rows.push(['cold baseline (vs init)', s(coldMs), ...checkers.map((c) => s(initMs[c.name] ?? NaN)), ...checkers.map((c) => ratio(initMs[c.name] ?? NaN, coldMs))]);
      rows.push([`no change, median of ${noChange.n} (vs check)`, m(noChange.median), ...checkers.map((c) => s(noChangeChecks[c.name]?.ms ?? NaN)), ...checkers.map((c) => ratio(noChangeChecks[c.name]?.ms ?? NaN, noChange.median))]);
      rows.push(['no change, fresh process (load cache, start threads)', m(freshMs), ...checkers.map((c) => s(noChangeChecks[c.name]?.ms ?? NaN)), ...checkers.map((c) => ratio(noChangeChecks[c.name]?.ms ?? NaN, freshMs))]);
      rows.push(['10 changed + 5 added + 5 removed (vs check)', m(changeScan.elapsedMs), ...checkers.map((c) => s(changeChecks[c.name]?.ms ?? NaN)), ...checkers.map((c) => ratio(changeChecks[c.name]?.ms ?? NaN, changeScan.elapsedMs))]);
      rows.push(['findings after the 20 changes (paths)', String(ourFindings), ...checkers.map((c) => String(changeChecks[c.name]?.findings ?? '?')), ...checkers.map(() => '')]);
      console.log(table(rows));
      console.log(`\nno-change scans: ${noChangeHashed} files hashed, ${noChangeFindings} findings; CPU median ${m(summarize(noChangeCpu).median)} (all threads)`);
      console.log(`after changes: ours added ${ours.added.length}, removed ${ours.removed.length}, changed ${ours.changed.length} (exactly the 20 made: ${exact ? 'yes' : 'NO'}); hashed ${changeScan.counters.hashedFiles} files`);
      for (const checker of checkers) {
        const report = changeChecks[checker.name]?.report;
        console.log(`after changes: ${checker.name} added ${report?.added.length ?? '?'}, removed ${report?.removed.length ?? '?'}, changed ${report?.changed.length ?? '?'} (${changeChecks[checker.name]?.findings ?? '?'} paths, ${changeChecks[checker.name]?.files ?? '?'} of them files); exit ${changeChecks[checker.name]?.exit}`);
      }
      console.log(`\nno change vs find -printf lstat walk (interleaved, median of 5): ${m(noChange.median)} vs ${m(find.median)} = ${ratio(noChange.median, find.median)} (goal <= 3x)`);
      console.log(`\nrealtime: ${EDITS} edits, ${missed} missed (10 s timeout), ${watchedDirectories} directories watched (set-up ${m(watchSetupMs)})`);
      if (latency) console.log(`realtime latency: median ${m(latency.median)}, p95 ${m(latency.p95)}, min ${m(latency.min)}, max ${m(latency.max)}`);
      console.log(`\nfull re-hash: ${(full.counters.hashedBytes / 1e6).toFixed(0)} MB in ${s(full.elapsedMs)} wall, ${fullCpuSeconds.toFixed(2)} CPU-s (all threads) = ${rehashMbPerCpuSecond.toFixed(0)} MB per CPU-second`);
      console.log(`openssl speed -evp sha256 (16 KiB blocks, one core, per CPU-second): ${opensslPerCpuSecond.toFixed(0)} MB/s; ours = ${((100 * rehashMbPerCpuSecond) / opensslPerCpuSecond).toFixed(0)}% (goal >= 50%)`);
      console.log(`\nco-located openssl speed -elapsed (MB/s): solo ${solo.toFixed(0)} / ${soloAfter.toFixed(0)} (before / after); during re-hash, default priority ${withDefault.toFixed(0)} (${((100 * withDefault) / ((solo + soloAfter) / 2)).toFixed(0)}% of solo, goal >= 90%); during re-hash, no priority ${withNone.toFixed(0)} (${((100 * withNone) / ((solo + soloAfter) / 2)).toFixed(0)}%)`);
      for (const checker of checkers) console.log(`\n${checker.name} configuration:\n${checker.config}`);
    }
  } finally {
    if (!argv.has('--keep')) rmSync(work, { recursive: true, force: true });
    else log(`fim-scan: kept ${work}`);
  }
}

await main();
