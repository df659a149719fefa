/**
 * `owner: user[:group]` of a managed file, resolved on the host: numeric ids
 * as they are, names through the host's /etc/passwd and /etc/group (under
 * `--root`, DIR's). Names only NSS knows (LDAP, sssd) are not resolved: give
 * numeric ids for those.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ifMissing, LockstepError } from '../../core/errors.js';

/** Numeric owner of a file. */
export interface OwnerIds {
  readonly uid: number;
  readonly gid: number;
}

/**
 * The uid and gid for `owner`; undefined when the file should keep its owner: under --root an agent that
 * is not root cannot give files away, so there the owner is not changed (a sandboxed test fleet).
 */
export async function resolveOwner(root: string, owner: string): Promise<OwnerIds | undefined> {
  if (root !== '/' && process.getuid?.() !== 0) return undefined;
  const [user = '', group] = owner.split(':');
  const passwd = await table(root, 'etc/passwd');
  const userRow = /^\d+$/.test(user) ? undefined : passwd.get(user);
  const uid = /^\d+$/.test(user) ? Number(user) : userRow?.id;
  if (uid === undefined) throw new LockstepError('failed', `owner ${owner}: no user "${user}" in ${join(root, 'etc/passwd')}`);
  if (group === undefined) {
    // user alone: the user's primary group, as chown user: would.
    const gid = userRow?.group ?? uid;
    return { uid, gid };
  }
  const groups = await table(root, 'etc/group');
  const gid = /^\d+$/.test(group) ? Number(group) : groups.get(group)?.id;
  if (gid === undefined) throw new LockstepError('failed', `owner ${owner}: no group "${group}" in ${join(root, 'etc/group')}`);
  return { uid, gid };
}

/** name → id (and, for passwd, the primary group) of a colon-separated table; a missing file is an empty table. */
async function table(root: string, path: string): Promise<Map<string, { id: number; group?: number }>> {
  const text = (await ifMissing(readFile(join(root, path), 'utf8'))) ?? '';
  const rows = new Map<string, { id: number; group?: number }>();
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    const [name, , id, group] = fields;
    if (!name || id === undefined || !/^\d+$/.test(id)) continue;
    rows.set(name, { id: Number(id), ...(group !== undefined && /^\d+$/.test(group) && path === 'etc/passwd' ? { group: Number(group) } : {}) });
  }
  return rows;
}
