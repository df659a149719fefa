/**
 * The scanner and the watcher on real temporary trees: every kind of change,
 * the stat cache, problems (unreadable, vanished, loops, sockets, FIFOs, huge
 * files) reported as values, targeted re-scans, realtime detection.
 *
 * Unreadable files: the tests run as root, and root reads everything, so the
 * unreadable case runs the scanner in a child process as `nobody` (uid 65534)
 * when we are root, and in-process otherwise.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, chownSync, mkdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { diffSnapshot, mergeRescan } from '../../src/core/drift.js';
import type { Finding, SnapshotEntry } from '../../src/core/drift.js';
import { scanTree } from '../../src/fim/scanner.js';
import { loadStatCache, saveStatCache, StatCache, statCachePath } from '../../src/fim/stat-cache.js';
import { watchTree } from '../../src/fim/tree-watcher.js';
import { FimWorkerPool } from '../../src/fim/worker-pool.js';
import { makeTempDir } from '../helpers/tmp.js';
import type { TempDir } from '../helpers/tmp.js';

/** A clock a minute ahead: every file looks older than the racy window, so hashes are cached at once. */
const later = () => BigInt(Date.now() + 60_000) * 1_000_000n;
const kinds = (findings: readonly Finding[]) => findings.map((f) => [f.kind, f.path]);

function makeTree(root: string): void {
  mkdirSync(join(root, 'etc'));
  mkdirSync(join(root, 'bin'));
  mkdirSync(join(root, 'data'));
  writeFileSync(join(root, 'etc/app.conf'), 'port=80\n');
  writeFileSync(join(root, 'etc/old.conf'), 'old\n');
  writeFileSync(join(root, 'bin/run'), '#!/bin/sh\n');
  chmodSync(join(root, 'bin/run'), 0o755);
  writeFileSync(join(root, 'data/file-then-dir'), 'x');
  symlinkSync('etc/app.conf', join(root, 'current'));
  symlinkSync('/etc', join(root, 'outside'));
}

