/**
 * Fire calls on the server: open (sign a short-lived certificate, announce,
 * record), close (by hand or when the certificate expires: revoke it and end
 * its sessions on every host), reconcile, and the trust each host's agent
 * installs for sshd.
 */
import { createHash } from 'node:crypto';
import type { CloseFirecallResponse, CommandView, FirecallAgentReport, FirecallShowResponse, FirecallSummary, FirecallTrust, FirecallView, OpenFirecallResponse } from '../../api/schemas.js';
import { environmentOf, type Config, type EnvironmentConfig } from '../../core/config.js';
import { formatDuration } from '../../core/duration.js';
import { LockstepError } from '../../core/errors.js';
import { checkSourceAddress, firecallExpired, firecallIssued, firecallKeyId, firecallState, firecallTtl, parsePublicKeyLine, revocationsFor, sshdEventOf, type FirecallFacts } from '../../core/firecall.js';
import type { SshCertificateAuthority } from '../../firecall/ssh-certificate-authority.js';
import type { FirecallReadRepo } from '../../store/firecall-repo.js';
import type { DriftItemRow, FirecallRow, WriteRepo } from '../../store/store.js';
import type { AlertSettings } from '../alerts/alert-channels.js';
import { requireConfig, currentConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';
import { requireEnvironmentScope, requireOverride, type UserPrincipal } from '../deployments/deployment-service.js';
import { approvalRefusal } from '../../core/policy.js';
import { keys } from '../notifier.js';
import { waitForCommand } from '../drift/agent-command-service.js';
import { adoptDrift } from '../drift/drift-adopt.js';
import { createCommands } from '../drift/drift-service.js';
import { OPEN_DRIFT_STATES } from '../../core/drift-items.js';

/** How long `firecall close` waits for the hosts to install the revocation. */
const CLOSE_WAIT_MS = 10_000;
/** Revocations cover this many of an environment's newest fire calls. */
const REVOCATION_HISTORY = 1000;

/** What the fire-call services need besides the context. */
export interface FirecallContext extends ServerContext {
  readonly ca: SshCertificateAuthority;
}

/** The fire-call policy of an environment, or a one-line error saying why there is none. */
function policyOf(config: Config, env: string): NonNullable<EnvironmentConfig['firecall']> {
  const environment = environmentOf(config, env);
  if (!environment.firecall) throw new LockstepError('refused', `${env} has no fire-call policy; add firecall: { principals: [ACCOUNT] } to it in lockstep.yaml`);
  return environment.firecall;
}

/** The environment's alerts plus the fire-call policy's extra recipients. */
function firecallAlerts(environment: EnvironmentConfig | undefined): AlertSettings | undefined {
  if (!environment?.firecall) return environment?.alerts;
  const notify = environment.firecall.notify;
  const email = environment.alerts.email;
  return {
    webhooks: [...environment.alerts.webhooks, ...notify.webhooks],
    ...(email ? { email: { ...email, to: [...email.to, ...notify.email] } } : {}),
  };
}

/** `lockstep firecall ca ENV`: the environment's CA public key, created on first use. */
export async function firecallCaPublicKey(context: FirecallContext, env: string): Promise<{ env: string; publicKey: string }> {
  const config = await requireConfig(context.store.read);
  policyOf(config, env);
  return { env, publicKey: await caKey(context, env) };
}

/** The CA's public key; its creation is an audit event. */
async function caKey(context: FirecallContext, env: string): Promise<string> {
  const { publicKey, created } = await context.ca.publicKey(env);
  if (created) {
    await context.store.transaction((repo) =>
      repo.appendAudit({ at: context.now().toISOString(), actor: 'lockstep', action: 'firecall.ca_created', target: `env:${env}`, details: { publicKey } }),
    );
  }
  return publicKey;
}

/** A fire-call request as the API takes it. */
type OpenFirecallRequest = { env: string; reason: string; publicKey: string; ttl?: string | undefined; hosts?: string[] | undefined; from?: string | undefined; override?: boolean | undefined };

/**
 * Opens a fire call: every check first. Where the environment's
 * firecall.require_approval asks for an approver (and no admin overrides),
 * records the request awaiting approval and signs nothing; else one
 * transaction signs, records and audits; then the alert.
 */
export async function openFirecall(context: FirecallContext, principal: UserPrincipal, request: OpenFirecallRequest): Promise<OpenFirecallResponse> {
  const config = await requireConfig(context.store.read);
  const policy = policyOf(config, request.env);
  requireEnvironmentScope(principal, request.env);
  const ttl = firecallTtl(request.ttl, policy.max_ttl, request.env);
  const key = parsePublicKeyLine(request.publicKey);
  const from = request.from === undefined ? null : checkSourceAddress(request.from);
  const envHosts = (await context.store.read.listHosts(request.env)).map((host) => host.name);
  const unknown = (request.hosts ?? []).filter((host) => !envHosts.includes(host));
  if (unknown.length > 0) throw new LockstepError('bad-input', `--host ${unknown.join(', ')}: not a host of ${request.env} (hosts: ${envHosts.join(', ') || 'none'})`);
  if (request.override) await requireOverride(context, principal, request.env, request.reason, 'firecall', { keyType: key.type });
  await caKey(context, request.env);

  const now = wholeSecond(context.now());
  const hosts = request.hosts ? [...new Set(request.hosts)].sort() : null;
  const awaiting = policy.require_approval && request.override !== true;
  const overridden = policy.require_approval && request.override === true;
  const requested = (id: number): FirecallRow => ({
    id, env: request.env, requested_by: principal.name, reason: request.reason, key_id: firecallKeyId(id, principal.name), principals: JSON.stringify(policy.principals),
    hosts: hosts ? JSON.stringify(hosts) : null, source_address: from, certificate: '', opened_at: now.toISOString(), expires_at: now.toISOString(),
    closed_at: null, closed_by: null, close_note: null, reconciled_at: null, reconciled_by: null, reconcile_mode: null, reconcile_version: null,
    approval: awaiting ? 'awaiting' : overridden ? 'overridden' : null, requested_at: now.toISOString(), public_key: key.line, ttl_ms: ttl,
    approved_by: null, approved_at: null, override_reason: overridden ? request.reason : null,
  });

  if (awaiting) {
    // Refused now rather than at the approval: the approver could do nothing about a key that does not load.
    await context.ca.checkPublicKey(key.line);
    // The request waits as long as a deployment waits for its approvals.
    const expiresAt = new Date(now.getTime() + environmentOf(config, request.env).approvals.expire_after).toISOString();
    const row = await context.store.transaction(async (repo) => {
      const row = { ...requested(await repo.next('firecall')), expires_at: expiresAt };
      await repo.insertFirecall(row);
      await repo.appendAudit({
        at: row.requested_at ?? row.opened_at, actor: principal.name, action: 'firecall.requested', target: `env:${request.env}`,
        details: { firecall: row.id, reason: request.reason, ttl: formatDuration(ttl), principals: policy.principals, hosts, from, keyType: key.type, requestExpiresAt: expiresAt },
      });
      return row;
    });
    context.alerts.dispatch(
      {
        kind: 'firecall.requested', env: request.env, at: now.toISOString(),
        summary: `fire call ${row.id} on ${request.env} requested by ${principal.name} for ${formatDuration(ttl)}: ${request.reason}; an approver other than ${principal.name} approves it: lockstep firecall approve ${row.id}`,
        details: { firecall: row.id, requestedBy: principal.name, reason: request.reason, requestExpiresAt: expiresAt, hosts, from },
      },
      firecallAlerts(config.environments[request.env]),
    );
    return { firecall: firecallView(row), certificate: null, hosts: hosts ?? envHosts };
  }

  const row = await context.store.transaction(async (repo) => {
    const signed = await signCertificate(context, repo, requested(await repo.next('firecall')), now, principal.name);
    await repo.insertFirecall(signed);
    if (overridden) {
      await repo.appendAudit({ at: signed.opened_at, actor: principal.name, action: 'firecall.override', target: `env:${request.env}`, details: { firecall: signed.id, reason: request.reason, overridden: 'firecall.require_approval' } });
    }
    return signed;
  });
  announceOpened(context, config, row, envHosts);
  return { firecall: firecallView(row), certificate: row.certificate, hosts: hosts ?? envHosts };
}

/**
 * Approves a fire call awaiting approval. Separation of duties as for
 * deployments: an approver or admin, never its requester. The certificate is
 * signed now, valid for the ttl asked for counted from now, and announced.
 */
export async function approveFirecall(context: FirecallContext, principal: UserPrincipal, id: number): Promise<OpenFirecallResponse> {
  const existing = await requireFirecall(context.store.read, id);
  requireEnvironmentScope(principal, existing.env);
  const config = await requireConfig(context.store.read);
  const policy = policyOf(config, existing.env);
  if (existing.approval !== 'awaiting') throw new LockstepError('conflict', `fire call ${id} is not awaiting approval (it is ${firecallState(factsOf(existing)).replace(/_/g, ' ')})`);
  const refusal = approvalRefusal(principal, ['approver', 'admin'], [{ name: existing.requested_by, because: `${principal.name} requested fire call ${id} and cannot approve it` }]);
  if (refusal) throw new LockstepError('forbidden', refusal);
  const now = wholeSecond(context.now());
  if (Date.parse(existing.expires_at) <= now.getTime()) {
    throw new LockstepError('refused', `the request for fire call ${id} expired at ${existing.expires_at} (approvals.expire_after); request it again: lockstep firecall open ${existing.env}`);
  }
  await caKey(context, existing.env);
  const row = await context.store.transaction(async (repo) => {
    const at = now.toISOString();
    // The audit append comes first: it holds the chain head's lock, so of two approvers at once the second reads the first's outcome.
    await repo.appendAudit({ at, actor: principal.name, action: 'firecall.approved', target: `env:${existing.env}`, details: { firecall: id, requestedBy: existing.requested_by, reason: existing.reason } });
    const current = await repo.firecall(id);
    if (current?.approval !== 'awaiting') throw new LockstepError('conflict', `fire call ${id} was decided meanwhile`);
    // A max_ttl lowered since the request caps the certificate too.
    const ttl = Math.min(current.ttl_ms ?? policy.max_ttl, policy.max_ttl);
    const signed = await signCertificate(context, repo, { ...current, ttl_ms: ttl, approval: 'approved', approved_by: principal.name, approved_at: at }, now, principal.name);
    const { certificate, opened_at, expires_at, approval, approved_by, approved_at } = signed;
    await repo.updateFirecall(id, { certificate, opened_at, expires_at, approval, approved_by, approved_at });
    return signed;
  });
  const envHosts = (await context.store.read.listHosts(row.env)).map((host) => host.name);
  announceOpened(context, config, row, envHosts);
  return { firecall: firecallView(row), certificate: row.certificate, hosts: row.hosts ? (JSON.parse(row.hosts) as string[]) : envHosts };
}

/** Whole seconds: the certificate's window is exactly the recorded one. */
function wholeSecond(at: Date): Date {
  return new Date(Math.floor(at.getTime() / 1000) * 1000);
}

/** Signs a fire call's certificate, valid from `opened` for its ttl, and audits the opening; inside the caller's transaction. */
async function signCertificate(context: FirecallContext, repo: WriteRepo, row: FirecallRow, opened: Date, actor: string): Promise<FirecallRow> {
  const key = parsePublicKeyLine(row.public_key ?? '');
  const expires = new Date(opened.getTime() + (row.ttl_ms ?? 0));
  const principals = JSON.parse(row.principals) as string[];
  const hosts = row.hosts ? (JSON.parse(row.hosts) as string[]) : null;
  const certificate = await context.ca.sign(row.env, {
    publicKey: key.line, keyId: row.key_id, serial: row.id, principals, validFrom: opened, validTo: expires, sourceAddress: row.source_address ?? undefined,
  });
  const signed: FirecallRow = { ...row, certificate, opened_at: opened.toISOString(), expires_at: expires.toISOString() };
  await repo.appendAudit({
    at: signed.opened_at, actor, action: 'firecall.opened', target: `env:${row.env}`,
    details: {
      firecall: row.id, keyId: row.key_id, reason: row.reason, principals, hosts, from: row.source_address, expiresAt: signed.expires_at, keyType: key.type,
      ...(row.approval !== null ? { requestedBy: row.requested_by, approval: row.approval, approvedBy: row.approved_by } : {}),
    },
  });
  return signed;
}

/** Tells the environment's alert channels that a certificate was issued (an override loudly), and wakes its agents. */
function announceOpened(context: FirecallContext, config: Config, row: FirecallRow, envHosts: readonly string[]): void {
  const view = firecallView(row);
  const ttl = formatDuration(Date.parse(view.expiresAt) - Date.parse(view.openedAt));
  const overridden = row.approval === 'overridden';
  context.alerts.dispatch(
    {
      kind: overridden ? 'firecall.override' : 'firecall.opened', env: row.env, at: view.openedAt,
      summary: overridden
        ? `${row.requested_by} overrode the approval fire calls need on ${row.env}: fire call ${row.id} opened for ${ttl}: ${row.reason}`
        : `fire call ${row.id} opened on ${row.env} by ${row.requested_by}${row.approved_by ? ` (approved by ${row.approved_by})` : ''} for ${ttl}: ${row.reason}`,
      details: {
        firecall: view.id, keyId: view.keyId, requestedBy: row.requested_by, reason: row.reason, expiresAt: view.expiresAt, hosts: view.hosts, from: view.from,
        ...(row.approval !== null ? { approval: row.approval, approvedBy: row.approved_by } : {}),
      },
    },
    firecallAlerts(config.environments[row.env]),
  );
  wakeAgents(context, envHosts);
}

/**
 * Closes a fire call: its serial goes into every host's revocation list and
 * the hosts end its sessions. Waits a little for the hosts to confirm.
 */
export async function closeFirecall(context: FirecallContext, principal: UserPrincipal, id: number, note: string | undefined): Promise<CloseFirecallResponse> {
  const existing = await requireFirecall(context.store.read, id);
  requireEnvironmentScope(principal, existing.env);
  if (existing.approval === 'awaiting') {
    throw new LockstepError('conflict', `fire call ${id} awaits approval and has no certificate to revoke; unless approved (lockstep firecall approve ${id}) it expires at ${existing.expires_at}`);
  }
  const policy = (await currentConfig(context.store.read))?.environments[existing.env]?.firecall;
  if (existing.closed_at === null && policy?.require_note && !note?.trim()) {
    throw new LockstepError('bad-input', `${existing.env} requires a post-mortem note to close a fire call (firecall.require_note): lockstep firecall close ${id} --note TEXT`);
  }
  const row = await recordClose(context, existing, principal.name, note ?? null);
  if (!row) {
    const current = await requireFirecall(context.store.read, id);
    throw new LockstepError('conflict', `fire call ${id} was already closed at ${current.closed_at ?? '?'} by ${current.closed_by ?? '?'}`);
  }
  return { firecall: firecallView(row), hosts: await waitForRevocation(context, row.env) };
}

/** Closes the fire calls whose certificates expired, and expires the requests nobody approved in time (the server's sweeper calls this every second). */
export async function closeExpiredFirecalls(context: FirecallContext): Promise<void> {
  const now = context.now();
  for (const row of await context.store.read.openFirecalls()) {
    if (!firecallExpired(factsOf(row), now)) continue;
    if (row.approval === 'awaiting') await expireRequest(context, row);
    else await recordClose(context, row, 'lockstep', 'the certificate expired');
  }
}

/** Rolls back an expiry whose request was decided meanwhile. */
class ExpiredMeanwhile extends Error {}

/** A request nobody approved before approvals.expire_after: closed with nothing to revoke nor reconcile (no certificate was signed). */
async function expireRequest(context: FirecallContext, row: FirecallRow): Promise<void> {
  const at = context.now().toISOString();
  await context.store.transaction(async (repo) => {
    // After the audit append (the chain head's lock): an approval committed meanwhile is seen, and this rolls back.
    await repo.appendAudit({ at, actor: 'lockstep', action: 'firecall.request_expired', target: `env:${row.env}`, details: { firecall: row.id, requestedBy: row.requested_by, requestExpiresAt: row.expires_at } });
    if ((await repo.firecall(row.id))?.approval !== 'awaiting') throw new ExpiredMeanwhile();
    const note = 'the request expired without approval';
    await repo.updateFirecall(row.id, { approval: 'expired', closed_at: at, closed_by: 'lockstep', close_note: note, reconciled_at: at, reconciled_by: 'lockstep' });
  }).catch((error: unknown) => {
    if (!(error instanceof ExpiredMeanwhile)) throw error;
  });
}

/** Closes one fire call if it is still open (false: someone else closed it first); audits, alerts and wakes the agents. */
async function recordClose(context: FirecallContext, row: FirecallRow, actor: string, note: string | null): Promise<FirecallRow | undefined> {
  const at = context.now().toISOString();
  const closed = await context.store.transaction(async (repo) => {
    const current = await repo.firecall(row.id);
    if (!current || current.closed_at !== null) return undefined;
    await repo.updateFirecall(row.id, { closed_at: at, closed_by: actor, close_note: note });
    await repo.appendAudit({ at, actor, action: 'firecall.closed', target: `env:${row.env}`, details: { firecall: row.id, keyId: row.key_id, note, expired: actor === 'lockstep' } });
    return { ...current, closed_at: at, closed_by: actor, close_note: note };
  });
  if (!closed) return undefined;
  const config = await currentConfig(context.store.read);
  context.alerts.dispatch(
    {
      kind: 'firecall.closed', env: row.env, at,
      summary: `fire call ${row.id} on ${row.env} closed by ${actor}${note ? ` (${note})` : ''}; reconcile its changes: lockstep firecall reconcile ${row.id} --revert | --adopt --version V`,
      details: { firecall: row.id, keyId: row.key_id, closedBy: actor, note },
    },
    firecallAlerts(config?.environments[row.env]),
  );
  wakeAgents(context, (await context.store.read.listHosts(row.env)).map((host) => host.name));
  return closed;
}

/** Waits until every enrolled, recently seen host of the environment installed its current trust (or the wait ends). */
async function waitForRevocation(context: FirecallContext, env: string): Promise<CloseFirecallResponse['hosts']> {
  const deadline = Date.now() + CLOSE_WAIT_MS;
  const hosts = (await context.store.read.listHosts(env)).filter((host) => host.enrolled_at !== null);
  for (;;) {
    const expected = new Map<string, string>();
    for (const host of hosts) expected.set(host.name, (await firecallTrust(context, host.name, env)).revision);
    const applied = new Map((await context.store.read.firecallHosts(hosts.map((host) => host.name))).map((row) => [row.host, row]));
    const result = hosts.map((host) => {
      const row = applied.get(host.name);
      const revoked = row !== undefined && row.revision === expected.get(host.name) && row.error === null;
      const online = host.last_seen_at !== null && context.now().getTime() - Date.parse(host.last_seen_at) <= context.onlineWindowMs;
      const detail = revoked ? 'revoked; sessions ended' : row?.error ? `not installed: ${row.error}` : online ? 'not confirmed yet' : 'offline: revoked when its agent is back';
      return { host: host.name, revoked, detail, waiting: !revoked && online && !row?.error };
    });
    if (!result.some((host) => host.waiting) || Date.now() >= deadline) return result.map(({ host, revoked, detail }) => ({ host, revoked, detail }));
    await context.notifier.wait(keys.firecall(env), Math.min(250, deadline - Date.now()), context.shutdown);
  }
}

/**
 * Marks a closed fire call reconciled: its changes were reverted (`revert`)
 * or made into a release (`adopt`, with the version) that goes through test.
 */
export async function reconcileFirecall(context: FirecallContext, principal: UserPrincipal, id: number, request: { mode: 'revert' | 'adopt'; version?: string | undefined }): Promise<{ firecall: FirecallView; outcome: string }> {
  const row = await requireFirecall(context.store.read, id);
  requireEnvironmentScope(principal, row.env);
  if (row.closed_at === null) throw new LockstepError('conflict', `fire call ${id} is still open; close it first: lockstep firecall close ${id}`);
  if (row.reconciled_at !== null) throw new LockstepError('conflict', `fire call ${id} was already reconciled (${row.reconcile_mode ?? '?'}) at ${row.reconciled_at} by ${row.reconciled_by ?? '?'}`);
  const outcome = await reconcileChanges(context, principal, row, request);
  const at = context.now().toISOString();
  const done = await context.store.transaction(async (repo) => {
    const current = await repo.firecall(id);
    if (!current || current.reconciled_at !== null) throw new LockstepError('conflict', `fire call ${id} was reconciled meanwhile`);
    const patch = { reconciled_at: at, reconciled_by: principal.name, reconcile_mode: request.mode, reconcile_version: request.version ?? null };
    await repo.updateFirecall(id, patch);
    await repo.appendAudit({ at, actor: principal.name, action: 'firecall.reconciled', target: `env:${row.env}`, details: { firecall: id, mode: request.mode, version: request.version ?? null, outcome } });
    return { ...current, ...patch };
  });
  return { firecall: firecallView(done), outcome };
}

/** How long `reconcile --revert` waits for the hosts to restore their baseline. */
const RECONCILE_WAIT_MS = 120_000;

/**
 * Acts on the drift attributed to the fire call (first seen while it was open):
 * `revert` has every host restore its baseline at those paths and waits for
 * them; `adopt` makes release `version` from the changed release files, which
 * goes through the promotion gate like any release. Throws (leaving the fire
 * call unreconciled) when a host could not revert or the changes cannot be adopted.
 */
async function reconcileChanges(context: FirecallContext, principal: UserPrincipal, firecall: FirecallRow, request: { mode: 'revert' | 'adopt'; version?: string | undefined }): Promise<string> {
  const items = (await context.store.read.driftItems({ env: firecall.env, states: OPEN_DRIFT_STATES })).filter((item) => item.firecall_id === firecall.id);
  if (items.length === 0) return `no drift was seen under fire call ${firecall.id}`;
  const reason = `fire call ${firecall.id}: ${firecall.reason}`;
  const byHost = new Map<string, DriftItemRow[]>();
  for (const item of items) byHost.set(item.host, [...(byHost.get(item.host) ?? []), item]);
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  if (request.mode === 'revert') {
    const commands: CommandView[] = [];
    for (const [host, hostItems] of byHost) {
      commands.push(...(await createCommands(context, principal.name, [host], { kind: 'drift-revert', paths: hostItems.map((item) => item.path), reason })));
    }
    const finished = await Promise.all(commands.map((command) => waitForCommand(context, command.id, RECONCILE_WAIT_MS, new AbortController().signal)));
    const failed = finished.filter((view) => view.ok !== true);
    if (failed.length > 0) {
      const why = failed.map((view) => `${view.host}: ${view.error ?? (view.state === 'failed' ? 'failed' : `no answer within ${RECONCILE_WAIT_MS / 1000} s`)}`);
      throw new LockstepError('failed', `fire call ${firecall.id} stays unreconciled: ${why.join('; ')}; fix that and run the reconcile again`);
    }
    return `reverted ${count(items.length, 'path')} on ${count(byHost.size, 'host')}`;
  }
  const watched = items.filter((item) => item.scope === 'watch');
  if (watched.length > 0) {
    const first = watched[0] as DriftItemRow;
    throw new LockstepError(
      'refused',
      `fire call ${firecall.id} also changed watched paths, which cannot be part of a release (${watched.map((item) => `${item.host}:${item.path}`).slice(0, 5).join(', ')}); accept or revert them first (lockstep drift accept ${first.host} --path ${first.path} --reason TEXT, or lockstep drift revert ${first.host} --path ${first.path}), then reconcile again`,
    );
  }
  // Every host must carry the same changes: one release is made from them.
  const changesOf = (hostItems: readonly DriftItemRow[]) => JSON.stringify(hostItems.map((item) => [item.path, item.actual]).sort());
  const [[source, sourceItems], ...others] = [...byHost] as [[string, DriftItemRow[]], ...[string, DriftItemRow[]][]];
  const different = others.filter(([, hostItems]) => changesOf(hostItems) !== changesOf(sourceItems)).map(([host]) => host);
  if (different.length > 0) {
    throw new LockstepError('refused', `fire call ${firecall.id} changed release files differently on ${source} and ${different.join(', ')}; revert the hosts whose changes are not wanted (lockstep drift revert ${different[0] ?? ''}), then reconcile again`);
  }
  const version = request.version ?? '';
  const adopted = await adoptDrift(context, principal, source, version, reason, (item) => item.firecall_id === firecall.id);
  if (others.length > 0) {
    const at = context.now().toISOString();
    await context.store.transaction(async (repo) => {
      for (const [, hostItems] of others) for (const item of hostItems) await repo.updateDriftItem(item.id, { adopted_into: adopted.release.id, reason });
      await repo.appendAudit({ at, actor: principal.name, action: 'drift.adopted', target: `env:${firecall.env}`, details: { firecall: firecall.id, release: adopted.release.id, hosts: others.map(([host]) => host) } });
    });
  }
  return `adopted ${count(sourceItems.length, 'path')} from ${source} into release ${adopted.release.version} (${adopted.release.id.slice(0, 12)}); deploy it to ${adopted.firstEnv ?? 'the first environment'} first`;
}

/** The fire call open in `env` at `at`, for drift detection to attribute what it finds then. */
export async function openFirecallFor(repo: FirecallReadRepo, env: string, at: Date): Promise<{ id: number } | null> {
  const time = at.getTime();
  for (const row of await repo.listFirecalls({ env, limit: 50 })) {
    if (!firecallIssued(row)) continue;
    const end = Math.min(Date.parse(row.expires_at), row.closed_at ? Date.parse(row.closed_at) : Infinity);
    if (Date.parse(row.opened_at) <= time && time < end) return { id: row.id };
  }
  return null;
}

/** The fire call that keeps an environment from being clean, for `lockstep status`. */
export async function firecallSummary(repo: FirecallReadRepo, env: string): Promise<FirecallSummary | null> {
  const open = (await repo.openFirecalls()).find((row) => row.env === env && firecallIssued(row));
  const row = open ?? (await repo.unreconciledFirecall(env));
  if (!row) return null;
  return { id: row.id, state: open ? 'open' : 'unreconciled', requestedBy: row.requested_by, reason: row.reason, expiresAt: row.expires_at };
}

/** `lockstep firecall list`. */
export async function listFirecalls(context: FirecallContext, env: string | undefined, limit: number): Promise<FirecallView[]> {
  return (await context.store.read.listFirecalls({ env, limit })).map((row) => firecallView(row));
}

/** `lockstep firecall show ID`: the fire call, the logins and refusals sshd logged, and the transcripts. */
export async function showFirecall(context: FirecallContext, id: number): Promise<FirecallShowResponse> {
  const row = await requireFirecall(context.store.read, id);
  const records = await context.store.read.firecallRecords(id);
  const events: FirecallShowResponse['events'] = [];
  const logins: FirecallShowResponse['logins'] = [];
  const transcripts = new Map<string, { host: string; name: string; text: string }>();
  for (const record of records) {
    if (record.kind === 'sshd') {
      const event = sshdEventOf(record.text);
      events.push({ host: record.host, at: record.at, kind: event?.kind ?? 'other', line: record.text });
      if (event?.kind === 'login') logins.push({ host: record.host, at: record.at, user: event.user ?? '', from: event.from ?? '' });
    } else {
      const key = `${record.host}\u0000${record.name}`;
      const transcript = transcripts.get(key) ?? { host: record.host, name: record.name, text: '' };
      transcript.text += record.text;
      transcripts.set(key, transcript);
    }
  }
  const byTime = (a: { at: string }, b: { at: string }) => a.at.localeCompare(b.at);
  return { firecall: firecallView(row), certificate: row.certificate || null, logins: logins.sort(byTime), events: events.sort(byTime), transcripts: [...transcripts.values()] };
}

// ---- agents ----

const krlCache = new Map<string, Buffer>();

/** The trust one host must install; its revision changes only when its content does. */
export async function firecallTrust(context: FirecallContext, host: string, env: string): Promise<FirecallTrust> {
  const config = await currentConfig(context.store.read);
  const policy = config?.environments[env]?.firecall;
  if (!policy) return withRevision({ enabled: false, caPublicKey: null, principals: [], krl: '', reloadCommand: null, endSessions: [] });
  const caPublicKey = await caKey(context, env);
  const firecalls = (await context.store.read.listFirecalls({ env, limit: REVOCATION_HISTORY })).map(factsOf);
  const revoked = revocationsFor(host, firecalls);
  const cacheKey = JSON.stringify([env, caPublicKey, revoked.serials, revoked.keyIds]);
  let krl = krlCache.get(cacheKey);
  if (!krl) {
    krl = await context.ca.revocationList(env, revoked);
    if (krlCache.size > 1000) krlCache.clear();
    krlCache.set(cacheKey, krl);
  }
  // The KRL's bytes carry the time it was generated: the revision hashes what it revokes instead.
  return withRevision({ enabled: true, caPublicKey, principals: policy.principals, krl: krl.toString('base64'), reloadCommand: policy.sshd_reload, endSessions: revoked.endSessions }, cacheKey);
}

function withRevision(trust: Omit<FirecallTrust, 'revision'>, krlKey = ''): FirecallTrust {
  const revision = createHash('sha256').update(JSON.stringify({ ...trust, krl: krlKey })).digest('hex').slice(0, 32);
  return { revision, ...trust };
}

/** GET /agent/firecall: answers when the host's trust differs from `since`, else when `waitMs` passed. */
export async function pollFirecallTrust(context: FirecallContext, host: string, env: string, since: string | undefined, waitMs: number, signal: AbortSignal): Promise<FirecallTrust> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const trust = await firecallTrust(context, host, env);
    const remaining = deadline - Date.now();
    if (trust.revision !== since || remaining <= 0 || signal.aborted) return trust;
    // Config changes and other servers' writes are picked up on the recheck.
    await context.notifier.wait(keys.host(host), Math.min(remaining, 5_000), signal);
  }
}

