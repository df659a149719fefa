/**
 * Rollback latency: from invoking `lockstep rollback production` to every one
 * of 20 sandbox production hosts confirmed (the CLI exits 0 only then).
 * Goal: under 1 s on loopback.
 *
 * Real processes only: one `lockstep server` (SQLite), 22 `lockstep agent`
 * processes with sandbox roots (1 development, 1 test, 20 production), and
 * the real CLI spawned for every measured command.
 *
 * Each run: (untimed) `lockstep deploy v2 --to production`, then (timed)
 * `lockstep rollback production`, which goes back to v1, the previous
 * known-good release. A rollback marks the release it left (v2) as rolled
 * back, so the untimed deploy makes v2 current and known-good again; v2 is
 * still on disk, so that deploy is itself only a symlink switch.
 *
 * The CLI measured is the installed command, `dist/src/bin.js` (the one-file
 * bundle); start-up alone is measured interleaved, one of each per round:
 * `node -e 0`, `lockstep --version`, the unbundled `node dist/src/main.js
 * --version` for comparison, and `lockstep status production` (start-up plus
 * one API call). Goal: `--version` under `node -e 0` + 50 ms.
 *
 * Usage: node dist/bench/rollback-latency.js [--runs 20] [--warmup 2] [--hosts 20] [--json]
 */
import { readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { LOCKSTEP_MAIN, startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../test/helpers/fleet.js';
import { args, expectHostsOn, machine, ms, mustSucceed, summarize, table, timedRun, type Summary } from './bench-util.js';

interface HostView {
  readonly host: string;
  readonly state: string;
  readonly updatedAt: string;
}
interface DeploymentView {
  readonly id: number;
  readonly kind: string;
  readonly state: string;
  readonly releaseId: string;
  readonly createdAt: string;
  readonly finishedAt: string | null;
  readonly hosts: readonly HostView[];
}

interface Run {
  readonly run: number;
  /** CLI spawn to exit 0. */
  readonly endToEndMs: number;
  /** Deployment createdAt -> finishedAt (server clock). */
  readonly serverMs: number;
  /** createdAt -> first / last host step confirmed. */
  readonly firstHostMs: number;
  readonly lastHostMs: number;
  /** From the agents' logs, relative to createdAt: task received (first, last), and stage+activate time per host (median). */
  readonly firstReceivedMs: number;
  readonly lastReceivedMs: number;
  readonly lastActivatedMs: number;
  readonly agentWorkMedianMs: number;
}

const argv = args(process.argv.slice(2));
const RUNS = argv.number('--runs', 20);
const WARMUP = argv.number('--warmup', 2);
const HOSTS = argv.number('--hosts', 20);
const JSON_OUTPUT = argv.has('--json');

const log = (text: string): void => void process.stderr.write(`${text}\n`);
/** The installed `lockstep` (package.json "bin"): loads the CLI bundled into one file. */
const LOCKSTEP_BIN = join(dirname(LOCKSTEP_MAIN), 'bin.js');

async function main(): Promise<void> {
  log(`rollback-latency: ${HOSTS} production hosts, ${WARMUP} warm-up + ${RUNS} measured runs`);
  // Plain HTTP, as in the figures recorded before TLS: the ratios compare like with like.
  const fleet = await startFleet({ tls: false });
  try {
    await fleet.applyConfig(testConfig({ keep: 5, hostTimeout: '120s' }));
    const production = await setUpHosts(fleet);
    const v1 = await createRelease(fleet, 'v1');
    const v2 = await createRelease(fleet, 'v2');
    for (const release of [v1, v2]) for (const env of ['development', 'test', 'production']) await fleet.ok(['deploy', release, '--to', env]);
    await expectHostsOn(production, v2);
    log('fleet ready: production runs v2, v1 and v2 known-good');

    const env = { ...process.env, LOCKSTEP_SERVER: fleet.url, LOCKSTEP_TOKEN: fleet.token, NO_COLOR: '1' };
    const cli = (cliArgs: readonly string[]) => timedRun(process.execPath, [LOCKSTEP_BIN, ...cliArgs], { env, cwd: fleet.dir });
    const loadBefore = loadavg();

    const runs: Run[] = [];
    for (let index = 0; index < WARMUP + RUNS; index++) {
      if (index > 0) {
        mustSucceed('deploy v2', await cli(['deploy', v2, '--to', 'production']));
        await expectHostsOn(production, v2);
      }
      // The measured region: the real CLI from spawn to exit.
      const rollback = mustSucceed('rollback', await cli(['rollback', 'production']));
      await expectHostsOn(production, v1);
      const deployment = await lastDeployment(fleet);
      if (deployment.kind !== 'rollback' || deployment.releaseId !== v1 || deployment.state !== 'succeeded' || deployment.finishedAt === null) {
        throw new Error(`unexpected last deployment: ${JSON.stringify(deployment)}`);
      }
      const created = Date.parse(deployment.createdAt);
      const confirmed = deployment.hosts.map((host) => Date.parse(host.updatedAt) - created);
      const run: Run = {
        run: index - WARMUP + 1,
        endToEndMs: rollback.ms,
        serverMs: Date.parse(deployment.finishedAt) - created,
        firstHostMs: Math.min(...confirmed),
        lastHostMs: Math.max(...confirmed),
        ...(await agentTimings(production, deployment.id, created)),
      };
      log(`${index < WARMUP ? 'warm-up' : `run ${run.run}`}: ${ms(run.endToEndMs)} end to end, ${ms(run.serverMs)} on the server, tasks received ${ms(run.firstReceivedMs)}..${ms(run.lastReceivedMs)}, hosts confirmed ${ms(run.firstHostMs)}..${ms(run.lastHostMs)}`);
      if (index >= WARMUP) runs.push(run);
    }

    const loadAfterRollbacks = loadavg();
    // Start-up of the CLI process alone, and with one API round-trip, interleaved with a bare node.
    const nodeMs: number[] = [];
    const versionMs: number[] = [];
    const unbundledMs: number[] = [];
    const statusMs: number[] = [];
    for (let index = 0; index < Math.max(RUNS, 20); index++) {
      nodeMs.push(mustSucceed('node -e 0', await timedRun(process.execPath, ['-e', '0'], { env, cwd: fleet.dir })).ms);
      versionMs.push(mustSucceed('--version', await cli(['--version'])).ms);
      unbundledMs.push(mustSucceed('main.js --version', await timedRun(process.execPath, [LOCKSTEP_MAIN, '--version'], { env, cwd: fleet.dir })).ms);
      statusMs.push(mustSucceed('status', await cli(['status', 'production'])).ms);
    }
    const versionOverNode = versionMs.map((value, index) => value - (nodeMs[index] ?? 0));

    const result = {
      benchmark: 'rollback-latency',
      machine: machine(),
      hosts: HOSTS,
      runs: runs.length,
      warmup: WARMUP,
      goalMs: 1000,
      endToEnd: summarize(runs.map((run) => run.endToEndMs)),
      server: summarize(runs.map((run) => run.serverMs)),
      firstHost: summarize(runs.map((run) => run.firstHostMs)),
      lastHost: summarize(runs.map((run) => run.lastHostMs)),
      firstReceived: summarize(runs.map((run) => run.firstReceivedMs)),
      lastReceived: summarize(runs.map((run) => run.lastReceivedMs)),
      lastActivated: summarize(runs.map((run) => run.lastActivatedMs)),
      agentWork: summarize(runs.map((run) => run.agentWorkMedianMs)),
      outsideServer: summarize(runs.map((run) => run.endToEndMs - run.serverMs)),
      load: { before: loadBefore, afterRollbacks: loadAfterRollbacks, after: loadavg() },
      node: summarize(nodeMs),
      cliVersion: summarize(versionMs),
      cliVersionOverNode: summarize(versionOverNode),
      cliVersionUnbundled: summarize(unbundledMs),
      cliStatus: summarize(statusMs),
      perRun: runs,
    };
    if (JSON_OUTPUT) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    const row = (name: string, summary: Summary): string[] => [name, ms(summary.median), ms(summary.p95), ms(summary.min), ms(summary.max)];
    process.stdout.write(
      `\nrollback of ${HOSTS} production hosts, ${runs.length} runs (after ${WARMUP} warm-up), ${result.machine.cpus} CPUs, node ${process.version}\n\n` +
        table([
          ['measure', 'median', 'p95', 'min', 'max'],
          row('lockstep rollback production (spawn -> exit 0)', result.endToEnd),
          row('  server: deployment created -> finished', result.server),
          row('  agents: created -> first task received', result.firstReceived),
          row('  agents: created -> last task received', result.lastReceived),
          row('  agents: stage + activate on one host (median)', result.agentWork),
          row('  agents: created -> last host activated', result.lastActivated),
          row('  server: created -> first host confirmed', result.firstHost),
          row('  server: created -> last host confirmed', result.lastHost),
          row('  outside the server window (CLI, HTTP, exit)', result.outsideServer),
          row('node -e 0 (bare node, interleaved)', result.node),
          row('lockstep --version (CLI start-up alone)', result.cliVersion),
          row('  --version minus node -e 0, same round', result.cliVersionOverNode),
          row('node dist/src/main.js --version (unbundled)', result.cliVersionUnbundled),
          row('lockstep status production (start-up + 1 call)', result.cliStatus),
        ]) +
        `\n\nload average (1, 5, 15 min): ${result.load.before.map((value) => value.toFixed(1)).join(' ')} before, ${result.load.afterRollbacks.map((value) => value.toFixed(1)).join(' ')} after the rollbacks, ${result.load.after.map((value) => value.toFixed(1)).join(' ')} at the end\n` +
        `goal: under 1000 ms end to end; median ${result.endToEnd.median < 1000 ? 'meets' : 'MISSES'} it, p95 ${result.endToEnd.p95 < 1000 ? 'meets' : 'MISSES'} it\n` +
        `goal: --version under node -e 0 + 50 ms; median ${result.cliVersionOverNode.median < 50 ? 'meets' : 'MISSES'} it (+${result.cliVersionOverNode.median.toFixed(0)} ms)\n`,
    );
  } finally {
    await fleet.stop();
  }
}

async function setUpHosts(fleet: Fleet): Promise<AgentHandle[]> {
  await fleet.addAgent('dev-1', 'development');
  await fleet.addAgent('test-1', 'test');
  const names = Array.from({ length: HOSTS }, (_, index) => `prod-${String(index + 1).padStart(2, '0')}`);
  const production: AgentHandle[] = [];
  // A few at a time: every agent is a Node process starting on a small machine.
  for (let start = 0; start < names.length; start += 5) {
    production.push(...(await Promise.all(names.slice(start, start + 5).map((name) => fleet.addAgent(name, 'production')))));
  }
  log(`${production.length + 2} agents online`);
  return production;
}

async function createRelease(fleet: Fleet, version: string): Promise<string> {
  const dir = await writeApp(join(fleet.dir, 'build', version), version, 100);
  const summary = JSON.parse(await fleet.ok(['release', 'create', dir, '--version', version, '--json'])) as { id: string };
  return summary.id;
}

/**
 * When each agent received the task and how long staging + activation took,
 * from the agents' own logs (pino JSON lines; same machine, same clock).
 */
async function agentTimings(hosts: readonly AgentHandle[], deploymentId: number, created: number): Promise<Pick<Run, 'firstReceivedMs' | 'lastReceivedMs' | 'lastActivatedMs' | 'agentWorkMedianMs'>> {
  const received: number[] = [];
  const activated: number[] = [];
  const work: number[] = [];
  for (const host of hosts) {
    const text = await readFile(join(host.root, 'agent.log'), 'utf8');
    for (const line of text.split('\n')) {
      if (!line.includes(`"deploymentId":${deploymentId},`) && !line.includes(`"deploymentId":${deploymentId}}`)) continue;
      const entry = JSON.parse(line) as { msg?: string; time?: number; elapsedMs?: number };
      if (entry.msg === 'task received' && entry.time !== undefined) received.push(entry.time - created);
      if (entry.msg === 'release activated' && entry.time !== undefined) {
        activated.push(entry.time - created);
        if (entry.elapsedMs !== undefined) work.push(entry.elapsedMs);
      }
    }
  }
  if (received.length !== hosts.length || activated.length !== hosts.length) {
    throw new Error(`agent logs of deployment #${deploymentId}: ${received.length} received, ${activated.length} activated, of ${hosts.length} hosts`);
  }
  return {
    firstReceivedMs: Math.min(...received),
    lastReceivedMs: Math.max(...received),
    lastActivatedMs: Math.max(...activated),
    agentWorkMedianMs: summarize(work).median,
  };
}

async function lastDeployment(fleet: Fleet): Promise<DeploymentView> {
  const deployments = JSON.parse(await fleet.ok(['history', 'production', '--limit', '1', '--json'])) as DeploymentView[];
  const first = deployments[0];
  if (!first) throw new Error('no deployment in history');
  return first;
}

await main();
