/** Read-only views: status, history, hosts, audit log. */
import type { AuditEventView, DeploymentView, HostView, StatusResponse } from '../../api/schemas.js';
import { promotionOrder, type Config } from '../../core/config.js';
import { seenWithin } from '../../core/host-presence.js';
import type { DeploymentReadRepo } from '../../store/deployment-repo.js';
import type { DriftReadRepo } from '../../store/drift-repo.js';
import type { ReleaseReadRepo } from '../../store/release-repo.js';
import type { AuditEventRow, HostRow, ReadRepo } from '../../store/store.js';
import { isDiverged } from '../../core/host-divergence.js';
import { ACTIVE_DEPLOYMENTS } from '../../core/report-decision.js';
import { currentConfig } from '../config-service.js';
import { parityWatchSummary } from '../drift/parity-watch-service.js';
import type { ServerContext } from '../context.js';
import { viewOf } from '../deployments/deployment-service.js';
import { firecallSummary } from '../firecall/firecall-service.js';

/** Every host's drift at a glance, read once for a whole view: open items, and when its agent last reported. */
export interface DriftOverview {
  readonly open: ReadonlyMap<string, number>;
  readonly reportedAt: ReadonlyMap<string, string>;
}

/** Reads the drift overview of every host. */
export async function driftOverview(repo: DriftReadRepo): Promise<DriftOverview> {
  return { open: await repo.openDriftCounts(), reportedAt: await repo.driftReportTimes() };
}

/** What every environment runs and whether a deployment is moving its hosts, read once for a whole view. */
export interface PlacementOverview {
  readonly current: ReadonlyMap<string, string | null>;
  readonly moving: ReadonlySet<string>;
}

/** Reads the placement overview of the environments in `config` (none applied: no environment). */
export async function placementOverview(repo: ReleaseReadRepo & DeploymentReadRepo, config: Config | undefined): Promise<PlacementOverview> {
  const current = new Map<string, string | null>();
  for (const env of Object.keys(config?.environments ?? {})) current.set(env, (await repo.environmentCurrent(env)) ?? null);
  const moving = new Set((await repo.activeDeployments()).filter((deployment) => ACTIVE_DEPLOYMENTS.includes(deployment.state)).map((deployment) => deployment.env));
  return { current, moving };
}

/**
 * A host as the API shows it, with its drift from `drift`; `config` for how often its agent must report
 * drift (none applied: staleness is not judged).
 */
export async function hostView(context: ServerContext, row: HostRow, drift: DriftOverview, config: Config | undefined, placement: PlacementOverview): Promise<HostView> {
  const release = row.current_release_id ? await context.store.read.release(row.current_release_id) : undefined;
  const now = context.now().getTime();
  const online = seenWithin(row.last_seen_at, now, context.onlineWindowMs);
  const driftReportAt = drift.reportedAt.get(row.name) ?? null;
  // Measured from the last report, or from enrollment for an agent that never sent one.
  const since = driftReportAt ?? row.enrolled_at;
  const driftStale = config !== undefined && online && since !== null && now - Date.parse(since) > driftStaleAfterMs(config);
  return {
    name: row.name,
    env: row.env,
    enrolled: row.enrolled_at !== null,
    online,
    releaseId: row.current_release_id,
    version: release?.version ?? null,
    lastSeenAt: row.last_seen_at,
    health: row.health && row.health_at ? { healthy: row.health === 'healthy', detail: row.health_detail ?? '', at: row.health_at } : null,
    openDrift: drift.open.get(row.name) ?? 0,
    driftReportAt,
    driftStale,
    // An environment unknown to the config has no release to diverge from.
    diverged: placement.current.has(row.env) && isDiverged({ enrolled: row.enrolled_at !== null, releaseId: row.current_release_id }, placement.current.get(row.env) ?? null, placement.moving.has(row.env)),
  };
}

/** Agents report drift after every periodic scan; two missed scans and a minute mean the monitor is not working. */
export function driftStaleAfterMs(config: Config): number {
  return 2 * config.drift.scan_interval + 60_000;
}

/** Environments in promotion order with their current release, hosts and last deployment. */
export async function status(context: ServerContext, onlyEnv?: string): Promise<StatusResponse> {
  const repo = context.store.read;
  const config = await currentConfig(repo);
  if (!config) return { app: null, environments: [] };
  const names = promotionOrder(config).filter((name) => onlyEnv === undefined || name === onlyEnv);
  const drift = await driftOverview(repo);
  const placement = await placementOverview(repo, config);
  const environments = [];
  for (const name of names) {
    const currentId = await repo.environmentCurrent(name);
    const current = currentId ? await repo.release(currentId) : undefined;
    const last = (await repo.listDeployments({ env: name, limit: 1 }))[0];
    environments.push({
      name,
      promoteFrom: config.environments[name]?.promote_from ?? null,
      current: current ? { id: current.id, version: current.version } : null,
      hosts: await Promise.all((await repo.listHosts(name)).map((host) => hostView(context, host, drift, config, placement))),
      lastDeployment: last ? await viewOf(repo, last) : null,
      firecall: await firecallSummary(repo, name),
    });
  }
  const parity = (await parityWatchSummary(context)).filter((pair) => onlyEnv === undefined || pair.a === onlyEnv || pair.b === onlyEnv);
  return { app: config.app, environments, parity };
}

/** Deployments and rollbacks, newest first. */
export async function history(repo: ReadRepo, env: string | undefined, limit: number): Promise<DeploymentView[]> {
  const rows = await repo.listDeployments({ env, limit });
  return Promise.all(rows.map((row) => viewOf(repo, row)));
}

/** An audit event as the API shows it. */
export function auditView(row: AuditEventRow): AuditEventView {
  return { seq: Number(row.seq), at: row.at, actor: row.actor, action: row.action, target: row.target, details: JSON.parse(row.details) as unknown, prevHash: row.prev_hash, hash: row.hash };
}
