/**
 * Errors through one path, end to end with the real CLI and server: commander's
 * own errors in the `lockstep: …` one-line format (exit 2), `--json` errors as
 * one JSON object on stderr, an unknown environment exit 2 for `history` like
 * `status`, and a server that cannot listen or reach its database says why
 * (exit 2 / 6) before it writes anything.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DeploymentView } from '../../src/api/schemas.js';
import { runProcess, startFleet, writeApp, type CliResult, type Fleet } from '../helpers/fleet.js';
import { withTempDir } from '../helpers/tmp.js';
import { assertExit } from './host-tree.js';

/** Runs `lockstep ARGS` with no server configured. */
function lockstep(args: readonly string[], cwd: string): Promise<CliResult> {
  return runProcess(args, { ...process.env, NO_COLOR: '1', LOCKSTEP_TOKEN: 'lst_x' }, cwd);
}

describe('CLI errors through one path', () => {
  it("commander's errors are one `lockstep:` line with exit 2, or a JSON object on stderr with --json", async () => {
    await withTempDir(async (dir) => {
      const typo = await lockstep(['deplyo', 'shop@1', '--to', 'test'], dir);
      assertExit(typo, 2, 'unknown command');
      assert.equal(typo.stderr, "lockstep: unknown command 'deplyo' (did you mean deploy?); see `lockstep --help`\n");
      assert.equal(typo.stdout, '');

      const option = await lockstep(['release', 'create', '.', '--version', '1', '--bogus'], dir);
      assertExit(option, 2, 'unknown option');
      assert.equal(option.stderr, "lockstep: unknown option '--bogus'; see `lockstep release create --help`\n");

      const missing = await lockstep(['deploy', 'shop@1', '--to'], dir);
      assertExit(missing, 2, 'missing option argument');
      assert.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);
      assert.match(missing.stderr, /^lockstep: option '--to <env>' argument missing; see `lockstep deploy --help`$/m);

      const asJson = await lockstep(['status', '--json', '--bogus'], dir);
      assertExit(asJson, 2, 'unknown option with --json');
      assert.deepEqual(JSON.parse(asJson.stderr), { error: { kind: 'bad-input', message: "unknown option '--bogus'", hint: 'see `lockstep status --help`', exitCode: 2 } });
    });
  });

  it('a server that cannot listen, or cannot reach its database, says why and writes nothing', async () => {
    await withTempDir(async (dir) => {
      const busy = createServer();
      await new Promise<void>((resolve) => busy.listen({ host: '127.0.0.1', port: 0 }, resolve));
      const port = (busy.address() as AddressInfo).port;
      try {
        const inUse = await lockstep(['server', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')], dir);
        assertExit(inUse, 2, 'address in use');
        assert.equal(inUse.stderr, `lockstep: cannot listen on 127.0.0.1:${port}: the address is already in use (another lockstep server?); stop it or choose another --listen\n`);
      } finally {
        await new Promise<void>((resolve) => busy.close(() => resolve()));
      }

      // A port nothing listens on: the connection is refused at once.
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen({ host: '127.0.0.1', port: 0 }, resolve));
      const deadPort = (closed.address() as AddressInfo).port;
      await new Promise<void>((resolve) => closed.close(() => resolve()));
      const noDatabase = await lockstep(['server', '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--database', `postgres://lockstep@127.0.0.1:${deadPort}/lockstep`], dir);
      assertExit(noDatabase, 6, 'database unreachable');
      assert.match(noDatabase.stderr, new RegExp(`^lockstep: cannot open the database: connect ECONNREFUSED 127\\.0\\.0\\.1:${deadPort}; is the database server running and is --database right\\?\\n$`));

      assert.deepEqual(await readdir(dir), [], 'no data dir was created');
    });
  });

  describe('with a server', () => {
    let fleet: Fleet;
    before(async () => {
      fleet = await startFleet();
      await fleet.applyConfig(`app: app
deploy_to: /srv/app
environments:
  development:
    host_timeout: 20s
    approvals: { required: 1, expire_after: 1h }
`);
      await fleet.addAgent('dev1', 'development');
    });
    after(() => fleet.stop());

    it('history of an unknown environment exits 2 with the same message as status', async () => {
      const status = await fleet.cli(['status', 'nowhere']);
      const history = await fleet.cli(['history', 'nowhere']);
      assertExit(status, 2, 'status nowhere');
      assertExit(history, 2, 'history nowhere');
      assert.equal(history.stderr, 'lockstep: environment "nowhere" is not in lockstep.yaml (environments: development)\n');
      assert.equal(history.stderr, status.stderr);
      const asJson = await fleet.cli(['history', 'nowhere', '--json']);
      assert.deepEqual(JSON.parse(asJson.stderr), { error: { kind: 'not-found', message: 'environment "nowhere" is not in lockstep.yaml (environments: development)', exitCode: 2 } });
    });

    it('deploy --no-wait says when the deployment awaits approval; the duration comes from the server', async () => {
      const app = join(fleet.dir, 'app');
      await mkdir(app, { recursive: true });
      await writeApp(app, 'v1');
      await writeFile(join(app, 'VERSION'), 'v1\n');
      await fleet.ok(['release', 'create', app, '--version', '1.0.0']);
      const started = await fleet.cli(['deploy', 'app@1.0.0', '--to', 'development', '--no-wait']);
      assertExit(started, 0, 'deploy --no-wait');
      const id = /deployment #(\d+)/.exec(started.stdout)?.[1];
      assert.ok(id, started.stdout);
      assert.equal(started.stdout, `deployment #${id}: 1.0.0 (${/\(([0-9a-f]{12})\)/.exec(started.stdout)?.[1] ?? '?'}) to development is awaiting approval; approvers run: lockstep approve ${id}; follow it with: lockstep deploy --follow ${id}\n`);

      const approver = JSON.parse(await fleet.ok(['token', 'create', 'alice', '--role', 'approver', '--json'])) as { token: string };
      const approved = await fleet.cli(['approve', id], { env: { LOCKSTEP_TOKEN: approver.token } });
      assertExit(approved, 0, 'approve');
      const followed = await fleet.cli(['deploy', '--follow', id, '--json']);
      assertExit(followed, 0, 'follow');
      const final = followed.stdout
        .trim()
        .split('\n')
        .map((text) => JSON.parse(text) as { event: string; deployment?: DeploymentView })
        .find((event) => event.event === 'finished')?.deployment;
      assert.ok(final, followed.stdout);
      assert.equal(final.state, 'succeeded');
      // The rollout began at the approval, not when the request was made (nor when the CLI attached).
      const approval = final.approvals.find((entry) => entry.decision === 'approve');
      assert.equal(final.startedAt, approval?.at);
      assert.equal(final.durationMs, Date.parse(final.finishedAt ?? '') - Date.parse(final.startedAt));
    });
  });
});
