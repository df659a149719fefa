/**
 * Fire calls as pure functions: what may be issued (ttl, public key, source
 * address), the certificate's key id, a fire call's state at a given time,
 * what the agents of one host must revoke, and what sshd's log lines say.
 * No I/O; time is passed in.
 */
import { formatDuration, parseDuration } from './duration.js';
import { LockstepError } from './errors.js';
import { MIN_FIRECALL_TTL_MS } from './config.js';
import type { FirecallApproval } from './firecall-kinds.js';

/** The certificate's default validity when `--ttl` is not given (capped by max_ttl). */
export const DEFAULT_FIRECALL_TTL_MS = 30 * 60_000;

/** The key types a fire call signs; the rest (DSA, ECDSA, certificates) are refused. */
const KEY_TYPES = ['ssh-ed25519', 'ssh-rsa'] as const;

/**
 * awaiting_approval → open (approved, or an admin's override) or expired (never approved, no certificate);
 * open → closed (by hand, or by the server when the certificate expired);
 * a closed fire call stays unreconciled until its changes were reverted or adopted.
 */
export type FirecallState = 'awaiting_approval' | 'expired' | 'open' | 'unreconciled' | 'reconciled';

/** The validity a request asks for, checked against the environment's max_ttl. */
export function firecallTtl(text: string | undefined, maxTtlMs: number, env: string): number {
  if (text === undefined) return Math.min(DEFAULT_FIRECALL_TTL_MS, maxTtlMs);
  const ttl = parseDuration(text);
  if (ttl === undefined) throw new LockstepError('bad-input', `--ttl "${text}" is not a duration such as 30m`);
  if (ttl < MIN_FIRECALL_TTL_MS) throw new LockstepError('bad-input', `--ttl ${text} is shorter than the minimum of ${formatDuration(MIN_FIRECALL_TTL_MS)}`);
  if (ttl > maxTtlMs) throw new LockstepError('refused', `--ttl ${text} is above the maximum of ${formatDuration(maxTtlMs)} for ${env} (firecall.max_ttl)`);
  return ttl;
}

/** A public key line as OpenSSH writes it, checked: type, base64 body whose embedded type matches, optional comment. */
export function parsePublicKeyLine(text: string): { type: (typeof KEY_TYPES)[number]; line: string } {
  const lines = text.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'));
  if (lines.length !== 1) throw new LockstepError('bad-input', `expected one OpenSSH public key line (ssh-ed25519 AAAA… or ssh-rsa AAAA…), found ${lines.length} lines`);
  const [type = '', body = ''] = (lines[0] ?? '').split(/\s+/);
  if (!(KEY_TYPES as readonly string[]).includes(type)) {
    throw new LockstepError('bad-input', `the public key is of type "${type.slice(0, 40)}"; fire calls sign ssh-ed25519 or ssh-rsa keys (create one with: ssh-keygen -t ed25519)`);
  }
  const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(body) ? Buffer.from(body, 'base64') : Buffer.alloc(0);
  const length = bytes.length >= 4 ? bytes.readUInt32BE(0) : -1;
  if (length !== type.length || bytes.subarray(4, 4 + length).toString('latin1') !== type) {
    throw new LockstepError('bad-input', `the public key is malformed: its ${type} body does not decode to an ${type} key`);
  }
  return { type: type as (typeof KEY_TYPES)[number], line: `${type} ${body}` };
}

/** An IPv4 or IPv6 address or CIDR block, as sshd's source-address option takes it. */
export function checkSourceAddress(text: string): string {
  const parts = text.split(',');
  for (const part of parts) {
    const [address = '', bits, extra] = part.split('/');
    const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(address);
    const ok4 = v4 !== null && v4.slice(1).every((octet) => Number(octet) <= 255) && (bits === undefined || (/^\d{1,2}$/.test(bits) && Number(bits) <= 32));
    const ok6 = !ok4 && /^[0-9a-fA-F:]+$/.test(address) && address.includes(':') && (bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= 128));
    if (extra !== undefined || !(ok4 || ok6)) throw new LockstepError('bad-input', `--from "${text}" is not an address or CIDR block such as 203.0.113.7 or 10.0.0.0/8`);
  }
  return parts.join(',');
}

