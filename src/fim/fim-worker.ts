/**
 * The scanner's worker thread: lists directories (readdir + lstat with bigint
 * times) and hashes files, with synchronous calls, which are the fastest in a
 * thread of their own and leave the agent's event loop free.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { HashRequest, HashResult, ListedEntry, ListRequest, ListResult, RawStat, WorkerReply, WorkerRequest } from './worker-protocol.js';

const CHUNK = 1 << 20;
const buffer = Buffer.allocUnsafe(CHUNK);

function rawStat(info: BigIntStats): RawStat {
  return {
    dev: info.dev,
    ino: info.ino,
    mode: Number(info.mode),
    uid: Number(info.uid),
    gid: Number(info.gid),
    size: Number(info.size),
    mtimeNs: info.mtimeNs,
    ctimeNs: info.ctimeNs,
  };
}

function errorCode(error: unknown): string {
  if (error instanceof Error && 'code' in error && typeof error.code === 'string') return error.code;
  return error instanceof Error ? error.message : String(error);
}

function list(request: ListRequest): ListResult {
  let names: string[];
  try {
    names = readdirSync(request.dir);
  } catch (error) {
    return { id: request.id, error: errorCode(error), entries: [] };
  }
  const entries: ListedEntry[] = [];
  for (const name of names) {
    const path = `${request.dir}/${name}`;
    let info: BigIntStats;
    try {
      info = lstatSync(path, { bigint: true });
    } catch (error) {
      entries.push({ name, error: errorCode(error) });
      continue;
    }
    const stat = rawStat(info);
    if (info.isSymbolicLink()) {
      try {
        entries.push({ name, stat, target: readlinkSync(path) });
      } catch (error) {
        entries.push({ name, stat, error: errorCode(error) });
      }
    } else {
      entries.push({ name, stat });
    }
  }
  return { id: request.id, entries };
}

function hashOne(path: string, ino: bigint): HashResult {
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
    if (before.ino !== ino) return { error: 'ECHANGED', stat: rawStat(before) };
    const hash = createHash('sha256');
    let total = 0;
    for (;;) {
      const read = readSync(fd, buffer, 0, CHUNK, null);
      if (read === 0) break;
      hash.update(read === CHUNK ? buffer : buffer.subarray(0, read));
      total += read;
    }
    const after = rawStat(fstatSync(fd, { bigint: true }));
    return { sha256: hash.digest('hex'), bytes: total, stat: after };
  } catch (error) {
    return { error: errorCode(error) };
  } finally {
    closeSync(fd);
  }
}

function hash(request: HashRequest): { id: number; results: HashResult[] } {
  return { id: request.id, results: request.files.map((file) => hashOne(file.path, file.ino)) };
}

parentPort?.on('message', (request: WorkerRequest) => {
  const reply: WorkerReply = request.type === 'list' ? list(request) : hash(request);
  parentPort?.postMessage(reply);
});
