/**
 * Property-based fuzzing of every route of the contract (src/api/routes.ts)
 * with fast-check over Fastify's inject, against the real server composition
 * and a real SQLite store: hostile path parameters (../, %00, very long,
 * unicode), queries and JSON bodies (random JSON, the route's own keys with
 * wrong types, deep nesting, long strings within the limits, text that is
 * not JSON), sent without a token and with a valid token of every role and
 * an agent's credential. For every answer: no 5xx; for every 4xx: no row
 * stored in any table, no file left in the blob store, and the audit head unchanged, except the audit events
 * that record a refusal (`*.refused`, `*_refused`), which Lockstep keeps by
 * design. After each route the server still answers /health.
 *
 * Bounded by LOCKSTEP_FUZZ_RUNS (default 30) runs per route; fast-check
 * prints the seed and the shrunk input of a failure, and LOCKSTEP_FUZZ_SEED
 * replays it. Inputs that once got a 5xx are replayed first, as examples.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Sqlite from 'better-sqlite3';
import fc from 'fast-check';
import { after, before, describe, it } from 'node:test';
import { API_PREFIX } from '../../src/api/paths.js';
import { ROUTE_NAMES, ROUTES, type RouteName } from '../../src/api/routes.js';
import { ROUTE_SCHEMAS } from '../../src/api/route-schemas.js';
import { MAX_STORED_INT } from '../../src/api/schemas.js';
import { testConfig } from '../helpers/fleet.js';
import { storeBackends } from '../helpers/store-backends.js';
import { startInProcessApp, type InProcessApp } from '../helpers/in-process-app.js';

const RUNS = Number(process.env.LOCKSTEP_FUZZ_RUNS ?? 30);
const SEED = process.env.LOCKSTEP_FUZZ_SEED === undefined ? undefined : Number(process.env.LOCKSTEP_FUZZ_SEED);

/** Who sends a request: nobody, a user token of each role, or the enrolled agent. */
const CALLERS = ['none', 'viewer', 'deployer', 'approver', 'admin', 'agent'] as const;
type Caller = (typeof CALLERS)[number];

/** One generated request, kept plain so fast-check can print and shrink it. */
interface FuzzInput {
  readonly caller: Caller;
  /** `raw`: the value goes into the URL as is (pre-encoded attacks such as %ED%A0%80); else percent-encoded as UTF-8. */
  readonly params: Record<string, { value: string; raw: boolean }>;
  readonly query: Record<string, string>;
  readonly body: { kind: 'json'; value: unknown } | { kind: 'text'; text: string } | { kind: 'bytes'; bytes: number[] } | { kind: 'none' };
}

/** Strings an attacker tries first. */
const NASTY_STRINGS = [
  '', '.', '..', '../', '../../../../etc/passwd', '..%2F..%2Fetc%2Fpasswd', '%2e%2e%2f', '%00', '\u0000', 'a\u0000b', '/etc/passwd', '\\..\\..\\windows',
  '__proto__', 'constructor', 'prototype', 'toString', '-1', '0', '1', '1e309', 'NaN', 'Infinity', '9007199254740993', '0x10', ' 1', 'true', 'null',
  '\ud800', '\u202e\u0041', 'é', '😀'.repeat(50), '<script>', "' OR 1=1 --", '${x}', '{{x}}', 'production', 'development', 'prod-1', 'app@1.0.0', 'a'.repeat(64), 'x'.repeat(5000),
];

const hostileString = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NASTY_STRINGS) },
  { weight: 2, arbitrary: fc.string({ maxLength: 80 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 60_000 }).map((length) => 'x'.repeat(length)) },
);

/** URL path pieces sent as they are: dot segments, encoded NUL, slashes and dots, invalid UTF-8, overlong encodings, bad escapes. */
const RAW_PATH_PIECES = ['..', '.', '../..', '..%2F..%2Fetc', '%2e%2e', '%00', '%ED%A0%80', '%C0%AF', '%FF%FE', '%', '%zz', '%25', 'a%2Fb', '%5C..', '1%00', '1;x', 'x'.repeat(3000)];

