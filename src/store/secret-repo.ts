/** Secrets per environment, stored sealed (the store never sees a plaintext value). */
import type { Selectable } from 'kysely';
import type { SecretsTable } from './schema.js';

/** One secret of one environment, as stored: its current version, sealed. */
export type SecretRow = Selectable<SecretsTable>;

/** Reads of secrets. */
export interface SecretReadRepo {
  /** The secrets of an environment, by name. */
  secrets(env: string): Promise<SecretRow[]>;
  secret(env: string, name: string): Promise<SecretRow | undefined>;
}

/** Reads and writes of secrets (versions come from the counters, see CounterWriteRepo). */
export interface SecretWriteRepo extends SecretReadRepo {
  /** Stores the secret's new version, replacing the one before. */
  putSecret(row: SecretRow): Promise<void>;
  /** Removes a secret; false when the environment had none of that name. */
  removeSecret(env: string, name: string): Promise<boolean>;
}
