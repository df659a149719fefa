/** The server's audit signing key: DATA_DIR/audit-signing.key (PKCS8 PEM, 0600), created on first start. */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmod, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ifMissing } from '../core/errors.js';

/** The key pair that signs checkpoints. */
export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** The key file's name in the data directory. */
export const SIGNING_KEY_FILE = 'audit-signing.key';

/** Loads the signing key from `dataDir`, creating it (mode 0600, exclusively) when absent. */
export async function loadOrCreateSigningKey(dataDir: string): Promise<SigningKey> {
  const file = join(dataDir, SIGNING_KEY_FILE);
  const existing = await ifMissing(readFile(file, 'utf8'));
  if (existing !== undefined) {
    const privateKey = createPrivateKey(existing);
    if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`${file} is not an Ed25519 private key`);
    return { privateKey, publicKey: createPublicKey(privateKey) };
  }
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  // 'wx': never overwrite a key another process created meanwhile; fsync so a crash cannot leave an empty key.
  const handle = await open(file, 'wx', 0o600);
  try {
    await handle.writeFile(pem);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await chmod(file, 0o600);
  return { privateKey, publicKey };
}