/** Arrays nested `depth` deep: around the server's cap of 64. */
const deepValue = fc.integer({ min: 1, max: 80 }).map((depth) => JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`) as unknown);

/** A JSON value of the wrong kind for most fields. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  hostileString,
  fc.constantFrom(null, true, false, 0, -1, 1.5, 2 ** 53, -(2 ** 31), 1e308),
  fc.jsonValue({ maxDepth: 3 }),
  deepValue,
  fc.array(hostileString, { maxLength: 5 }),
  fc.dictionary(hostileString, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
);

/** Percent-encodes the UTF-8 bytes of `text` (a lone surrogate becomes U+FFFD, as Node encodes it; encodeURIComponent would throw). */
function percentEncoded(text: string): string {
  return [...Buffer.from(text, 'utf8')].map((byte) => (/[A-Za-z0-9\-_.~]/.test(String.fromCharCode(byte)) ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
}

function keysOf(schema: unknown): string[] {
  const shape = (schema as { shape?: unknown } | undefined)?.shape;
  return shape !== null && typeof shape === 'object' ? Object.keys(shape) : [];
}

function paramNames(name: RouteName): string[] {
  return [...ROUTES[name].path.matchAll(/:([A-Za-z]+)/g)].map((match) => match[1] ?? '');
}

/** The generator of one route's requests. */
function inputsFor(name: RouteName): fc.Arbitrary<FuzzInput> {
  const route: { request?: string; method: string } = ROUTES[name];
  const schemas = ROUTE_SCHEMAS[name] as { body?: unknown; query?: unknown };
  const param = fc.oneof({ weight: 3, arbitrary: hostileString.map((value) => ({ value, raw: false })) }, { weight: 1, arbitrary: fc.constantFrom(...RAW_PATH_PIECES).map((value) => ({ value, raw: true })) });
  const params = fc.record(Object.fromEntries(paramNames(name).map((key) => [key, param])));
  const queryKeys = keysOf(schemas.query);
  const query = fc.dictionary(queryKeys.length > 0 ? fc.oneof(fc.constantFrom(...queryKeys), hostileString) : hostileString, hostileString, { maxKeys: 4 });
  const bodyKeys = keysOf(schemas.body);
  const shaped = bodyKeys.length > 0 ? fc.dictionary(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...bodyKeys) }, { weight: 1, arbitrary: hostileString }), hostileValue, { maxKeys: bodyKeys.length + 1 }) : fc.object();
  const body: fc.Arbitrary<FuzzInput['body']> =
    route.request === 'stream'
      ? fc.uint8Array({ maxLength: 2000 }).map((bytes) => ({ kind: 'bytes' as const, bytes: [...bytes] }))
      : schemas.body === undefined
        ? fc.constant({ kind: 'none' as const })
        : fc.oneof(
            { weight: 4, arbitrary: shaped.map((value) => ({ kind: 'json' as const, value })) },
            { weight: 2, arbitrary: hostileValue.map((value) => ({ kind: 'json' as const, value })) },
            { weight: 1, arbitrary: fc.string({ maxLength: 200 }).map((text) => ({ kind: 'text' as const, text })) },
            { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) },
            { weight: 1, arbitrary: fc.constant({ kind: 'json' as const, value: {} }) },
          );
  // Most inputs come with a caller the route lets in, so they reach its schema and handler.
  const allowed: Caller = ROUTES[name].access === 'agent' ? 'agent' : 'admin';
  const caller = fc.oneof({ weight: 3, arbitrary: fc.constant(allowed) }, { weight: 2, arbitrary: fc.constantFrom(...CALLERS) });
  return fc.record({ caller, params, query, body });
}

/** Row counts of every table and the audit head: what a refused request must leave as it was. */
interface Snapshot {
  readonly counts: Record<string, number>;
  readonly head: string;
  readonly auditSeq: number;
  /** Files under the blob store (uploads in progress included). */
  readonly blobFiles: number;
}

describe('fuzzing every route of the contract', () => {
  let server: InProcessApp;
  let db: Sqlite.Database;
  const tokens: Partial<Record<Caller, string>> = {};
  let tables: string[] = [];
  const statuses = new Map<number, number>();

  before(async () => {
    server = await startInProcessApp(`${testConfig()}    firecall: { principals: [root], require_approval: true, require_note: true }\n`);
    for (const role of ['viewer', 'deployer', 'approver'] as const) tokens[role] = await server.token(role, role);
    tokens.admin = server.adminToken;
    tokens.agent = await server.enroll('prod-1', 'production');
    db = new Sqlite(join(server.dir, 'lockstep.db'), { readonly: true, fileMustExist: true });
    // Something for the id routes to find: fire call 1, requested by the deployer, awaiting approval.
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(server.dir, 'fuzz-key')]);
    const requested = await server.call('POST', '/api/v1/firecalls', tokens.deployer, { env: 'production', reason: 'fuzz', publicKey: readFileSync(join(server.dir, 'fuzz-key.pub'), 'utf8') });
    assert.equal(requested.status, 201, JSON.stringify(requested.json));
    tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'kysely_%'").all() as { name: string }[]).map((row) => row.name);
  });

  after(async () => {
    db?.close();
    await server?.close();
    // A summary for the run's log: which answers the inputs got.
    console.log(`route fuzz: ${RUNS} runs per route; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
  });

  function snapshot(): Snapshot {
    const counts = Object.fromEntries(tables.map((table) => [table, (db.prepare(`SELECT count(*) AS n FROM "${table}"`).get() as { n: number }).n]));
    const head = JSON.stringify(db.prepare('SELECT * FROM audit_head').all());
    const auditSeq = (db.prepare('SELECT coalesce(max(seq), 0) AS seq FROM audit_events').get() as { seq: number }).seq;
    const blobFiles = readdirSync(join(server.dir, 'blobs'), { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).length;
    return { counts, head, auditSeq, blobFiles };
  }

  /** What a refused request stored, as one line per difference (none: nothing). */
  function storedBy(before: Snapshot, after: Snapshot): string[] {
    const added = db.prepare('SELECT action FROM audit_events WHERE seq > ? ORDER BY seq').all(before.auditSeq) as { action: string }[];
    const refusalsOnly = added.every((event) => /[._]refused$/.test(event.action));
    const problems = added.filter((event) => !/[._]refused$/.test(event.action)).map((event) => `audit event ${event.action}`);
    for (const table of tables) {
      if (before.counts[table] === after.counts[table]) continue;
      // A refusal's audit event comes with its signature in the same transaction.
      if (refusalsOnly && (table === 'audit_events' || table === 'audit_checkpoints')) continue;
      problems.push(`${table}: ${before.counts[table]} → ${after.counts[table]} rows`);
    }
    if (before.head !== after.head && !(refusalsOnly && added.length > 0)) problems.push('the audit head moved');
    if (before.blobFiles !== after.blobFiles) problems.push(`blob store: ${before.blobFiles} → ${after.blobFiles} files`);
    return problems;
  }

  async function send(name: RouteName, input: FuzzInput): Promise<{ status: number; body: string }> {
    const route = ROUTES[name];
    const path = route.path.replace(/:([A-Za-z]+)/g, (_match, key: string) => {
      const param = input.params[key] ?? { value: '', raw: false };
      return param.raw ? param.value : percentEncoded(param.value);
    });
    const search = new URLSearchParams(input.query);
    // A long poll waits for up to `wait` seconds; the fuzz asks for an immediate answer.
    if ('longPoll' in route) search.set('wait', '0');
    const query = search.toString();
    const token = input.caller === 'none' ? undefined : tokens[input.caller];
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    let payload: string | Buffer | undefined;
    if (input.body.kind === 'json') {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(input.body.value) ?? 'null';
    } else if (input.body.kind === 'text') {
      headers['content-type'] = 'application/json';
      payload = input.body.text;
    } else if (input.body.kind === 'bytes') {
      headers['content-type'] = 'application/octet-stream';
      payload = Buffer.from(input.body.bytes);
    }
    const response = await server.app.inject({ method: route.method, url: `${API_PREFIX}${path}${query ? `?${query}` : ''}`, headers, ...(payload === undefined ? {} : { payload }) });
    statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
    return { status: response.statusCode, body: response.body };
  }

  /** Inputs that once made a route answer 5xx (each fixed in its schema or handler), replayed before the random ones. */
  const REGRESSIONS: Partial<Record<RouteName, FuzzInput[]>> = {
    // yaml's refusal to expand aliases past its budget escaped parseConfig as a TypeError/ReferenceError (500).
    applyConfig: [{ caller: 'admin', params: {}, query: {}, body: { kind: 'json', value: { file: 'x', yaml: 'a: &a ["x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n' } } }],
    // A duration past the calendar made an Invalid Date whose toISOString threw (500).
    changes: [{ caller: 'viewer', params: {}, query: { since: '999999999d' }, body: { kind: 'none' } }],
    // Environment names were looked up on a plain object: "constructor" found Object's constructor (500).
    rollback: ['constructor', '__proto__', 'toString'].map((env) => ({ caller: 'admin', params: { env: { value: env, raw: false } }, query: {}, body: { kind: 'none' } })),
  };

  for (const name of ROUTE_NAMES) {
    it(`${ROUTES[name].method} ${ROUTES[name].path}: no 5xx, nothing stored by a refused request, /health still answers`, async () => {
      const examples = (REGRESSIONS[name] ?? []).map((input) => [input] as [FuzzInput]);
      await fc.assert(
        fc.asyncProperty(inputsFor(name), async (input) => {
          const before = snapshot();
          const answer = await send(name, input);
          assert.ok(answer.status < 500, `${answer.status}: ${answer.body.slice(0, 500)}`);
          if (answer.status >= 400) assert.deepEqual(storedBy(before, snapshot()), [], `a refused request (${answer.status}) stored something: ${answer.body.slice(0, 300)}`);
        }),
        { numRuns: RUNS, examples, ...(SEED !== undefined ? { seed: SEED } : {}) },
      );
      const health = await server.app.inject({ method: 'GET', url: `${API_PREFIX}/health` });
      assert.equal(health.statusCode, 200);
    });
  }
});

