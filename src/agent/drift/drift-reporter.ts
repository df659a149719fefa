/**
 * Delivers drift reports to the server one at a time, in order, retrying
 * transient failures. Before a report goes out, the content of drifted
 * release files it names is uploaded (so `drift adopt` can build a release
 * from them); an upload failure is only logged. A queued scan or watch report
 * that a newer one supersedes is dropped unsent: each report is a complete set.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { DriftReport } from '../../api/schemas.js';
import { retry } from '../retry.js';

/** Largest drifted file whose content is uploaded (the server's cap). */
export const MAX_UPLOAD_BYTES = 64 * 1024 * 1024;

/** Where reports and uploads go (the server, or a collector in tests). */
export interface DriftSink {
  driftReport(report: DriftReport, signal: AbortSignal): Promise<void>;
  uploadBlob(hash: string, content: Uint8Array, signal: AbortSignal): Promise<unknown>;
}

/** A file whose content should reach the server before the report naming it. */
export interface PendingUpload {
  readonly sha256: string;
  /** The file under --root. */
  readonly file: string;
  readonly size: number;
}

interface Queued {
  readonly report: DriftReport;
  readonly uploads: readonly PendingUpload[];
  readonly done: () => void;
}

/** The ordered report queue of one agent. */
export class DriftReporter {
  readonly #queue: Queued[] = [];
  readonly #uploaded = new Set<string>();
  #running = false;

  constructor(
    private readonly sink: DriftSink,
    private readonly logger: Logger,
    private readonly signal: AbortSignal,
  ) {}

  /** Queues a report; resolves once it was delivered, given up or superseded. Never rejects. */
  send(report: DriftReport, uploads: readonly PendingUpload[] = []): Promise<void> {
    return new Promise((resolve) => {
      if (isRoutine(report)) {
        for (let index = this.#queue.length - 1; index >= 0; index--) {
          const queued = this.#queue[index] as Queued;
          if (!isRoutine(queued.report)) continue;
          this.#queue.splice(index, 1);
          queued.done();
        }
      }
      this.#queue.push({ report, uploads, done: resolve });
      void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      for (let next = this.#queue.shift(); next !== undefined; next = this.#queue.shift()) {
        try {
          await this.#deliver(next);
        } finally {
          next.done();
        }
      }
    } finally {
      this.#running = false;
    }
  }

  async #deliver({ report, uploads }: Queued): Promise<void> {
    for (const upload of uploads) await this.#upload(upload);
    if (this.signal.aborted) return;
    try {
      await retry(() => this.sink.driftReport(report, this.signal), {
        signal: this.signal,
        onRetry: (error, attempt, delayMs) => this.logger.warn({ err: error, attempt, delayMs }, 'drift report failed; retrying'),
      });
      this.logger.debug({ findings: report.findings.length, cause: report.cause.kind }, 'drift reported');
    } catch (error) {
      if (this.signal.aborted) return;
      // Refused (an older server, a report it does not accept): retrying cannot help; the next scan sends a fresh one.
      this.logger.error({ err: error, cause: report.cause }, 'the server refused a drift report');
    }
  }

  async #upload(upload: PendingUpload): Promise<void> {
    if (this.#uploaded.has(upload.sha256) || upload.size > MAX_UPLOAD_BYTES || this.signal.aborted) return;
    try {
      const content = await readFile(upload.file);
      // The file may have changed again since it was hashed: the server would refuse it anyway.
      if (createHash('sha256').update(content).digest('hex') !== upload.sha256) return;
      await retry(() => this.sink.uploadBlob(upload.sha256, content, this.signal), { signal: this.signal, maxAttempts: 4 });
      this.#uploaded.add(upload.sha256);
    } catch (error) {
      if (this.signal.aborted) return;
      this.logger.warn({ err: error, file: upload.file }, 'could not upload the content of a drifted file; `drift adopt` will lack it');
    }
  }
}

function isRoutine(report: DriftReport): boolean {
  return report.cause.kind === 'scan' || report.cause.kind === 'watch';
}
