/**
 * Sealing of secret values: AES-256-GCM with a random 96-bit nonce per value,
 * and additional authenticated data that binds the environment, the name and
 * the version, so a sealed value copied to another row (another environment,
 * name or an older version) fails to open instead of being delivered there.
 * Digests for parity are HMACs under a key derived from the same key, so
 * equal values compare equal without the server decrypting anything, and a
 * digest read from the database does not allow guessing a value offline.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { LockstepError } from '../../core/errors.js';

/** Bytes of the key (AES-256). */
export const SECRET_KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** Which row a sealed value belongs to; all of it is authenticated. */
export interface SecretSlot {
  readonly env: string;
  readonly name: string;
  readonly version: number;
}

/** The additional authenticated data of a slot: unambiguous because names and environments cannot hold a NUL. */
function aadOf(slot: SecretSlot): Buffer {
  return Buffer.from(`lockstep-secret\0${slot.env}\0${slot.name}\0${slot.version}`, 'utf8');
}

function assertKey(key: Uint8Array): void {
  if (key.length !== SECRET_KEY_BYTES) throw new Error(`a secret key has ${SECRET_KEY_BYTES} bytes, not ${key.length}`);
}

/** Seals `value` for `slot`: base64 of nonce ‖ ciphertext ‖ tag. */
export function sealSecret(key: Uint8Array, slot: SecretSlot, value: string): string {
  assertKey(key);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aadOf(slot));
  const body = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64');
}

/**
 * Opens what sealSecret sealed for the same slot; a wrong key, another slot
 * or any altered byte is refused (a `failed` error that names the slot, never
 * a value).
 */
export function openSecret(key: Uint8Array, slot: SecretSlot, sealed: string): string {
  assertKey(key);
  const bytes = Buffer.from(sealed, 'base64');
  const refused = () => new LockstepError('failed', `secret ${slot.name} (version ${slot.version}) of ${slot.env} cannot be decrypted: wrong key, or the stored row was altered or moved`);
  if (bytes.length < NONCE_BYTES + TAG_BYTES) throw refused();
  const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
  decipher.setAAD(aadOf(slot));
  decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    // GCM says only "unable to authenticate"; which of the causes it was cannot be told apart.
    throw refused();
  }
}

/** A keyed digest of a value (the same in every environment), for comparing values without revealing them. */
export function secretDigest(key: Uint8Array, value: string): string {
  assertKey(key);
  const digestKey = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'lockstep secret digest', 32));
  return createHmac('sha256', digestKey).update(value, 'utf8').digest('hex');
}

/** A short public fingerprint of a key (`sha256:` and 16 hex digits), to tell keys apart in rows and messages. */
export function secretKeyId(key: Uint8Array): string {
  assertKey(key);
  return `sha256:${createHash('sha256').update('lockstep secret key id\0').update(key).digest('hex').slice(0, 16)}`;
}
