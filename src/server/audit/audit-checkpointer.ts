/**
 * Signs audit checkpoints when they are due: at every `every`-th event after
 * the last checkpoint, and at the head once the oldest unsigned event is
 * `intervalMs` old. Each new checkpoint is stored, appended to the anchor
 * file (fsync) and sent to every webhook of the applied configuration.
 * It never signs a chain that does not verify since the last checkpoint.
 */
import { auditHash, GENESIS_HASH } from '../../core/audit-hash.js';
import { SerialQueue } from '../../core/serial-queue.js';
import { CLOCK_SLACK_MS } from '../../audit/verify-log.js';
import { appendToAnchorFile } from '../../audit/anchor-file.js';
import { signCheckpoint, type CheckpointClaim, type CheckpointRecord } from '../../audit/checkpoint.js';
import type { SigningKey } from '../../audit/signing-key.js';
import type { AuditCheckpointRow, AuditEventRow } from '../../store/store.js';
import type { AlertSettings } from '../alerts/alert-channels.js';
import { currentConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';

/** How the server checkpoints its audit trail. */
export interface AuditTrailOptions {
  readonly key: SigningKey;
  /** At most this many events between checkpoints. */
  readonly every: number;
  /** A new event waits at most this long for a checkpoint. */
  readonly intervalMs: number;
  /** The anchor file (JSON lines, appended and fsynced). */
  readonly anchorFile: string;
}

/** A checkpoint row as a record. */
export function checkpointRecordOf(row: AuditCheckpointRow): CheckpointRecord {
  return { type: 'checkpoint', seq: Number(row.seq), hash: row.hash, at: row.at, every: Number(row.every), intervalMs: Number(row.interval_ms), keyId: row.key_id, signature: row.signature };
}

/** Creates the checkpoints that are due. */
export class AuditCheckpointer {
  private readonly queue = new SerialQueue();

  constructor(
    private readonly context: ServerContext,
    private readonly options: AuditTrailOptions,
  ) {}

  /**
   * Signs what is due (with `flush`, also a tail that is not yet due, as at
   * shutdown). Calls never overlap; returns the checkpoints this server stored.
   */
  run(flush = false): Promise<CheckpointRecord[]> {
    return this.queue.run(() => this.checkpointDue(flush));
  }

  private async checkpointDue(flush: boolean): Promise<CheckpointRecord[]> {
    const { store, logger } = this.context;
    const head = await store.read.auditHead();
    const last = await store.read.lastAuditCheckpoint();
    const signedSeq = last ? Number(last.seq) : 0;
    if (head.seq <= signedSeq) return [];
    const events = await this.unsignedEvents(signedSeq, head.seq);
    const broken = chainProblem(events, signedSeq, last?.hash ?? GENESIS_HASH, last ? Date.parse(last.at) : undefined);
    if (broken) {
      logger.error({ seq: broken.seq, problem: broken.problem }, 'audit chain does not verify; no checkpoint signed (run lockstep audit verify)');
      this.context.alerts.dispatch(
        { kind: 'audit.chain_broken', env: '*', summary: `audit chain broken at seq ${broken.seq}: ${broken.problem}`, at: this.context.now().toISOString(), details: { ...broken } },
        await this.alertSettings(),
      );
      return [];
    }
    const now = this.context.now();
    const claims: CheckpointClaim[] = [];
    const claim = (event: AuditEventRow) => claims.push({ seq: Number(event.seq), hash: event.hash, at: now.toISOString(), every: this.options.every, intervalMs: this.options.intervalMs });
    let index = this.options.every - 1;
    for (; index < events.length; index += this.options.every) claim(events[index]!);
    const unsignedFrom = index - this.options.every + 1;
    const firstUnsigned = events[unsignedFrom];
    const lastEvent = events[events.length - 1];
    if (firstUnsigned && lastEvent && (flush || now.getTime() - Date.parse(firstUnsigned.at) >= this.options.intervalMs)) claim(lastEvent);

    const stored: CheckpointRecord[] = [];
    for (const next of claims) {
      const record = signCheckpoint(next, this.options.key.privateKey);
      const inserted = await store.transaction((repo) =>
        repo.insertAuditCheckpoint({ seq: record.seq, hash: record.hash, at: record.at, every: record.every, interval_ms: record.intervalMs, key_id: record.keyId, signature: record.signature }),
      );
      if (inserted) stored.push(record);
    }
    if (stored.length === 0) return stored;
    await appendToAnchorFile(this.options.anchorFile, stored);
    const newest = stored[stored.length - 1]!;
    logger.info({ seq: newest.seq, checkpoints: stored.length }, 'audit checkpoint signed');
    this.context.alerts.dispatch(
      { kind: 'audit.checkpoint', env: '*', summary: `audit checkpoint at seq ${newest.seq}`, at: newest.at, details: { ...newest } },
      await this.alertSettings(),
    );
    return stored;
  }

  private async unsignedEvents(afterSeq: number, upToSeq: number): Promise<AuditEventRow[]> {
    const events: AuditEventRow[] = [];
    let after = afterSeq;
    while (after < upToSeq) {
      const page = await this.context.store.read.listAudit({ afterSeq: after, limit: 1000 });
      for (const event of page) if (Number(event.seq) <= upToSeq) events.push(event);
      if (page.length < 1000) break;
      after = Number(page[page.length - 1]!.seq);
    }
    return events;
  }

  /** The alert settings of every environment of the applied config (the dispatcher sends to each channel once). */
  private async alertSettings(): Promise<AlertSettings[]> {
    const config = await currentConfig(this.context.store.read);
    return Object.values(config?.environments ?? {}).map((env) => env.alerts);
  }
}

/** The first break in the chain of `events` after `afterSeq`, if any. */
function chainProblem(events: readonly AuditEventRow[], afterSeq: number, afterHash: string, afterTime: number | undefined): { seq: number; problem: string } | undefined {
  let expected = afterSeq + 1;
  let prevHash = afterHash;
  for (const event of events) {
    const seq = Number(event.seq);
    if (seq !== expected) return { seq: expected, problem: `event ${expected} is missing` };
    if (event.prev_hash !== prevHash) return { seq, problem: 'does not link to the event before it' };
    if (afterTime !== undefined && Date.parse(event.at) < afterTime - CLOCK_SLACK_MS) return { seq, problem: 'dated before the last checkpoint' };
    const details = JSON.parse(event.details) as unknown;
    if (auditHash(event.prev_hash, { seq, at: event.at, actor: event.actor, action: event.action, target: event.target, details }) !== event.hash) return { seq, problem: 'contents do not match its hash' };
    prevHash = event.hash;
    expected++;
  }
  return undefined;
}
