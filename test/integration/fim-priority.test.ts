/**
 * Polite scans (issue 12): a pool given a priority runs its threads at that
 * nice value and I/O class (read back from /proc and `ionice -p TID`, as an
 * operator would check), leaves the rest of the process alone, follows a
 * change of priority, and never reads faster than its read cap.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ScanPriority } from '../../src/core/drift.js';
import { scanTree } from '../../src/fim/scanner.js';
import { FimWorkerPool } from '../../src/fim/worker-pool.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

/** The nice value of one thread of this process (field 19 of /proc/PID/task/TID/stat). */
function niceOf(tid: number): number {
  const stat = readFileSync(`/proc/${process.pid}/task/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

/** What `ionice -p TID` prints, e.g. "idle" or "best-effort: prio 7". */
function ioniceOf(tid: number): string {
  return execFileSync('ionice', ['-p', String(tid)], { encoding: 'utf8' }).trim();
}

describe('scanner thread priority', () => {
  let tmp: TempDir;

  before(async () => {
    tmp = await makeTempDir();
    // Several directories, so that both threads of the pool list and hash.
    for (let dir = 0; dir < 8; dir++) {
      mkdirSync(join(tmp.path, `d${dir}`));
      for (let file = 0; file < 16; file++) writeFileSync(join(tmp.path, `d${dir}`, `f${file}`), randomBytes(64 * 1024));
    }
  });

  after(async () => {
    await tmp?.remove();
  });

  it('runs every scanner thread at the configured nice value and I/O class, and only those threads', async () => {
    let priority: ScanPriority = { nice: 13, ionice: 'idle', maxReadBytesPerSecond: null };
    const tids = new Set<number>();
    const problems: string[] = [];
    const pool = new FimWorkerPool(2, { priority: () => priority, onConfigured: (reply) => tids.add(reply.tid), onPriorityProblem: (problem) => problems.push(problem) });
    try {
      const before = { nice: getPriority(0), ionice: ioniceOf(process.pid) };
      for (let round = 0; round < 5 && tids.size < 2; round++) await scanTree(tmp.path, { pool });
      assert.deepEqual(problems, []);
      assert.equal(tids.size, 2, 'both threads were configured');
      for (const tid of tids) {
        assert.equal(niceOf(tid), 13, `thread ${tid}: nice`);
        assert.equal(ioniceOf(tid), 'idle', `thread ${tid}: I/O class`);
      }
      assert.deepEqual({ nice: getPriority(0), ionice: ioniceOf(process.pid) }, before, 'the main thread keeps its priority');

      // A new priority (the settings changed) reaches the threads before their next request.
      priority = { nice: 17, ionice: 'best-effort', maxReadBytesPerSecond: null };
      for (let round = 0; round < 5 && [...tids].some((tid) => niceOf(tid) !== 17); round++) await scanTree(tmp.path, { pool });
      for (const tid of tids) {
        assert.equal(niceOf(tid), 17, `thread ${tid}: new nice`);
        assert.equal(ioniceOf(tid), 'best-effort: prio 7', `thread ${tid}: new I/O class`);
      }
    } finally {
      await pool.close();
    }
  });

  it('reads no faster than max_read_mb_s', async () => {
    // 8 MiB to hash at 4 MB/s: at least (8 MiB - the burst of both threads) / 4 MB/s. A lower bound only:
    // a loaded machine makes the scan slower, never faster.
    const cap = 4_000_000;
    const pool = new FimWorkerPool(2, { priority: () => ({ nice: 10, ionice: 'none', maxReadBytesPerSecond: cap }) });
    try {
      const started = performance.now();
      const scan = await scanTree(tmp.path, { pool });
      const seconds = (performance.now() - started) / 1000;
      assert.equal(scan.counters.hashedBytes, 8 * 16 * 64 * 1024);
      const burst = cap / 10;
      assert.ok(seconds >= (scan.counters.hashedBytes - burst) / cap, `${scan.counters.hashedBytes} bytes in ${seconds.toFixed(2)} s at a cap of ${cap} B/s`);
    } finally {
      await pool.close();
    }
  });
});
