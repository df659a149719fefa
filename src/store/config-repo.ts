/** The applied lockstep.yaml versions. */
import type { Selectable } from 'kysely';
import type { ConfigsTable } from './schema.js';

/** One applied configuration. */
export type ConfigRow = Selectable<ConfigsTable>;

/** Reads of applied configurations. */
export interface ConfigReadRepo {
  latestConfig(): Promise<ConfigRow | undefined>;
}

/** Reads and writes of applied configurations. */
export interface ConfigWriteRepo extends ConfigReadRepo {
  /** Stores a configuration under the next version and returns it. */
  insertConfig(row: Omit<ConfigRow, 'version'>): Promise<number>;
}
