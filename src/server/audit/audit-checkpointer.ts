/**
 * Signs and anchors the audit trail. Every transaction that appends events
 * stores a checkpoint over its new head in the same transaction (`signer()`,
 * injected into the store), so no committed event is unsigned. A tail left by
 * an older server (or a log never signed) is still signed here when due: at
 * every `every`-th event, and once the oldest unsigned event is `intervalMs`
 * old. The newest checkpoint is anchored (appended to the anchor file with
 * fsync, and sent to every webhook of the applied configuration) at least
 * every `anchorIntervalMs` and at once when it covers a policy, token or
 * fire-call event. It never signs a chain that does not verify since the
 * last checkpoint.
 */
import { auditHash, GENESIS_HASH } from '../../core/audit-hash.js';
import { SerialQueue } from '../../core/serial-queue.js';
import { CLOCK_SLACK_MS, PER_TRANSACTION } from '../../audit/verify-log.js';
import { appendToAnchorFile, readAnchorFile } from '../../audit/anchor-file.js';
import { parseAuditLines } from '../../audit/audit-record.js';
import { signCheckpoint, type CheckpointClaim, type CheckpointRecord } from '../../audit/checkpoint.js';
import type { SigningKey } from '../../audit/signing-key.js';
import type { AuditCheckpointRow, AuditEventRow, AuditSigner } from '../../store/store.js';
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
  /** A new checkpoint waits at most this long to be anchored; default 60 s. */
  readonly anchorIntervalMs?: number | undefined;
}

/** Actions whose checkpoint is anchored at once: policy (the applied configuration and overrides of it), tokens, fire calls. */
const ANCHOR_AT_ONCE = ['config.', 'token.', 'firecall.', 'deployment.override'];

/** True when an event with `action` must be anchored as soon as it is signed. */
export function anchorsAtOnce(action: string): boolean {
  return ANCHOR_AT_ONCE.some((prefix) => action.startsWith(prefix));
}

/** A checkpoint row as a record. */
export function checkpointRecordOf(row: AuditCheckpointRow): CheckpointRecord {
  return { type: 'checkpoint', seq: Number(row.seq), hash: row.hash, at: row.at, every: Number(row.every), intervalMs: Number(row.interval_ms), keyId: row.key_id, signature: row.signature };
}

/** A checkpoint record as a row. */
function checkpointRowOf(record: CheckpointRecord): AuditCheckpointRow {
  return { seq: record.seq, hash: record.hash, at: record.at, every: record.every, interval_ms: record.intervalMs, key_id: record.keyId, signature: record.signature };
}

/** Creates the checkpoints that are due. */
export class AuditCheckpointer {
  private readonly queue = new SerialQueue();
  /** The newest checkpoint anchored by this server, and when. */
  private anchoredSeq = 0;
  private anchoredAt = 0;
  /** A signed checkpoint covers a policy, token or fire-call event: anchor on the next run. */
  private anchorNow = false;
  private anchorRead = false;
  /** The seq of the last unsigned tail reported, so a tail is alerted once, not every second. */
  private reportedTail = 0;

  constructor(
    private readonly context: ServerContext,
    private readonly options: AuditTrailOptions,
  ) {}

  /**
   * Signs what is due (with `flush`, also a tail that is not yet due, as at
   * shutdown). Calls never overlap; returns the checkpoints this server stored.
   */
  run(flush = false): Promise<CheckpointRecord[]> {
    return this.queue.run(async () => {
      const stored = await this.checkpointDue(flush);
      await this.anchorDue(flush || stored.length > 0);
      return stored;
    });
  }

  /** The signer the store calls in each transaction that appends audit events (`every` and `intervalMs` 0: per transaction). */
  signer(): AuditSigner {
    return {
      sign: (head) => {
        if (head.seq <= this.anchoredSeq) {
          // The head moved back behind a checkpoint this server anchored: the tail was cut. Never sign the forged head.
          this.reportBroken({ seq: head.seq, problem: `truncated: the chain head (seq ${head.seq}) is behind the anchored checkpoint at seq ${this.anchoredSeq}` }).catch((error: unknown) =>
            this.context.logger.error({ err: error }, 'alerting on a broken audit chain failed'),
          );
          return undefined;
        }
        const record = signCheckpoint({ seq: head.seq, hash: head.hash, at: this.context.now().toISOString(), every: PER_TRANSACTION, intervalMs: PER_TRANSACTION }, this.options.key.privateKey);
        return checkpointRowOf(record);
      },
      committed: (_checkpoint, actions) => {
        if (!actions.some(anchorsAtOnce)) return;
        this.anchorNow = true;
        this.run().catch((error: unknown) => this.context.logger.error({ err: error }, 'anchoring an audit checkpoint failed'));
      },
      refused: (broken) => {
        this.reportBroken(broken).catch((error: unknown) => this.context.logger.error({ err: error }, 'alerting on a broken audit chain failed'));
      },
    };
  }