/** POST /agent/firecall: what the host installed, and what it recorded (pieces of other environments' fire calls are dropped). */
export async function recordFirecallReport(context: FirecallContext, host: string, env: string, report: FirecallAgentReport): Promise<void> {
  const at = context.now().toISOString();
  const ids = [...new Set(report.records.map((record) => record.firecallId))];
  const allowed = new Set<number>();
  for (const id of ids) if ((await context.store.read.firecall(id))?.env === env) allowed.add(id);
  await context.store.transaction(async (repo) => {
    if (report.revision !== undefined) await repo.setFirecallHost({ host, revision: report.revision, applied_at: at, error: report.error ?? null });
    await repo.appendFirecallRecords(
      report.records
        .filter((record) => allowed.has(record.firecallId))
        .map((record) => ({ firecall_id: record.firecallId, host, kind: record.kind, name: record.name, byte_offset: record.offset, at, text: record.text })),
    );
  });
  context.notifier.notify(keys.firecall(env));
}

// ---- views ----

function factsOf(row: FirecallRow): FirecallFacts {
  return {
    id: row.id, env: row.env, keyId: row.key_id, serial: row.id, hosts: row.hosts ? (JSON.parse(row.hosts) as string[]) : null,
    expiresAt: row.expires_at, closedAt: row.closed_at, reconciledAt: row.reconciled_at, approval: row.approval,
  };
}

