/**
 * The databases a store contract suite runs against: a SQLite file in a temp
 * dir and a real throwaway PostgreSQL server. Each `open()` gives a fresh,
 * empty (not yet migrated) store.
 */
import { join } from 'node:path';
import { openPostgresStore } from '../../src/store/postgres/postgres-store.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { startPostgres, type PostgresServer } from './postgres.js';
import { makeTempDir, type TempDir } from './tmp.js';

/** One database kind, set up once per suite. */
export interface StoreBackend {
  readonly name: string;
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  open(): Promise<Store>;
}

/** SQLite: one file per store in a temp dir. */
export function sqliteBackend(): StoreBackend {
  let dir: TempDir | undefined;
  let count = 0;
  return {
    name: 'sqlite',
    async setUp() {
      dir = await makeTempDir('lockstep-store-sqlite-');
    },
    async tearDown() {
      await dir?.remove();
    },
    async open() {
      if (!dir) throw new Error('setUp did not run');
      return openSqliteStore(join(dir.path, `store-${++count}.db`));
    },
  };
}

/** PostgreSQL: one server per suite, one database per store. */
export function postgresBackend(): StoreBackend {
  let server: PostgresServer | undefined;
  return {
    name: 'postgres',
    async setUp() {
      server = await startPostgres();
    },
    async tearDown() {
      await server?.stop();
    },
    async open() {
      if (!server) throw new Error('setUp did not run');
      return openPostgresStore(await server.createDatabase());
    },
  };
}

/** Every backend, for `for (const backend of storeBackends()) contract(backend)`. */
export function storeBackends(): StoreBackend[] {
  return [sqliteBackend(), postgresBackend()];
}

/** Runs `work` against a fresh migrated store of `backend`, closing it afterwards. */
export async function withStore(backend: StoreBackend, work: (store: Store) => Promise<void>): Promise<void> {
  const store = await backend.open();
  try {
    await store.migrate();
    await work(store);
  } finally {
    await store.close();
  }
}
