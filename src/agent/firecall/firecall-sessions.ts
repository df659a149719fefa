/**
 * Ends the sshd sessions of closed fire calls. sshd checks a certificate only
 * at login, so an open session outlives both its expiry and its revocation.
 * Each recorded session's transcript is named `<key id>.<time>.<pid>.typescript`,
 * where pid is the `script` process the recorder became; its sshd ancestor
 * is the session, and ending it ends the connection.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ifMissing } from '../../core/errors.js';

/** Parses a transcript's file name. */
export function transcriptNameParts(name: string): { keyId: string; pid: number } | undefined {
  const match = /^(firecall-\d+-[A-Za-z0-9._-]*?)\.\d{8}T\d{6}Z\.(\d+)\.typescript$/.exec(name);
  return match ? { keyId: match[1] ?? '', pid: Number(match[2]) } : undefined;
}

/** Ends every live session recorded under one of `keyIds`; returns how many it ended. */
export async function endSessions(transcriptDir: string, keyIds: readonly string[]): Promise<number> {
  if (keyIds.length === 0) return 0;
  const wanted = new Set(keyIds);
  const names = (await ifMissing(readdir(transcriptDir))) ?? [];
  let ended = 0;
  for (const name of names) {
    const parts = transcriptNameParts(name);
    if (!parts || !wanted.has(parts.keyId)) continue;
    // The pid must still be the recorder writing this very file (pids are reused).
    const cmdline = (await ifMissing(readFile(`/proc/${parts.pid}/cmdline`, 'utf8'))) ?? '';
    if (!cmdline.includes(join(transcriptDir, name))) continue;
    const session = await sshdAncestor(parts.pid);
    if (session !== undefined) signal(session, 'SIGTERM');
    signal(parts.pid, 'SIGHUP');
    ended++;
  }
  return ended;
}

/** The nearest ancestor process named sshd (the session's privilege-separated child), within a few levels. */
async function sshdAncestor(pid: number): Promise<number | undefined> {
  let current = pid;
  for (let depth = 0; depth < 4; depth++) {
    const stat = (await ifMissing(readFile(`/proc/${current}/stat`, 'utf8'))) ?? '';
    // Fields after the parenthesised name: state, ppid, …; the name itself may contain spaces.
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!Number.isInteger(parent) || parent <= 1) return undefined;
    const comm = ((await ifMissing(readFile(`/proc/${parent}/comm`, 'utf8'))) ?? '').trim();
    if (comm === 'sshd' || comm === 'sshd-session') return parent;
    current = parent;
  }
  return undefined;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}
