/** Enrolled hosts: their environment, agent, current release and health. */
import type { Selectable } from 'kysely';
import type { HostsTable } from './schema.js';

/** One host. */
export type HostRow = Selectable<HostsTable>;

/** Reads of hosts. */
export interface HostReadRepo {
  host(name: string): Promise<HostRow | undefined>;
  /** By name; every host, or those of `env`. */
  listHosts(env?: string): Promise<HostRow[]>;
}

/** Reads and writes of hosts. */
export interface HostWriteRepo extends HostReadRepo {
  insertHost(row: HostRow): Promise<void>;
  updateHost(name: string, patch: Partial<Omit<HostRow, 'name' | 'env' | 'created_at'>>): Promise<void>;
}
