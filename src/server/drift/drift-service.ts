/**
 * Drift for people: listing items, and asking hosts to scan, revert or accept
 * (agent commands; each request is audited, each host's answer too).
 */
import type { CommandView, DriftEntryAttrs, DriftItemView, DriftListResponse, DriftRevertResponse } from '../../api/schemas.js';
import type { Config } from '../../core/config.js';
import { LockstepError, notFound } from '../../core/errors.js';
import type { HostReadRepo } from '../../store/host-repo.js';
import type { AgentCommandRow, DriftItemRow, HostRow } from '../../store/store.js';
import { commandView, insertCommand, wakeHost, type CommandRequest } from './agent-command-service.js';
import { requireConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';
import { requireEnvironmentScope, type UserPrincipal } from '../deployments/deployment-service.js';
import { releaseScopePrefix } from '../hosts/host-settings.js';
import { OPEN_DRIFT_STATES } from '../../core/drift-items.js';

/** The items of every host, an environment or a host (an environment's name wins over a host's); open ones unless `all`. */
export async function listDrift(context: ServerContext, target: string | undefined, all: boolean): Promise<DriftListResponse> {
  const repo = context.store.read;
  let filter: { env?: string; host?: string } = {};
  if (target !== undefined) {
    const config = await requireConfig(repo);
    if (config.environments[target]) filter = { env: target };
    else if (await repo.host(target)) filter = { host: target };
    else throw notFound(`no environment or host named "${target}" (environments: ${Object.keys(config.environments).join(', ')}; hosts: lockstep host list)`);
  }
  const rows = await repo.driftItems({ ...filter, states: all ? undefined : OPEN_DRIFT_STATES });
  const versions = new Map<string, string>();
  for (const id of new Set(rows.map((row) => row.adopted_into).filter((id): id is string => id !== null))) {
    versions.set(id, (await repo.release(id))?.version ?? '?');
  }
  return { items: rows.map((row) => itemView(row, versions)) };
}

function itemView(row: DriftItemRow, versions: ReadonlyMap<string, string>): DriftItemView {
  return {
    id: row.id,
    host: row.host,
    env: row.env,
    scope: row.scope,
    path: row.path,
    kinds: JSON.parse(row.kinds) as string[],
    expected: row.expected ? (JSON.parse(row.expected) as DriftEntryAttrs) : null,
    actual: row.actual ? (JSON.parse(row.actual) as DriftEntryAttrs) : null,
    state: row.state,
    firstSeenAt: row.first_seen_at,
    lastSeenAt: row.last_seen_at,
    closedAt: row.closed_at,
    closedBy: row.closed_by,
    adoptedInto: row.adopted_into ? { id: row.adopted_into, version: versions.get(row.adopted_into) ?? '?' } : null,
    reason: row.reason,
    firecall: row.firecall_id,
  };
}

/** An enrolled host the caller may act on. */
export async function requireActionableHost(repo: HostReadRepo, principal: UserPrincipal, name: string): Promise<HostRow> {
  const host = await repo.host(name);
  if (!host) throw notFound(`no host named "${name}"; list them with: lockstep host list`);
  requireEnvironmentScope(principal, host.env);
  if (host.enrolled_at === null) throw new LockstepError('conflict', `host ${name} is not enrolled yet; start its agent with the enrollment token`);
  return host;
}

/** Creates one command per host, audited, and wakes the hosts. */
export async function createCommands(context: ServerContext, actor: string, hosts: readonly string[], request: CommandRequest): Promise<CommandView[]> {
  const at = context.now().toISOString();
  const ids = await context.store.transaction(async (repo) => {
    const created: number[] = [];
    for (const host of hosts) {
      const id = await insertCommand(repo, host, request, actor, at);
      const { kind, ...details } = request;
      await repo.appendAudit({ at, actor, action: `${kind.replace('-', '.')}_requested`, target: `host:${host}`, details: { command: id, ...details } });
      created.push(id);
    }
    return created;
  });
  for (const host of hosts) wakeHost(context, host);
  return Promise.all(ids.map(async (id) => commandView((await context.store.read.agentCommand(id)) as AgentCommandRow)));
}

/** `lockstep drift scan HOST [--full]`. */
export async function requestScan(context: ServerContext, principal: UserPrincipal, hostName: string, full: boolean): Promise<CommandView> {
  const host = await requireActionableHost(context.store.read, principal, hostName);
  const [view] = await createCommands(context, principal.name, [host.name], { kind: 'drift-scan', full });
  return view as CommandView;
}

/**
 * `lockstep drift revert HOST|ENV [--path P...]`: one command per host that has
 * open drift (at one of `paths`, when given). Hosts without any are skipped.
 */
export async function requestRevert(
  context: ServerContext,
  principal: UserPrincipal,
  target: string,
  paths: readonly string[] | null,
  reason: string | null,
): Promise<DriftRevertResponse> {
  const repo = context.store.read;
  const config = await requireConfig(repo);
  const hosts = config.environments[target] ? (await repo.listHosts(target)).filter((host) => host.enrolled_at !== null) : [await requireActionableHost(repo, principal, target)];
  if (config.environments[target]) requireEnvironmentScope(principal, target);
  const wanted = paths === null ? null : new Set(paths.map(normalizePath));
  const open = await repo.driftItems({ ...(config.environments[target] ? { env: target } : { host: target }), states: OPEN_DRIFT_STATES });
  if (wanted) {
    const unknown = [...wanted].filter((path) => !open.some((item) => item.path === path));
    if (unknown.length > 0) throw new LockstepError('bad-input', `no open drift at ${unknown.join(', ')} on ${target}; list it with: lockstep drift ${target}`);
  }
  const withDrift = new Set(open.filter((item) => wanted === null || wanted.has(item.path)).map((item) => item.host));
  const chosen = hosts.filter((host) => withDrift.has(host.name)).map((host) => host.name);
  const skipped = hosts.filter((host) => !withDrift.has(host.name)).map((host) => host.name);
  if (chosen.length === 0) return { commands: [], skipped };
  return { commands: await createCommands(context, principal.name, chosen, { kind: 'drift-revert', paths: wanted ? [...wanted] : null, reason }), skipped };
}

/**
 * `lockstep drift accept HOST --path P... --reason TEXT`: only open watch-scope
 * items; a release file is refused up front (it must be adopted instead).
 */
export async function requestAccept(context: ServerContext, principal: UserPrincipal, hostName: string, paths: readonly string[], reason: string): Promise<CommandView> {
  const repo = context.store.read;
  const config = await requireConfig(repo);
  const host = await requireActionableHost(repo, principal, hostName);
  const normalized = [...new Set(paths.map(normalizePath))];
  const open = await repo.driftItems({ host: host.name, states: OPEN_DRIFT_STATES });
  for (const path of normalized) {
    if (isReleasePath(config, path) || open.some((item) => item.path === path && item.scope === 'release')) {
      throw new LockstepError('refused', `${path} is a release file: release files cannot be accepted; adopt it instead with \`lockstep drift adopt ${host.name} --version V --reason TEXT\``);
    }
  }
  const unknown = normalized.filter((path) => !open.some((item) => item.path === path && (item.scope === 'watch' || item.scope === 'package')));
  if (unknown.length > 0) throw new LockstepError('bad-input', `no open drift at ${unknown.join(', ')} on ${host.name}; list it with: lockstep drift ${host.name}`);
  const [view] = await createCommands(context, principal.name, [host.name], { kind: 'drift-accept', paths: normalized, reason });
  return view as CommandView;
}

function isReleasePath(config: Config, path: string): boolean {
  const prefix = releaseScopePrefix(config.deploy_to);
  return path.startsWith(prefix) || path === prefix.slice(0, -1);
}

/** Paths as items name them: no trailing slash. */
function normalizePath(path: string): string {
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}