/** The certificate's key id: sshd logs it with every login, tying the login to the fire call. */
export function firecallKeyId(id: number, requester: string): string {
  return `firecall-${id}-${requester.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

/** The fire call a key id names, if it names one. */
export function firecallIdOfKeyId(keyId: string): number | undefined {
  const match = /^firecall-(\d+)-/.exec(keyId);
  return match ? Number(match[1]) : undefined;
}

/** What the state needs of a stored fire call. */
export interface FirecallFacts {
  readonly id: number;
  readonly env: string;
  readonly keyId: string;
  readonly serial: number;
  readonly hosts: readonly string[] | null;
  readonly expiresAt: string;
  readonly closedAt: string | null;
  readonly reconciledAt: string | null;
  /** null: no approval was required. */
  readonly approval: FirecallApproval | null;
}

/** A fire call's state; an open one past its expiry counts as closed (the server's sweeper records it soon). */
export function firecallState(facts: FirecallFacts): FirecallState {
  if (facts.approval === 'awaiting') return 'awaiting_approval';
  if (facts.approval === 'expired') return 'expired';
  if (facts.closedAt === null) return 'open';
  return facts.reconciledAt === null ? 'unreconciled' : 'reconciled';
}

/** Whether a certificate was ever signed for the fire call (not while it awaits approval, nor when its request expired). */
export function firecallIssued(facts: Pick<FirecallFacts, 'approval'>): boolean {
  return facts.approval !== 'awaiting' && facts.approval !== 'expired';
}

/** Whether an open fire call's certificate (or a request awaiting approval) has expired at `now` and it must be closed. */
export function firecallExpired(facts: FirecallFacts, now: Date): boolean {
  return facts.closedAt === null && Date.parse(facts.expiresAt) <= now.getTime();
}

/**
 * What one host must refuse: the serials of closed fire calls, and of open
 * ones limited to other hosts (`--host`); and whose sessions it must end.
 * Requests never signed have nothing to revoke.
 */
export function revocationsFor(host: string, firecalls: readonly FirecallFacts[]): { serials: number[]; keyIds: string[]; endSessions: string[] } {
  const revoked = firecalls.filter((call) => firecallIssued(call) && (call.closedAt !== null || (call.hosts !== null && !call.hosts.includes(host))));
  return {
    serials: revoked.map((call) => call.serial).sort((a, b) => a - b),
    keyIds: revoked.map((call) => call.keyId).sort(),
    endSessions: revoked.map((call) => call.keyId).sort(),
  };
}

/** One sshd log line about a fire call, understood. */
export interface SshdEvent {
  readonly kind: 'login' | 'refused' | 'other';
  readonly firecallId: number;
  readonly user?: string;
  readonly from?: string;
}

/**
 * Reads one sshd log line naming a fire call's key id: an accepted login
 * (`Accepted publickey for root from 10.0.0.9 port 5022 ssh2: ED25519-CERT … ID firecall-3-alice (serial 3) …`),
 * a refusal (revoked, expired, wrong source address or principal), or anything else that names it.
 */
export function sshdEventOf(line: string): SshdEvent | undefined {
  const id = /\bID "?firecall-(\d+)-/.exec(line) ?? /\bfirecall-(\d+)-[A-Za-z0-9._-]*/.exec(line);
  if (!id) return undefined;
  const firecallId = Number(id[1]);
  const accepted = /Accepted publickey for (\S+) from (\S+) port \d+/.exec(line);
  if (accepted) return { kind: 'login', firecallId, user: accepted[1] ?? '', from: accepted[2] ?? '' };
  if (/revoked|expired|not yet valid|not permitted|not allowed|[Ff]ailed|[Rr]efus|[Ii]nvalid|[Ee]rror/.test(line)) return { kind: 'refused', firecallId };
  return { kind: 'other', firecallId };
}
