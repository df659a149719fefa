/** The agent command queue over Kysely. */
import type { AgentCommandRow, AgentCommandWriteRepo } from '../agent-command-repo.js';
import { nextValue } from './counter-repo.js';
import type { Executor } from './executor.js';

/** The command queue over `db`. */
export function kyselyAgentCommandRepo(db: Executor): AgentCommandWriteRepo {
  const pendingCommand = async (host: string) => {
    const row = await db.selectFrom('agent_commands').selectAll().where('host', '=', host).where('state', '=', 'pending').orderBy('id').limit(1).executeTakeFirst();
    return row ? commandRow(row) : undefined;
  };
  return {
    async agentCommand(id) {
      const row = await db.selectFrom('agent_commands').selectAll().where('id', '=', id).executeTakeFirst();
      return row ? commandRow(row) : undefined;
    },
    pendingCommand,
    async insertAgentCommand(row) {
      const id = await nextValue(db, 'agent_command');
      await db.insertInto('agent_commands').values({ ...row, id }).execute();
      return id;
    },
    async updateAgentCommand(id, patch) {
      await db.updateTable('agent_commands').set(patch).where('id', '=', id).execute();
    },
    async claimPendingCommand(host, at) {
      const pending = await pendingCommand(host);
      if (!pending) return undefined;
      // Conditional on the state: of two servers claiming the same row, one updates it and the other gets nothing.
      const row = await db
        .updateTable('agent_commands')
        .set({ state: 'sent', sent_at: at })
        .where('id', '=', pending.id)
        .where('state', '=', 'pending')
        .returningAll()
        .executeTakeFirst();
      return row ? commandRow(row) : undefined;
    },
    async requeueSentCommands(host) {
      const result = await db.updateTable('agent_commands').set({ state: 'pending', sent_at: null }).where('host', '=', host).where('state', '=', 'sent').executeTakeFirst();
      return Number(result.numUpdatedRows);
    },
  };
}

/** Integer columns may come back as strings (PostgreSQL bigint). */
function commandRow(row: AgentCommandRow): AgentCommandRow {
  return { ...row, id: Number(row.id) };
}
