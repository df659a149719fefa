/** The command queue for agents besides deployments (drift scan, revert, accept). */
import type { Selectable } from 'kysely';
import type { AgentCommandsTable } from './schema.js';

/** One command. */
export type AgentCommandRow = Selectable<AgentCommandsTable>;

/** Reads of the command queue. */
export interface AgentCommandReadRepo {
  agentCommand(id: number): Promise<AgentCommandRow | undefined>;
  /** The host's oldest command that was not handed out yet. */
  pendingCommand(host: string): Promise<AgentCommandRow | undefined>;
}

/** Reads and writes of the command queue. */
export interface AgentCommandWriteRepo extends AgentCommandReadRepo {
  /** Inserts a command and returns its id. */
  insertAgentCommand(row: Omit<AgentCommandRow, 'id'>): Promise<number>;
  updateAgentCommand(id: number, patch: Partial<Pick<AgentCommandRow, 'state' | 'sent_at' | 'finished_at' | 'result'>>): Promise<void>;
  /** Marks the host's oldest pending command sent and returns it; a command is handed out once even with several servers. */
  claimPendingCommand(host: string, at: string): Promise<AgentCommandRow | undefined>;
  /** Hands the host's sent but unanswered commands out again (its agent restarted and lost them); returns how many. */
  requeueSentCommands(host: string): Promise<number>;
}
