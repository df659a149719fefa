/** Sealing of secret values: round trip, and refusal of a wrong key, another slot (env, name, version) or an altered byte. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { openSecret, sealSecret, secretDigest, secretKeyId, SECRET_KEY_BYTES } from '../../src/server/secrets/secret-box.js';

const key = randomBytes(SECRET_KEY_BYTES);
const slot = { env: 'production', name: 'DB_PASSWORD', version: 3 };
const VALUE = 'hunter2 ünïcödé\nsecond line';

describe('secret box', () => {
  it('opens what it sealed, and never seals the same value to the same text twice (random nonce)', () => {
    const sealed = sealSecret(key, slot, VALUE);
    assert.equal(openSecret(key, slot, sealed), VALUE);
    const again = sealSecret(key, slot, VALUE);
    assert.notEqual(again, sealed);
    assert.equal(openSecret(key, slot, again), VALUE);
    assert.ok(!Buffer.from(sealed, 'base64').includes(Buffer.from('hunter2')), 'the plaintext is not in the sealed text');
  });

  it('refuses another key', () => {
    const sealed = sealSecret(key, slot, VALUE);
    assert.throws(() => openSecret(randomBytes(SECRET_KEY_BYTES), slot, sealed), (error: Error) => /cannot be decrypted/.test(error.message) && !error.message.includes('hunter2'));
  });

  it('refuses a sealed value moved to another environment, name or version', () => {
    const sealed = sealSecret(key, slot, VALUE);
    for (const moved of [{ ...slot, env: 'test' }, { ...slot, name: 'API_KEY' }, { ...slot, version: 2 }, { ...slot, version: 4 }]) {
      assert.throws(() => openSecret(key, moved, sealed), /cannot be decrypted/, JSON.stringify(moved));
    }
  });

  it('refuses any altered byte and a truncated text', () => {
    const bytes = Buffer.from(sealSecret(key, slot, VALUE), 'base64');
    for (const index of [0, 11, 12, bytes.length - 17, bytes.length - 1]) {
      const altered = Buffer.from(bytes);
      altered[index] = (altered[index] ?? 0) ^ 0x01;
      assert.throws(() => openSecret(key, slot, altered.toString('base64')), /cannot be decrypted/, `byte ${index}`);
    }
    assert.throws(() => openSecret(key, slot, bytes.subarray(0, 20).toString('base64')), /cannot be decrypted/);
  });

  it('digests equal values equally under one key, differently under another, and never as a plain hash', () => {
    assert.equal(secretDigest(key, VALUE), secretDigest(key, VALUE));
    assert.notEqual(secretDigest(key, VALUE), secretDigest(key, `${VALUE}.`));
    assert.notEqual(secretDigest(key, VALUE), secretDigest(randomBytes(SECRET_KEY_BYTES), VALUE));
    assert.match(secretKeyId(key), /^sha256:[0-9a-f]{16}$/);
    assert.throws(() => sealSecret(randomBytes(16), slot, VALUE), /32 bytes/);
  });
});
