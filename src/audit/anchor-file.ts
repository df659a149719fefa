/**
 * The anchor file: every checkpoint appended as one JSON line and fsynced,
 * outside the database (ideally on another disk or host), so that a log cut
 * short or rewritten in the database still disagrees with it.
 */
import { open, readFile } from 'node:fs/promises';
import { checkpointLine } from './audit-record.js';
import type { CheckpointRecord } from './checkpoint.js';
import { ifMissing } from '../core/errors.js';

/** Appends checkpoints to the anchor file and waits until they are on disk. */
export async function appendToAnchorFile(file: string, checkpoints: readonly CheckpointRecord[]): Promise<void> {
  if (checkpoints.length === 0) return;
  const handle = await open(file, 'a', 0o600);
  try {
    await handle.appendFile(checkpoints.map((checkpoint) => `${checkpointLine(checkpoint)}\n`).join(''));
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The anchor file's text, or '' when it does not exist yet. */
export async function readAnchorFile(file: string): Promise<string> {
  return (await ifMissing(readFile(file, 'utf8'))) ?? '';
}
