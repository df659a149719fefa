/** Hosts: registration with one-time enrollment tokens, agent enrollment, and the agent's work poll. */
import { environmentOf, secretsInEnvOf } from '../../core/config.js';
import type { AgentCommand, AgentTask } from '../../api/schemas.js';
import { LockstepError } from '../../core/errors.js';
import { taskOf } from '../../core/rollout-machine.js';
import { blobsOf } from '../../core/manifest.js';
import { currentConfig, requireConfig } from '../config-service.js';
import { observeHostRelease } from '../deployments/deployment-service.js';
import { agentCommandOf } from '../drift/agent-command-service.js';
import { hostSettingsOf } from './host-settings.js';
import type { ServerContext } from '../context.js';
import { keys } from '../notifier.js';
import { manifestOf } from '../releases/release-service.js';
import { hashToken, newToken } from '../http/tokens.js';
import { secretsForEnvironment } from '../secrets/secret-service.js';

/** Registers a host in an environment and returns its one-time enrollment token, with the server's CA fingerprint the agent pins. */
export async function addHost(context: ServerContext, actor: string, name: string, env: string): Promise<{ host: string; env: string; enrollToken: string; caFingerprint: string | null }> {
  const config = await requireConfig(context.store.read);
  environmentOf(config, env);
  const enrollToken = newToken('enroll');
  const at = context.now().toISOString();
  await context.store.transaction(async (repo) => {
    const existing = await repo.host(name);
    if (existing) throw new LockstepError('conflict', `host ${name} already exists in ${existing.env}`);
    await repo.insertHost({ name, env, created_at: at, enrolled_at: null, last_seen_at: null, current_release_id: null, agent_version: null, health: null, health_detail: null, health_at: null });
    await repo.insertToken({ name: `enroll:${name}`, token_hash: hashToken(enrollToken), role: 'enroll', envs: JSON.stringify([env]), host: name, created_at: at, used_at: null, revoked_at: null });
    await repo.appendAudit({ at, actor, action: 'host.added', target: `host:${name}`, details: { env } });
  });
  return { host: name, env, enrollToken, caFingerprint: context.serverCa?.fingerprint ?? null };
}

/** Exchanges a one-time enrollment token for the agent's long-lived credential. */
export async function enroll(context: ServerContext, token: string, agentVersion: string | undefined): Promise<{ host: string; env: string; credential: string }> {
  const credential = newToken('agent');
  const at = context.now().toISOString();
  return context.store.transaction(async (repo) => {
    const row = await repo.tokenByHash(hashToken(token));
    if (!row || row.role !== 'enroll' || row.used_at !== null || row.revoked_at !== null || row.host === null) {
      throw new LockstepError('unauthorized', 'enrollment token is invalid or already used; create a new one with: lockstep host add NAME --env ENV');
    }
    const host = await repo.host(row.host);
    if (!host) throw new LockstepError('unauthorized', 'enrollment token is invalid or already used');
    await repo.updateToken(row.name, { used_at: at });
    const agentName = `agent:${host.name}`;
    const previous = await repo.tokenByName(agentName);
    if (previous) throw new LockstepError('conflict', `host ${host.name} is already enrolled`);
    await repo.insertToken({ name: agentName, token_hash: hashToken(credential), role: 'agent', envs: JSON.stringify([host.env]), host: host.name, created_at: at, used_at: null, revoked_at: null });
    await repo.updateHost(host.name, { enrolled_at: at, last_seen_at: at, agent_version: agentVersion ?? null });
    await repo.appendAudit({ at, actor: agentName, action: 'host.enrolled', target: `host:${host.name}`, details: { env: host.env, agentVersion: agentVersion ?? null } });
    return { host: host.name, env: host.env, credential };
  });
}

/**
 * Marks a host as seen, with the release its `current` points at and the
 * result of its continuous health checks; a host turning unhealthy is alerted on once.
 */
export async function recordHeartbeat(
  context: ServerContext,
  host: string,
  heartbeat: { currentReleaseId: string | null; agentVersion?: string | undefined; health?: { healthy: boolean; detail: string } | undefined },
): Promise<void> {
  const at = context.now().toISOString();
  const health = heartbeat.health;
  const { before, unhealthy: turnedUnhealthy } = await context.store.transaction(async (repo) => {
    const before = await repo.host(host);
    await repo.updateHost(host, {
      last_seen_at: at,
      current_release_id: heartbeat.currentReleaseId,
      ...(heartbeat.agentVersion ? { agent_version: heartbeat.agentVersion } : {}),
      ...(health ? { health: health.healthy ? 'healthy' : 'unhealthy', health_detail: health.detail, health_at: at } : {}),
    });
    return { before, unhealthy: health !== undefined && !health.healthy && before?.health !== 'unhealthy' ? before : undefined };
  });
  // A switch no report told of (the agent died between its switch and its report) is settled like a late report.
  if (before !== undefined && before.current_release_id !== heartbeat.currentReleaseId) await observeHostRelease(context, host, heartbeat.currentReleaseId);
  if (turnedUnhealthy && health) {
    const config = await requireConfig(context.store.read);
    context.alerts.dispatch(
      { kind: 'host.unhealthy', env: turnedUnhealthy.env, at, summary: `host ${host} in ${turnedUnhealthy.env} is unhealthy: ${health.detail}`, details: { host, detail: health.detail, release: heartbeat.currentReleaseId } },
      config.environments[turnedUnhealthy.env]?.alerts,
    );
  }
}

