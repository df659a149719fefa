/**
 * One OpenSSH user certificate authority per environment, driven through
 * `ssh-keygen` (present wherever OpenSSH is): it sets the key id, serial,
 * validity and extensions exactly as asked, and sshd is the only thing that
 * ever verifies what it signs. The private key stays in the data directory (0600).
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ifMissing, LockstepError } from '../core/errors.js';

const run = promisify(execFile);

/** What to sign. */
export interface CertificateRequest {
  /** The user's public key line. */
  readonly publicKey: string;
  readonly keyId: string;
  readonly serial: number;
  readonly principals: readonly string[];
  readonly validFrom: Date;
  readonly validTo: Date;
  /** Addresses or CIDR blocks the certificate may be used from. */
  readonly sourceAddress?: string | undefined;
}

/** The per-environment CAs under DATA_DIR/firecall-ca/. */
export class SshCertificateAuthority {
  private readonly creating = new Map<string, Promise<string>>();

  constructor(private readonly dir: string) {}

  /** The CA's public key line; the key pair is created on first use. */
  async publicKey(env: string): Promise<{ publicKey: string; created: boolean }> {
    const file = `${this.keyFile(env)}.pub`;
    // An unreadable key is an error, never a reason to make a new CA.
    const existing = await ifMissing(readFile(file, 'utf8'));
    if (existing !== undefined) return { publicKey: existing.trim(), created: false };
    // Two first requests at once must not each generate (and overwrite) a key.
    let pending = this.creating.get(env);
    if (!pending) {
      pending = this.create(env).finally(() => this.creating.delete(env));
      this.creating.set(env, pending);
    }
    return { publicKey: await pending, created: true };
  }

  /** Signs a user certificate and returns its text (one line). */
  async sign(env: string, request: CertificateRequest): Promise<string> {
    await this.publicKey(env);
    return this.withKeyFile(request.publicKey, async (keyFile, work) => {
      const options = ['-O', 'clear', '-O', 'permit-pty', ...(request.sourceAddress ? ['-O', `source-address=${request.sourceAddress}`] : [])];
      await run('ssh-keygen', [
        '-q', '-s', this.keyFile(env), '-I', request.keyId, '-z', String(request.serial), '-n', request.principals.join(','),
        '-V', `${sshTime(request.validFrom)}:${sshTime(request.validTo)}`, ...options, keyFile,
      ]).catch((error: unknown) => keygenRefused(error, work));
      return (await readFile(join(work, 'user-cert.pub'), 'utf8')).trim();
    });
  }

  /** Checks that ssh-keygen can load a public key (a request awaiting approval is signed only later). */
  async checkPublicKey(publicKey: string): Promise<void> {
    await this.withKeyFile(publicKey, async (keyFile, work) => {
      await run('ssh-keygen', ['-l', '-f', keyFile]).catch((error: unknown) => keygenRefused(error, work));
    });
  }

  /** Runs `work` with the public key in a private temporary file, removed afterwards. */
  private async withKeyFile<T>(publicKey: string, work: (keyFile: string, dir: string) => Promise<T>): Promise<T> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const dir = await mkdtemp(join(this.dir, '.sign-'));
    try {
      const keyFile = join(dir, 'user.pub');
      await writeFile(keyFile, `${publicKey}\n`, { mode: 0o600 });
      return await work(keyFile, dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** A key revocation list (`ssh-keygen -k`) revoking these serials and key ids of the environment's CA. */
  async revocationList(env: string, revoked: { serials: readonly number[]; keyIds: readonly string[] }): Promise<Buffer> {
    await this.publicKey(env);
    const work = await mkdtemp(join(this.dir, '.krl-'));
    try {
      const spec = [...revoked.serials.map((serial) => `serial: ${serial}`), ...revoked.keyIds.map((keyId) => `id: ${keyId}`)].join('\n');
      await writeFile(join(work, 'spec'), `${spec}\n`);
      await run('ssh-keygen', ['-q', '-k', '-f', join(work, 'krl'), '-s', `${this.keyFile(env)}.pub`, join(work, 'spec')]);
      return await readFile(join(work, 'krl'));
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  private keyFile(env: string): string {
    return join(this.dir, `${env}-user-ca`);
  }

  private async create(env: string): Promise<string> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    const file = this.keyFile(env);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `lockstep-firecall-${env}`, '-f', file]);
    await chmod(file, 0o600);
    if (((await stat(file)).mode & 0o077) !== 0) throw new Error(`${file} is readable by others`);
    return (await readFile(`${file}.pub`, 'utf8')).trim();
  }
}

/** ssh-keygen's UTC time: YYYYMMDDHHMMSSZ. */
function sshTime(at: Date): string {
  return `${at.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

/** ssh-keygen's refusal of a user's key as one line that names no path under the data dir. */
function keygenRefused(error: unknown, work: string): never {
  const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
  const first = stderr.split('\n')[0] || (error as Error).message;
  // For a key it cannot decode ssh-keygen says `load pubkey "FILE": No such file or directory`.
  const cause = first.includes('load pubkey') || first.includes('is not a public key file') ? 'ssh-keygen cannot load it; check it with: ssh-keygen -l -f FILE' : first.split(work).join('…');
  throw new LockstepError('bad-input', `the public key could not be signed: ${cause}`);
}
