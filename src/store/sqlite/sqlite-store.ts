/** The SQLite backend: one file in the data directory, WAL mode, one writer. */
import Sqlite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import type { Database } from '../schema.js';
import { createKyselyStore } from '../kysely/kysely-store.js';
import type { Store } from '../store.js';

/** Opens (creating if needed) a SQLite database file as a store. */
export function openSqliteStore(file: string): Store {
  const database = new Sqlite(file);
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = NORMAL');
  database.pragma('busy_timeout = 5000');
  database.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database }) });
  return createKyselyStore(db, { sharedByServers: false });
}
