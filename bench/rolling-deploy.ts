/**
 * Rolling deployment to 50 sandbox hosts: canary 1, then batches of 25%
 * (1 + 13 + 13 + 13 + 10 = 5 batches), an http health check on every host.
 * Total time against the sum of the unavoidable waits (health-check
 * intervals and pauses between batches); the rest, divided by the hosts, is
 * Lockstep's overhead per host. Goal: under 50 ms per host on loopback.
 *
 * Real processes only: one `lockstep server` (SQLite), 50 `lockstep agent`
 * processes with sandbox roots in one `production` environment (no
 * promote_from, so no development/test hosts are needed), and the real CLI.
 * Every host has its own tiny node:http health endpoint, served by this
 * process on its own loopback port; the check is written once,
 * `http://127.0.0.1:${HEALTH_PORT}/healthz`, and each agent gets its
 * HEALTH_PORT in its environment. The endpoints record when each request
 * came, which shows when each host ran its health rounds.
 *
 * Unavoidable waits of one deployment, with B batches, healthy_after k,
 * interval i and pause p: B*(k-1)*i (a host's first round runs at once, the
 * next k-1 after one interval each) + (B-1)*p.
 *
 * Each deployment ships a new release (created untimed) that differs from
 * the one before in 4 of its 102 files, so every host really stages it:
 * fetches 4 small blobs, hard-links the other 98 from its cache, activates,
 * and prunes old releases (keep_releases 3). (Alternating two releases would
 * make every deployment after the first a bare symlink switch: the agent
 * skips staging a release already on disk.)
 *
 * Agent CPU per host per deployment is the agents' utime + stime over the
 * deployment divided by the hosts (goal: under 50 ms). `--profile-agents DIR`
 * profiles every agent (bench/cpu-profile.ts, preloaded) and stops them with
 * SIGTERM at the end, so each writes DIR/<pid>.cpuprofile (where that CPU goes).
 *
 * Usage: node dist/bench/rolling-deploy.js [--runs 5] [--warmup 1] [--hosts 50] [--profile-agents DIR] [--json]
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { LOCKSTEP_MAIN, startFleet, type AgentHandle, type Fleet } from '../test/helpers/fleet.js';
import { args, expectHostsOn, machine, ms, mustSucceed, summarize, table, timedRun, type Summary } from './bench-util.js';

interface Setting {
  readonly name: string;
  readonly healthyAfter: number;
  readonly intervalMs: number;
  readonly pauseMs: number;
}

interface HostView {
  readonly host: string;
  readonly batch: number;
  readonly state: string;
  readonly updatedAt: string;
}
interface DeploymentView {
  readonly id: number;
  readonly state: string;
  readonly releaseId: string;
  readonly createdAt: string;
  readonly finishedAt: string | null;
  readonly batches: number;
  readonly hosts: readonly HostView[];
}

/** One batch of one deployment, times relative to the deployment's createdAt. */
interface BatchTiming {
  readonly batch: number;
  readonly hosts: number;
  /** First agent of the batch logged `task received`. */
  readonly openedMs: number;
  /** Previous batch's last confirmation (createdAt for the canary) -> this batch's first task received. */
  readonly gapMs: number;
  /** Last host of the batch activated (agent log). */
  readonly lastActivatedMs: number;
  /** Last health request of the batch (health endpoint). */
  readonly lastCheckMs: number;
  /** Last host of the batch confirmed succeeded (server). */
  readonly lastConfirmedMs: number;
}

interface Run {
  readonly setting: string;
  readonly run: number;
  readonly loadavg1: number;
  /** CLI spawn to exit 0. */
  readonly totalMs: number;
  /** Server createdAt -> finishedAt. */
  readonly serverMs: number;
  readonly unavoidableMs: number;
  readonly overheadMs: number;
  readonly overheadPerHostMs: number;
  readonly serverOverheadPerHostMs: number;
  /** Per host, medians over the 50 hosts: task received -> activated, activated -> first health request, last health request -> confirmed. */
  readonly stageActivateMs: number;
  readonly activatedToFirstCheckMs: number;
  readonly lastCheckToConfirmedMs: number;
  /** Sum over batches of (gap before the batch - pause), for batches after the canary. */
  readonly pauseExcessMs: number;
  /** Sum over batches of (first task received - batch opened on the server), canary only measurable exactly: createdAt -> first received. */
  readonly canaryDispatchMs: number;
  /** Sum over batches of (last confirmed - first task received - (k-1)*i). */
  readonly inBatchExcessMs: number;
  /** CPU time used during the run (utime + stime), ms. */
  readonly cpuServerMs: number;
  readonly cpuAgentsMs: number;
  readonly batches: readonly BatchTiming[];
}

