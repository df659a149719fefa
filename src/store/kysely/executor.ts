/** What every area of the Kysely store runs its queries on (the database, or the transaction under way), and how it inserts many rows. */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../schema.js';

/** The database or a transaction; an area's queries do not care which. */
export type Executor = Kysely<Database> | Transaction<Database>;

/** Rows per multi-row INSERT: SQLite limits the number of bound parameters per statement. */
const CHUNK_ROWS = 100;

/** Runs `insert` on successive slices of `rows` small enough for every database. */
export async function inChunks<T>(rows: readonly T[], insert: (chunk: T[]) => Promise<unknown>): Promise<void> {
  for (let start = 0; start < rows.length; start += CHUNK_ROWS) await insert(rows.slice(start, start + CHUNK_ROWS));
}
