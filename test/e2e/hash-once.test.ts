/**
 * Hash each file once per deployment (issue 12): after the switch, the
 * post-deploy check and the first drift scan of the new release compare lstat
 * with the stat record taken at staging; they read no file content. The
 * observable is the agent's own log: each check and scan logs the files and
 * bytes it hashed. A file edited after the switch is still hashed and found.
 * Real server, a real agent on a sandbox root, the real CLI.
 */
import assert from 'node:assert/strict';
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { until } from '../helpers/until.js';
import { assertExit, DEPLOY_TO } from './host-tree.js';

/** What the agent logs after each check and scan (pino JSON lines). */
interface ScanLine {
  readonly msg: string;
  readonly deploymentId?: number;
  readonly hashedFiles: number;
  readonly hashedBytes: number;
  readonly entries: number;
}

const CHECKED = 'checked the activated release against its manifest';
const SCANNED = 'scanned for drift after the task';
const FILES = 60;
const DEPLOYMENTS = 5;

describe('hash once per deployment', () => {
  let fleet: Fleet;
  let host: AgentHandle;

  // Complete lines only: the agent may be writing the last one while it is read.
  const lines = async (msg: string): Promise<ScanLine[]> =>
    (await readFile(join(host.root, 'agent.log'), 'utf8'))
      .split('\n')
      .slice(0, -1)
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as ScanLine)
      .filter((line) => line.msg === msg);

  before(async () => {
    fleet = await startFleet();
    // Long periodic intervals: only the scans a deployment causes run during the test.
    await fleet.applyConfig(`${testConfig()}drift:\n  scan_interval: 1h\n  full_scan_interval: 24h\n`);
    host = await fleet.addAgent('dev-1', 'development');
    for (const version of ['1.0.0', '2.0.0']) {
      const dir = await writeApp(join(fleet.dir, `build-${version}`), `release ${version}`, FILES);
      assertExit(await fleet.cli(['release', 'create', dir, '--version', version]), 0, `release create ${version}`);
    }
  });

  after(async () => {
    await fleet?.stop();
  });

  it('neither the post-deploy check nor the new drift baseline re-hashes the release, deploy after deploy', async () => {
    for (let deployment = 0; deployment < DEPLOYMENTS; deployment++) {
      const version = deployment % 2 === 0 ? '1.0.0' : '2.0.0';
      assertExit(await fleet.cli(['deploy', `app@${version}`, '--to', 'development']), 0, `deploy ${version} (#${deployment + 1})`);
      const scans = await until(`drift scan after deployment #${deployment + 1}`, async () => {
        const found = await lines(SCANNED);
        return found.length > deployment ? found : undefined;
      });
      const checks = await lines(CHECKED);
      assert.equal(checks.length, deployment + 1, 'one post-deploy check per deployment');
      const check = checks[deployment] as ScanLine;
      const scan = scans[deployment] as ScanLine;
      assert.ok(check.entries > FILES, `the check covered the release (${check.entries} entries)`);
      assert.deepEqual({ hashedFiles: check.hashedFiles, hashedBytes: check.hashedBytes }, { hashedFiles: 0, hashedBytes: 0 }, `deployment #${deployment + 1}: the post-deploy check hashed nothing`);
      assert.ok(scan.entries > FILES, `the drift scan covered the release (${scan.entries} entries)`);
      assert.deepEqual({ hashedFiles: scan.hashedFiles, hashedBytes: scan.hashedBytes }, { hashedFiles: 0, hashedBytes: 0 }, `deployment #${deployment + 1}: the first drift scan hashed nothing`);
    }
  });

  it('a file edited after the switch is hashed by the next scan and listed as drift', async () => {
    const before = (await lines(SCANNED)).length;
    await appendFile(host.path(`${DEPLOY_TO}/current/public/page-7.html`), '<script src="//evil"></script>\n');
    assertExit(await fleet.cli(['drift', 'scan', 'dev-1']), 0, 'drift scan');
    await until('the edit listed as drift', async () => {
      const items = JSON.parse(await fleet.ok(['drift', 'dev-1', '--json'])) as { path: string; kinds: string[] }[];
      return items.find((item) => item.path === `${DEPLOY_TO}/current/public/page-7.html` && item.kinds.includes('content'));
    });
    assert.equal((await lines(SCANNED)).length, before, 'no deployment ran meanwhile');
  });
});