function firecallView(row: FirecallRow): FirecallView {
  return {
    id: row.id, env: row.env, state: firecallState(factsOf(row)), requestedBy: row.requested_by, reason: row.reason, keyId: row.key_id, serial: row.id,
    principals: JSON.parse(row.principals) as string[], hosts: row.hosts ? (JSON.parse(row.hosts) as string[]) : null, from: row.source_address,
    openedAt: row.opened_at, expiresAt: row.expires_at, closedAt: row.closed_at, closedBy: row.closed_by, closeNote: row.close_note,
    reconciledAt: row.reconciled_at, reconciledBy: row.reconciled_by, reconcileMode: row.reconcile_mode, reconcileVersion: row.reconcile_version,
    requestedAt: row.requested_at ?? row.opened_at, approval: row.approval, approvedBy: row.approved_by, approvedAt: row.approved_at, overrideReason: row.override_reason,
  };
}

async function requireFirecall(repo: FirecallReadRepo, id: number): Promise<FirecallRow> {
  const row = await repo.firecall(id);
  if (!row) throw new LockstepError('not-found', `fire call ${id} does not exist; list them with: lockstep firecall list`);
  return row;
}

function wakeAgents(context: ServerContext, hosts: readonly string[]): void {
  for (const host of hosts) context.notifier.notify(keys.host(host));
}
