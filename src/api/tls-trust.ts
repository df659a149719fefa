/**
 * Trust in the server's TLS certificate, pinned rather than taken from the
 * system's CA list: the server's own CA is known by its fingerprint
 * (`sha256:<hex of the SHA-256 of its DER>`, printed by `lockstep host add`),
 * or given as a PEM file. A fingerprint is turned into a CA certificate once,
 * by looking at the chain the server presents (trust on first use, but only
 * of the CA the operator named); from then on the connection is verified
 * normally against that CA, hostname included.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect, type PeerCertificate } from 'node:tls';
import { LockstepError } from '../core/errors.js';

/** How a client trusts the server: the system's CA list (plain HTTP needs nothing), a CA certificate, or a CA fingerprint still to be resolved. */
export type TlsTrust = { readonly kind: 'system' } | { readonly kind: 'ca'; readonly pem: string; readonly source: string } | { readonly kind: 'fingerprint'; readonly fingerprint: string };

/** The fingerprint of a certificate: `sha256:` and the hex of the SHA-256 of its DER bytes. */
export function certificateFingerprint(der: Uint8Array): string {
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

const FINGERPRINT = /^sha256:[0-9a-f]{64}$/;

/** A fingerprint as the user typed it, normalised (lower case; the colon-separated form openssl prints is accepted); undefined when it is none. */
export function parseFingerprint(text: string): string | undefined {
  const trimmed = text.trim().toLowerCase();
  const hex = trimmed.startsWith('sha256:') ? trimmed.slice('sha256:'.length).replaceAll(':', '') : undefined;
  const fingerprint = hex === undefined ? undefined : `sha256:${hex}`;
  return fingerprint !== undefined && FINGERPRINT.test(fingerprint) ? fingerprint : undefined;
}

/** The certificates of a PEM text, in order (a chain file: the leaf first, its issuers after it). */
export function certificatesOfPem(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => new X509Certificate(block));
}

/** The fingerprint of the CA of a PEM file: its last certificate (a CA file holds one; a chain ends with its CA). */
export function pemCaFingerprint(pem: string, source: string): string {
  let certificates: X509Certificate[];
  try {
    certificates = certificatesOfPem(pem);
  } catch (error) {
    throw new LockstepError('bad-input', `${source} holds a certificate that cannot be parsed (${(error as Error).message}); pass a PEM CA certificate`);
  }
  const last = certificates.at(-1);
  if (last === undefined) throw new LockstepError('bad-input', `${source} holds no PEM certificate (-----BEGIN CERTIFICATE-----); pass the server's CA certificate`);
  return certificateFingerprint(last.raw);
}

/** What a server presented when its chain was looked at without trusting it. */
export interface PresentedChain {
  /** DER of each certificate, the leaf first. */
  readonly certificates: readonly Buffer[];
  /** The fingerprint of the top of the chain (the CA, when the server sends it). */
  readonly topFingerprint: string;
}

/** How long looking at a server's chain may take. */
const PROBE_TIMEOUT_MS = 15_000;

/**
 * Connects to `url` without verifying anything, only to read the certificate
 * chain it presents; nothing is sent. Fails as `unavailable` when the server
 * cannot be reached.
 */
export function presentedChain(url: URL, signal?: AbortSignal): Promise<PresentedChain> {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port || 443);
  return new Promise((resolve, reject) => {
    // A name for SNI only (not an address); certificate checks are ours, below and in the normal verified connection after it.
    const servername = /^[\d.]+$/.test(host) || host.includes(':') ? undefined : host;
    const socket = connect({ host, port, rejectUnauthorized: false, ...(servername === undefined ? {} : { servername }), ...(signal ? { signal } : {}) });
    const timer = setTimeout(() => socket.destroy(new Error('timed out')), PROBE_TIMEOUT_MS);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const certificates: Buffer[] = [];
      const seen = new Set<string>();
      for (let certificate: PeerCertificate | undefined = socket.getPeerCertificate(true); certificate?.raw !== undefined; certificate = (certificate as { issuerCertificate?: PeerCertificate }).issuerCertificate) {
        // The last certificate of the chain is its own issuer.
        if (seen.has(certificate.fingerprint256)) break;
        seen.add(certificate.fingerprint256);
        certificates.push(certificate.raw);
      }
      socket.end();
      const top = certificates.at(-1);
      if (top === undefined) return reject(new LockstepError('unavailable', `the server at ${url.origin} presented no certificate`));
      resolve({ certificates, topFingerprint: certificateFingerprint(top) });
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (signal?.aborted) return reject(signal.reason as Error);
      reject(new LockstepError('unavailable', `cannot reach the Lockstep server at ${url.origin} (${error.code ?? error.message})`, { cause: error }));
    });
  });
}

/** The outcome of pinning: the CA certificate (PEM) whose fingerprint was asked for, or what the server showed instead. */
export type PinResult = { readonly kind: 'pinned'; readonly pem: string } | { readonly kind: 'mismatch'; readonly seen: string; readonly expected: string };

