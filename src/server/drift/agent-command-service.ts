/**
 * Agent commands (drift scan, revert, accept): created by people through the
 * API, handed to the host's agent in its work poll, answered by the agent
 * with a commandResult. The CLI long-polls a command until it finished.
 */
import type { AgentCommand, CommandResult, CommandView } from '../../api/schemas.js';
import { LockstepError, notFound } from '../../core/errors.js';
import type { AgentCommandRow, AgentCommandWriteRepo } from '../../store/agent-command-repo.js';
import type { ServerContext } from '../context.js';
import { keys } from '../notifier.js';

/** What a command asks, as stored (payload) besides its kind. */
export type CommandRequest =
  | { readonly kind: 'drift-scan'; readonly full: boolean }
  | { readonly kind: 'drift-revert'; readonly paths: readonly string[] | null; readonly reason: string | null }
  | { readonly kind: 'drift-accept'; readonly paths: readonly string[]; readonly reason: string }
  | { readonly kind: 'release-capture'; readonly version: string; readonly packages: boolean; readonly paths: readonly string[] };

/** The stored request of a command row. */
export function requestOf(row: AgentCommandRow): CommandRequest {
  return { kind: row.kind, ...(JSON.parse(row.payload) as object) } as CommandRequest;
}

/** Inserts a command for `host` inside the caller's transaction; the caller wakes the host after commit (wakeHost). */
export async function insertCommand(repo: AgentCommandWriteRepo, host: string, request: CommandRequest, actor: string, at: string): Promise<number> {
  const { kind, ...payload } = request;
  return repo.insertAgentCommand({ host, kind, payload: JSON.stringify(payload), state: 'pending', created_by: actor, created_at: at, sent_at: null, finished_at: null, result: null });
}

/** Wakes the host's long poll so that it picks its command up at once. */
export function wakeHost(context: ServerContext, host: string): void {
  context.notifier.notify(keys.host(host));
}

/** The command as the agent receives it: only what the protocol defines (a reason stays on the server). */
export function agentCommandOf(row: AgentCommandRow): AgentCommand {
  const request = requestOf(row);
  const id = Number(row.id);
  switch (request.kind) {
    case 'drift-scan':
      return { id, kind: 'drift-scan', full: request.full };
    case 'drift-revert':
      return { id, kind: 'drift-revert', paths: request.paths === null ? null : [...request.paths] };
    case 'drift-accept':
      return { id, kind: 'drift-accept', paths: [...request.paths] };
    case 'release-capture':
      return { id, kind: 'release-capture', packages: request.packages, paths: [...request.paths] };
  }
}

/** A command row as the API shows it. */
export function commandView(row: AgentCommandRow): CommandView {
  const request = requestOf(row);
  const result = row.result ? (JSON.parse(row.result) as CommandResult) : null;
  return {
    id: Number(row.id),
    host: row.host,
    kind: request.kind,
    state: row.state,
    paths: request.kind === 'drift-scan' || request.paths === null ? null : [...request.paths],
    createdBy: row.created_by,
    createdAt: row.created_at,
    sentAt: row.sent_at,
    finishedAt: row.finished_at,
    ok: result ? result.ok : null,
    error: result?.error ?? null,
    detail: result?.detail ?? null,
  };
}

/** Records an agent's answer to one of its host's commands (idempotent: a repeated answer changes nothing). */
export async function recordCommandResult(context: ServerContext, host: string, id: number, result: CommandResult): Promise<void> {
  const at = context.now().toISOString();
  await context.store.transaction(async (repo) => {
    const row = await repo.agentCommand(id);
    if (!row || row.host !== host) throw new LockstepError('forbidden', `command #${id} is not a command of host ${host}`);
    if (row.state === 'done' || row.state === 'failed') return;
    await repo.updateAgentCommand(id, { state: result.ok ? 'done' : 'failed', finished_at: at, result: JSON.stringify(result) });
    await repo.appendAudit({
      at,
      actor: `agent:${host}`,
      action: result.ok ? 'command.done' : 'command.failed',
      target: `host:${host}`,
      details: { command: id, kind: row.kind, error: result.error ?? null, detail: result.detail ?? null },
    });
  });
  context.notifier.notify(keys.command(id));
}

/** The command; with `waitMs`, waits until it finished or the time passed. */
export async function waitForCommand(context: ServerContext, id: number, waitMs: number, signal: AbortSignal): Promise<CommandView> {
  const deadline = Date.now() + waitMs;
  const recheckMs = context.store.capabilities.sharedByServers ? 500 : 5_000;
  for (;;) {
    const row = await context.store.read.agentCommand(id);
    if (!row) throw notFound(`no command #${id}`);
    const remaining = deadline - Date.now();
    if (row.state === 'done' || row.state === 'failed' || remaining <= 0 || signal.aborted) return commandView(row);
    await context.notifier.wait(keys.command(id), Math.min(remaining, recheckMs), signal);
  }
}
