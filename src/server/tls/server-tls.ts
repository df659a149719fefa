/**
 * The server's TLS identity: either the operator's certificate and key
 * (--tls-cert, --tls-key), or the server's own CA and a server certificate it
 * signs, made in DATA_DIR/tls on first start and reused after. Agents pin the
 * CA by its fingerprint, so the CA lives for years; the server certificate is
 * re-issued from it at start whenever it no longer covers the names to serve
 * or is within 30 days of expiring.
 */
import { createPrivateKey, webcrypto, X509Certificate as NodeCertificate } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { hostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { certificateFingerprint, certificatesOfPem } from '../../api/tls-trust.js';
import { writeFileAtomic } from '../../content/atomic-file.js';
import { cannotRead, ifMissing, LockstepError } from '../../core/errors.js';
import type { ServerCa } from '../context.js';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** What an HTTPS server serves: its key, its chain (server certificate, then the CA) and the CA agents pin. */
export interface ServerTls {
  readonly key: string;
  readonly cert: string;
  readonly ca: ServerCa;
}

/** The key algorithm of the own CA and server certificate: P-256 is fast to make and to handshake with. */
const KEY_ALGORITHM: webcrypto.EcKeyGenParams & webcrypto.EcKeyImportParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING_ALGORITHM: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const CA_VALIDITY_YEARS = 10;
const SERVER_VALIDITY_DAYS = 397;
/** A server certificate closer than this to its end is re-issued at start. */
const RENEW_BEFORE_MS = 30 * 24 * 3600_000;

/** Whether an address to listen on is reachable only from this machine (plain HTTP is allowed there). */
export function isLoopbackAddress(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127\.\d+\.\d+\.\d+$/.test(bare) || bare === '::ffff:127.0.0.1';
}

/** The names the server certificate must hold: the listen address (unless a wildcard), the machine's name and addresses, and loopback. */
export function serverNames(listenHost: string): string[] {
  const names = new Set<string>(['localhost', '127.0.0.1', '::1', hostname()]);
  const wildcard = listenHost === '0.0.0.0' || listenHost === '::' || listenHost === '';
  if (!wildcard) names.add(listenHost);
  // Listening on every address: agents may reach any of them.
  if (wildcard) for (const addresses of Object.values(networkInterfaces())) for (const address of addresses ?? []) if (!address.internal) names.add(address.address);
  return [...names];
}

/** Reads the operator's certificate chain and key (--tls-cert, --tls-key); the CA agents pin is the chain's last certificate. */
export async function loadOperatorTls(certFile: string, keyFile: string): Promise<ServerTls> {
  const cert = await readRequired(certFile, '--tls-cert');
  const key = await readRequired(keyFile, '--tls-key');
  let chain: NodeCertificate[];
  try {
    chain = certificatesOfPem(cert);
  } catch (error) {
    throw new LockstepError('bad-input', `--tls-cert ${certFile} holds a certificate that cannot be parsed (${(error as Error).message})`);
  }
  const leaf = chain[0];
  const top = chain.at(-1);
  if (leaf === undefined || top === undefined) throw new LockstepError('bad-input', `--tls-cert ${certFile} holds no PEM certificate; pass the server certificate followed by its CA chain`);
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(key));
  } catch (error) {
    throw new LockstepError('bad-input', `--tls-key ${keyFile} is not a PEM private key (${(error as Error).message})`);
  }
  if (!matches) throw new LockstepError('bad-input', `--tls-key ${keyFile} is not the key of the first certificate in --tls-cert ${certFile}`);
  return { key, cert, ca: { pem: top.toString(), fingerprint: certificateFingerprint(top.raw) } };
}

async function readRequired(file: string, flag: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new LockstepError('bad-input', `${flag} ${file} does not exist`);
    throw cannotRead(file, error, `check ${flag}`);
  }
}

/** The files of the own CA in DATA_DIR/tls; a certificate is written after its key, so a certificate on disk always has its key. */
function tlsFiles(dataDir: string) {
  const dir = join(dataDir, 'tls');
  return { dir, caKey: join(dir, 'ca-key.pem'), caCert: join(dir, 'ca.pem'), serverKey: join(dir, 'server-key.pem'), serverCert: join(dir, 'server.pem') };
}

/**
 * The server's own CA and a server certificate for `names`, from DATA_DIR/tls,
 * made on first start (keys 0600, each file written atomically). The CA is
 * kept for good; the server certificate is re-issued when it lacks a name,
 * is near its end, or is not the CA's.
 */
