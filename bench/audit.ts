/**
 * Audit trail throughput: appending events with the durability of real use
 * (one committed transaction per event, through the real store, on SQLite
 * and on PostgreSQL with fsync on; each transaction signed as the server
 * does, and unsigned for comparison), and verifying an export offline (parse +
 * chain + signatures, one core), against the machine's SHA-256 throughput
 * (`openssl speed -evp sha256`) as the limit. Prints figures; asserts nothing.
 *
 *   node dist/bench/audit.js [--appends 2000] [--events 1000000] [--json]
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { checkpointLine, eventLine, parseAuditLines } from '../src/audit/audit-record.js';
import { signCheckpoint } from '../src/audit/checkpoint.js';
import { PER_TRANSACTION, verifyAuditLog } from '../src/audit/verify-log.js';
import { auditHash, GENESIS_HASH } from '../src/core/audit-hash.js';
import { canonicalJson } from '../src/core/manifest.js';
import { openPostgresStore } from '../src/store/postgres/postgres-store.js';
import { openSqliteStore } from '../src/store/sqlite/sqlite-store.js';
import type { AuditSigner, Store } from '../src/store/store.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { makeTempDir } from '../test/helpers/tmp.js';

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  const value = index >= 0 ? Number(process.argv[index + 1]) : fallback;
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer`);
  return value;
}

const APPENDS = option('appends', 2000);
const EVENTS = option('events', 1_000_000);
const asJson = process.argv.includes('--json');
const log = (text: string) => process.stderr.write(`${text}\n`);

/** A typical event: a deployment finishing, with a release id in its details. */
function sampleEvent(seq: number, at: string) {
  return { seq, at, actor: 'ci-deployer', action: 'deployment.succeeded', target: 'env:production', details: { deployment: seq, release: 'a'.repeat(64), hosts: 12, note: null } };
}

/** A per-transaction signer as the server injects it (Ed25519 over each transaction's head, every/intervalMs 0). */
function benchSigner(): AuditSigner {
  const { privateKey } = generateKeyPairSync('ed25519');
  return {
    sign(head) {
      const record = signCheckpoint({ seq: head.seq, hash: head.hash, at: new Date().toISOString(), every: PER_TRANSACTION, intervalMs: PER_TRANSACTION }, privateKey);
      return { seq: record.seq, hash: record.hash, at: record.at, every: record.every, interval_ms: record.intervalMs, key_id: record.keyId, signature: record.signature };
    },
  };
}

async function appendThroughput(store: Store, signed: boolean): Promise<number> {
  await store.migrate();
  if (signed) store.useAuditSigner(benchSigner());
  const start = performance.now();
  for (let index = 0; index < APPENDS; index++) {
    const event = sampleEvent(0, new Date().toISOString());
    await store.transaction((repo) => repo.appendAudit({ at: event.at, actor: event.actor, action: event.action, target: event.target, details: event.details }));
  }
  const seconds = (performance.now() - start) / 1000;
  await store.close();
  return APPENDS / seconds;
}

