/**
 * Polite scans end to end (issue 12): `drift.scan` of lockstep.yaml reaches
 * every agent through its host settings, and the agent's scanner threads run
 * at that nice value and I/O class while its main thread keeps its own, as
 * an operator sees it in /proc and with `ionice -p`. Real server, a real agent
 * on a sandbox root, the real CLI.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { until } from '../helpers/until.js';
import { assertExit } from './host-tree.js';

/** Thread id → nice value, for every thread of a process (field 19 of /proc/PID/task/TID/stat). */
async function threadNices(pid: number): Promise<Map<number, number>> {
  const nices = new Map<number, number>();
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => undefined);
    if (stat !== undefined) nices.set(Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
  }
  return nices;
}

describe('scan priority from lockstep.yaml', () => {
  let fleet: Fleet;
  let host: AgentHandle;

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(`${testConfig()}drift:\n  scan_interval: 1s\n  scan: { nice: 13, ionice: idle }\n`);
    host = await fleet.addAgent('dev-1', 'development');
    const dir = await writeApp(join(fleet.dir, 'build'), 'release 1', 40);
    assertExit(await fleet.cli(['release', 'create', dir, '--version', '1.0.0']), 0, 'release create');
    assertExit(await fleet.cli(['deploy', 'app@1.0.0', '--to', 'development']), 0, 'deploy');
  });

  after(async () => {
    await fleet?.stop();
  });

  it('runs the agent’s scanner threads at drift.scan’s nice and I/O class, and nothing else', async () => {
    const pid = host.process.pid as number;
    const scanners = await until('scanner threads at nice 13', async () => {
      const found = [...(await threadNices(pid))].filter(([, nice]) => nice === 13).map(([tid]) => tid);
      return found.length > 0 ? found : undefined;
    });
    for (const tid of scanners) assert.equal(execFileSync('ionice', ['-p', String(tid)], { encoding: 'utf8' }).trim(), 'idle', `thread ${tid}: I/O class`);
    assert.equal((await threadNices(pid)).get(pid), 0, 'the main thread keeps nice 0');
    assert.match(execFileSync('ionice', ['-p', String(pid)], { encoding: 'utf8' }), /^none/, 'the main thread keeps its I/O class');
  });
});
