/**
 * First deploy: a release of 10,000 files (196 MiB) to one host that has
 * nothing yet, CLI spawn to exit 0 (`lockstep deploy`: the agent fetches
 * every blob, stages, verifies and switches), side by side in the same run
 * with `rsync -a` of the same tree to an empty directory. Goal: ≤ 1.5×.
 *
 * Each iteration deploys to a fresh host (its own environment, so that the
 * deploy goes to it alone, and an empty blob cache); each rsync copies into
 * a fresh empty directory. Runs alternate (rsync, lockstep, rsync, …) so
 * that load changes on this shared machine hit both alike. Page cache warm
 * for both (the source tree and the server's blob store were just written).
 *
 * Usage: node dist/bench/first-deploy.js [--files 10000] [--dirs 100] [--iterations 3] [--json]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LOCKSTEP_MAIN, startFleet, type AgentHandle } from '../test/helpers/fleet.js';
import { args, bytes, expectHostsOn, incompressible, loadAverage, machine, ms, mustSucceed, processCpuMs, summarize, table, timedRun, timedRunWithCpu, type Timed } from './bench-util.js';
import { prng } from '../test/helpers/prng.js';

const argv = args(process.argv.slice(2));
const FILES = argv.number('--files', 10_000);
const DIRS = argv.number('--dirs', 100);
const ITERATIONS = argv.number('--iterations', 3);
/** 196 MiB over 10,000 files. */
const MEAN_SIZE = argv.number('--mean-size', 20_552);
const JSON_OUTPUT = argv.has('--json');

const log = (text: string): void => void process.stderr.write(`${text}\n`);

/** Writes FILES files in DIRS dirs, sizes uniform in [0.5, 1.5] × the mean; returns the total bytes. */
async function writeTree(root: string): Promise<number> {
  const random = prng(20261129);
  let total = 0;
  for (let dir = 0; dir < DIRS; dir++) await mkdir(join(root, `d${String(dir).padStart(3, '0')}`), { recursive: true });
  for (let index = 0; index < FILES; index++) {
    const path = `d${String(index % DIRS).padStart(3, '0')}/f${String(index).padStart(5, '0')}.bin`;
    const size = Math.round(MEAN_SIZE * (0.5 + random()));
    await writeFile(join(root, path), incompressible(path, 0, size), { mode: 0o644 });
    total += size;
  }
  return total;
}

async function main(): Promise<void> {
  const fleet = await startFleet({ tls: false });
  try {
    const source = join(fleet.dir, 'source');
    const total = await writeTree(source);
    log(`tree: ${FILES} files, ${bytes(total)}`);
    const environments = Array.from({ length: ITERATIONS }, (_, index) => `first${index}`);
    await fleet.applyConfig(
      `app: app\ndeploy_to: /srv/app\nkeep_releases: 3\nenvironments:\n${environments.map((env) => `  ${env}:\n    host_timeout: 10m\n`).join('')}`,
    );
    const hosts: AgentHandle[] = [];
    for (const env of environments) hosts.push(await fleet.addAgent(`${env}-host`, env));
    const env = { ...process.env, LOCKSTEP_SERVER: fleet.url, LOCKSTEP_TOKEN: fleet.token, NO_COLOR: '1' };
    const cli = (cliArgs: readonly string[]): Promise<Timed> => timedRun(process.execPath, [LOCKSTEP_MAIN, ...cliArgs], { env, cwd: fleet.dir });
    const cliWithCpu = (cliArgs: readonly string[]) => timedRunWithCpu(process.execPath, [LOCKSTEP_MAIN, ...cliArgs], { env, cwd: fleet.dir });

    const created = mustSucceed('release create', await cli(['release', 'create', source, '--version', '1.0.0', '--json']));
    const releaseId = (JSON.parse(created.stdout) as { id: string }).id;
    log(`release create: ${ms(created.ms)} (not compared here; see i12-upload)`);

    const lockstepMs: number[] = [];
    const rsyncMs: number[] = [];
    // CPU time used, all processes of each side (rsync's sender and receiver; the server, the agent and the CLI):
    // on this shared machine wall time mostly measures the wait for a CPU, and a side with more processes gets more turns.
    const lockstepCpuMs: number[] = [];
    const rsyncCpuMs: number[] = [];
    const loads: string[] = [];
    for (let iteration = 0; iteration < ITERATIONS; iteration++) {
      loads.push(loadAverage());
      const copy = await timedRunWithCpu('rsync', ['-a', `${source}/`, join(fleet.dir, `rsync-${iteration}`)]);
      mustSucceed('rsync -a', copy);
      rsyncMs.push(copy.ms);
      rsyncCpuMs.push(copy.cpuMs);
      const host = hosts[iteration] as AgentHandle;
      const daemons = [fleet.server.pid, host.process.pid].filter((pid): pid is number => pid !== undefined);
      const daemonCpuBefore = daemons.reduce((sum, pid) => sum + processCpuMs(pid), 0);
      const deployed = await cliWithCpu(['deploy', releaseId, '--to', environments[iteration] as string]);
      mustSucceed('deploy', deployed);
      const daemonCpu = daemons.reduce((sum, pid) => sum + processCpuMs(pid), 0) - daemonCpuBefore;
      await expectHostsOn([host], releaseId);
      lockstepMs.push(deployed.ms);
      lockstepCpuMs.push(deployed.cpuMs + daemonCpu);
      log(`iteration ${iteration + 1}: rsync -a ${ms(copy.ms)} (cpu ${ms(copy.cpuMs)}), lockstep deploy ${ms(deployed.ms)} (cpu ${ms(deployed.cpuMs + daemonCpu)}) (load ${loads.at(-1)})`);
    }
    loads.push(loadAverage());

    const lockstep = summarize(lockstepMs);
    const rsync = summarize(rsyncMs);
    const ratio = lockstep.median / rsync.median;
    const lockstepCpu = summarize(lockstepCpuMs);
    const rsyncCpu = summarize(rsyncCpuMs);
    const cpuRatio = lockstepCpu.median / rsyncCpu.median;
    const result = { machine: machine(), files: FILES, bytes: total, iterations: ITERATIONS, loads, lockstepMs, rsyncMs, lockstepCpuMs, rsyncCpuMs, medianRatio: ratio, cpuMedianRatio: cpuRatio, goal: 1.5 };
    if (JSON_OUTPUT) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      `${table([
        ['first deploy, one host', 'median', 'min', 'max'],
        ['lockstep deploy (CLI spawn to exit 0)', ms(lockstep.median), ms(lockstep.min), ms(lockstep.max)],
        ['rsync -a to an empty dir', ms(rsync.median), ms(rsync.min), ms(rsync.max)],
        ['lockstep CPU (server + agent + CLI)', ms(lockstepCpu.median), ms(lockstepCpu.min), ms(lockstepCpu.max)],
        ['rsync CPU (all its processes)', ms(rsyncCpu.median), ms(rsyncCpu.min), ms(rsyncCpu.max)],
      ])}\n\nratio of medians: wall ${ratio.toFixed(2)}× (goal ≤ 1.5×), CPU ${cpuRatio.toFixed(2)}×; load average during the runs: ${loads.join(' | ')}\n`,
    );
  } finally {
    await fleet.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
