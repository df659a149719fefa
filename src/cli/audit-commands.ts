/** `lockstep audit pubkey | export | verify`: the signed audit trail, checked offline or live. */
import { readFile } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { parseAuditLines, type NumberedRecord } from '../audit/audit-record.js';
import { formatPublicKey, parsePublicKey } from '../audit/checkpoint.js';
import { verifyAuditLog, type VerifyResult } from '../audit/verify-log.js';
import type { LockstepClient } from '../client/lockstep-client.js';
import { formatDuration, parseDuration } from '../core/duration.js';
import { cannotRead, ifMissing, LockstepError } from '../core/errors.js';
import { json, line } from './output.js';

interface OutputOptions {
  readonly json?: boolean | undefined;
}

/** `lockstep audit pubkey`: the key that verifies checkpoints, as one line for --pubkey. */
export async function auditPubkey(client: LockstepClient, options: OutputOptions): Promise<void> {
  const key = await client.auditPubkey();
  if (options.json) return json(key);
  line(key.publicKey);
}

/** Turns --since (an ISO time, or a duration meaning "that long ago") into an ISO time. */
export function sinceTime(text: string, now: Date): string {
  const ms = parseDuration(text);
  if (ms !== undefined) return new Date(now.getTime() - ms).toISOString();
  if (/^\d{4}-\d{2}-\d{2}/.test(text) && !Number.isNaN(Date.parse(text))) return new Date(text).toISOString();
  throw new LockstepError('bad-input', `--since "${text}" is neither an ISO time (2030-01-31T12:00:00Z) nor a duration (24h, 7d)`);
}

/** `lockstep audit export [--since T]`: JSON lines on stdout. */
export async function auditExport(client: LockstepClient, since: string | undefined): Promise<void> {
  const stream = await client.auditExport(since === undefined ? undefined : sinceTime(since, new Date()));
  for await (const chunk of stream) {
    if (!process.stdout.write(chunk)) await new Promise((resolve) => process.stdout.once('drain', resolve));
  }
}

export interface VerifyCommandOptions extends OutputOptions {
  readonly pubkey?: string | undefined;
  readonly anchor?: string | undefined;
  readonly maxUnsignedAge?: string | undefined;
}

/**
 * `lockstep audit verify [FILE]`: checks an export file offline (needs --pubkey),
 * or without FILE the live server's log, with the server's key and anchor file
 * unless --pubkey and --anchor say otherwise. Exit 4 when verification fails.
 */
export async function auditVerify(file: string | undefined, options: VerifyCommandOptions, client: () => LockstepClient): Promise<void> {
  const maxUnsignedAgeMs = options.maxUnsignedAge === undefined ? undefined : parseDuration(options.maxUnsignedAge);
  if (options.maxUnsignedAge !== undefined && maxUnsignedAgeMs === undefined) throw new LockstepError('bad-input', `--max-unsigned-age "${options.maxUnsignedAge}" is not a duration such as 10m`);
  if (file !== undefined && options.pubkey === undefined) throw new LockstepError('bad-input', 'verifying a file needs --pubkey KEY (the line `lockstep audit pubkey` prints, or a file holding it)');

  let publicKey: KeyObject;
  let lines: NumberedRecord[];
  let anchor: NumberedRecord[] | undefined;
  if (file !== undefined) {
    publicKey = await readPublicKey(options.pubkey!);
    lines = parseAuditLines(await readInput(file, 'FILE'));
    if (options.anchor !== undefined) anchor = parseAuditLines(await readInput(options.anchor, '--anchor'));
  } else {
    const live = client();
    publicKey = options.pubkey !== undefined ? await readPublicKey(options.pubkey) : (parsePublicKey((await live.auditPubkey()).publicKey) ?? fail('the server sent a public key that is not Ed25519'));
    anchor = parseAuditLines(options.anchor !== undefined ? await readInput(options.anchor, '--anchor') : await live.auditAnchor());
    lines = parseAuditLines(await streamText(await live.auditExport()));
  }

  const result = verifyAuditLog(lines, { publicKey, now: new Date(), anchor, maxUnsignedAgeMs });
  report(result, formatPublicKey(publicKey), options);
}

function report(result: VerifyResult, key: string, options: OutputOptions): void {
  if (options.json) json({ ...result, publicKey: key });
  if (!result.ok) throw new LockstepError('failed', `audit verification failed at seq ${result.seq}: ${result.problem}`);
  if (options.json) return;
  const range = result.firstSeq === null ? 'no events' : `${result.events} events (seq ${result.firstSeq}..${result.lastSeq})`;
  const last = result.lastCheckpoint ? `, last checkpoint at seq ${result.lastCheckpoint.seq} (${result.lastCheckpoint.at})` : '';
  line(`audit log verified: ${range}, ${result.checkpoints} signed checkpoints${last}`);
  line(`  ${result.unsigned} events after the last checkpoint; ${result.anchored} checkpoints matched the anchor file`);
}

async function readPublicKey(value: string): Promise<KeyObject> {
  const inline = parsePublicKey(value);
  if (inline) return inline;
  const text = await ifMissing(readFile(value, 'utf8')).catch((error: unknown) => {
    throw cannotRead(`the --pubkey file ${value}`, error);
  });
  const fromFile = text === undefined ? undefined : parsePublicKey(text);
  if (fromFile) return fromFile;
  throw new LockstepError('bad-input', `--pubkey "${value}" is neither a public key (ed25519:…, from \`lockstep audit pubkey\`) nor a file holding one`);
}

async function readInput(file: string, what: string): Promise<string> {
  try {
    if (file === '-') return await streamText(process.stdin);
    return await readFile(file, 'utf8');
  } catch (error) {
    throw cannotRead(`${what} ${file}`, error);
  }
}

async function streamText(stream: AsyncIterable<Uint8Array | string>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk));
  return Buffer.concat(chunks).toString('utf8');
}

function fail(message: string): never {
  throw new LockstepError('unavailable', message);
}

/** For help texts. */
export const DEFAULT_MAX_UNSIGNED_AGE = `twice the signed checkpoint interval (${formatDuration(10 * 60_000)} by default)`;
