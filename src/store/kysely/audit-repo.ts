/** The audit chain and its checkpoints over Kysely. */
import { sql } from 'kysely';
import { auditHash } from '../../core/audit-hash.js';
import { canonicalJson } from '../../core/manifest.js';
import type { AuditCheckpointRow, AuditEventRow, AuditSigner, AuditWriteRepo } from '../audit-repo.js';
import type { Executor } from './executor.js';

/** What a transaction appended to the chain: the head before its first event, its last event, and their actions. */
export interface AppendedAudit {
  before?: { seq: number; hash: string };
  last?: AuditEventRow;
  readonly actions: string[];
}

/** The audit chain over `db`; with `appended`, records what appendAudit adds (for the transaction's checkpoint). */
export function kyselyAuditRepo(db: Executor, appended?: AppendedAudit): AuditWriteRepo {
  return {
    auditSince(since, actions) {
      if (actions.length === 0) return Promise.resolve([]);
      return db.selectFrom('audit_events').selectAll().where('at', '>=', since).where('action', 'in', [...actions]).orderBy('seq').execute();
    },
    listAudit(options) {
      return db
        .selectFrom('audit_events')
        .selectAll()
        .where('seq', '>', options.afterSeq ?? 0)
        .orderBy('seq')
        .limit(options.limit)
        .execute();
    },
    async auditHead() {
      const row = await db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirstOrThrow();
      return { seq: Number(row.seq), hash: row.hash };
    },
    async listAuditCheckpoints(options) {
      const rows = await db
        .selectFrom('audit_checkpoints')
        .selectAll()
        .where('seq', '>', options.afterSeq ?? 0)
        .orderBy('seq')
        .limit(options.limit)
        .execute();
      return rows.map(checkpointRow);
    },
    async lastAuditCheckpoint(beforeSeq) {
      let query = db.selectFrom('audit_checkpoints').selectAll();
      if (beforeSeq !== undefined) query = query.where('seq', '<', beforeSeq);
      const row = await query.orderBy('seq', 'desc').limit(1).executeTakeFirst();
      return row ? checkpointRow(row) : undefined;
    },
    async firstAuditSeqSince(at) {
      const row = await db.selectFrom('audit_events').select('seq').where('at', '>=', at).orderBy('seq').limit(1).executeTakeFirst();
      return row ? Number(row.seq) : undefined;
    },
    async appendAudit(event) {
      // Advancing the head first serializes writers: in PostgreSQL the UPDATE
      // holds the head's row lock until commit, so the chain cannot fork.
      const head = await db
        .updateTable('audit_head')
        .set({ seq: sql`seq + 1` })
        .where('id', '=', 1)
        .returning(['seq', 'hash'])
        .executeTakeFirstOrThrow();
      const seq = Number(head.seq);
      const details = JSON.parse(canonicalJson(event.details ?? {})) as unknown;
      const hash = auditHash(head.hash, { seq, at: event.at, actor: event.actor, action: event.action, target: event.target, details });
      const row: AuditEventRow = {
        seq,
        at: event.at,
        actor: event.actor,
        action: event.action,
        target: event.target,
        details: canonicalJson(details),
        prev_hash: head.hash,
        hash,
      };
      await db.insertInto('audit_events').values(row).execute();
      await db.updateTable('audit_head').set({ hash }).where('id', '=', 1).execute();
      if (appended) {
        appended.before ??= { seq: seq - 1, hash: head.hash };
        appended.last = row;
        appended.actions.push(row.action);
      }
      return row;
    },
    async insertAuditCheckpoint(row) {
      const result = await db
        .insertInto('audit_checkpoints')
        .values(row)
        .onConflict((conflict) => conflict.column('seq').doNothing())
        .executeTakeFirst();
      return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
    },
  };
}

/**
 * Signs the head a transaction left, in that transaction, unless the chain
 * before its first event is not the one last signed per transaction (events
 * were written, rewritten or cut outside the server): the server then refuses
 * to sign the forged chain, and the unsigned events are what `audit verify`
 * reports. A chain last signed by the periodic checkpointer (or never) is
 * taken as it is, so a log from before per-transaction signing continues.
 */
export async function signAppended(repo: AuditWriteRepo, signer: AuditSigner, appended: AppendedAudit): Promise<{ checkpoint: AuditCheckpointRow } | { problem: { seq: number; problem: string } } | undefined> {
  const { before, last } = appended;
  if (!before || !last) return undefined;
  const previous = await repo.lastAuditCheckpoint();
  if (previous && Number(previous.every) === 0 && (Number(previous.seq) !== before.seq || previous.hash !== before.hash)) {
    const signedSeq = Number(previous.seq);
    const problem =
      signedSeq < before.seq
        ? `unsigned tail: events ${signedSeq + 1}..${before.seq} after the last signed checkpoint were written outside the server`
        : signedSeq > before.seq
          ? `truncated: the chain head was moved back from seq ${signedSeq} to seq ${before.seq}`
          : `rewritten: the chain at seq ${signedSeq} is not the one signed there`;
    return { problem: { seq: Math.min(signedSeq, before.seq) + 1, problem } };
  }
  const checkpoint = signer.sign({ seq: Number(last.seq), hash: last.hash });
  if (!checkpoint) return undefined;
  await repo.insertAuditCheckpoint(checkpoint);
  return { checkpoint };
}

/** bigint columns may come back as strings; checkpoints hold numbers. */
function checkpointRow(row: AuditCheckpointRow): AuditCheckpointRow {
  return { ...row, seq: Number(row.seq), every: Number(row.every), interval_ms: Number(row.interval_ms) };
}