/** What a work poll answers: a deployment step first, else a command, and always the settings' revision. */
export interface Work {
  readonly task: AgentTask | null;
  readonly command: AgentCommand | null;
  readonly settingsRevision: string;
}

/**
 * Long-polls for the host's next task or command; both null when none arrived
 * within `waitMs` (at most half the offline window). A command is marked sent when handed out; tasks come first
 * (the agent runs commands only between tasks).
 */
export async function pollWork(context: ServerContext, host: string, env: string, waitMs: number, signal: AbortSignal): Promise<Work> {
  // An idle agent is heard from only when a poll starts or ends: answering within half the
  // offline window keeps a live agent from being judged offline, whatever --offline-after says.
  const deadline = Date.now() + Math.min(waitMs, context.onlineWindowMs / 2);
  const recheckMs = context.store.capabilities.sharedByServers ? 1_000 : 10_000;
  await touch(context, host);
  for (;;) {
    const task = await pendingTask(context, host);
    const command = task ? null : await context.store.transaction((repo) => repo.claimPendingCommand(host, context.now().toISOString()));
    const remaining = deadline - Date.now();
    if (task || command || signal.aborted || remaining <= 0) {
      if (!task && !command && !signal.aborted) await touch(context, host);
      const settingsRevision = hostSettingsOf(await currentConfig(context.store.read), env).revision;
      return { task, command: command ? agentCommandOf(command) : null, settingsRevision };
    }
    await context.notifier.wait(keys.host(host), Math.min(remaining, recheckMs), signal);
  }
}

async function pendingTask(context: ServerContext, host: string): Promise<AgentTask | null> {
  const pending = await context.store.read.pendingStep(host);
  if (!pending) return null;
  const config = await requireConfig(context.store.read);
  const env = config.environments[pending.deployment.env];
  const task = taskOf(
    { kind: pending.deployment.kind, releaseId: pending.deployment.release_id },
    { state: pending.step.state, fromReleaseId: pending.step.from_release_id, deadlineAt: pending.step.deadline_at },
  );
  const release = task.releaseId ? await context.store.read.release(task.releaseId) : undefined;
  if (!env || !release) throw new Error(`deployment #${pending.deployment.id} refers to a missing environment or release`);
  // The host switches only before its step's deadline; it counts the remaining time on its own clock (skew-proof).
  const deadlineAt = task.deadlineAt;
  return {
    deploymentId: Number(pending.deployment.id),
    kind: task.kind,
    deadlineAt,
    remainingMs: deadlineAt === null ? null : Math.max(0, Date.parse(deadlineAt) - context.now().getTime()),
    env: pending.deployment.env,
    releaseId: release.id,
    version: release.version,
    deployTo: config.deploy_to,
    keepReleases: config.keep_releases,
    vars: env.vars,
    // Only here, to a host of this environment, do secret values leave the server.
    secrets: await secretsForEnvironment(context, pending.deployment.env),
    secretsInEnv: secretsInEnvOf(config, pending.deployment.env),
    health: env.health,
    hooks: env.hooks,
  };
}

async function touch(context: ServerContext, host: string): Promise<void> {
  await context.store.transaction((repo) => repo.updateHost(host, { last_seen_at: context.now().toISOString() }));
}

/**
 * Which blobs and releases an environment's agents may fetch: only those of
 * releases that were deployed to it. Cached per release (manifests are immutable).
 */
export class FetchScope {
  private readonly blobsByRelease = new Map<string, ReadonlySet<string>>();

  constructor(private readonly context: ServerContext) {}

  /** Whether a release was ever deployed to `env`. */
  async releaseAllowed(env: string, releaseId: string): Promise<boolean> {
    return (await this.context.store.read.releaseEnvironment(releaseId, env)) !== undefined;
  }

  /** Whether a blob belongs to a release deployed to `env`. */
  async blobAllowed(env: string, hash: string): Promise<boolean> {
    for (const releaseId of await this.context.store.read.releaseIdsDeployedTo(env)) {
      if ((await this.blobsOf(releaseId))?.has(hash) === true) return true;
    }
    return false;
  }

  /** The blobs of a release deployed to `env` (one query: the bulk fetch checks its scope once per request); undefined when it was not. */
  async releaseBlobs(env: string, releaseId: string): Promise<ReadonlySet<string> | undefined> {
    return (await this.releaseAllowed(env, releaseId)) ? this.blobsOf(releaseId) : undefined;
  }

  private async blobsOf(releaseId: string): Promise<ReadonlySet<string> | undefined> {
    let blobs = this.blobsByRelease.get(releaseId);
    if (!blobs) {
      const row = await this.context.store.read.release(releaseId);
      if (!row) return undefined;
      blobs = new Set(blobsOf(manifestOf(row)));
      this.blobsByRelease.set(releaseId, blobs);
    }
    return blobs;
  }
}
