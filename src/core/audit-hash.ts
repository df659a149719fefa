/**
 * The audit hash chain: `hash = sha256(prev_hash || canonical JSON of the event)`.
 * Pure, so the server writes with it and `lockstep audit verify` checks with it.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from './manifest.js';

/** The fields of an audit event that its hash covers. */
export interface ChainedFields {
  readonly seq: number;
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly details: unknown;
}

/** The hash before the first event. */
export const GENESIS_HASH = '0'.repeat(64);

/** The hash of an event given the hash of the one before it. */
export function auditHash(prevHash: string, event: ChainedFields): string {
  const body = canonicalJson({ seq: event.seq, at: event.at, actor: event.actor, action: event.action, target: event.target, details: event.details });
  return createHash('sha256').update(prevHash).update(body).digest('hex');
}
