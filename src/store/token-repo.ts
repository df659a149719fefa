/** Bearer tokens (only their hashes) of people, scripts, agents and enrollments. */
import type { Selectable } from 'kysely';
import type { TokensTable } from './schema.js';

/** One token. */
export type TokenRow = Selectable<TokensTable>;

/** Reads of tokens. */
export interface TokenReadRepo {
  tokenByHash(hash: string): Promise<TokenRow | undefined>;
  tokenByName(name: string): Promise<TokenRow | undefined>;
  /** Tokens whose role is one of USER_ROLES (core/token-roles.ts), by name. */
  listUserTokens(): Promise<TokenRow[]>;
}

/** Reads and writes of tokens. */
export interface TokenWriteRepo extends TokenReadRepo {
  insertToken(row: TokenRow): Promise<void>;
  updateToken(name: string, patch: Partial<Pick<TokenRow, 'used_at' | 'revoked_at'>>): Promise<void>;
}