const argv = args(process.argv.slice(2));
const RUNS = argv.number('--runs', 5);
const WARMUP = argv.number('--warmup', 1);
const HOSTS = argv.number('--hosts', 50);
const JSON_OUTPUT = argv.has('--json');
const PROFILE_FLAG = process.argv.indexOf('--profile-agents');
const PROFILE_DIR = PROFILE_FLAG >= 0 ? process.argv[PROFILE_FLAG + 1] : undefined;
/** Preloaded into profiled agents (NODE_OPTIONS does not allow --cpu-prof). */
const PROFILER = new URL('./cpu-profile.js', import.meta.url).href;
const FILES = 100;
const CHANGED = 3;

const SETTINGS: readonly Setting[] = [
  { name: 'A', healthyAfter: 1, intervalMs: 0, pauseMs: 0 },
  { name: 'B', healthyAfter: 2, intervalMs: 200, pauseMs: 500 },
];

const log = (text: string): void => void process.stderr.write(`${text}\n`);
const load = (): string => loadavg().map((value) => value.toFixed(1)).join(' ');

function config(setting: Setting): string {
  return `app: app
deploy_to: /srv/app
keep_releases: 3
environments:
  production:
    host_timeout: 120s
    vars: { STAGE: prod }
    rollout: { canary: 1, batch: 25%, pause: ${setting.pauseMs}ms, max_failures: 0 }
    health:
      checks:
        - http: http://127.0.0.1:\${HEALTH_PORT}/healthz
      interval: ${setting.intervalMs}ms
      healthy_after: ${setting.healthyAfter}
      timeout: 60s
      # Between deployments agents re-check health this often; long, so it stays out of the measurements.
      watch_interval: 10m
`;
}

/** One tiny health endpoint per host; remembers when each request came. */
interface HealthEndpoint {
  readonly port: number;
  readonly requests: number[];
  readonly server: Server;
}

