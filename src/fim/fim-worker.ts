/**
 * The scanner's worker thread: lists directories (readdir + lstat with bigint
 * times) and hashes files, with synchronous calls, which are the fastest in a
 * thread of their own and leave the agent's event loop free.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { entryStat } from './entry-stat.js';
import { NUMBERS_PER_ENTRY } from './worker-protocol.js';
import type { HashReply, HashRequest, HashResult, ListRequest, ListResult, WorkerReply, WorkerRequest } from './worker-protocol.js';

const CHUNK = 1 << 20;
const buffer = Buffer.allocUnsafe(CHUNK);

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
    numbers.set([stat.mode, stat.uid, stat.gid, stat.size], index * NUMBERS_PER_ENTRY);
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

function hashOne(path: string, ino: string): HashResult {
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
    if (String(before.ino) !== ino) return { error: 'ECHANGED' };
    const hash = createHash('sha256');
    let total = 0;
    for (;;) {
      const read = readSync(fd, buffer, 0, CHUNK, null);
      if (read === 0) break;
      hash.update(read === CHUNK ? buffer : buffer.subarray(0, read));
      total += read;
    }
    const after = entryStat(fstatSync(fd, { bigint: true }));
    return { sha256: hash.digest('hex'), bytes: total, stat: after };
  } catch (error) {
    return { error: errorCode(error) };
  } finally {
    closeSync(fd);
  }
}

function hash(request: HashRequest): HashReply {
  return { id: request.id, results: request.files.map((file) => hashOne(file.path, file.ino)) };
}

parentPort?.on('message', (request: WorkerRequest) => {
  const reply: WorkerReply = request.type === 'list' ? list(request) : hash(request);
  parentPort?.postMessage(reply);
});
