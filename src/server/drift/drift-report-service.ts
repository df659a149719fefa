/**
 * Recording an agent's drift report: validate its paths, reconcile the host's
 * items (src/server/drift-reconcile.ts), write the changes with their audit
 * events in one transaction, and alert once on the items that are new.
 */
import type { DriftFinding, DriftReport } from '../../api/schemas.js';
import type { Config } from '../../core/config.js';
import { LockstepError } from '../../core/errors.js';
import type { AgentCommandRow, WriteRepo } from '../../store/store.js';
import { requestOf } from './agent-command-service.js';
import { requireConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';
import { reconcileDrift, storedFields, type CloseCause, type DriftReconciliation } from './drift-reconcile.js';
import { keptReleasePath, releaseScopePrefix } from '../hosts/host-settings.js';
import { openFirecallFor } from '../firecall/firecall-service.js';
import { OPEN_DRIFT_STATES, packageNameOf } from '../../core/drift-items.js';

/** At most this many paths are named in one audit event or alert; the count is always exact. */
const LISTED = 100;

/** Every problem of a report's paths: absolute, without `..`, release paths under DEPLOY_TO/current/ or DEPLOY_TO/releases/<id>/. */
export function driftPathProblems(findings: readonly DriftFinding[], deployTo: string): string[] {
  const prefix = releaseScopePrefix(deployTo);
  const kept = keptReleasePath(deployTo);
  const problems: string[] = [];
  for (const finding of findings) {
    const path = finding.path;
    if (finding.scope === 'package') {
      if (packageNameOf(path) === undefined) problems.push(`${path}: a package item's path must be package:NAME with a Debian package name`);
    } else if (!path.startsWith('/') || path.includes('\0') || path.split('/').some((segment) => segment === '..' || segment === '.')) {
      problems.push(`${path}: expected an absolute path without "." or ".." segments`);
    } else if (finding.scope === 'release' && !(path.startsWith(prefix) && path.length > prefix.length) && path !== prefix.slice(0, -1) && !kept.test(path)) {
      // DEPLOY_TO/current itself is a release-scope item too: `current` re-pointed by hand; a kept release's file is drift of that release.
      problems.push(`${path}: a release-scope path must be DEPLOY_TO/current, under ${prefix} or under DEPLOY_TO/releases/<release id>/`);
    }
  }
  return problems;
}


/** Records a host's complete findings after a scan. */
export async function recordDriftReport(context: ServerContext, host: string, env: string, report: DriftReport): Promise<void> {
  const config = await requireConfig(context.store.read);
  const problems = driftPathProblems(report.findings, config.deploy_to);
  if (problems.length > 0) throw new LockstepError('bad-input', `invalid drift report: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (and ${problems.length - 5} more)` : ''}`, { problems });
  const at = context.now().toISOString();
  const outcome = await context.store.transaction(async (repo) => {
    const open = await repo.driftItems({ host, states: OPEN_DRIFT_STATES });
    const command = report.cause.kind === 'command' ? await repo.agentCommand(report.cause.commandId) : undefined;
    const cause = closeCauseOf(report, command?.host === host ? command : undefined);
    const plan = reconcileDrift(
      open.map((row) => ({ id: row.id, scope: row.scope, path: row.path, kinds: row.kinds, expected: row.expected, actual: row.actual, adoptedInto: row.adopted_into })),
      report,
      cause,
    );
    // What appears while a fire call is open in the environment was (presumably) changed under it: attributed, not an intrusion.
    const firecall = plan.opened.length > 0 ? await openFirecallFor(repo, env, new Date(at)) : null;
    await repo.touchOpenDriftItems(host, at);
    for (const { id, finding } of plan.changed) await repo.updateDriftItem(id, storedFields(finding));
    const closedBy = closedByOf(report, command);
    const reason = command ? reasonOf(command) : null;
    for (const { id, state } of plan.closed) {
      await repo.updateDriftItem(id, { state, closed_at: at, closed_by: closedBy, ...(reason !== null && (state === 'reverted' || state === 'accepted') ? { reason } : {}) });
    }
    for (const finding of plan.opened) {
      await repo.insertDriftItem({
        host, env, scope: finding.scope, path: finding.path, ...storedFields(finding), state: 'open',
        first_seen_at: at, last_seen_at: at, closed_at: null, closed_by: null, adopted_into: null, reason: null, firecall_id: firecall?.id ?? null,
      });
    }
    await repo.upsertDriftScan({
      host, reported_at: at, release_id: report.releaseId, full: report.full ? 1 : 0, cause: report.cause.kind, truncated: report.truncated ? 1 : 0,
      entries: report.stats.entries, hashed_files: report.stats.hashedFiles, elapsed_ms: report.stats.elapsedMs,
    });
    await auditReconciliation(repo, host, env, at, plan, report, firecall?.id ?? null);
    return { ...plan, firecall: firecall?.id ?? null };
  });
  if (outcome.opened.length > 0) alertNewDrift(context, config, host, env, at, outcome.opened, outcome.firecall);
}

function closeCauseOf(report: DriftReport, command: AgentCommandRow | undefined): CloseCause {
  switch (report.cause.kind) {
    case 'scan':
    case 'watch':
      return { kind: report.cause.kind };
    case 'deployment':
      return { kind: 'deployment', deploymentId: report.cause.deploymentId };
    case 'command': {
      const request = command ? requestOf(command) : undefined;
      if (request?.kind === 'drift-revert') return { kind: 'revert', paths: request.paths };
      if (request?.kind === 'drift-accept') return { kind: 'accept', paths: request.paths };
      return { kind: 'command' };
    }
  }
}

function closedByOf(report: DriftReport, command: AgentCommandRow | undefined): string {
  if (report.cause.kind === 'deployment') return `deployment #${report.cause.deploymentId}`;
  if (command) return command.created_by;
  return 'lockstep';
}

function reasonOf(command: AgentCommandRow): string | null {
  const request = requestOf(command);
  return request.kind === 'drift-scan' || request.kind === 'release-capture' ? null : request.reason;
}

async function auditReconciliation(repo: WriteRepo, host: string, env: string, at: string, plan: DriftReconciliation, report: DriftReport, firecall: number | null): Promise<void> {
  const actor = `agent:${host}`;
  const cause = report.cause;
  if (plan.opened.length > 0) {
    await repo.appendAudit({
      at, actor, action: 'drift.detected', target: `host:${host}`,
      details: { env, count: plan.opened.length, items: plan.opened.slice(0, LISTED).map((finding) => ({ scope: finding.scope, path: finding.path, kinds: finding.kinds })), cause, firecall },
    });
  }
  if (plan.closed.length > 0) {
    await repo.appendAudit({
      at, actor, action: 'drift.closed', target: `host:${host}`,
      details: { env, count: plan.closed.length, items: plan.closed.slice(0, LISTED).map((item) => ({ path: item.path, state: item.state })), cause },
    });
  }
}

/** One alert per report, naming every new item (each item is new exactly once). */
function alertNewDrift(context: ServerContext, config: Config, host: string, env: string, at: string, opened: readonly DriftFinding[], firecall: number | null): void {
  const first = opened[0] as DriftFinding;
  const more = opened.length > 1 ? ` and ${opened.length - 1} more path${opened.length > 2 ? 's' : ''}` : '';
  const what = `${first.path} (${first.kinds.join(', ')})${more}`;
  context.alerts.dispatch(
    {
      // Under a fire call a change is expected: a notice naming it, not an intrusion alert.
      kind: firecall === null ? 'drift.detected' : 'drift.firecall',
      env,
      at,
      summary: firecall === null ? `drift on ${host} in ${env}: ${what}` : `changed under fire call ${firecall} on ${host} in ${env}: ${what}`,
      details: {
        host,
        count: opened.length,
        items: opened.slice(0, LISTED).map((finding) => ({ scope: finding.scope, path: finding.path, kinds: finding.kinds, expected: finding.expected, actual: finding.actual })),
        firecall,
        fix: firecall === null ? `lockstep drift revert ${host}   (or: lockstep drift adopt / accept)` : `after closing it: lockstep firecall reconcile ${firecall} --revert   (or --adopt --version V)`,
      },
    },
    config.environments[env]?.alerts,
  );
}
