/** What every area of the Kysely store runs its queries on: the database, or the transaction under way. */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../schema.js';

/** The database or a transaction; an area's queries do not care which. */
export type Executor = Kysely<Database> | Transaction<Database>;