/** Finds the certificate of `chain` that hashes to `fingerprint`; a chain without one is a mismatch (an expected outcome, not an error). */
export function pinCa(chain: PresentedChain, fingerprint: string): PinResult {
  const match = chain.certificates.find((der) => certificateFingerprint(der) === fingerprint);
  if (match === undefined) return { kind: 'mismatch', seen: chain.topFingerprint, expected: fingerprint };
  return { kind: 'pinned', pem: new X509Certificate(match).toString() };
}

/** The one line a mismatch is reported with, naming both fingerprints. */
export function mismatchMessage(url: URL, seen: string, expected: string, how: string): string {
  return `the server at ${url.origin} presented a certificate chain whose CA is ${seen}, not the pinned ${expected} (${how}); if the server's CA really changed, pin the new fingerprint that \`lockstep host add\` prints, otherwise someone may be intercepting the connection`;
}

/**
 * The one line for a certificate that failed verification (OpenSSL's `code`):
 * a CA other than the pinned one names both fingerprints; no pin at all says
 * how to pin; the pinned CA with a certificate that still fails (another
 * name, expired) says so.
 */
export function untrustedMessage(url: URL, code: string, seen: string | undefined, expected: string | undefined, how: string): string {
  if (seen !== undefined && expected !== undefined && seen !== expected) return mismatchMessage(url, seen, expected, how);
  if (expected === undefined) {
    return `the server at ${url.origin} presented a certificate this machine does not trust (${code}; its CA is ${seen ?? 'unknown'}); set LOCKSTEP_CA_FINGERPRINT to the fingerprint \`lockstep host add\` prints, or LOCKSTEP_CA to the server's CA certificate`;
  }
  return `the server at ${url.origin} presented a certificate that failed verification against the pinned CA ${expected} (${code}); its certificate must name the host of the server URL and be valid now`;
}

/**
 * Opens one TLS connection to `url` verified against `pem` (chain, validity
 * and name, as every request is), sends nothing, and answers the OpenSSL code
 * when the certificate is refused, or undefined when it holds. A server that
 * cannot be reached fails as `unavailable`.
 */
export function verifiedHandshake(url: URL, pem: string, signal?: AbortSignal): Promise<string | undefined> {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const servername = /^[\d.]+$/.test(host) || host.includes(':') ? undefined : host;
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port: Number(url.port || 443), ca: pem, ...(servername === undefined ? {} : { servername }), ...(signal ? { signal } : {}) });
    const timer = setTimeout(() => socket.destroy(new Error('timed out')), PROBE_TIMEOUT_MS);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.end();
      resolve(undefined);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (signal?.aborted) return reject(signal.reason as Error);
      if (isUntrustedCertificate(error)) return resolve(error.code ?? error.message);
      reject(new LockstepError('unavailable', `cannot reach the Lockstep server at ${url.origin} (${error.code ?? error.message})`, { cause: error }));
    });
  });
}

/** The TLS errors of OpenSSL that mean "not signed by a CA we trust" or "not for this name": the pin did not hold. */
const UNTRUSTED_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Whether a connection error is the server's certificate failing verification (rather than the network). */
export function isUntrustedCertificate(error: NodeJS.ErrnoException): boolean {
  return error.code !== undefined && UNTRUSTED_CODES.has(error.code);
}

/** Reads a PEM CA certificate named by `flag` (--ca, LOCKSTEP_CA) as the trust to pin; a file that is not one is a one-line error. */
export async function readCaFile(file: string, flag: string): Promise<TlsTrust> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new LockstepError('bad-input', `${flag} ${file} cannot be read (${code ?? (error as Error).message}); pass the server's CA certificate (DATA_DIR/tls/ca.pem on the server, or GET /api/v1/ca)`);
  }
  const source = `${flag} ${file}`;
  pemCaFingerprint(pem, source);
  return { kind: 'ca', pem, source };
}

/** The trust a CLI or agent was given: a CA file or a fingerprint (not both); undefined when neither. */
export async function trustFromSettings(settings: { readonly caFile?: string | undefined; readonly fingerprint?: string | undefined }, flags: { readonly caFile: string; readonly fingerprint: string }): Promise<TlsTrust | undefined> {
  const caFile = settings.caFile === '' ? undefined : settings.caFile;
  const fingerprint = settings.fingerprint === '' ? undefined : settings.fingerprint;
  if (caFile !== undefined && fingerprint !== undefined) throw new LockstepError('bad-input', `${flags.caFile} and ${flags.fingerprint} both pin the server's CA; pass one of them`);
  if (caFile !== undefined) return readCaFile(caFile, flags.caFile);
  if (fingerprint === undefined) return undefined;
  const parsed = parseFingerprint(fingerprint);
  if (parsed === undefined) throw new LockstepError('bad-input', `${flags.fingerprint} "${fingerprint}" is not a fingerprint such as sha256:3f9a… (64 hex digits); copy it from \`lockstep host add\``);
  return { kind: 'fingerprint', fingerprint: parsed };
}
