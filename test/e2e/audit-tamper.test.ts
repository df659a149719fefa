/**
 * Tampering with the audit trail in the database itself, on SQLite and on
 * PostgreSQL, while the real server runs: `lockstep audit verify` (live, on an
 * export file, and with the anchor file) exits 4 naming the seq of the first
 * event that was changed, removed, swapped, forged or cut off, and the class
 * of tampering; an untouched log verifies (exit 0). The server signs every
 * transaction as it commits, so the three tail attacks (rewrite, insert, cut
 * after the last checkpoint) are caught too. After each case the tables are
 * restored.
 */
import assert from 'node:assert/strict';
import { writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import Sqlite from 'better-sqlite3';
import pg from 'pg';
import { auditHash } from '../../src/core/audit-hash.js';
import { canonicalJson } from '../../src/core/manifest.js';
import { startFleet, testConfig, type Fleet } from '../helpers/fleet.js';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';

/** Direct SQL on the server's database, as an attacker with database access has it. */
interface Database {
  run(sql: string, params?: readonly unknown[]): Promise<void>;
  all(sql: string, params?: readonly unknown[]): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

function sqliteDatabase(file: string): Database {
  const db = new Sqlite(file);
  db.pragma('busy_timeout = 5000');
  return {
    run: async (sql, params = []) => void db.prepare(sql).run(...params),
    all: async (sql, params = []) => db.prepare(sql).all(...params) as Record<string, unknown>[],
    close: async () => {
      db.close();
    },
  };
}

async function postgresDatabase(url: string): Promise<Database> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const numbered = (sql: string) => {
    let n = 0;
    return sql.replace(/\?/g, () => `$${++n}`);
  };
  return {
    run: async (sql, params = []) => void (await client.query(numbered(sql), [...params])),
    all: async (sql, params = []) => (await client.query(numbered(sql), [...params])).rows as Record<string, unknown>[],
    close: () => client.end(),
  };
}

interface Snapshot {
  events: Record<string, unknown>[];
  checkpoints: Record<string, unknown>[];
  head: Record<string, unknown>;
}

async function snapshot(db: Database): Promise<Snapshot> {
  return {
    events: await db.all('select * from audit_events order by seq'),
    checkpoints: await db.all('select * from audit_checkpoints order by seq'),
    head: (await db.all('select * from audit_head where id = 1'))[0]!,
  };
}

async function restore(db: Database, saved: Snapshot): Promise<void> {
  // One transaction: the running server's checkpointer must never see the
  // tables half restored (it would sign a checkpoint in between).
  await db.run('begin');
  await db.run('delete from audit_events');
  await db.run('delete from audit_checkpoints');
  for (const e of saved.events) {
    await db.run('insert into audit_events (seq, at, actor, action, target, details, prev_hash, hash) values (?, ?, ?, ?, ?, ?, ?, ?)', [e.seq, e.at, e.actor, e.action, e.target, e.details, e.prev_hash, e.hash]);
  }
  for (const c of saved.checkpoints) {
    await db.run('insert into audit_checkpoints (seq, hash, at, every, interval_ms, key_id, signature) values (?, ?, ?, ?, ?, ?, ?)', [c.seq, c.hash, c.at, c.every, c.interval_ms, c.key_id, c.signature]);
  }
  await db.run('update audit_head set seq = ?, hash = ? where id = 1', [saved.head.seq, saved.head.hash]);
  await db.run('commit');
}

const backends = [
  { name: 'SQLite', postgres: false },
  { name: 'PostgreSQL', postgres: true },
];

for (const backend of backends) {
  describe(`audit tampering on ${backend.name}`, () => {
    let server: PostgresServer | undefined;
    let fleet: Fleet;
    let db: Database;
    let saved: Snapshot;
    let pubkey: string;
    let anchor: string;
    let headSeq: number;

    before(async () => {
      let database: string | undefined;
      if (backend.postgres) {
        server = await startPostgres();
        database = await server.createDatabase();
      }
      fleet = await startFleet(database ? { database } : {});
      await fleet.applyConfig(testConfig());
      // 130 events or so, each transaction signed as it commits; the token event last is anchored at once.
      for (let index = 1; index <= 128; index++) {
        const added = await fleet.http('POST', '/api/v1/hosts', { name: `web-${index}`, env: 'development' });
        assert.equal(added.status, 200, JSON.stringify(added.json));
      }
      await fleet.ok(['token', 'create', 'auditor', '--role', 'viewer']);
      anchor = join(fleet.dataDir, 'audit-anchor.jsonl');
      db = database ? await postgresDatabase(database) : sqliteDatabase(join(fleet.dataDir, 'lockstep.db'));
      saved = await snapshot(db);
      headSeq = Number(saved.head.seq);
      for (let attempt = 0; !(await readFile(anchor, 'utf8').catch(() => '')).includes(`"seq":${headSeq},`); attempt++) {
        if (attempt > 300) throw new Error(`the checkpoint of the token event (seq ${headSeq}) was not anchored within 30s`);
        await delay(100);
      }
      pubkey = (await fleet.ok(['audit', 'pubkey'])).trim();
      assert.ok(headSeq >= 130, `head at seq ${headSeq}`);
    });

    after(async () => {
      await db?.close();
      await fleet?.stop();
      await server?.stop();
    });

    /** Runs verify live, on an export file, and on it with the anchor file; returns the three results. */
    async function verifyThreeWays() {
      const live = await fleet.cli(['audit', 'verify']);
      const exported = await fleet.cli(['audit', 'export']);
      assert.equal(exported.code, 0, exported.stderr);
      const file = join(fleet.dir, 'audit.jsonl');
      await writeFile(file, exported.stdout);
      const offline = await fleet.cli(['audit', 'verify', file, '--pubkey', pubkey]);
      const anchored = await fleet.cli(['audit', 'verify', file, '--pubkey', pubkey, '--anchor', anchor]);
      return { live, offline, anchored };
    }

    function assertFailedAt(result: { code: number; stderr: string }, seq: number, word: RegExp, how: string): void {
      assert.equal(result.code, 4, `${how}: exit ${result.code}: ${result.stderr}`);
      assert.match(result.stderr, new RegExp(`^lockstep: audit verification failed at seq ${seq}: `), how);
      assert.match(result.stderr, word, how);
    }

    async function assertCaught(seq: number, word: RegExp): Promise<void> {
      const { live, offline, anchored } = await verifyThreeWays();
      assertFailedAt(live, seq, word, 'live');
      assertFailedAt(offline, seq, word, 'export file');
      assertFailedAt(anchored, seq, word, 'export file with --anchor');
    }

    it('an untouched log verifies live, as an export file, and against the anchor file', async () => {
      const { live, offline, anchored } = await verifyThreeWays();
      for (const result of [live, offline, anchored]) assert.equal(result.code, 0, result.stderr);
      assert.match(live.stdout, new RegExp(`audit log verified: ${headSeq} events \\(seq 1\\.\\.${headSeq}\\), \\d+ signed checkpoints, last checkpoint at seq ${headSeq} `));
      assert.match(live.stdout, /\b0 events after the last checkpoint/);
      assert.match(anchored.stdout, /[1-9]\d* checkpoints matched the anchor file/);
    });

    it('one changed field is named by its seq', async () => {
      await db.run("update audit_events set actor = 'mallory' where seq = 50");
      await assertCaught(50, /altered/);
      await restore(db, saved);
    });

    it('one deleted row is named by its seq', async () => {
      await db.run('delete from audit_events where seq = 60');
      await assertCaught(60, /removed: events? 60(\.\.60)? (is|are) missing/);
      await restore(db, saved);
    });

    it('two swapped rows are named by the first', async () => {
      await db.run('update audit_events set seq = -70 where seq = 70');
      await db.run('update audit_events set seq = 70 where seq = 71');
      await db.run('update audit_events set seq = 71 where seq = -70');
      await assertCaught(70, /reordered/);
      await restore(db, saved);
    });

    it('a forged row appended with a correct chain hash and the head moved is named by its seq', async () => {
      const last = (await db.all('select hash from audit_events where seq = ?', [headSeq]))[0]!;
      const forged = { seq: headSeq + 1, at: '2020-01-01T00:00:00.000Z', actor: 'admin', action: 'approval.given', target: 'deployment:1', details: { note: 'backdated' } };
      const hash = auditHash(String(last.hash), forged);
      await db.run('insert into audit_events (seq, at, actor, action, target, details, prev_hash, hash) values (?, ?, ?, ?, ?, ?, ?, ?)', [
        forged.seq, forged.at, forged.actor, forged.action, forged.target, canonicalJson(forged.details), last.hash, hash,
      ]);
      await db.run('update audit_head set seq = ?, hash = ? where id = 1', [forged.seq, hash]);
      await assertCaught(headSeq + 1, /inserted/);
      await restore(db, saved);
    });

    it('a tail dropped with its checkpoint and the head moved back is caught live and with the anchor file', async () => {
      const kept = (await db.all('select hash from audit_events where seq = 95'))[0]!;
      await db.run('delete from audit_events where seq > 95');
      await db.run('delete from audit_checkpoints where seq > 95');
      await db.run('update audit_head set seq = ?, hash = ? where id = 1', [95, kept.hash]);
      const { live, offline, anchored } = await verifyThreeWays();
      assertFailedAt(live, 96, /truncated: the anchor file has a checkpoint at seq \d+/, 'live (the server\'s anchor file)');
      assertFailedAt(anchored, 96, /truncated/, 'export file with --anchor');
      // What the issue says a chain alone cannot show: a clean cut with a consistent head verifies without the anchor.
      assert.equal(offline.code, 0, offline.stderr);
      await restore(db, saved);
    });

    /** Re-chains events `from`..head as an attacker who knows the scheme would, with `change` applied to each. */
    async function rechainFrom(from: number, change: (event: Record<string, unknown>) => Record<string, unknown>): Promise<void> {
      let prevHash = String((await db.all('select hash from audit_events where seq = ?', [from - 1]))[0]!.hash);
      for (const row of await db.all('select * from audit_events where seq >= ? order by seq', [from])) {
        const event = change({ seq: Number(row.seq), at: row.at, actor: row.actor, action: row.action, target: row.target, details: JSON.parse(String(row.details)) as unknown });
        const hash = auditHash(prevHash, event as never);
        await db.run('update audit_events set actor = ?, details = ?, prev_hash = ?, hash = ? where seq = ?', [event.actor, canonicalJson(event.details), prevHash, hash, event.seq]);
        prevHash = hash;
      }
      await db.run('update audit_head set hash = ? where id = 1', [prevHash]);
    }

    it('tail attack 1: the last events rewritten with recomputed hashes are caught, with or without their checkpoints', async () => {
      await rechainFrom(headSeq - 2, (event) => ({ ...event, actor: 'mallory' }));
      await assertCaught(headSeq - 2, /rewritten: the chain up to seq/);
      await db.run('delete from audit_checkpoints where seq >= ?', [headSeq - 2]);
      await assertCaught(headSeq - 2, /unsigned tail: events/);
      await restore(db, saved);
    });

    it('tail attack 2: an event inserted after the last checkpoint, dated now and correctly chained, is caught', async () => {
      const last = (await db.all('select hash from audit_events where seq = ?', [headSeq]))[0]!;
      const forged = { seq: headSeq + 1, at: new Date().toISOString(), actor: 'admin', action: 'approval.given', target: 'deployment:1', details: {} };
      const hash = auditHash(String(last.hash), forged);
      await db.run('insert into audit_events (seq, at, actor, action, target, details, prev_hash, hash) values (?, ?, ?, ?, ?, ?, ?, ?)', [
        forged.seq, forged.at, forged.actor, forged.action, forged.target, canonicalJson(forged.details), last.hash, hash,
      ]);
      await db.run('update audit_head set seq = ?, hash = ? where id = 1', [forged.seq, hash]);
      await assertCaught(headSeq + 1, /unsigned tail: events/);
      // The server's next change does not sign the forged event into its checkpoint.
      const added = await fleet.http('POST', '/api/v1/hosts', { name: 'after-insert', env: 'development' });
      assert.equal(added.status, 200, JSON.stringify(added.json));
      await assertCaught(headSeq + 1, /unsigned tail: events/);
      await restore(db, saved);
    });

    it('tail attack 3: the tail cut with its checkpoints and the head moved back is caught, and the server does not sign the forged head', async () => {
      const cut = headSeq - 3;
      const kept = (await db.all('select hash from audit_events where seq = ?', [cut]))[0]!;
      await db.run('delete from audit_events where seq > ?', [cut]);
      await db.run('delete from audit_checkpoints where seq > ?', [cut]);
      await db.run('update audit_head set seq = ?, hash = ? where id = 1', [cut, kept.hash]);
      const before = await verifyThreeWays();
      assertFailedAt(before.live, cut + 1, /truncated: the anchor file has a checkpoint at seq/, 'live');
      assertFailedAt(before.anchored, cut + 1, /truncated/, 'export file with --anchor');
      // The server's next change lands on the forged head: it refuses to sign it, so even the log alone shows the cut.
      const added = await fleet.http('POST', '/api/v1/hosts', { name: 'after-cut', env: 'development' });
      assert.equal(added.status, 200, JSON.stringify(added.json));
      const after = await verifyThreeWays();
      assertFailedAt(after.offline, cut + 1, /unsigned tail: events/, 'export file');
      assertFailedAt(after.live, cut + 1, /unsigned tail|rewritten|truncated/, 'live');
      await restore(db, saved);
    });
  });
}
