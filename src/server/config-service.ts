/** Applying and reading lockstep.yaml on the server. */
import { parseConfig, type Config } from '../core/config.js';
import { LockstepError } from '../core/errors.js';
import type { ReadRepo } from '../store/store.js';
import type { ServerContext } from './context.js';

/** The applied configuration, or a clear error when none was applied yet. */
export async function requireConfig(repo: ReadRepo): Promise<Config> {
  const config = await currentConfig(repo);
  if (!config) throw new LockstepError('bad-input', 'no lockstep.yaml has been applied yet; run: lockstep init && lockstep apply -f lockstep.yaml');
  return config;
}

/** The applied configuration, if any. */
export async function currentConfig(repo: ReadRepo): Promise<Config | undefined> {
  const row = await repo.latestConfig();
  return row ? (JSON.parse(row.parsed) as Config) : undefined;
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
    const version = await repo.insertConfig({ yaml, parsed, applied_by: actor, applied_at: at });
    await repo.appendAudit({
      at,
      actor,
      action: 'config.applied',
      target: `config:${version}`,
      details: { version, file, environments: Object.keys(config.environments), previousVersion: previous?.version ?? null },
    });
    return { version, changed: true };
  });
}