describe('scanTree', () => {
  let temp: TempDir;
  let pool: FimWorkerPool;
  before(async () => {
    temp = await makeTempDir('lockstep-fim-');
    pool = new FimWorkerPool(2);
  });
  after(async () => {
    await pool.close();
    await temp.remove();
  });
  const fresh = (name: string): string => {
    const root = join(temp.path, name);
    mkdirSync(root);
    return root;
  };

  it('lists files, directories and symlinks (never followed) with their attributes and hashes', async () => {
    const root = fresh('list');
    makeTree(root);
    const scan = await scanTree(root, { pool });
    assert.equal(scan.rootError, undefined);
    assert.deepEqual(
      scan.entries.map((e) => [e.path, e.type]),
      [
        ['bin', 'dir'],
        ['bin/run', 'file'],
        ['current', 'symlink'],
        ['data', 'dir'],
        ['data/file-then-dir', 'file'],
        ['etc', 'dir'],
        ['etc/app.conf', 'file'],
        ['etc/old.conf', 'file'],
        ['outside', 'symlink'],
      ],
    );
    const run = scan.entries.find((e) => e.path === 'bin/run');
    assert.equal(run?.mode, 0o755);
    assert.equal(run?.size, 10);
    assert.equal(run?.sha256, createHash('sha256').update('#!/bin/sh\n').digest('hex'));
    assert.equal(scan.entries.find((e) => e.path === 'outside')?.target, '/etc');
    assert.equal(scan.counters.hashedFiles, 4);
  });

  it('detects added, removed, content, type, target, mode, owner and group changes, and a new socket', async () => {
    const root = fresh('changes');
    makeTree(root);
    const baseline = await scanTree(root, { pool });
    writeFileSync(join(root, 'etc/app.conf'), 'port=81\n');
    writeFileSync(join(root, 'etc/new.conf'), 'new\n');
    unlinkSync(join(root, 'etc/old.conf'));
    // chown first: chown clears the setuid bit.
    chownSync(join(root, 'bin/run'), 1000, 2000);
    chmodSync(join(root, 'bin/run'), 0o4755);
    unlinkSync(join(root, 'data/file-then-dir'));
    mkdirSync(join(root, 'data/file-then-dir'));
    unlinkSync(join(root, 'current'));
    symlinkSync('etc/new.conf', join(root, 'current'));
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(root, 'data/app.sock'), resolve));
    try {
      const actual = await scanTree(root, { pool });
      assert.deepEqual(kinds(diffSnapshot(baseline.entries, actual.entries)), [
        ['mode', 'bin/run'],
        ['owner', 'bin/run'],
        ['group', 'bin/run'],
        ['target', 'current'],
        ['added', 'data/app.sock'],
        ['type', 'data/file-then-dir'],
        ['content', 'etc/app.conf'],
        ['added', 'etc/new.conf'],
        ['removed', 'etc/old.conf'],
      ]);
      const socket = actual.entries.find((e) => e.path === 'data/app.sock');
      assert.equal(socket?.type, 'other');
      assert.equal(socket?.special, 'socket');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('hashes only what changed: a second scan hashes 0 files; the cache survives a restart; --full re-hashes all', async () => {
    const root = fresh('cache');
    makeTree(root);
    const state = fresh('cache-state');
    const cache = new StatCache(root);
    const first = await scanTree(root, { pool, cache, nowNs: later });
    assert.equal(first.counters.hashedFiles, 4);
    const second = await scanTree(root, { pool, cache, nowNs: later });
    assert.equal(second.counters.hashedFiles, 0);
    assert.equal(second.counters.cacheHits, 4);
    assert.deepEqual(second.entries, first.entries);

    // Same size, content changed: mtime/ctime differ, so it is re-hashed.
    writeFileSync(join(root, 'etc/app.conf'), 'port=90\n');
    const third = await scanTree(root, { pool, cache, nowNs: later });
    assert.equal(third.counters.hashedFiles, 1);
    assert.deepEqual(kinds(diffSnapshot(first.entries, third.entries)), [['content', 'etc/app.conf']]);

    await saveStatCache(statCachePath(state), cache);
    const loaded = await loadStatCache(statCachePath(state), root);
    assert.equal(loaded.kind, 'loaded');
    const afterRestart = await scanTree(root, { pool, cache: loaded.cache, nowNs: later });
    assert.equal(afterRestart.counters.hashedFiles, 0);
    const full = await scanTree(root, { pool, cache: loaded.cache, full: true, nowNs: later });
    assert.equal(full.counters.hashedFiles, 4);
    assert.equal(full.counters.cacheHits, 0);

    assert.equal((await loadStatCache(statCachePath(state), join(root, 'other'))).kind, 'unusable');
    writeFileSync(statCachePath(state), '{not json');
    assert.equal((await loadStatCache(statCachePath(state), root)).kind, 'unusable');
    assert.equal((await loadStatCache(join(state, 'missing.json'), root)).kind, 'missing');
  });

  it('does not trust the cache for files changed within the last second (racy timestamps)', async () => {
    const root = fresh('racy');
    writeFileSync(join(root, 'fresh'), 'a');
    const cache = new StatCache(root);
    await scanTree(root, { pool, cache });
    const again = await scanTree(root, { pool, cache });
    assert.equal(again.counters.hashedFiles, 1);
  });

  it('reports a file removed between the walk and its hashing as vanished', async () => {
    const root = fresh('vanish');
    makeTree(root);
    const baseline = await scanTree(root, { pool });
    const scan = await scanTree(root, {
      pool,
      beforeHash: (paths) => {
        for (const path of paths) if (path.endsWith('etc/app.conf')) rmSync(path);
      },
    });
    const entry = scan.entries.find((e) => e.path === 'etc/app.conf');
    assert.equal(entry?.problem, 'vanished');
    assert.deepEqual(kinds(diffSnapshot(baseline.entries, scan.entries)), [['vanished', 'etc/app.conf']]);
    assert.equal(scan.counters.problems, 1);
  });

  it('stops when its signal aborts: what was still queued is never hashed, and the pool keeps working', async () => {
    const root = fresh('abort');
    for (let dir = 0; dir < 20; dir++) {
      mkdirSync(join(root, `d${dir}`));
      for (let file = 0; file < 100; file++) writeFileSync(join(root, `d${dir}`, `f${file}`), `${dir}/${file}\n`);
    }
    const controller = new AbortController();
    let batches = 0;
    const scanning = scanTree(root, {
      pool,
      signal: controller.signal,
      beforeHash: () => {
        if (++batches === 1) controller.abort(new DOMException('a deployment started', 'AbortError'));
      },
    });
    await assert.rejects(scanning, { name: 'AbortError' });
    // 20 directories of 100 files make 40 batches (64 + 36 each); the walk stops soon after the abort.
    assert.ok(batches < 40, `${batches} batches were started`);
    const after = await scanTree(root, { pool });
    assert.equal(after.counters.files, 2000);
    assert.equal(after.counters.problems, 0);
  });

  it('reports a file replaced by a FIFO before hashing without opening it for long (no hang)', async () => {
    const root = fresh('fifo-swap');
    writeFileSync(join(root, 'pipe'), 'x');
    const scan = await scanTree(root, {
      pool,
      beforeHash: (paths) => {
        for (const path of paths) {
          rmSync(path);
          spawnSync('mkfifo', [path]);
        }
      },
    });
    assert.equal(scan.entries[0]?.problem, 'vanished');
    // A FIFO met by the walk is listed as such and never opened.
    const listed = await scanTree(root, { pool });
    assert.deepEqual(listed.entries.map((e) => [e.path, e.type, e.special]), [['pipe', 'other', 'fifo']]);
  });

  it('caps hashing at maxFileBytes: too-large, size still compared', async () => {
    const root = fresh('huge');
    writeFileSync(join(root, 'big'), Buffer.alloc(4096));
    writeFileSync(join(root, 'small'), 'x');
    const baseline = await scanTree(root, { pool, maxFileBytes: 1024 });
    const big = baseline.entries.find((e) => e.path === 'big');
    assert.equal(big?.problem, 'too-large');
    assert.equal(big?.sha256, undefined);
    assert.equal(baseline.counters.hashedFiles, 1);
    appendFileSync(join(root, 'big'), 'more');
    const after = await scanTree(root, { pool, maxFileBytes: 1024 });
    assert.deepEqual(kinds(diffSnapshot(baseline.entries, after.entries)), [
      ['content', 'big'],
      ['too-large', 'big'],
    ]);
  });

  it('hashes a file bigger than one read chunk (streamed)', async () => {
    const root = fresh('stream');
    const content = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    writeFileSync(join(root, 'big'), content);
    const scan = await scanTree(root, { pool });
    assert.equal(scan.entries[0]?.sha256, createHash('sha256').update(content).digest('hex'));
  });

  it('marks a directory reached twice (a bind mount loop) as a loop and does not descend it', async (context) => {
    const root = fresh('loop');
    mkdirSync(join(root, 'a/b'), { recursive: true });
    writeFileSync(join(root, 'a/f'), 'x');
    const mounted = spawnSync('mount', ['--bind', join(root, 'a'), join(root, 'a/b')]);
    if (mounted.status !== 0) {
      context.skip(`cannot bind-mount here (${mounted.stderr.toString().trim() || mounted.error?.message})`);
      return;
    }
    try {
      const scan = await scanTree(root, { pool });
      assert.deepEqual(scan.entries.map((e) => [e.path, e.problem]), [
        ['a', undefined],
        ['a/b', 'loop'],
        ['a/f', undefined],
      ]);
    } finally {
      spawnSync('umount', [join(root, 'a/b')]);
    }
  });

  it('re-scans only the given paths; mergeRescan gives the same snapshot as a full scan', async () => {
    const root = fresh('targeted');
    makeTree(root);
    const cache = new StatCache(root);
    const baseline = await scanTree(root, { pool, cache, nowNs: later });
    writeFileSync(join(root, 'etc/app.conf'), 'changed');
    unlinkSync(join(root, 'etc/old.conf'));
    mkdirSync(join(root, 'etc/conf.d'));
    writeFileSync(join(root, 'etc/conf.d/x'), 'x');
    const targeted = await scanTree(root, { pool, cache, paths: ['etc/app.conf', 'etc/old.conf', 'etc/conf.d'], nowNs: later });
    assert.equal(targeted.counters.hashedFiles, 2);
    const merged = mergeRescan(baseline.entries, targeted.scannedPaths, targeted.entries);
    const whole = await scanTree(root, { pool, cache, nowNs: later });
    assert.deepEqual(merged, whole.entries);
    // Never through a symlink: a path under `current` (a symlink) is not scanned.
    const viaLink = await scanTree(root, { pool, paths: ['outside/passwd'] });
    assert.deepEqual(viaLink.entries, []);
  });

  it('applies include and exclude globs, pruning excluded directories', async () => {
    const root = fresh('globs');
    makeTree(root);
    writeFileSync(join(root, 'etc/app.log'), 'log');
    const scan = await scanTree(root, { pool, exclude: ['*.log', 'data'] });
    assert.ok(!scan.entries.some((e) => e.path.startsWith('data') || e.path.endsWith('.log')));
    const only = await scanTree(root, { pool, include: ['etc/*.conf'] });
    assert.deepEqual(only.entries.map((e) => e.path), ['etc/app.conf', 'etc/old.conf']);
  });

  it('returns a root error instead of throwing when the root is missing or not a directory', async () => {
    const missing = await scanTree(join(temp.path, 'no-such-root'), { pool });
    assert.equal(missing.rootError, 'ENOENT');
    assert.deepEqual(missing.entries, []);
    const root = fresh('root-file');
    writeFileSync(join(root, 'f'), 'x');
    assert.equal((await scanTree(join(root, 'f'), { pool })).rootError, 'ENOTDIR');
  });

  it('reports unreadable files and directories as unreadable (as nobody when run as root)', async () => {
    const root = fresh('unreadable');
    chmodSync(temp.path, 0o755);
    chmodSync(root, 0o755);
    mkdirSync(join(root, 'closed'));
    writeFileSync(join(root, 'closed/inside'), 'x');
    writeFileSync(join(root, 'secret'), 'x');
    writeFileSync(join(root, 'open'), 'x');
    chmodSync(join(root, 'secret'), 0o000);
    chmodSync(join(root, 'closed'), 0o000);
    let entries: SnapshotEntry[];
    if (process.getuid?.() === 0) {
      const scanner = new URL('../../src/fim/scanner.js', import.meta.url).href;
      const script = join(temp.path, 'scan-as-nobody.mjs');
      writeFileSync(script, `import { scanTree } from ${JSON.stringify(scanner)};\nconst r = await scanTree(${JSON.stringify(root)});\nprocess.stdout.write(JSON.stringify({ rootError: r.rootError, entries: r.entries }));\n`, { mode: 0o644 });
      const child = spawnSync(process.execPath, [script], { uid: 65534, gid: 65534, encoding: 'utf8', cwd: '/', timeout: 30_000 });
      assert.equal(child.status, 0, child.stderr);
      const result = JSON.parse(child.stdout) as { rootError?: string; entries: SnapshotEntry[] };
      assert.equal(result.rootError, undefined);
      entries = result.entries;
    } else {
      entries = [...(await scanTree(root, { pool })).entries];
    }
    const byPath = new Map(entries.map((e) => [e.path, e]));
    assert.equal(byPath.get('secret')?.problem, 'unreadable');
    assert.equal(byPath.get('secret')?.detail, 'EACCES');
    assert.equal(byPath.get('closed')?.problem, 'unreadable');
    assert.equal(byPath.get('open')?.problem, undefined);
    assert.equal(byPath.get('open')?.sha256?.length, 64);
    chmodSync(join(root, 'closed'), 0o755);
  });
});

describe('watchTree', () => {
  let temp: TempDir;
  before(async () => {
    temp = await makeTempDir('lockstep-fim-watch-');
  });
  after(async () => {
    await temp.remove();
  });

  it('reports an edit, a new directory with its files and a removal within a second or so', async () => {
    const root = temp.path;
    mkdirSync(join(root, 'a/b'), { recursive: true });
    writeFileSync(join(root, 'a/b/file'), 'x');
    const batches: string[][] = [];
    let wake: (() => void) | undefined;
    const watcher = watchTree(root, {
      debounceMs: 30,
      onChange: (paths) => {
        batches.push(paths);
        wake?.();
      },
    });
    const waitFor = async (predicate: (seen: Set<string>) => boolean): Promise<void> => {
      const deadline = Date.now() + 10_000;
      while (!predicate(new Set(batches.flat()))) {
        if (Date.now() > deadline) throw new Error(`timed out; saw ${JSON.stringify(batches)}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 200);
        });
      }
    };
    try {
      await watcher.ready;
      assert.equal(watcher.watchedDirectories(), 3);
      const started = Date.now();
      appendFileSync(join(root, 'a/b/file'), 'y');
      await waitFor((seen) => seen.has('a/b/file'));
      assert.ok(Date.now() - started < 5_000);

      mkdirSync(join(root, 'a/new'));
      await waitFor((seen) => seen.has('a/new'));
      writeFileSync(join(root, 'a/new/inner'), 'z');
      await waitFor((seen) => seen.has('a/new/inner'));

      rmSync(join(root, 'a/b'), { recursive: true });
      await waitFor((seen) => seen.has('a/b'));
    } finally {
      watcher.close();
    }
  });
});
