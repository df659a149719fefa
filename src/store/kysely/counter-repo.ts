/** Named counters over Kysely. */
import { sql } from 'kysely';
import type { CounterWriteRepo } from '../counter-repo.js';
import type { Executor } from './executor.js';

/** The next value of a counter; other areas take their ids from it. */
export async function nextValue(db: Executor, counter: string): Promise<number> {
  // One upsert: it locks the row in PostgreSQL (also on a counter's first use,
  // where a separate UPDATE-then-INSERT let two transactions both insert) and
  // runs under SQLite's single writer, so concurrent transactions never share a value.
  const row = await db
    .insertInto('counters')
    .values({ name: counter, value: 1 })
    .onConflict((conflict) => conflict.column('name').doUpdateSet({ value: sql`counters.value + 1` }))
    .returning('value')
    .executeTakeFirstOrThrow();
  return Number(row.value);
}

/** Counters over `db`. */
export function kyselyCounterRepo(db: Executor): CounterWriteRepo {
  return { next: (counter) => nextValue(db, counter) };
}
