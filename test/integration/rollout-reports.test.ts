/**
 * Reports against the server's in-memory view of a rollout (issue 12,
 * "Cheap reports"): a host's report writes its own step and moves the
 * rollout on without reading the other steps back, and the database stays
 * the truth: a second server on the same database, taking every other
 * report, sees the first one's decisions and the first sees its own.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, describe, it } from 'node:test';
import Sqlite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { createKyselyStore } from '../../src/store/kysely/kysely-store.js';
import type { Database } from '../../src/store/schema.js';
import { startInProcessApp, type InProcessApp } from '../helpers/in-process-app.js';

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

const CONFIG = `app: shop
deploy_to: /srv/shop
environments:
  production:
    host_timeout: 10m
    rollout: { canary: 1, batch: 50%, pause: 0ms, max_failures: 0 }
`;

interface StepView {
  readonly host: string;
  readonly batch: number;
  readonly state: string;
}

/** A server app with its enrolled hosts' agent credentials. */
interface Fleet {
  readonly app: InProcessApp;
  readonly credentials: Map<string, string>;
  readonly deployer: string;
}

async function fleetOf(app: InProcessApp, hosts: readonly string[]): Promise<Fleet> {
  const credentials = new Map<string, string>();
  for (const host of hosts) credentials.set(host, await app.enroll(host, 'production'));
  return { app, credentials, deployer: await app.token('deployer', 'deployer') };
}

/** Creates release `version` (one file) and starts its deployment to production; returns the release id and deployment id. */
async function deploy(fleet: Fleet, version: string): Promise<{ releaseId: string; id: number }> {
  const content = `shop ${version}\n`;
  assert.equal((await fleet.app.call('PUT', `/api/v1/blobs/${sha(content)}`, fleet.deployer, Buffer.from(content))).status, 200);
  const created = await fleet.app.call('POST', '/api/v1/releases', fleet.deployer, { version, entries: [{ path: 'VERSION', type: 'file', mode: 0o644, size: content.length, sha256: sha(content) }] });
  assert.equal(created.status, 200, JSON.stringify(created.json));
  const started = await fleet.app.call('POST', '/api/v1/deployments', fleet.deployer, { release: created.json.release.id, env: 'production' });
  assert.equal(started.status, 201, JSON.stringify(started.json));
  return { releaseId: created.json.release.id as string, id: started.json.id as number };
}

type Report = { readonly state: 'activated' | 'succeeded' | 'failed'; readonly currentReleaseId: string | null; readonly taskKind?: 'deploy' | 'revert'; readonly error?: string };

async function report(app: InProcessApp, fleet: Fleet, host: string, deploymentId: number, body: Report): Promise<void> {
  const answer = await app.call('POST', '/api/v1/agent/report', fleet.credentials.get(host), { host, deploymentId, taskKind: 'deploy', ...body });
  assert.equal(answer.status, 200, `${host}: ${JSON.stringify(answer.json)}`);
}

async function view(app: InProcessApp, fleet: Fleet, id: number): Promise<{ state: string; error: string | null; hosts: StepView[] }> {
  return (await app.call('GET', `/api/v1/deployments/${id}`, fleet.deployer)).json;
}

const steps = (shown: { hosts: StepView[] }): Record<string, string> => Object.fromEntries(shown.hosts.map((step) => [step.host, step.state]));

