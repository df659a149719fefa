/**
 * The audit trail's read routes: the export (JSON lines of events and
 * checkpoints in seq order), the public key that verifies checkpoints, and
 * the anchor file. All need the viewer role.
 */
import { Readable } from 'node:stream';
import { readAnchorFile } from '../../audit/anchor-file.js';
import { checkpointLine, eventLine, type ExportHeader } from '../../audit/audit-record.js';
import { formatPublicKey, keyIdOf } from '../../audit/checkpoint.js';
import { LockstepError } from '../../core/errors.js';
import type { AuditReadRepo } from '../../store/audit-repo.js';
import { checkpointRecordOf, type AuditTrailOptions } from './audit-checkpointer.js';
import type { ServerContext } from '../context.js';
import type { RouteHandlers } from '../http/route-binder.js';

const PAGE = 1000;

/** The handlers of the audit trail routes. */
export function auditRouteHandlers(context: ServerContext, audit: AuditTrailOptions): RouteHandlers {
  return {
    auditPubkey: async () => ({ publicKey: formatPublicKey(audit.key.publicKey), keyId: keyIdOf(audit.key.publicKey) }),
    auditAnchor: async (_input, _request, reply) => reply.type('application/x-ndjson').send(await readAnchorFile(audit.anchorFile)),
    auditExport: async ({ query }, _request, reply) => {
      const { since } = query;
      if (since !== undefined && Number.isNaN(Date.parse(since))) throw new LockstepError('bad-input', `since "${since}" is not an ISO 8601 time`);
      const lines = exportLines(context.store.read, since === undefined ? null : new Date(since).toISOString(), context.now());
      return reply.type('application/x-ndjson').send(Readable.from(lines));
    },
  };
}

/**
 * The export: a header with the chain head, then events and checkpoints up
 * to the head in seq order. With `since`, it starts at the last checkpoint
 * before the first event dated at or after `since`, so the first event is anchored.
 */
async function* exportLines(repo: AuditReadRepo, since: string | null, now: Date): AsyncGenerator<string> {
  const head = await repo.auditHead();
  const header: ExportHeader = { type: 'export', version: 1, exportedAt: now.toISOString(), since, head };
  yield `${JSON.stringify(header)}\n`;
  let after = 0;
  if (since !== null) {
    const first = await repo.firstAuditSeqSince(since);
    if (first === undefined) return;
    const start = await repo.lastAuditCheckpoint(first);
    if (start) {
      yield `${checkpointLine(checkpointRecordOf(start))}\n`;
      after = Number(start.seq);
    }
  }
  let eventAfter = after;
  let checkpointAfter = after;
  let events = await repo.listAudit({ afterSeq: eventAfter, limit: PAGE });
  let checkpoints = await repo.listAuditCheckpoints({ afterSeq: checkpointAfter, limit: PAGE });
  let eventIndex = 0;
  let checkpointIndex = 0;
  for (;;) {
    if (eventIndex === events.length && events.length === PAGE) {
      eventAfter = Number(events[events.length - 1]!.seq);
      events = await repo.listAudit({ afterSeq: eventAfter, limit: PAGE });
      eventIndex = 0;
    }
    if (checkpointIndex === checkpoints.length && checkpoints.length === PAGE) {
      checkpointAfter = Number(checkpoints[checkpoints.length - 1]!.seq);
      checkpoints = await repo.listAuditCheckpoints({ afterSeq: checkpointAfter, limit: PAGE });
      checkpointIndex = 0;
    }
    const event = events[eventIndex];
    const checkpoint = checkpoints[checkpointIndex];
    const eventSeq = event && Number(event.seq) <= head.seq ? Number(event.seq) : undefined;
    const checkpointSeq = checkpoint && Number(checkpoint.seq) <= head.seq ? Number(checkpoint.seq) : undefined;
    if (eventSeq === undefined && checkpointSeq === undefined) return;
    // A checkpoint follows the event it covers.
    if (eventSeq !== undefined && (checkpointSeq === undefined || eventSeq <= checkpointSeq)) {
      const row = event!;
      yield `${eventLine({ seq: eventSeq, at: row.at, actor: row.actor, action: row.action, target: row.target, details: JSON.parse(row.details) as unknown, prevHash: row.prev_hash, hash: row.hash })}\n`;
      eventIndex++;
    } else {
      yield `${checkpointLine(checkpointRecordOf(checkpoint!))}\n`;
      checkpointIndex++;
    }
  }
}
