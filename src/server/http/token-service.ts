/** Tokens of people and scripts: created (shown once, stored hashed), listed, revoked. All audited. */
import type { CreateTokenResponse, TokenView } from '../../api/schemas.js';
import { LockstepError } from '../../core/errors.js';
import type { UserRole } from '../../core/token-roles.js';
import type { ServerContext } from '../context.js';
import { hashToken, newToken } from './tokens.js';

/** Creates a token; the secret is returned once and only its hash is kept. */
export async function createToken(context: ServerContext, actor: string, request: { name: string; role: UserRole; envs?: readonly string[] | undefined }): Promise<CreateTokenResponse> {
  const token = newToken('user');
  const envs = request.envs && request.envs.length > 0 ? [...new Set(request.envs)] : null;
  const at = context.now().toISOString();
  await context.store.transaction(async (repo) => {
    if (await repo.tokenByName(request.name)) throw new LockstepError('conflict', `a token named ${request.name} already exists; revoke it or choose another name`);
    await repo.insertToken({ name: request.name, token_hash: hashToken(token), role: request.role, envs: envs ? JSON.stringify(envs) : null, host: null, created_at: at, used_at: null, revoked_at: null });
    await repo.appendAudit({ at, actor, action: 'token.created', target: `token:${request.name}`, details: { role: request.role, envs } });
  });
  return { token, name: request.name, role: request.role, envs };
}

/** Tokens of people and scripts (never their secrets). */
export async function listTokens(context: ServerContext): Promise<TokenView[]> {
  const rows = await context.store.read.listUserTokens();
  return rows.map((row) => ({ name: row.name, role: row.role, envs: row.envs ? (JSON.parse(row.envs) as string[]) : null, createdAt: row.created_at, revokedAt: row.revoked_at }));
}

/** Revokes a token at once. */
export async function revokeToken(context: ServerContext, actor: string, name: string): Promise<void> {
  const at = context.now().toISOString();
  await context.store.transaction(async (repo) => {
    const row = await repo.tokenByName(name);
    if (!row || row.role === 'agent' || row.role === 'enroll') throw new LockstepError('not-found', `no token named ${name}; list them with: lockstep token list`);
    if (row.revoked_at !== null) throw new LockstepError('conflict', `token ${name} was already revoked at ${row.revoked_at}`);
    await repo.updateToken(name, { revoked_at: at });
    await repo.appendAudit({ at, actor, action: 'token.revoked', target: `token:${name}`, details: { role: row.role } });
  });
}
