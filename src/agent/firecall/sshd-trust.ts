/**
 * The fire-call trust on a host, as files under the agent's --root: the
 * environment's CA public key, the key revocation list, the session recorder
 * and the sshd drop-in that points at them. These are Lockstep's own changes
 * (not drift); a hand edit is drift, and the next install puts them back.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { FirecallTrust } from '../../api/schemas.js';
import { writeFileAtomic } from '../../content/atomic-file.js';
import { ifMissing } from '../../core/errors.js';

const run = promisify(execFile);

/** Host paths of what the agent installs (joined to --root). */
export const SSHD_TRUST_PATHS = {
  caPublicKey: '/etc/ssh/lockstep-firecall-ca.pub',
  revocationList: '/etc/ssh/lockstep-firecall.krl',
  recorder: '/usr/local/lib/lockstep/firecall-session',
  dropIn: '/etc/ssh/sshd_config.d/lockstep-firecall.conf',
  /** Where the recorder writes one transcript per session; the agent ships and watches them. */
  transcripts: '/var/log/lockstep/firecall',
} as const;

/** How long the reload command may take. */
const RELOAD_TIMEOUT_MS = 30_000;

/** The result of one install: whether a file changed, and the reload's failure if any. */
export interface InstallOutcome {
  readonly changed: boolean;
  readonly error?: string;
}

/**
 * Installs (or, when the environment has no fire-call policy, removes) the
 * trust. The drop-in is written last and removed first, so sshd never reads
 * a configuration naming a file that is not there: a missing RevokedKeys
 * file makes sshd refuse every public key.
 */
export async function installSshdTrust(root: string, trust: FirecallTrust): Promise<InstallOutcome> {
  const at = (hostPath: string) => join(root, hostPath);
  let changed = false;
  if (!trust.enabled || trust.caPublicKey === null) {
    for (const path of [SSHD_TRUST_PATHS.dropIn, SSHD_TRUST_PATHS.caPublicKey, SSHD_TRUST_PATHS.revocationList, SSHD_TRUST_PATHS.recorder]) {
      const existed = await readFile(at(path)).then(() => true, () => false);
      if (existed) {
        await rm(at(path), { force: true });
        changed = true;
      }
    }
  } else {
    const files: [string, Buffer, number][] = [
      [SSHD_TRUST_PATHS.caPublicKey, Buffer.from(`${trust.caPublicKey}\n`), 0o644],
      [SSHD_TRUST_PATHS.revocationList, Buffer.from(trust.krl, 'base64'), 0o644],
      [SSHD_TRUST_PATHS.recorder, Buffer.from(recorderScript(at(SSHD_TRUST_PATHS.transcripts))), 0o755],
      [SSHD_TRUST_PATHS.dropIn, Buffer.from(dropIn(root, trust.principals)), 0o644],
    ];
    for (const [path, content, mode] of files) {
      const current = await ifMissing(readFile(at(path)));
      if (current?.equals(content)) continue;
      await mkdir(dirname(at(path)), { recursive: true, mode: 0o755 });
      await writeFileAtomic(at(path), content, mode);
      changed = true;
    }
    // A drop box: every account may create its session's file, none may list or read the others'.
    await mkdir(at(SSHD_TRUST_PATHS.transcripts), { recursive: true });
    await chmod(at(SSHD_TRUST_PATHS.transcripts), 0o1733);
  }
  if (!changed || trust.reloadCommand === null) return { changed };
  try {
    await run('/bin/sh', ['-c', trust.reloadCommand], { timeout: RELOAD_TIMEOUT_MS });
    return { changed };
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    return { changed, error: `sshd reload command failed: ${trust.reloadCommand}: ${stderr.split('\n')[0] || (error as Error).message}` };
  }
}

function quote(path: string): string {
  return `"${path}"`;
}

/**
 * The drop-in. Paths are real paths (with --root), so an sshd pointed at a
 * sandbox root trusts the sandbox's files. `Match all` ends the Match block:
 * Debian includes sshd_config.d/ at the top of sshd_config, and without it
 * every setting after the Include would fall into the block.
 */
function dropIn(root: string, principals: readonly string[]): string {
  const at = (hostPath: string) => join(root, hostPath);
  return [
    '# Written by the Lockstep agent for fire calls (emergency access). Do not edit: a change here is drift.',
    `TrustedUserCAKeys ${quote(at(SSHD_TRUST_PATHS.caPublicKey))}`,
    `RevokedKeys ${quote(at(SSHD_TRUST_PATHS.revocationList))}`,
    `Match User ${principals.join(',')}`,
    '\tExposeAuthInfo yes',
    `\tForceCommand ${quote(at(SSHD_TRUST_PATHS.recorder))}`,
    'Match all',
    '',
  ].join('\n');
}

/**
 * The forced command. A login with a fire-call certificate (its key id, read
 * from the certificate sshd exposes in SSH_USER_AUTH) runs its shell or
 * command inside util-linux `script`, which records the terminal to one file
 * per session; every other login of these accounts runs unrecorded, as it
 * would without the drop-in. The transcript's name carries the key id and the
 * recorder's pid, which the agent uses to end the session on close.
 */
function recorderScript(transcripts: string): string {
  return `#!/bin/sh
# Written by the Lockstep agent: records fire-call sessions. Do not edit: a change here is drift.
id=
if [ -n "$SSH_USER_AUTH" ] && [ -r "$SSH_USER_AUTH" ]; then
  id=$(sed -n 's/^publickey \\([^ ]*-cert-v01@openssh.com\\) \\([^ ]*\\).*/\\1 \\2/p' "$SSH_USER_AUTH" | head -n 1 | ssh-keygen -L -f /dev/stdin 2>/dev/null | sed -n 's/^ *Key ID: "\\(.*\\)"$/\\1/p')
fi
case "$id" in
  firecall-[0-9]*) ;;
  *)
    if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec "\${SHELL:-/bin/sh}" -c "$SSH_ORIGINAL_COMMAND"; fi
    exec "\${SHELL:-/bin/sh}" -l
    ;;
esac
case "$id" in *[!A-Za-z0-9._-]*) id=firecall-unknown ;; esac
dir=${quote(transcripts)}
mkdir -p "$dir"
file="$dir/$id.$(date -u +%Y%m%dT%H%M%SZ).$$.typescript"
if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec script -q -f -e -c "$SSH_ORIGINAL_COMMAND" "$file"; fi
exec script -q -f -e "$file"
`;
}
