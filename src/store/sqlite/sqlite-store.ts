/** The SQLite backend: one file in the data directory, WAL mode, one writer. */
import Sqlite from 'better-sqlite3';
import { Kysely, SqliteDialect, type SqliteDatabase } from 'kysely';
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
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: reusingStatements(database) }) });
  return createKyselyStore(db, { sharedByServers: false });
}

/** How many prepared statements are kept; the SQL of `in (…)` lists varies with their length, so the set is not closed. */
const KEPT_STATEMENTS = 512;

/**
 * `database` as Kysely's SQLite driver uses it, with each statement
 * prepared once per SQL text: the driver calls prepare() for every query,
 * which was the largest single cost of a busy server (16% of its CPU during
 * a rolling deployment, bench/README.md). One connection runs one query at a
 * time, so a statement is never used by two queries at once.
 */
function reusingStatements(database: Sqlite.Database): SqliteDatabase {
  const statements = new Map<string, Sqlite.Statement>();
  return {
    close: () => database.close(),
    prepare(sql) {
      let statement = statements.get(sql);
      if (statement === undefined) {
        if (statements.size >= KEPT_STATEMENTS) statements.clear();
        statement = database.prepare(sql);
        statements.set(sql, statement);
      }
      return statement;
    },
  };
}
