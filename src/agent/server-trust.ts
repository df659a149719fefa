/**
 * How the agent trusts its server, decided once at start: an https:// server
 * must be pinned. `--ca FILE` pins a PEM CA; `--ca-fingerprint` pins the CA
 * the server presents in its chain (checked against the fingerprint `lockstep
 * host add` printed), which is then kept as STATE_DIR/server-ca.pem so that
 * every later connection, and every later start, is verified normally
 * against it. At every start one connection is verified against the pinned
 * CA before anything is sent: a chain whose CA does not match, or a
 * certificate that fails against it (another name, expired), ends the start
 * with one line rather than leaving an agent retrying what cannot succeed.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { mismatchMessage, pemCaFingerprint, pinCa, presentedChain, trustFromSettings, untrustedMessage, verifiedHandshake, type TlsTrust } from '../api/tls-trust.js';
import { writeFileAtomic } from '../content/atomic-file.js';
import { cannotRead, ifMissing, LockstepError } from '../core/errors.js';
import { serverCaPath } from './agent-state.js';
import { retry } from './retry.js';

/** What the agent was told about its server. */
export interface ServerTrustOptions {
  readonly server: string;
  readonly stateDir: string;
  /** --ca FILE */
  readonly caFile?: string | undefined;
  /** --ca-fingerprint sha256:… */
  readonly caFingerprint?: string | undefined;
  readonly logger: Logger;
}

/** The trust for the agent's connections; fails with one line when an https:// server is not pinned or presents another CA. */
export async function resolveServerTrust(options: ServerTrustOptions, signal: AbortSignal): Promise<TlsTrust> {
  let url: URL;
  try {
    url = new URL(options.server);
  } catch {
    throw new LockstepError('bad-input', `--server "${options.server}" is not a URL such as https://lockstep.example:7400`);
  }
  const given = await trustFromSettings({ caFile: options.caFile, fingerprint: options.caFingerprint }, { caFile: '--ca', fingerprint: '--ca-fingerprint' });
  if (url.protocol === 'http:') {
    // A pin with a plain URL is a mistake that would leave the connection in clear.
    if (given !== undefined) throw new LockstepError('bad-input', `--server ${options.server} is plain http://, so there is no certificate to pin; use the server's https:// URL`);
    return { kind: 'system' };
  }
  if (given?.kind === 'ca') return checked(url, given, given.source, options.logger, signal);
  const file = serverCaPath(options.stateDir);
  const stored = await readStored(file);
  if (given === undefined) {
    if (stored !== undefined) return checked(url, { kind: 'ca', pem: stored, source: file }, file, options.logger, signal);
    throw new LockstepError('bad-input', `--server ${options.server} is https:// but no CA is pinned; pass --ca-fingerprint sha256:… (printed by \`lockstep host add\`) or --ca FILE`);
  }
  if (given.kind === 'system') return given;
  if (stored !== undefined && pemCaFingerprint(stored, file) === given.fingerprint) return checked(url, { kind: 'ca', pem: stored, source: file }, '--ca-fingerprint', options.logger, signal);
  const chain = await whenReachable(() => presentedChain(url, signal), options.logger, signal);
  const pinned = pinCa(chain, given.fingerprint);
  if (pinned.kind === 'mismatch') throw new LockstepError('unavailable', `refusing the server: ${mismatchMessage(url, pinned.seen, pinned.expected, '--ca-fingerprint')}`);
  const trust = await checked(url, { kind: 'ca', pem: pinned.pem, source: file }, '--ca-fingerprint', options.logger, signal);
  await writeFileAtomic(file, pinned.pem, 0o644);
  options.logger.info({ caFingerprint: given.fingerprint, file }, "pinned the server's CA");
  return trust;
}

/**
 * The trust once one connection verified against it held (chain, validity,
 * the server's name); a certificate it refuses ends the start with one line,
 * rather than an agent retrying a connection that cannot succeed.
 */
async function checked(url: URL, trust: TlsTrust & { kind: 'ca' }, how: string, logger: Logger, signal: AbortSignal): Promise<TlsTrust> {
  const refused = await whenReachable(() => verifiedHandshake(url, trust.pem, signal), logger, signal);
  if (refused === undefined) return trust;
  const seen = (await whenReachable(() => presentedChain(url, signal), logger, signal)).topFingerprint;
  throw new LockstepError('unavailable', `refusing the server: ${untrustedMessage(url, refused, seen, pemCaFingerprint(trust.pem, trust.source), how)}`);
}

/** The server may not be up yet: wait for it as for any other request; only what it presents can be final. */
function whenReachable<T>(attempt: () => Promise<T>, logger: Logger, signal: AbortSignal): Promise<T> {
  return retry(attempt, {
    signal,
    onRetry: (error, count, delayMs) => logger.warn({ err: error, attempt: count, delayMs }, 'cannot reach the server to check its certificate yet; retrying'),
  });
}

async function readStored(file: string): Promise<string | undefined> {
  try {
    return await ifMissing(readFile(file, 'utf8'));
  } catch (error) {
    throw cannotRead(file, error, 'fix the permissions of the state dir');
  }
}
