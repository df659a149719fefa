/** The PostgreSQL backend: a connection pool; several servers may share the database. */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from '../schema.js';
import { createKyselyStore } from '../kysely/kysely-store.js';
import type { Store } from '../store.js';

const INT8_OID = 20;

/** Connects to PostgreSQL at `url` (postgres://…) as a store. */
export function openPostgresStore(url: string): Store {
  const pool = new pg.Pool({
    connectionString: url,
    max: 10,
    // bigint columns hold counters and sizes well below 2^53; read them as numbers.
    types: { getTypeParser: (oid: number, format?: string) => (oid === INT8_OID ? Number : pg.types.getTypeParser(oid, format as 'text')) },
  } as pg.PoolConfig);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return createKyselyStore(db, { sharedByServers: true });
}