describe('ids past PostgreSQL integer range', () => {
  for (const backend of storeBackends()) {
    // Found by reading the fuzz's findings against the PostgreSQL column types: "value … is out of range for type integer" was a 500 there.
    it(`are refused with 400 on ${backend.name}, never a 500`, async () => {
      await backend.setUp();
      const server = await startInProcessApp(testConfig(), { store: () => backend.open() });
      try {
        const agent = await server.enroll('dev-1', 'development');
        const big = String(MAX_STORED_INT + 1);
        const cases: [string, string, string, unknown][] = [
          ['GET', `/deployments/${big}`, server.adminToken, undefined],
          ['GET', `/deployments/${big}/logs`, server.adminToken, undefined],
          ['GET', `/deployments/1?since=${big}`, server.adminToken, undefined],
          ['POST', `/deployments/${big}/approve`, server.adminToken, {}],
          ['GET', `/commands/${big}`, server.adminToken, undefined],
          ['GET', `/firecalls/${big}`, server.adminToken, undefined],
          ['POST', `/firecalls/${big}/approve`, server.adminToken, {}],
          ['POST', `/firecalls/${big}/close`, server.adminToken, {}],
          ['POST', `/agent/commands/${big}`, agent, { host: 'dev-1', ok: true }],
          ['POST', '/agent/firecall', agent, { host: 'dev-1', records: [{ firecallId: MAX_STORED_INT + 1, kind: 'sshd', name: 'auth.log', offset: 0, text: 'x' }] }],
        ];
        for (const [method, path, token, body] of cases) {
          const answer = await server.call(method, `${API_PREFIX}${path}`, token, body);
          assert.equal(answer.status, 400, `${method} ${path}: ${JSON.stringify(answer.json)}`);
        }
      } finally {
        await server.close();
        await backend.tearDown();
      }
    });
  }
});

