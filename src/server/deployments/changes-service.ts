/**
 * `lockstep changes`: the incident responder's first question — what
 * changed recently? — answered from deployments and the audit trail, each
 * change with who, what, why, when, the result and the way back.
 */
import type { ChangesResponse, ChangeView } from '../../api/schemas.js';
import { parseDuration } from '../../core/duration.js';
import { LockstepError } from '../../core/errors.js';
import { shortId } from '../../core/manifest.js';
import type { ServerContext } from '../context.js';
import { SECRET_AUDIT_ACTIONS } from '../secrets/secret-service.js';

/** Audit actions that are changes in their own right (deployments come from their table). */
const AUDITED_CHANGES = ['config.applied', 'release.rejected', 'release.unrejected', 'token.created', 'token.revoked', 'host.added', 'deployment.override', ...SECRET_AUDIT_ACTIONS];

/** Parses `24h` (that long ago) or an ISO time. */
export function parseSince(text: string, now: Date): Date {
  const duration = parseDuration(text);
  // A duration longer than the calendar reaches (about 270,000 years) is no time either.
  const at = duration !== undefined ? now.getTime() - duration : Date.parse(text);
  if (Number.isNaN(new Date(at).getTime())) throw new LockstepError('bad-input', `--since "${text}" is neither a duration (24h, 30m) nor a time (2026-11-26T08:00:00Z)`);
  return new Date(at);
}

/** Changes since `since`, newest first. */
export async function listChanges(context: ServerContext, env: string | undefined, sinceText: string): Promise<ChangesResponse> {
  const repo = context.store.read;
  const since = parseSince(sinceText, context.now()).toISOString();
  const changes: ChangeView[] = [];
  for (const deployment of await repo.deploymentsSince(since, env)) {
    const release = await repo.release(deployment.release_id);
    const from = deployment.from_release_id ? await repo.release(deployment.from_release_id) : undefined;
    const name = `${release?.app ?? ''}@${release?.version ?? shortId(deployment.release_id)}`;
    const what = deployment.kind === 'deploy' ? `deployment #${deployment.id} of ${name}` : `${deployment.kind} #${deployment.id} to ${name}`;
    const result = deployment.state === 'failed' ? `failed: ${deployment.error ?? ''}` : deployment.override_reason ? `${deployment.state} (policy overridden: ${deployment.override_reason})` : deployment.state.replace(/_/g, ' ');
    changes.push({
      at: deployment.created_at,
      env: deployment.env,
      kind: deployment.kind === 'deploy' ? 'deployment' : deployment.kind,
      actor: deployment.requested_by,
      what: `${what}${from ? ` (was ${from.version})` : ''}`,
      why: deployment.reason,
      result,
      wayBack:
        // A return undid a late switch: going "back" would redo it.
        deployment.state === 'succeeded' && deployment.kind !== 'return' && from && from.id !== deployment.release_id
          ? `lockstep rollback ${deployment.env} --to ${shortId(from.id)}`
          : null,
    });
  }
  for (const event of await repo.auditSince(since, AUDITED_CHANGES)) {
    const details = JSON.parse(event.details) as Record<string, unknown>;
    const eventEnv = typeof details.env === 'string' ? details.env : null;
    if (env !== undefined && eventEnv !== null && eventEnv !== env) continue;
    if (event.action === 'deployment.override') continue; // shown with its deployment
    changes.push({
      at: event.at,
      env: eventEnv,
      kind: event.action.split('.')[0] ?? event.action,
      actor: event.actor,
      what: describeEvent(event.action, event.target, details),
      why: typeof details.reason === 'string' ? details.reason : null,
      result: 'done',
      wayBack: wayBackOf(event.action, event.target, details),
    });
  }
  changes.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
  return { since, changes };
}

function describeEvent(action: string, target: string, details: Record<string, unknown>): string {
  switch (action) {
    case 'config.applied': {
      const policy = details.policyChanges as unknown[] | undefined;
      return `lockstep.yaml applied as version ${String(details.version)}${policy && policy.length ? ` (policy changed: ${policy.length} field${policy.length === 1 ? '' : 's'})` : ''}`;
    }
    case 'release.rejected':
      return `release ${String(details.version ?? target)} rejected in ${String(details.env)}`;
    case 'secret.set':
      return `secret ${String(details.name)} set to version ${String(details.version)} in ${String(details.env)} (hosts get it at their next deployment)`;
    case 'secret.rm':
      return `secret ${String(details.name)} (version ${String(details.version)}) removed from ${String(details.env)} (hosts drop it at their next deployment)`;
    case 'release.unrejected':
      return `release ${target.replace('release:', '').slice(0, 12)} unrejected in ${String(details.env)}`;
    default:
      return `${action} ${target}`;
  }
}

function wayBackOf(action: string, target: string, details: Record<string, unknown>): string | null {
  if (action === 'config.applied' && typeof details.previousVersion === 'number') return `re-apply config version ${details.previousVersion}`;
  if (action === 'release.rejected') return `lockstep release unreject ${target.replace('release:', '').slice(0, 12)} --env ${String(details.env)}`;
  if (action === 'token.created') return `lockstep token revoke ${target.replace('token:', '')}`;
  return null;
}