export async function loadOrCreateOwnTls(dataDir: string, names: readonly string[], now = new Date()): Promise<ServerTls> {
  const files = tlsFiles(dataDir);
  await mkdir(files.dir, { recursive: true, mode: 0o700 });
  const ca = (await readCa(files)) ?? (await createCa(files, now, await x509Library()));
  const caCert = new NodeCertificate(ca.pem);
  const served = (certPem: string, keyPem: string): ServerTls => ({ key: keyPem, cert: `${certPem.trim()}\n${ca.pem.trim()}\n`, ca: { pem: ca.pem, fingerprint: certificateFingerprint(caCert.raw) } });
  const existing = await readOptional(files.serverCert);
  const existingKey = existing === undefined ? undefined : await readOptional(files.serverKey);
  if (existing !== undefined && existingKey !== undefined && serverCertFits(existing, existingKey, caCert, names, now)) return served(existing, existingKey);
  const x509 = await x509Library();
  const keys = await generateKeys();
  const caKey = await webcrypto.subtle.importKey('pkcs8', pemBody(ca.keyPem), KEY_ALGORITHM, false, ['sign']);
  const certificate = await x509.X509CertificateGenerator.create({
    subject: `CN=${hostname()}`,
    issuer: new x509.X509Certificate(ca.pem).subject,
    notBefore: new Date(now.getTime() - 3600_000),
    notAfter: new Date(now.getTime() + SERVER_VALIDITY_DAYS * 24 * 3600_000),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map((name) => ({ type: isIP(name) ? 'ip' : 'dns', value: name }))),
      await x509.AuthorityKeyIdentifierExtension.create(await new x509.X509Certificate(ca.pem).publicKey.export(KEY_ALGORITHM, ['verify'])),
    ],
  });
  const keyPem = await privateKeyPem(keys.privateKey);
  const certPem = `${certificate.toString('pem')}\n`;
  await writeFileAtomic(files.serverKey, keyPem, 0o600);
  await writeFileAtomic(files.serverCert, certPem, 0o644);
  return served(certPem, keyPem);
}

/** The own CA (certificate and key PEM), or undefined before the first start; a certificate whose key is gone is refused. */
async function readCa(files: ReturnType<typeof tlsFiles>): Promise<{ pem: string; keyPem: string } | undefined> {
  const pem = await readOptional(files.caCert);
  // No CA certificate: a key without one (a crash between the two writes) was never used, and is replaced.
  if (pem === undefined) return undefined;
  const keyPem = await readOptional(files.caKey);
  if (keyPem === undefined) throw new LockstepError('bad-input', `${files.caCert} exists but its key ${files.caKey} does not; restore the key from a backup (agents pin this CA), or move ${files.dir} away to make a new CA and re-enroll every agent`);
  return { pem, keyPem };
}

async function createCa(files: ReturnType<typeof tlsFiles>, now: Date, x509: X509Library): Promise<{ pem: string; keyPem: string }> {
  const keys = await generateKeys();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=Lockstep server CA ${hostname()} ${now.toISOString().slice(0, 10)}`,
    keys,
    notBefore: new Date(now.getTime() - 3600_000),
    notAfter: new Date(now.getTime() + CA_VALIDITY_YEARS * 365 * 24 * 3600_000),
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pem = `${certificate.toString('pem')}\n`;
  const keyPem = await privateKeyPem(keys.privateKey);
  await writeFileAtomic(files.caKey, keyPem, 0o600);
  await writeFileAtomic(files.caCert, pem, 0o644);
  return { pem, keyPem };
}

type X509Library = typeof import('@peculiar/x509');

/**
 * @peculiar/x509, loaded only to make a certificate: loading it took 0.5 to
 * 1.5 s (measured on a loaded machine), which a server reusing its
 * certificate, or speaking plain HTTP, should not pay at every start.
 */
async function x509Library(): Promise<X509Library> {
  // The Reflect metadata polyfill must be in place before the library loads (its dependency tsyringe checks for it).
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  // The library types WebCrypto with the DOM lib, which this Node project does not load.
  x509.cryptoProvider.set(webcrypto as unknown as ReturnType<typeof x509.cryptoProvider.get>);
  return x509;
}

/** Whether a stored server certificate can be served again: the CA's, holding every name, its key, and not near its end. */
function serverCertFits(pem: string, keyPem: string, ca: NodeCertificate, names: readonly string[], now: Date): boolean {
  try {
    const certificate = new NodeCertificate(pem);
    if (!certificate.checkIssued(ca) || !certificate.verify(ca.publicKey)) return false;
    if (new Date(certificate.validTo).getTime() - now.getTime() < RENEW_BEFORE_MS) return false;
    if (!certificate.checkPrivateKey(createPrivateKey(keyPem))) return false;
    return names.every((name) => (isIP(name) ? certificate.checkIP(name) !== undefined : certificate.checkHost(name) !== undefined));
  } catch {
    // An unreadable leftover is replaced, like an outdated one.
    return false;
  }
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END PRIVATE KEY-----\n`;
}

function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await ifMissing(readFile(path, 'utf8'));
  } catch (error) {
    throw cannotRead(path, error, 'fix the permissions of the data dir');
  }
}
