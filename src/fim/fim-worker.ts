/**
 * The scanner's worker thread: lists directories (readdir + lstat with bigint
 * times) and hashes files, with synchronous calls, which are the fastest in a
 * thread of their own and leave the agent's event loop free. A configure
 * message makes the thread polite: its nice value, I/O class and read cap.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { hashOpenFile, HASH_CHUNK_BYTES } from '../content/file-hash.js';
import type { IoniceClass } from '../core/drift.js';
import { entryStat } from './entry-stat.js';
import { NUMBERS_PER_ENTRY, SIGNATURE_FIELD } from './worker-protocol.js';
import type { ConfigureReply, ConfigureRequest, HashReply, HashRequest, HashResult, ListRequest, ListResult, WorkerReply, WorkerRequest } from './worker-protocol.js';

const buffer = Buffer.allocUnsafe(HASH_CHUNK_BYTES);

/** `ionice` arguments per class (util-linux); 'none' leaves the thread's class as it is. */
const IONICE_ARGS: Record<IoniceClass, readonly string[] | null> = { idle: ['-c', '3'], 'best-effort': ['-c', '2', '-n', '7'], none: null };

/**
 * The read cap as a token bucket: this thread's share of the pool's bytes per second, a burst of a tenth of a
 * second; a read that overdraws it sleeps (Atomics.wait blocks only this thread) until the debt is repaid.
 */
const throttle = { bytesPerSecond: 0, tokens: 0, refilledAt: 0 };
const sleeper = new Int32Array(new SharedArrayBuffer(4));

function afterRead(bytes: number): void {
  const rate = throttle.bytesPerSecond;
  const now = performance.now();
  throttle.tokens = Math.min(rate / 10, throttle.tokens + ((now - throttle.refilledAt) * rate) / 1000) - bytes;
  throttle.refilledAt = now;
  if (throttle.tokens < 0) Atomics.wait(sleeper, 0, 0, (-throttle.tokens / rate) * 1000);
}

/** This thread's kernel id: /proc/thread-self is a link to "PID/task/TID" (Linux); 0 elsewhere. */
function threadId(): number {
  try {
    return Number(readlinkSync('/proc/thread-self').split('/').at(-1));
  } catch {
    return 0;
  }
}

function configure(request: ConfigureRequest): ConfigureReply {
  const problems: string[] = [];
  const tid = threadId();
  try {
    // Linux: setpriority(PRIO_PROCESS, 0) changes the calling thread only (nice is per thread), not the agent.
    setPriority(0, request.nice);
  } catch (error) {
    problems.push(`cannot set the scanner threads' nice value to ${request.nice} (${error instanceof Error ? error.message : String(error)}); lowering it needs CAP_SYS_NICE`);
  }
  const args = IONICE_ARGS[request.ionice];
  if (args !== null) {
    if (tid === 0) problems.push(`cannot set the scanner threads' I/O class to ${request.ionice}: no /proc/thread-self (not Linux?)`);
    else {
      try {
        // ioprio_set has no Node API; util-linux's ionice applies it to one thread id.
        execFileSync('ionice', [...args, '-p', String(tid)], { stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (error) {
        const code = errorCode(error);
        problems.push(code === 'ENOENT' ? `cannot set the scanner threads' I/O class to ${request.ionice}: ionice (util-linux) is not installed` : `ionice ${args.join(' ')} -p ${tid} failed: ${code}`);
      }
    }
  }
  throttle.bytesPerSecond = request.maxReadBytesPerSecond ?? 0;
  throttle.tokens = 0;
  throttle.refilledAt = performance.now();
  return { id: request.id, configured: true, tid, problems };
}

function errorCode(error: unknown): string {
  if (error instanceof Error && 'code' in error && typeof error.code === 'string') return error.code;
  return error instanceof Error ? error.message : String(error);
}

function list(request: ListRequest): ListResult {
  let names: string[];
  try {
    // Sorted here, in parallel: the scanner's final sort then meets long sorted runs.
    names = readdirSync(request.dir).sort();
  } catch (error) {
    return { id: request.id, error: errorCode(error), names: [], numbers: new Float64Array(0), signatures: [], dirKeys: [], targets: [], errors: [] };
  }
  const numbers = new Float64Array(names.length * NUMBERS_PER_ENTRY);
  const signatures: string[] = [];
  const dirKeys: string[] = [];
  const targets: string[] = [];
  const errors: string[] = [];
  names.forEach((name, index) => {
    const path = `${request.dir}/${name}`;
    let info: BigIntStats;
    try {
      info = lstatSync(path, { bigint: true });
    } catch (error) {
      signatures.push('');
      dirKeys.push('');
      targets.push('');
      errors.push(errorCode(error));
      return;
    }
    const stat = entryStat(info);
    const base = index * NUMBERS_PER_ENTRY;
    numbers[base] = stat.mode;
    numbers[base + 1] = stat.uid;
    numbers[base + 2] = stat.gid;
    numbers[base + 3] = stat.size;
    signatures.push(stat.signature);
    dirKeys.push(stat.dirKey);
    let target = '';
    let error = '';
    if (info.isSymbolicLink()) {
      try {
        target = readlinkSync(path);
      } catch (cause) {
        error = errorCode(cause);
      }
    }
    targets.push(target);
    errors.push(error);
  });
  return { id: request.id, names, numbers, signatures, dirKeys, targets, errors };
}

function hashOne(path: string, seen: string, racySinceNs: bigint): HashResult {
  let fd: number;
  try {
    // O_NOFOLLOW: a symlink swapped in after the walk is not followed; O_NONBLOCK: a FIFO swapped in cannot hang us.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    return { error: errorCode(error) };
  }
  try {
    const before = fstatSync(fd, { bigint: true });
    if (!before.isFile()) return { error: 'ENOTREG' };
    if (String(before.ino) !== seen.split(':')[SIGNATURE_FIELD.ino]) return { error: 'ECHANGED' };
    const digest = hashOpenFile(fd, buffer, throttle.bytesPerSecond > 0 ? afterRead : undefined);
    const info = fstatSync(fd, { bigint: true });
    const after = entryStat(info);
    const racy = info.mtimeNs >= racySinceNs || info.ctimeNs >= racySinceNs;
    // Most files held still: no stat object to clone back.
    return { sha256: digest.sha256, bytes: digest.bytes, ...(after.signature === seen ? {} : { stat: after }), ...(racy ? { racy } : {}) };
  } catch (error) {
    return { error: errorCode(error) };
  } finally {
    closeSync(fd);
  }
}

function hash(request: HashRequest): HashReply {
  const racySinceNs = BigInt(request.racySinceNs);
  return { id: request.id, results: request.paths.map((path, index) => hashOne(path, request.signatures[index] ?? '', racySinceNs)) };
}

parentPort?.on('message', (request: WorkerRequest) => {
  const reply: WorkerReply = request.type === 'list' ? list(request) : request.type === 'hash' ? hash(request) : configure(request);
  parentPort?.postMessage(reply);
});
