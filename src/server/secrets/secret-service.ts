/**
 * Secrets per environment: set (a new version, sealed), list (never values),
 * remove, and what the server hands to the agents of that environment. Every
 * set and removal is an audit event naming the environment, the name and the
 * version only.
 */
import type { RemoveSecretResponse, SecretListResponse, SecretView } from '../../api/schemas.js';
import { environmentOf, secretsInEnvOf } from '../../core/config.js';
import { LockstepError } from '../../core/errors.js';
import { secretNameProblem } from '../../core/secret-name.js';
import type { SecretReadRepo, SecretRow } from '../../store/secret-repo.js';
import { requireConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';
import { openSecret, sealSecret, secretDigest, secretKeyId } from './secret-box.js';
import type { SecretKeyFile } from './secret-key.js';

/** The audit actions of secrets, also listed by `lockstep changes`. */
export const SECRET_AUDIT_ACTIONS = ['secret.set', 'secret.rm'] as const;

/** Refuses a name that is not variable-like, saying what is allowed. */
function checkName(name: string): void {
  const problem = secretNameProblem(name);
  if (problem !== undefined) throw new LockstepError('bad-input', problem);
}

function requireKeyFile(context: ServerContext): SecretKeyFile {
  if (context.secretKey === undefined) throw new LockstepError('failed', 'this server was started without a secrets key file, so it cannot hold secrets');
  return context.secretKey;
}

function viewOf(row: SecretRow): SecretView {
  return { env: row.env, name: row.name, version: Number(row.version), setBy: row.set_by, setAt: row.set_at };
}

/** Sets `name` in `env` to `value` as its next version; the value is sealed before it reaches the store. */
export async function setSecret(context: ServerContext, actor: string, env: string, name: string, value: string): Promise<SecretView> {
  const config = await requireConfig(context.store.read);
  environmentOf(config, env);
  checkName(name);
  if (value.length === 0) throw new LockstepError('bad-input', 'a secret cannot be empty');
  // Refused now rather than failing every host's deployment later (the agent refuses such a lockstep.env line too).
  if (secretsInEnvOf(config, env) && /[\r\n\0]/.test(value)) {
    throw new LockstepError('bad-input', `${env} has secrets_in_env: true, and lockstep.env cannot hold a line break or NUL byte; put the value on one line, or set secrets_in_env: false for ${env} to get it as a file`);
  }
  const key = await requireKeyFile(context).key();
  const at = context.now().toISOString();
  const digest = secretDigest(key, value);
  const keyId = secretKeyId(key);
  return context.store.transaction(async (repo) => {
    // Versions count every set of the name, across removals, so a sealed value is bound to one slot for good.
    const version = await repo.next(`secret:${env}/${name}`);
    const row: SecretRow = { env, name, version, sealed: sealSecret(key, { env, name, version }, value), key_id: keyId, digest, set_by: actor, set_at: at };
    await repo.putSecret(row);
    await repo.appendAudit({ at, actor, action: 'secret.set', target: `secret:${env}/${name}`, details: { env, name, version } });
    return viewOf(row);
  });
}

/** How far back `secret list` looks for the environment's last succeeded deployment or rollback. */
const DEPLOYMENTS_LOOKED_AT = 100;

/** The secrets of `env`: names, versions, who set them and when, and whether its hosts have that version yet. */
export async function listSecrets(context: ServerContext, env: string): Promise<SecretListResponse> {
  const repo = context.store.read;
  environmentOf(await requireConfig(repo), env);
  // A task carries the secrets as they are when it is handed out: what was set before the last
  // succeeded deployment or rollback started reached every host it switched.
  const deployments = await repo.listDeployments({ env, limit: DEPLOYMENTS_LOOKED_AT });
  const lastDelivery = deployments.find((deployment) => deployment.state === 'succeeded' && (deployment.kind === 'deploy' || deployment.kind === 'rollback'))?.created_at;
  return { env, secrets: (await repo.secrets(env)).map((row) => ({ ...viewOf(row), deployed: lastDelivery !== undefined && row.set_at < lastDelivery })) };
}

/** Removes `name` from `env`; hosts drop its file at their next deployment. */
export async function removeSecret(context: ServerContext, actor: string, env: string, name: string): Promise<RemoveSecretResponse> {
  environmentOf(await requireConfig(context.store.read), env);
  checkName(name);
  const at = context.now().toISOString();
  return context.store.transaction(async (repo) => {
    const row = await repo.secret(env, name);
    if (row === undefined || !(await repo.removeSecret(env, name))) throw new LockstepError('not-found', `${env} has no secret ${name} (see lockstep secret list ${env})`);
    const version = Number(row.version);
    await repo.appendAudit({ at, actor, action: 'secret.rm', target: `secret:${env}/${name}`, details: { env, name, version } });
    return { env, name, version };
  });
}

/**
 * Every secret of `env`, decrypted: only for the task of a host of that environment. A row sealed with
 * another key, or moved or altered in the database, fails here (naming the secret and the key, never a value).
 */
export async function secretsForEnvironment(context: ServerContext, env: string): Promise<Record<string, string>> {
  const rows = await context.store.read.secrets(env);
  if (rows.length === 0) return {};
  const keyFile = requireKeyFile(context);
  const key = await keyFile.existing();
  if (key === undefined) throw new LockstepError('failed', `${env} has secrets but ${keyFile.file} does not exist; restore the secrets key from its backup`);
  const keyId = secretKeyId(key);
  const values: Record<string, string> = {};
  for (const row of rows) {
    if (row.key_id !== keyId) throw new LockstepError('failed', `secret ${row.name} of ${env} was sealed with key ${row.key_id}, but ${keyFile.file} is ${keyId}; every server of one database needs the same secrets key`);
    values[row.name] = openSecret(key, { env, name: row.name, version: Number(row.version) }, row.sealed);
  }
  return values;
}

/** Secret name → keyed digest of its value, for parity (no decryption, and nothing that reveals a value). */
export async function secretDigests(repo: SecretReadRepo, env: string): Promise<Record<string, string>> {
  return Object.fromEntries((await repo.secrets(env)).map((row) => [row.name, row.digest]));
}

/** The names of the secrets of `env`: what `{{ secrets.NAME }}` in a managed-file template may name (plan-time check). */
export async function secretNames(repo: SecretReadRepo, env: string): Promise<string[]> {
  return (await repo.secrets(env)).map((row) => row.name);
}
