/** Applying and reading lockstep.yaml on the server. */
import { configFromJson, parseConfig, type Config } from '../core/config.js';
import { LockstepError } from '../core/errors.js';
import type { ConfigReadRepo } from '../store/config-repo.js';
import type { ServerContext } from './context.js';

/** The applied configuration, or a clear error when none was applied yet. */
export async function requireConfig(repo: ConfigReadRepo): Promise<Config> {
  const config = await currentConfig(repo);
  if (!config) throw new LockstepError('bad-input', 'no lockstep.yaml has been applied yet; run: lockstep init && lockstep apply -f lockstep.yaml');
  return config;
}

/** The applied configuration, if any. */
export async function currentConfig(repo: ConfigReadRepo): Promise<Config | undefined> {
  const row = await repo.latestConfig();
  return row ? configFromJson(row.parsed) : undefined;
}

/** Validates and stores a config file; the change is an audit event. Nothing is stored when it is invalid. */
export async function applyConfig(context: ServerContext, actor: string, yaml: string, file: string): Promise<{ version: number; changed: boolean }> {
  const config = parseConfig(yaml, file);
  const at = context.now().toISOString();
  return context.store.transaction(async (repo) => {
    const previous = await repo.latestConfig();
    const parsed = JSON.stringify(config);
    if (previous && previous.parsed === parsed && previous.yaml === yaml) return { version: previous.version, changed: false };
    if (previous) {
      const before = JSON.parse(previous.parsed) as Config;
      if (before.app !== config.app) {
        const releases = await repo.listReleases(1);
        if (releases.length > 0) {
          throw new LockstepError('bad-input', `${file}: app cannot change from "${before.app}" to "${config.app}" once releases exist`);
        }
      }
    }
    const policyChanges = policyDiff(previous ? (JSON.parse(previous.parsed) as Config) : undefined, config);
    const version = await repo.insertConfig({ yaml, parsed, applied_by: actor, applied_at: at });
    await repo.appendAudit({
      at,
      actor,
      action: 'config.applied',
      target: `config:${version}`,
      details: { version, file, environments: Object.keys(config.environments), previousVersion: previous?.version ?? null, policyChanges },
    });
    return { version, changed: true };
  });
}

/** The settings of an environment that are policy: who may change what, when, and how. */
const POLICY_FIELDS = ['promote_from', 'approvals', 'windows', 'freezes', 'soak', 'rollback', 'allow_override', 'rollout', 'host_timeout'] as const;

/** Every policy field that differs between two configurations, per environment, with both values. */
export function policyDiff(before: Config | undefined, after: Config): { env: string; field: string; before: unknown; after: unknown }[] {
  const changes: { env: string; field: string; before: unknown; after: unknown }[] = [];
  const names = new Set([...Object.keys(before?.environments ?? {}), ...Object.keys(after.environments)]);
  for (const env of names) {
    const old = before?.environments[env];
    const now = after.environments[env];
    for (const field of POLICY_FIELDS) {
      const a = old ? (old as Record<string, unknown>)[field] : undefined;
      const b = now ? (now as Record<string, unknown>)[field] : undefined;
      if (JSON.stringify(a) !== JSON.stringify(b)) changes.push({ env, field, before: a ?? null, after: b ?? null });
    }
  }
  return changes;
}
