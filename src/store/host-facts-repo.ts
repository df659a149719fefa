/** Host facts (OS, kernel, packages) for `lockstep parity`. */
import type { Selectable } from 'kysely';
import type { HostFactsTable } from './schema.js';

/** One host's latest facts. */
export type HostFactsRow = Selectable<HostFactsTable>;

/** Reads of host facts. */
export interface HostFactsReadRepo {
  /** The latest facts of these hosts (hosts that never reported have no row). */
  hostFacts(hosts: readonly string[]): Promise<HostFactsRow[]>;
}

/** Reads and writes of host facts. */
export interface HostFactsWriteRepo extends HostFactsReadRepo {
  /** Stores a host's latest facts, replacing what it reported before. */
  putHostFacts(row: HostFactsRow): Promise<void>;
}
