/**
 * One agent per identity, end to end: a second `lockstep agent` started with
 * the state dir of a running one exits 2 with one line naming the running
 * agent, which keeps deploying; an agent killed with SIGKILL leaves no lock
 * behind; of two agents started at once after a crash exactly one runs.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LOCKSTEP_MAIN, startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { until } from '../helpers/until.js';
import { assertExit, releaseIdFrom } from './host-tree.js';

/** An agent process started by the test itself, with what it printed on stderr. */
interface ExtraAgent {
  readonly child: ChildProcess;
  readonly stderr: () => string;
  readonly exited: Promise<number | null>;
}

describe('one agent per state dir', () => {
  let fleet: Fleet;
  let agent: AgentHandle;
  const extras: ExtraAgent[] = [];
  let version = 0;

  const startExtra = (): ExtraAgent => {
    const child = spawn(process.execPath, [LOCKSTEP_MAIN, 'agent', '--server', fleet.url, '--root', agent.root, '--state-dir', agent.stateDir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const extra: ExtraAgent = { child, stderr: () => stderr, exited: new Promise((done) => child.once('exit', (code) => done(code))) };
    extras.push(extra);
    return extra;
  };
  const running = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;
  const refusal = (stateDir: string) => new RegExp(`^lockstep: another agent \\(pid (\\d+|unknown)\\) is running with state dir ${stateDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; stop it first\\n$`);

  /** Creates a new release and deploys it to development; the deployment needs a working agent. */
  const deployNext = async (): Promise<void> => {
    version += 1;
    const dir = await writeApp(join(fleet.dir, `build-${version}`), `${version}.0.0`);
    const created = await fleet.cli(['release', 'create', dir, '--version', `${version}.0.0`]);
    assertExit(created, 0, 'release create');
    assertExit(await fleet.cli(['deploy', releaseIdFrom(created.stdout), '--to', 'development']), 0, `deploy ${version}.0.0`);
  };

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(testConfig());
    agent = await fleet.addAgent('dev-1', 'development');
  });

  after(async () => {
    for (const extra of extras) if (running(extra.child)) extra.child.kill('SIGKILL');
    await Promise.all(extras.map((extra) => extra.exited));
    await fleet?.stop();
  });

  it('a second agent with the same state dir exits 2 naming the running one, which keeps working', async () => {
    const second = startExtra();
    // Without the lock the second agent would simply run: wait for its exit, bounded.
    const code = await until('the second agent to exit', async () => (running(second.child) ? undefined : second.child.exitCode), 60_000);
    assert.equal(code, 2, second.stderr());
    assert.equal(second.stderr(), `lockstep: another agent (pid ${agent.process.pid}) is running with state dir ${agent.stateDir}; stop it first\n`);
    assert.ok(running(agent.process), 'the first agent still runs');
    await deployNext();
  });

  it('an agent killed with SIGKILL leaves no lock behind: a new one starts and deploys', async () => {
    await agent.kill('SIGKILL');
    await agent.restart();
    await deployNext();
    assert.ok(running(agent.process));
  });

  it('of two agents started at once after a SIGKILL, exactly one runs, every time', async () => {
    for (let round = 0; round < 5; round++) {
      const survivors = round === 0 ? [agent.process] : extras.slice(-2).map((extra) => extra.child).filter(running);
      assert.equal(survivors.length, 1, `round ${round}: one agent ran before`);
      const previous = survivors[0] as ChildProcess;
      previous.kill('SIGKILL');
      await until('the killed agent to exit', async () => (running(previous) ? undefined : true));
      const pair = [startExtra(), startExtra()];
      // Without the lock both would run: wait for one to exit, bounded.
      const loser = await until(`round ${round}: one of two agents to exit`, async () => pair.find((extra) => !running(extra.child)), 60_000);
      assert.equal(await loser.exited, 2, `round ${round}: ${loser.stderr()}`);
      assert.match(loser.stderr(), refusal(agent.stateDir));
      const winner = pair.find((extra) => extra !== loser) as ExtraAgent;
      const named = /pid (\d+)/.exec(loser.stderr())?.[1];
      if (named !== undefined) assert.equal(Number(named), winner.child.pid, 'the refusal names the agent that runs');
      assert.ok(running(winner.child), `round ${round}: the other agent runs: ${winner.stderr()}`);
    }
    await deployNext();
  });
});