/** SHA-256 bytes per second for `size`-byte inputs, from `openssl speed`. */
function opensslSha256(size: number): number | undefined {
  try {
    const out = execFileSync('openssl', ['speed', '-evp', 'sha256', '-seconds', '2', '-bytes', String(size)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const line = out.split('\n').find((row) => row.startsWith('sha256'));
    const figure = line?.trim().split(/\s+/).at(-1);
    return figure ? Number(figure.replace(/k$/, '')) * 1000 : undefined;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const temp = await makeTempDir('lockstep-bench-audit-');
  const results: Record<string, number | string | undefined> = {};
  try {
    log(`SQLite: ${APPENDS} appends, one transaction each (WAL, synchronous=NORMAL as the server runs it)…`);
    results.sqliteAppendsPerSecond = await appendThroughput(openSqliteStore(join(temp.path, 'bench.db')), true);
    results.sqliteAppendsPerSecondUnsigned = await appendThroughput(openSqliteStore(join(temp.path, 'bench-unsigned.db')), false);

    log(`PostgreSQL: ${APPENDS} appends, one transaction each, fsync and synchronous_commit on…`);
    const server = await startPostgres();
    try {
      // The test helper starts PostgreSQL without fsync; real use has it on.
      const admin = new pg.Client({ connectionString: server.url });
      await admin.connect();
      await admin.query('ALTER SYSTEM SET fsync = on');
      await admin.query('ALTER SYSTEM SET synchronous_commit = on');
      await admin.query('ALTER SYSTEM SET full_page_writes = on');
      await admin.query('SELECT pg_reload_conf()');
      await admin.end();
      results.postgresAppendsPerSecond = await appendThroughput(openPostgresStore(await server.createDatabase('bench')), true);
      results.postgresAppendsPerSecondUnsigned = await appendThroughput(openPostgresStore(await server.createDatabase('bench_unsigned')), false);
    } finally {
      await server.stop();
    }
  } finally {
    await temp.remove();
  }

  log(`Building an export of ${EVENTS} events with a checkpoint every 100…`);
  const keys = generateKeyPairSync('ed25519');
  const lines: string[] = [];
  let prevHash = GENESIS_HASH;
  let hashedBytes = 0;
  const t0 = Date.parse('2030-01-01T00:00:00.000Z');
  for (let seq = 1; seq <= EVENTS; seq++) {
    const event = sampleEvent(seq, new Date(t0 + seq * 10).toISOString());
    const hash = auditHash(prevHash, event);
    hashedBytes += 64 + canonicalJson(event).length;
    lines.push(eventLine({ ...event, prevHash, hash }));
    prevHash = hash;
    if (seq % 100 === 0) lines.push(checkpointLine(signCheckpoint({ seq, hash, at: new Date(t0 + seq * 10 + 5).toISOString(), every: 100, intervalMs: 300_000 }, keys.privateKey)));
  }
  const header = JSON.stringify({ type: 'export', version: 1, exportedAt: new Date(t0 + EVENTS * 10 + 1000).toISOString(), since: null, head: { seq: EVENTS, hash: prevHash } });
  const text = [header, ...lines].join('\n');
  lines.length = 0;
  const bytesPerEvent = hashedBytes / EVENTS;

  log('Verifying (parse + chain + signatures, one thread)…');
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  const parsed = parseAuditLines(text);
  const parsedAt = performance.now();
  const result = verifyAuditLog(parsed, { publicKey: keys.publicKey, now: new Date() });
  const end = performance.now();
  const cpu = process.cpuUsage(cpuStart);
  // On a busy machine wall time includes waiting for a core; CPU time is what one core spent.
  results.verifyEventsPerCpuSecond = EVENTS / ((cpu.user + cpu.system) / 1e6);
  if (!result.ok) throw new Error(`the generated log did not verify: ${result.problem}`);
  results.verifyEventsPerSecond = EVENTS / ((end - start) / 1000);
  results.verifyEventsPerMinute = results.verifyEventsPerSecond * 60;
  results.parseSeconds = (parsedAt - start) / 1000;
  results.checkSeconds = (end - parsedAt) / 1000;
  results.exportBytesPerEvent = text.length / EVENTS;
  results.hashedBytesPerEvent = bytesPerEvent;
  const sha = opensslSha256(256);
  results.opensslSha256BytesPerSecond256 = sha;
  results.sha256LimitEventsPerSecond = sha === undefined ? undefined : sha / bytesPerEvent;

  if (asJson) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return;
  }
  const fmt = (value: number | string | undefined, digits = 0) => (typeof value === 'number' ? value.toLocaleString('en-US', { maximumFractionDigits: digits }) : String(value ?? 'n/a'));
  process.stdout.write(
    [
      `append, SQLite      ${fmt(results.sqliteAppendsPerSecond)} events/s (one transaction per event, each signed; ${fmt(results.sqliteAppendsPerSecondUnsigned)} unsigned)`,
      `append, PostgreSQL  ${fmt(results.postgresAppendsPerSecond)} events/s (one transaction per event, each signed, fsync on; ${fmt(results.postgresAppendsPerSecondUnsigned)} unsigned)`,
      `verify              ${fmt(results.verifyEventsPerSecond)} events/s = ${fmt(results.verifyEventsPerMinute)} events/min on one core (${EVENTS} events; parse ${fmt(results.parseSeconds, 2)} s, check ${fmt(results.checkSeconds, 2)} s)`,
      `verify, CPU time    ${fmt(results.verifyEventsPerCpuSecond)} events per CPU-second = ${fmt((results.verifyEventsPerCpuSecond as number) * 60)} events per CPU-minute`,
      `SHA-256 limit       ${fmt(results.sha256LimitEventsPerSecond)} events/s (openssl speed -evp sha256 at 256-byte blocks: ${fmt((sha ?? 0) / 1e6)} MB/s; ${fmt(bytesPerEvent)} hashed bytes per event)`,
      '',
    ].join('\n'),
  );
}

await main();
