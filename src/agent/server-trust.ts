/**
 * How the agent trusts its server, decided once at start: an https:// server
 * must be pinned. `--ca FILE` pins a PEM CA; `--ca-fingerprint` pins the CA
 * the server presents in its chain (checked against the fingerprint `lockstep
 * host add` printed), which is then kept as STATE_DIR/server-ca.pem so that
 * every later connection, and every later start, is verified normally
 * against it. A chain whose CA does not match is refused before anything is
 * sent, and the agent does not start.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { mismatchMessage, pemCaFingerprint, pinCa, presentedChain, trustFromSettings, type TlsTrust } from '../api/tls-trust.js';
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
  if (given?.kind === 'ca') return given;
  const file = serverCaPath(options.stateDir);
  const stored = await readStored(file);
  if (given === undefined) {
    if (stored !== undefined) return { kind: 'ca', pem: stored, source: file };
    throw new LockstepError('bad-input', `--server ${options.server} is https:// but no CA is pinned; pass --ca-fingerprint sha256:… (printed by \`lockstep host add\`) or --ca FILE`);
  }
  if (given.kind === 'system') return given;
  if (stored !== undefined && pemCaFingerprint(stored, file) === given.fingerprint) return { kind: 'ca', pem: stored, source: file };
  // The server may not be up yet: wait for it as for any other request; only a mismatch is final.
  const chain = await retry(() => presentedChain(url, signal), {
    signal,
    onRetry: (error, attempt, delayMs) => options.logger.warn({ err: error, attempt, delayMs }, 'cannot reach the server to check its certificate yet; retrying'),
  });
  const pinned = pinCa(chain, given.fingerprint);
  if (pinned.kind === 'mismatch') throw new LockstepError('unavailable', `refusing the server: ${mismatchMessage(url, pinned.seen, pinned.expected, '--ca-fingerprint')}`);
  await writeFileAtomic(file, pinned.pem, 0o644);
  options.logger.info({ caFingerprint: given.fingerprint, file }, "pinned the server's CA");
  return { kind: 'ca', pem: pinned.pem, source: file };
}

async function readStored(file: string): Promise<string | undefined> {
  try {
    return await ifMissing(readFile(file, 'utf8'));
  } catch (error) {
    throw cannotRead(file, error, 'fix the permissions of the state dir');
  }
}
