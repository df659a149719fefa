/**
 * Signed checkpoints of the audit chain: the server signs (seq, hash, time)
 * and its checkpoint policy with Ed25519, so anyone with the public key can
 * check offline that the chain up to `seq` is the one the server saw.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalJson } from '../core/manifest.js';

/** What a checkpoint's signature covers (all of it but `keyId` and `signature`). */
export interface CheckpointClaim {
  /** The last event the checkpoint covers. */
  readonly seq: number;
  /** That event's chain hash. */
  readonly hash: string;
  /** When the server signed it (ISO 8601). */
  readonly at: string;
  /** The server's policy when signing: at most this many events between checkpoints. */
  readonly every: number;
  /** The server's policy when signing: new events wait at most this long for a checkpoint. */
  readonly intervalMs: number;
}

/** A signed checkpoint, as stored, exported and written to the anchor file. */
export interface CheckpointRecord extends CheckpointClaim {
  readonly type: 'checkpoint';
  /** Which key signed it (see keyIdOf); informational, not signed. */
  readonly keyId: string;
  /** Ed25519 signature of checkpointPayload(claim), base64. */
  readonly signature: string;
}

/** Prefix of the one-line public key format that `lockstep audit pubkey` prints. */
const PUBLIC_KEY_PREFIX = 'ed25519:';

/**
 * The exact bytes that are signed. The purpose string keeps a checkpoint
 * signature from being valid for anything else the key might ever sign.
 */
export function checkpointPayload(claim: CheckpointClaim): Buffer {
  return Buffer.from(
    canonicalJson({ purpose: 'lockstep audit checkpoint v1', seq: claim.seq, hash: claim.hash, at: claim.at, every: claim.every, intervalMs: claim.intervalMs }),
  );
}

/** Key ids by private key: the server signs every transaction, and deriving the id each time cost as much as the signature. */
const keyIds = new WeakMap<KeyObject, string>();

/** Signs a claim into a checkpoint record. */
export function signCheckpoint(claim: CheckpointClaim, privateKey: KeyObject): CheckpointRecord {
  let keyId = keyIds.get(privateKey);
  if (keyId === undefined) {
    keyId = keyIdOf(createPublicKey(privateKey));
    keyIds.set(privateKey, keyId);
  }
  return {
    type: 'checkpoint',
    seq: claim.seq,
    hash: claim.hash,
    at: claim.at,
    every: claim.every,
    intervalMs: claim.intervalMs,
    keyId,
    signature: sign(null, checkpointPayload(claim), privateKey).toString('base64'),
  };
}

/** True when the record's signature is valid for `publicKey`. */
export function checkpointSignatureValid(record: CheckpointRecord, publicKey: KeyObject): boolean {
  try {
    return verify(null, checkpointPayload(record), publicKey, Buffer.from(record.signature, 'base64'));
  } catch {
    return false;
  }
}

/** A short, stable name for a public key: the first 16 hex digits of SHA-256 of its raw 32 bytes. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256').update(rawPublicKey(publicKey)).digest('hex').slice(0, 16);
}

/** The one-line form of a public key (`ed25519:` + base64url of the raw key), for --pubkey. */
export function formatPublicKey(publicKey: KeyObject): string {
  return PUBLIC_KEY_PREFIX + rawPublicKey(publicKey).toString('base64url');
}

/**
 * Reads a public key from the one-line form, or from PEM (SPKI) text.
 * Returns undefined when the text is neither.
 */
export function parsePublicKey(text: string): KeyObject | undefined {
  const trimmed = text.trim();
  try {
    if (trimmed.startsWith(PUBLIC_KEY_PREFIX)) {
      const x = trimmed.slice(PUBLIC_KEY_PREFIX.length);
      if (!/^[A-Za-z0-9_-]{43}$/.test(x)) return undefined;
      return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
    }
    if (trimmed.startsWith('-----BEGIN')) {
      const key = trimmed.includes('PRIVATE KEY') ? createPublicKey(createPrivateKey(trimmed)) : createPublicKey(trimmed);
      return key.asymmetricKeyType === 'ed25519' ? key : undefined;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

function rawPublicKey(publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new Error('not an Ed25519 public key');
  return Buffer.from(jwk.x, 'base64url');
}
