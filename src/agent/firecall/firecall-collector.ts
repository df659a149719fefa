/**
 * Collects what a fire call leaves on a host: sshd's log lines that name a
 * fire call's key id (logins, refusals) and the session transcripts the
 * recorder writes. It reads each file from where the last shipment ended;
 * offsets are committed (and remembered in the state dir) only once the
 * server stored the pieces, so nothing is lost when the server is away.
 */
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FirecallRecord } from '../../api/schemas.js';
import { writeFileAtomic } from '../../content/atomic-file.js';
import { transcriptNameParts } from './firecall-sessions.js';
import { ifMissing } from '../../core/errors.js';

/** The most one piece carries; the API allows 64 KiB of text. */
const PIECE_BYTES = 32 * 1024;
/** The most one collection reads of the sshd log. */
const LOG_BYTES = 1024 * 1024;
const MAX_RECORDS = 1000;

interface Offsets {
  log: { ino: number; offset: number } | null;
  transcripts: Record<string, number>;
}

/** Pieces to ship, and the offsets to remember once they are stored. */
export interface Collection {
  readonly records: FirecallRecord[];
  readonly offsets: Offsets;
}

/** Reads new sshd log lines and transcript bytes. */
export class FirecallCollector {
  private offsets: Offsets = { log: null, transcripts: {} };
  private readonly file: string;

  constructor(
    private readonly sshdLog: string,
    private readonly transcriptDir: string,
    stateDir: string,
  ) {
    this.file = join(stateDir, 'firecall-offsets.json');
  }

  /** Loads the remembered offsets; a new host starts at the log's end (old lines predate its fire calls). */
  async open(): Promise<void> {
    const text = await ifMissing(readFile(this.file, 'utf8'));
    const saved = text === undefined ? undefined : (JSON.parse(text) as Offsets);
    if (saved) this.offsets = saved;
    else {
      const info = await ifMissing(stat(this.sshdLog));
      this.offsets = { log: info ? { ino: info.ino, offset: info.size } : null, transcripts: {} };
    }
  }

  /** What is new since the committed offsets. */
  async collect(): Promise<Collection> {
    const records: FirecallRecord[] = [];
    const offsets: Offsets = { log: this.offsets.log, transcripts: { ...this.offsets.transcripts } };
    offsets.log = await this.collectLog(records);
    for (const name of ((await ifMissing(readdir(this.transcriptDir))) ?? []).sort()) {
      const parts = transcriptNameParts(name);
      const firecallId = parts ? Number(/^firecall-(\d+)-/.exec(parts.keyId)?.[1]) : NaN;
      if (!parts || !Number.isInteger(firecallId)) continue;
      let offset = offsets.transcripts[name] ?? 0;
      const size = (await ifMissing(stat(join(this.transcriptDir, name))))?.size ?? 0;
      while (offset < size && records.length < MAX_RECORDS) {
        const bytes = await readRange(join(this.transcriptDir, name), offset, Math.min(PIECE_BYTES, size - offset));
        if (bytes.length === 0) break;
        records.push({ firecallId, kind: 'transcript', name, offset, text: bytes.toString('utf8') });
        offset += bytes.length;
      }
      offsets.transcripts[name] = offset;
    }
    return { records, offsets };
  }

  /** Remembers offsets after the server stored a collection. */
  async commit(collection: Collection): Promise<void> {
    if (JSON.stringify(collection.offsets) === JSON.stringify(this.offsets)) return;
    this.offsets = collection.offsets;
    await writeFileAtomic(this.file, JSON.stringify(this.offsets), 0o600);
  }

  private async collectLog(records: FirecallRecord[]): Promise<Offsets['log']> {
    const info = await ifMissing(stat(this.sshdLog));
    if (!info) return this.offsets.log;
    // A rotated or truncated log starts again from its beginning.
    let offset = this.offsets.log && this.offsets.log.ino === info.ino && this.offsets.log.offset <= info.size ? this.offsets.log.offset : 0;
    if (offset >= info.size) return { ino: info.ino, offset };
    const bytes = await readRange(this.sshdLog, offset, Math.min(LOG_BYTES, info.size - offset));
    // Only whole lines; a line still being written waits for the next round.
    const end = bytes.lastIndexOf(0x0a) + 1;
    let start = 0;
    while (start < end && records.length < MAX_RECORDS) {
      const next = bytes.indexOf(0x0a, start) + 1;
      const text = bytes.subarray(start, next - 1).toString('utf8');
      const id = /\bfirecall-(\d+)-/.exec(text);
      if (id) records.push({ firecallId: Number(id[1]), kind: 'sshd', name: `sshd:${info.ino}`, offset: offset + start, text: text.slice(0, 4096) });
      start = next;
    }
    offset += start;
    return { ino: info.ino, offset };
  }
}

async function readRange(path: string, position: number, length: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, position);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
