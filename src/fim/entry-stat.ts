/** The stat signature of an entry, computed the same way in the workers and the main thread. */
import type { BigIntStats } from 'node:fs';
import type { EntryStat } from './worker-protocol.js';

/** The signature ("size:mtimeNs:ctimeNs:ino:mode:uid:gid") and numbers of a bigint lstat/fstat. */
export function entryStat(info: BigIntStats): EntryStat {
  const mode = Number(info.mode);
  return {
    signature: `${info.size}:${info.mtimeNs}:${info.ctimeNs}:${info.ino}:${mode}:${info.uid}:${info.gid}`,
    mode,
    uid: Number(info.uid),
    gid: Number(info.gid),
    size: Number(info.size),
    dirKey: info.isDirectory() ? `${info.dev}:${info.ino}` : '',
  };
}
