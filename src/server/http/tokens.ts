/** Bearer tokens: random secrets shown once; only their SHA-256 is stored. */
import { createHash, randomBytes } from 'node:crypto';

/** What a token is for; its prefix tells a person which kind they hold. */
export type TokenKind = 'user' | 'agent' | 'enroll';

const PREFIX: Readonly<Record<TokenKind, string>> = { user: 'lsu_', agent: 'lsa_', enroll: 'lse_' };

/** A new random token of a kind. */
export function newToken(kind: TokenKind): string {
  return PREFIX[kind] + randomBytes(32).toString('base64url');
}

/** The stored form of a token. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
