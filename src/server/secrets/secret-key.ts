/**
 * The key that seals secrets: DATA_DIR/secrets.key, 32 random bytes at mode
 * 0600, created the first time a secret is set. Whoever holds this file and
 * the database can read every secret; back it up apart from database backups.
 */
import { randomBytes } from 'node:crypto';
import { chmod, link, open, readFile, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ifMissing, LockstepError } from '../../core/errors.js';
import { fsyncDirectory } from '../../content/atomic-file.js';
import { SECRET_KEY_BYTES } from './secret-box.js';

/** The key file's name in the data directory. */
export const SECRET_KEY_FILE = 'secrets.key';

/** Loads the secrets key from one file, creating it only when a secret is about to be sealed. */
export class SecretKeyFile {
  #key: Promise<Buffer> | undefined;

  /** `file` is where the key is (DATA_DIR/secrets.key); nothing is read or written until a key is needed. */
  constructor(readonly file: string) {}

  /** The key, created (32 random bytes, 0600) when the file does not exist yet. */
  key(): Promise<Buffer> {
    const pending = (this.#key ??= this.#loadOrCreate());
    // A failure (a full disk, a permission) is not remembered: the next call tries again.
    pending.catch(() => (this.#key = undefined));
    return pending;
  }

  /** The key if the file exists; undefined when no secret was ever set with this data dir. */
  async existing(): Promise<Buffer | undefined> {
    if (this.#key !== undefined) return this.#key;
    const key = await this.#read();
    if (key !== undefined) this.#key = Promise.resolve(key);
    return key;
  }

  async #read(): Promise<Buffer | undefined> {
    const bytes = await ifMissing(readFile(this.file));
    if (bytes === undefined) return undefined;
    if (bytes.length !== SECRET_KEY_BYTES) throw new LockstepError('failed', `${this.file} holds ${bytes.length} bytes, not a ${SECRET_KEY_BYTES}-byte secrets key; restore it from its backup`);
    return bytes;
  }

  async #loadOrCreate(): Promise<Buffer> {
    const existing = await this.#read();
    if (existing !== undefined) return existing;
    // Written in full to a private temporary file, then linked into place: link(2) never replaces a key another
    // server (or request) created meanwhile, and the name never points at a partly written key, even after a crash.
    const key = randomBytes(SECRET_KEY_BYTES);
    const temporary = join(dirname(this.file), `.${basename(this.file)}.tmp-${randomBytes(6).toString('hex')}`);
    const handle = await open(temporary, 'wx', 0o600);
    try {
      try {
        await handle.chmod(0o600);
        await handle.writeFile(key);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await link(temporary, this.file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      // Another writer won: its key is the key.
      const theirs = await this.#read();
      if (theirs === undefined) throw error;
      return theirs;
    } finally {
      await rm(temporary, { force: true });
    }
    await chmod(this.file, 0o600);
    await fsyncDirectory(dirname(this.file));
    return key;
  }
}