  /** Anchors the newest checkpoint when one is new and anchoring is due (or forced). */
  private async anchorDue(force: boolean): Promise<void> {
    if (!this.anchorRead) {
      // What an earlier run anchored: the signer refuses to sign a head behind it.
      this.anchoredSeq = Math.max(this.anchoredSeq, lastAnchoredSeq(await readAnchorFile(this.options.anchorFile)));
      this.anchorRead = true;
    }
    const nowMs = this.context.now().getTime();
    const due = force || this.anchorNow || nowMs - this.anchoredAt >= (this.options.anchorIntervalMs ?? 60_000);
    if (!due) return;
    this.anchorNow = false;
    const newest = await this.context.store.read.lastAuditCheckpoint();
    if (!newest || Number(newest.seq) <= this.anchoredSeq) return;
    const record = checkpointRecordOf(newest);
    await appendToAnchorFile(this.options.anchorFile, [record]);
    this.anchoredSeq = record.seq;
    this.anchoredAt = nowMs;
    this.context.logger.info({ seq: record.seq }, 'audit checkpoint anchored');
    // Anchors go to webhooks only (a machine keeps them); at one a minute they are no mail for people.
    const webhooksOnly = (await this.alertSettings()).map((settings) => ({ ...settings, email: undefined }));
    this.context.alerts.dispatch({ kind: 'audit.checkpoint', env: '*', summary: `audit checkpoint at seq ${record.seq}`, at: record.at, details: { ...record } }, webhooksOnly);
  }

  /** Logs and alerts a chain the server refuses to sign. */
  private async reportBroken(broken: { seq: number; problem: string }): Promise<void> {
    this.context.logger.error({ seq: broken.seq, problem: broken.problem }, 'audit chain does not verify; no checkpoint signed (run lockstep audit verify)');
    this.context.alerts.dispatch(
      { kind: 'audit.chain_broken', env: '*', summary: `audit chain broken at seq ${broken.seq}: ${broken.problem}`, at: this.context.now().toISOString(), details: { ...broken } },
      await this.alertSettings(),
    );
  }

  private async checkpointDue(flush: boolean): Promise<CheckpointRecord[]> {
    const { store, logger } = this.context;
    const head = await store.read.auditHead();
    const last = await store.read.lastAuditCheckpoint();
    const signedSeq = last ? Number(last.seq) : 0;
    if (head.seq <= signedSeq) return [];
    if (last && Number(last.every) === PER_TRANSACTION) {
      // Every transaction is signed as it commits: a committed tail was written outside the server. Never sign it.
      if (this.reportedTail !== head.seq) await this.reportBroken({ seq: signedSeq + 1, problem: `unsigned tail: events ${signedSeq + 1}..${head.seq} after the last signed checkpoint were written outside the server` });
      this.reportedTail = head.seq;
      return [];
    }
    const events = await this.unsignedEvents(signedSeq, head.seq);
    const broken = chainProblem(events, signedSeq, last?.hash ?? GENESIS_HASH, last ? Date.parse(last.at) : undefined);
    if (broken) {
      await this.reportBroken(broken);
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
      const inserted = await store.transaction((repo) => repo.insertAuditCheckpoint(checkpointRowOf(record)));
      if (inserted) stored.push(record);
    }
    if (stored.length > 0) logger.info({ seq: stored[stored.length - 1]!.seq, checkpoints: stored.length }, 'audit checkpoint signed');
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

/** The highest seq the anchor file holds a checkpoint for (0 for none). */
function lastAnchoredSeq(text: string): number {
  let seq = 0;
  for (const entry of parseAuditLines(text)) if ('record' in entry && entry.record.type === 'checkpoint') seq = Math.max(seq, entry.record.seq);
  return seq;
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