describe('reports against the in-memory view of a rollout', () => {
  const apps: InProcessApp[] = [];
  after(async () => {
    for (const app of apps.reverse()) await app.close();
  });

  it("a host's report reads none of the other steps back: after the first, no report selects from deployment_hosts", async () => {
    const statements: string[] = [];
    const app = await startInProcessApp(CONFIG, {
      openStore: (file) => {
        const database = new Sqlite(file);
        database.pragma('journal_mode = WAL');
        const db = new Kysely<Database>({ dialect: new SqliteDialect({ database }), log: (event) => void statements.push(event.query.sql) });
        return createKyselyStore(db, { sharedByServers: false });
      },
    });
    apps.push(app);
    const hosts = Array.from({ length: 9 }, (_, index) => `web-${index + 1}`);
    const fleet = await fleetOf(app, hosts);
    const { releaseId, id } = await deploy(fleet, '1.0.0');
    const stepReads: string[] = [];
    let reports = 0;
    for (;;) {
      const shown = await view(app, fleet, id);
      if (shown.state !== 'running') break;
      const pending = shown.hosts.filter((step) => step.state === 'pending');
      assert.ok(pending.length > 0, `deployment #${id} runs with no pending host: ${JSON.stringify(steps(shown))}`);
      for (const step of pending) {
        for (const state of ['activated', 'succeeded'] as const) {
          statements.length = 0;
          await report(app, fleet, step.host, id, { state, currentReleaseId: releaseId });
          // The first event of a deployment in this server builds its view from the database.
          if (reports++ > 0) stepReads.push(...statements.filter((sql) => /^select\b[\s\S]*\bfrom "deployment_hosts"/i.test(sql)).map((sql) => `${step.host} ${state}: ${sql}`));
        }
      }
    }
    const final = await view(app, fleet, id);
    assert.equal(final.state, 'succeeded', final.error ?? '');
    assert.deepEqual(steps(final), Object.fromEntries(hosts.map((host) => [host, 'succeeded'])));
    assert.equal(reports, 2 * hosts.length);
    assert.deepEqual(stepReads, []);
  });

  it('two servers on one database, taking turns, each see what the other decided (a stopped rollout reverts through both)', async () => {
    const first = await startInProcessApp(CONFIG);
    apps.push(first);
    const second = await startInProcessApp(CONFIG, { sameDataAs: first });
    apps.push(second);
    const hosts = ['web-1', 'web-2', 'web-3', 'web-4', 'web-5', 'web-6'];
    const fleet = await fleetOf(first, hosts);
    const servers = [first, second];

    // A rollout where every other report goes to the other server, five times over.
    let releaseBefore: string | null = null;
    for (let round = 1; round <= 5; round++) {
      const { releaseId, id } = await deploy(fleet, `1.${round}.0`);
      let turn = round;
      for (;;) {
        const shown = await view(servers[turn % 2] as InProcessApp, fleet, id);
        if (shown.state !== 'running') break;
        for (const step of shown.hosts.filter((candidate) => candidate.state === 'pending')) {
          await report(servers[turn++ % 2] as InProcessApp, fleet, step.host, id, { state: 'activated', currentReleaseId: releaseId });
          await report(servers[turn++ % 2] as InProcessApp, fleet, step.host, id, { state: 'succeeded', currentReleaseId: releaseId });
        }
      }
      for (const server of servers) {
        const final = await view(server, fleet, id);
        assert.equal(final.state, 'succeeded', `round ${round}: ${final.error ?? ''}`);
        assert.deepEqual(steps(final), Object.fromEntries(hosts.map((host) => [host, 'succeeded'])));
      }
      releaseBefore = releaseId;
    }

    // The first server sees the canary and web-2 through; the second hears web-3 fail and stops the rollout;
    // the first must then take the canary's and web-2's way back as the reverts they are.
    const { releaseId, id } = await deploy(fleet, '2.0.0');
    const batch1 = (await view(first, fleet, id)).hosts.filter((step) => step.batch === 1).map((step) => step.host);
    const canary = (await view(first, fleet, id)).hosts.find((step) => step.batch === 0)?.host as string;
    const [onward, failing, untouched] = batch1 as [string, string, string];
    await report(first, fleet, canary, id, { state: 'succeeded', currentReleaseId: releaseId });
    await report(first, fleet, onward, id, { state: 'succeeded', currentReleaseId: releaseId });
    await report(second, fleet, failing, id, { state: 'failed', currentReleaseId: releaseBefore, error: 'the health check failed' });
    const stopped = await view(first, fleet, id);
    assert.equal(stopped.state, 'rolling_back');
    assert.equal(steps(stopped)[canary], 'reverting');
    assert.equal(steps(stopped)[onward], 'reverting');
    assert.equal(steps(stopped)[untouched], 'skipped');
    await report(first, fleet, canary, id, { state: 'succeeded', taskKind: 'revert', currentReleaseId: releaseBefore });
    await report(first, fleet, onward, id, { state: 'succeeded', taskKind: 'revert', currentReleaseId: releaseBefore });
    for (const server of servers) {
      const final = await view(server, fleet, id);
      assert.equal(final.state, 'failed');
      assert.deepEqual(
        steps(final),
        Object.fromEntries(hosts.map((host) => [host, host === canary || host === onward ? 'reverted' : host === failing ? 'failed' : 'skipped'])),
      );
    }
  });
});