async function startHealthEndpoint(): Promise<HealthEndpoint> {
  const requests: number[] = [];
  const server = createServer((request, response) => {
    requests.push(Date.now());
    request.resume();
    response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return { port: (server.address() as AddressInfo).port, requests, server };
}

async function main(): Promise<void> {
  log(`rolling-deploy: ${HOSTS} production hosts, settings ${SETTINGS.map((s) => `${s.name} (healthy_after ${s.healthyAfter}, interval ${s.intervalMs} ms, pause ${s.pauseMs} ms)`).join(', ')}; ${WARMUP} warm-up + ${RUNS} measured runs each; load ${load()}`);
  const endpoints = new Map<string, HealthEndpoint>();
  // Plain HTTP, as in the figures recorded before TLS: the ratios compare like with like.
  const fleet = await startFleet({ tls: false });
  try {
    await fleet.applyConfig(config(SETTINGS[0] as Setting));
    const names = Array.from({ length: HOSTS }, (_, index) => `prod-${String(index + 1).padStart(2, '0')}`);
    for (const name of names) endpoints.set(name, await startHealthEndpoint());

    // Agent start-up, outside every timed region: spawn -> enrolled and polling, 5 at a time.
    const startLoad = load();
    const fleetStarted = performance.now();
    const agentStartMs: number[] = [];
    const hosts: AgentHandle[] = [];
    for (let start = 0; start < names.length; start += 5) {
      const group = names.slice(start, start + 5);
      hosts.push(
        ...(await Promise.all(
          group.map(async (name) => {
            const began = performance.now();
            const profile: Record<string, string> = PROFILE_DIR === undefined ? {} : { NODE_OPTIONS: `--import=${PROFILER}`, LOCKSTEP_CPU_PROFILE_DIR: PROFILE_DIR };
            const handle = await fleet.addAgent(name, 'production', { variables: { HEALTH_PORT: String((endpoints.get(name) as HealthEndpoint).port), ...profile } });
            agentStartMs.push(performance.now() - began);
            return handle;
          }),
        )),
      );
    }
    const fleetStartMs = performance.now() - fleetStarted;
    log(`${hosts.length} agents online in ${ms(fleetStartMs)} (load ${startLoad} -> ${load()})`);

    const serverPid = await findServerPid(fleet);
    const env = { ...process.env, LOCKSTEP_SERVER: fleet.url, LOCKSTEP_TOKEN: fleet.token, NO_COLOR: '1' };
    const cli = (cliArgs: readonly string[]) => timedRun(process.execPath, [LOCKSTEP_MAIN, ...cliArgs], { env, cwd: fleet.dir });

    // The first release: every host stages the whole tree (untimed).
    const build = join(fleet.dir, 'build');
    let releaseNumber = 0;
    const nextRelease = async (): Promise<string> => {
      releaseNumber++;
      await writeRelease(build, releaseNumber);
      const summary = JSON.parse(await fleet.ok(['release', 'create', build, '--version', `r${releaseNumber}`, '--json'])) as { id: string };
      return summary.id;
    };
    const first = await nextRelease();
    mustSucceed('initial deploy', await cli(['deploy', first, '--to', 'production']));
    await expectHostsOn(hosts, first);
    log(`initial release deployed to ${hosts.length} hosts`);

    // What the idle fleet costs: CPU of the server and all agents over 5 s with no deployment.
    const idleBefore = await cpuTimes(serverPid, hosts);
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const idleAfter = await cpuTimes(serverPid, hosts);
    const idleCpuPerSecond = { server: (idleAfter.server - idleBefore.server) / 5, agents: (idleAfter.agents - idleBefore.agents) / 5 };
    log(`idle fleet: ${ms(idleCpuPerSecond.server)} server + ${ms(idleCpuPerSecond.agents)} agents CPU per second`);

    const runs: Run[] = [];
    const settingLoads: Record<string, { before: string; after: string }> = {};
    for (const setting of SETTINGS) {
      await fleet.applyConfig(config(setting));
      const before = load();
      const batchCount = 1 + Math.ceil((HOSTS - 1) / Math.ceil(0.25 * HOSTS));
      const unavoidableMs = batchCount * (setting.healthyAfter - 1) * setting.intervalMs + (batchCount - 1) * setting.pauseMs;
      for (let index = 0; index < WARMUP + RUNS; index++) {
        const releaseId = await nextRelease();
        for (const endpoint of endpoints.values()) endpoint.requests.length = 0;
        const loadavg1 = loadavg()[0] ?? 0;
        const cpuBefore = await cpuTimes(serverPid, hosts);
        // The measured region: the real CLI from spawn to exit 0.
        const deploy = mustSucceed('deploy', await cli(['deploy', releaseId, '--to', 'production', '--json']));
        const cpuAfter = await cpuTimes(serverPid, hosts);
        const deployment = finishedDeployment(deploy.stdout);
        if (deployment.state !== 'succeeded' || deployment.releaseId !== releaseId || deployment.finishedAt === null) {
          throw new Error(`unexpected deployment: ${JSON.stringify(deployment)}`);
        }
        if (deployment.batches !== batchCount) throw new Error(`expected ${batchCount} batches, the server planned ${deployment.batches}`);
        await expectHostsOn(hosts, releaseId);
        const created = Date.parse(deployment.createdAt);
        const serverMs = Date.parse(deployment.finishedAt) - created;
        const analysis = await analyse(setting, hosts, endpoints, deployment, created);
        const overheadMs = deploy.ms - unavoidableMs;
        const run: Run = {
          setting: setting.name,
          run: index - WARMUP + 1,
          loadavg1,
          totalMs: deploy.ms,
          serverMs,
          unavoidableMs,
          overheadMs,
          overheadPerHostMs: overheadMs / HOSTS,
          serverOverheadPerHostMs: (serverMs - unavoidableMs) / HOSTS,
          ...analysis,
          cpuServerMs: cpuAfter.server - cpuBefore.server,
          cpuAgentsMs: cpuAfter.agents - cpuBefore.agents,
        };
        log(
          `${setting.name} ${index < WARMUP ? 'warm-up' : `run ${run.run}`}: ${ms(run.totalMs)} total, ${ms(serverMs)} server, unavoidable ${ms(unavoidableMs)}, overhead ${ms(overheadMs)} = ${run.overheadPerHostMs.toFixed(1)} ms/host; ` +
            `batches (opened..confirmed) ${run.batches.map((b) => `${ms(b.openedMs)}..${ms(b.lastConfirmedMs)}`).join(', ')}; cpu server ${ms(run.cpuServerMs)} agents ${ms(run.cpuAgentsMs)}; load ${loadavg1.toFixed(1)}`,
        );
        if (index >= WARMUP) runs.push(run);
      }
      settingLoads[setting.name] = { before, after: load() };
    }

    const summaries = SETTINGS.map((setting) => {
      const mine = runs.filter((run) => run.setting === setting.name);
      const of = (pick: (run: Run) => number): Summary => summarize(mine.map(pick));
      return {
        setting,
        load: settingLoads[setting.name],
        unavoidableMs: mine[0]?.unavoidableMs ?? 0,
        total: of((run) => run.totalMs),
        server: of((run) => run.serverMs),
        overhead: of((run) => run.overheadMs),
        overheadPerHost: of((run) => run.overheadPerHostMs),
        serverOverheadPerHost: of((run) => run.serverOverheadPerHostMs),
        outsideServer: of((run) => run.totalMs - run.serverMs),
        canaryDispatch: of((run) => run.canaryDispatchMs),
        pauseExcess: of((run) => run.pauseExcessMs),
        inBatchExcess: of((run) => run.inBatchExcessMs),
        stageActivate: of((run) => run.stageActivateMs),
        activatedToFirstCheck: of((run) => run.activatedToFirstCheckMs),
        lastCheckToConfirmed: of((run) => run.lastCheckToConfirmedMs),
        cpuServer: of((run) => run.cpuServerMs),
        cpuAgents: of((run) => run.cpuAgentsMs),
        cpuAgentPerHost: of((run) => run.cpuAgentsMs / HOSTS),
        loadavg1: of((run) => run.loadavg1),
      };
    });
    const result = {
      benchmark: 'rolling-deploy',
      machine: machine(),
      hosts: HOSTS,
      runs: RUNS,
      warmup: WARMUP,
      goalPerHostMs: 50,
      agentStart: { fleetMs: fleetStartMs, perAgent: summarize(agentStartMs) },
      idleCpuPerSecond,
      settings: summaries,
      perRun: runs,
    };
    if (JSON_OUTPUT) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    const row = (name: string, summary: Summary, unit = ms): string[] => [name, unit(summary.median), unit(summary.p95), unit(summary.min), unit(summary.max)];
    const perHost = (value: number): string => `${value.toFixed(1)} ms`;
    let text = `\nrolling deployment to ${HOSTS} hosts (canary 1, batches of 25%, one http health check per host), ${RUNS} runs per setting after ${WARMUP} warm-up, ${result.machine.cpus} CPUs, node ${process.version}\n`;
    text += `agent start-up (untimed; spawn -> enrolled and polling, 5 at a time): ${HOSTS} agents in ${ms(fleetStartMs)}, per agent median ${ms(result.agentStart.perAgent.median)}, p95 ${ms(result.agentStart.perAgent.p95)}\n`;
    text += `idle fleet (no deployment, 5 s): ${ms(idleCpuPerSecond.server)} server + ${ms(idleCpuPerSecond.agents)} agents CPU per second\n`;
    for (const summary of summaries) {
      const s = summary.setting;
      text += `\nsetting ${s.name}: healthy_after ${s.healthyAfter}, interval ${s.intervalMs} ms, pause ${s.pauseMs} ms; unavoidable waits ${ms(summary.unavoidableMs)}; load average ${summary.load?.before} -> ${summary.load?.after}\n\n`;
      text += table([
        ['measure', 'median', 'p95', 'min', 'max'],
        row('lockstep deploy --to production (spawn -> exit 0)', summary.total),
        row('  server: created -> finished', summary.server),
        row('  outside the server window (CLI start-up, HTTP, exit)', summary.outsideServer),
        row('overhead (total - unavoidable)', summary.overhead),
        row('overhead per host', summary.overheadPerHost, perHost),
        row('server-window overhead per host', summary.serverOverheadPerHost, perHost),
        row('  created -> canary task received', summary.canaryDispatch),
        row('  between batches, beyond the pause (sum of 4)', summary.pauseExcess),
        row('  within batches, beyond (k-1)*i (sum of 5)', summary.inBatchExcess),
        row('  host: task received -> activated (median host)', summary.stageActivate),
        row('  host: activated -> first health request (median)', summary.activatedToFirstCheck),
        row('  host: last health request -> confirmed (median)', summary.lastCheckToConfirmed),
        row('CPU time, server process', summary.cpuServer),
        row(`CPU time, ${HOSTS} agents together`, summary.cpuAgents),
        row('agent CPU per host per deployment', summary.cpuAgentPerHost, perHost),
        row('1-minute load average at start', summary.loadavg1, (value) => value.toFixed(1)),
      ]);
      text += `\ngoal: under 50 ms overhead per host; median ${summary.overheadPerHost.median < 50 ? 'meets' : 'MISSES'} it, p95 ${summary.overheadPerHost.p95 < 50 ? 'meets' : 'MISSES'} it\n`;
      text += `goal: under 50 ms agent CPU per host; median ${summary.cpuAgentPerHost.median < 50 ? 'meets' : 'MISSES'} it\n`;
    }
    process.stdout.write(text);
  } finally {
    // A profiled agent writes its profile only when it exits on its own (fleet.stop() kills with SIGKILL).
    if (PROFILE_DIR !== undefined) await Promise.all(fleet.agents.map((agent) => agent.kill('SIGTERM')));
    await fleet.stop();
    await Promise.all([...endpoints.values()].map((endpoint) => new Promise<void>((resolve) => endpoint.server.close(() => resolve()))));
  }
}

/** A tree of FILES pages + VERSION + bin/start; release n differs from n-1 in VERSION and CHANGED pages. */
async function writeRelease(dir: string, n: number): Promise<void> {
  if (n === 1) {
    await mkdir(join(dir, 'public'), { recursive: true });
    await mkdir(join(dir, 'bin'), { recursive: true });
    for (let index = 0; index < FILES; index++) await writeFile(join(dir, 'public', `page-${index}.html`), `<h1>page ${index}</h1>\n<p>${'lorem ipsum '.repeat(100)}</p>\n`);
    await writeFile(join(dir, 'bin/start'), '#!/bin/sh\necho start\n', { mode: 0o755 });
  } else {
    for (let change = 0; change < CHANGED; change++) {
      const index = (n * CHANGED + change) % FILES;
      await writeFile(join(dir, 'public', `page-${index}.html`), `<h1>page ${index}, release ${n}</h1>\n<p>${'lorem ipsum '.repeat(100)}</p>\n`);
    }
  }
  await writeFile(join(dir, 'VERSION'), `r${n}\n`);
}

/** The deployment of the last NDJSON line, `{event: 'finished', deployment}`. */
function finishedDeployment(stdout: string): DeploymentView {
  const lines = stdout.trim().split('\n');
  const last = JSON.parse(lines[lines.length - 1] ?? '{}') as { event?: string; deployment?: DeploymentView };
  if (last.event !== 'finished' || !last.deployment) throw new Error(`no finished event at the end of: ${stdout.slice(-500)}`);
  return last.deployment;
}

/**
 * Where the time went, from three clocks on one machine: the server's step
 * times (updatedAt of each host's final state), the agents' logs (task
 * received, release activated) and the health endpoints (each request).
 */
async function analyse(setting: Setting, hosts: readonly AgentHandle[], endpoints: ReadonlyMap<string, HealthEndpoint>, deployment: DeploymentView, created: number) {
  const received = new Map<string, number>();
  const activated = new Map<string, number>();
  for (const host of hosts) {
    const text = await readFile(join(host.root, 'agent.log'), 'utf8');
    for (const line of text.split('\n')) {
      if (!line.includes(`"deploymentId":${deployment.id},`) && !line.includes(`"deploymentId":${deployment.id}}`)) continue;
      const entry = JSON.parse(line) as { msg?: string; time?: number };
      if (entry.msg === 'task received' && entry.time !== undefined) received.set(host.name, entry.time - created);
      if (entry.msg === 'release activated' && entry.time !== undefined) activated.set(host.name, entry.time - created);
    }
  }
  const batchOf = new Map(deployment.hosts.map((host) => [host.host, host.batch]));
  const confirmed = new Map(deployment.hosts.map((host) => [host.host, Date.parse(host.updatedAt) - created]));
  const checks = new Map<string, number[]>();
  for (const host of hosts) {
    const requests = (endpoints.get(host.name) as HealthEndpoint).requests.map((at) => at - created);
    if (requests.length < setting.healthyAfter) throw new Error(`${host.name}: ${requests.length} health requests, expected at least ${setting.healthyAfter}`);
    checks.set(host.name, requests);
  }
  const need = (map: ReadonlyMap<string, number>, name: string, what: string): number => {
    const value = map.get(name);
    if (value === undefined) throw new Error(`deployment #${deployment.id}: no ${what} for ${name}`);
    return value;
  };
  const batches: BatchTiming[] = [];
  for (let batch = 0; batch < deployment.batches; batch++) {
    const names = hosts.map((host) => host.name).filter((name) => batchOf.get(name) === batch);
    const openedMs = Math.min(...names.map((name) => need(received, name, 'task received')));
    const previous = batches[batch - 1]?.lastConfirmedMs ?? 0;
    batches.push({
      batch,
      hosts: names.length,
      openedMs,
      gapMs: openedMs - previous,
      lastActivatedMs: Math.max(...names.map((name) => need(activated, name, 'release activated'))),
      lastCheckMs: Math.max(...names.map((name) => Math.max(...(checks.get(name) as number[])))),
      lastConfirmedMs: Math.max(...names.map((name) => need(confirmed, name, 'confirmation'))),
    });
  }
  const names = hosts.map((host) => host.name);
  const healthWait = (setting.healthyAfter - 1) * setting.intervalMs;
  return {
    stageActivateMs: summarize(names.map((name) => need(activated, name, 'activation') - need(received, name, 'task received'))).median,
    activatedToFirstCheckMs: summarize(names.map((name) => Math.min(...(checks.get(name) as number[])) - need(activated, name, 'activation'))).median,
    lastCheckToConfirmedMs: summarize(names.map((name) => need(confirmed, name, 'confirmation') - Math.max(...(checks.get(name) as number[])))).median,
    canaryDispatchMs: batches[0]?.openedMs ?? 0,
    pauseExcessMs: batches.slice(1).reduce((sum, batch) => sum + batch.gapMs - setting.pauseMs, 0),
    inBatchExcessMs: batches.reduce((sum, batch) => sum + batch.lastConfirmedMs - batch.openedMs - healthWait, 0),
    batches,
  };
}

/** The server's pid: the child process whose command line names the fleet's data dir. */
async function findServerPid(fleet: Fleet): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('\0server\0') && cmdline.includes(fleet.dataDir)) return Number(entry);
  }
  return undefined;
}

/** utime + stime of a process in ms (0 when it cannot be read). */
async function cpuOf(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat(5); the slice starts at field 3. Clock ticks of 10 ms.
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) * 10;
}

async function cpuTimes(serverPid: number | undefined, hosts: readonly AgentHandle[]): Promise<{ server: number; agents: number }> {
  const agents = await Promise.all(hosts.map((host) => cpuOf(host.process.pid)));
  return { server: await cpuOf(serverPid), agents: agents.reduce((sum, value) => sum + value, 0) };
}

await main();
