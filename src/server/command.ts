/** `lockstep server`: JSON-lines logs on stdout, the first-start admin token on stderr, clean stop on SIGINT/SIGTERM. */
import { pino } from 'pino';
import { startServer } from './main.js';
import { LockstepError } from '../core/errors.js';
import { parseDuration } from '../core/duration.js';

/** Runs the server until SIGINT or SIGTERM. */
export async function runServerCommand(options: {
  dataDir: string;
  listen: string;
  database?: string | undefined;
  checkpointEvery?: string | undefined;
  checkpointInterval?: string | undefined;
  auditAnchor?: string | undefined;
  offlineAfter?: string | undefined;
  trustProxy?: boolean | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  tlsOwnCa?: boolean | undefined;
  insecureHttp?: boolean | undefined;
  blobQuotaMb?: string | undefined;
  driftQuotaMb?: string | undefined;
  gcGrace?: string | undefined;
  gcInterval?: string | undefined;
}): Promise<void> {
  const checkpointEvery = options.checkpointEvery === undefined ? undefined : Number(options.checkpointEvery);
  if (checkpointEvery !== undefined && !(Number.isSafeInteger(checkpointEvery) && checkpointEvery > 0)) throw new LockstepError('bad-input', `--checkpoint-every "${options.checkpointEvery}" is not a positive integer`);
  const checkpointIntervalMs = options.checkpointInterval === undefined ? undefined : parseDuration(options.checkpointInterval);
  if (options.checkpointInterval !== undefined && checkpointIntervalMs === undefined) throw new LockstepError('bad-input', `--checkpoint-interval "${options.checkpointInterval}" is not a duration such as 30s, 5m or 1h`);
  const offlineAfterMs = options.offlineAfter === undefined ? undefined : parseDuration(options.offlineAfter);
  if (options.offlineAfter !== undefined && offlineAfterMs === undefined) throw new LockstepError('bad-input', `--offline-after "${options.offlineAfter}" is not a duration such as 40s or 2m`);
  const megabytes = (flag: string, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const value = Number(text);
    if (!(Number.isFinite(value) && value >= 0)) throw new LockstepError('bad-input', `${flag} "${text}" is not a number of MiB (0 or more)`);
    return Math.floor(value * 1024 * 1024);
  };
  const duration = (flag: string, text: string | undefined, example: string): number | undefined => {
    if (text === undefined) return undefined;
    const ms = text === '0' ? 0 : parseDuration(text);
    if (ms === undefined) throw new LockstepError('bad-input', `${flag} "${text}" is not a duration such as ${example}`);
    return ms;
  };
  const blobQuotaBytes = megabytes('--blob-quota-mb', options.blobQuotaMb);
  const driftQuotaBytes = megabytes('--drift-quota-mb', options.driftQuotaMb);
  const gcGraceMs = duration('--gc-grace', options.gcGrace, '24h or 30m');
  const gcIntervalMs = duration('--gc-interval', options.gcInterval, '1h (0: never)');
  const logger = pino({ base: { service: 'lockstep-server' } });
  const server = await startServer({
    dataDir: options.dataDir,
    listen: options.listen,
    database: options.database,
    checkpointEvery,
    checkpointIntervalMs,
    auditAnchor: options.auditAnchor,
    offlineAfterMs,
    trustProxy: options.trustProxy,
    tlsCert: options.tlsCert,
    tlsKey: options.tlsKey,
    tlsOwnCa: options.tlsOwnCa,
    insecureHttp: options.insecureHttp,
    blobLimits: {
      ...(blobQuotaBytes === undefined ? {} : { blobQuotaBytes }),
      ...(driftQuotaBytes === undefined ? {} : { driftQuotaBytes }),
      ...(gcGraceMs === undefined ? {} : { gcGraceMs }),
    },
    gcIntervalMs,
    logger,
    onAdminToken: (token, file) => process.stderr.write(`lockstep: admin token (shown once; also in ${file}, mode 0600):\n${token}\n`),
  });
  process.stderr.write(`lockstep: server listening on ${server.url}\n`);
  if (server.ca !== undefined) process.stderr.write(`lockstep: TLS CA fingerprint ${server.ca.fingerprint} (agents pin it with --ca-fingerprint; \`lockstep host add\` prints it too)\n`);
  else if (options.insecureHttp === true) process.stderr.write('lockstep: warning: serving plain HTTP (--insecure-http): tokens and credentials cross the network in clear\n');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
}
