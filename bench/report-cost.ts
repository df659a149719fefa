/**
 * What one host's report costs the server: the real application in-process
 * (Fastify inject, SQLite, audit signing), N enrolled hosts in one
 * environment, and deployments rolled out canary 1 then batches of 25% by
 * reports sent as the agents would (`activated`, then `succeeded`). Each
 * report's wall time and the server process's CPU time are measured around
 * the route call; no agent processes, no network, no health checks, so the
 * figure is the report path alone (issue 12, "Cheap reports").
 *
 * Usage: node dist/bench/report-cost.js [--hosts 50] [--deployments 5] [--json]
 */
import { createHash } from 'node:crypto';
import { loadavg } from 'node:os';
import { startInProcessApp } from '../test/helpers/in-process-app.js';
import { args, machine, summarize, table } from './bench-util.js';

const argv = args(process.argv.slice(2));
const HOSTS = argv.number('--hosts', 50);
const DEPLOYMENTS = argv.number('--deployments', 5);
const JSON_OUTPUT = argv.has('--json');

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');
const log = (text: string): void => void process.stderr.write(`${text}\n`);

const CONFIG = `app: app
deploy_to: /srv/app
environments:
  production:
    host_timeout: 120s
    rollout: { canary: 1, batch: 25%, pause: 0ms, max_failures: 0 }
`;

interface StepView {
  readonly host: string;
  readonly state: string;
}

async function main(): Promise<void> {
  const server = await startInProcessApp(CONFIG);
  try {
    const deployer = await server.token('deployer', 'deployer');
    const names = Array.from({ length: HOSTS }, (_, index) => `prod-${String(index + 1).padStart(2, '0')}`);
    const credentials = new Map<string, string>();
    for (const name of names) credentials.set(name, await server.enroll(name, 'production'));
    const current = new Map<string, string | null>(names.map((name) => [name, null]));

    const wallMs: number[] = [];
    const cpuMs: number[] = [];
    const perDeployment: { deployment: number; reports: number; wallMs: number; cpuMs: number }[] = [];
    const report = async (host: string, deploymentId: number, state: 'activated' | 'succeeded', releaseId: string): Promise<void> => {
      const cpu = process.cpuUsage();
      const started = performance.now();
      const answer = await server.call('POST', '/api/v1/agent/report', credentials.get(host), { host, deploymentId, state, taskKind: 'deploy', currentReleaseId: releaseId });
      wallMs.push(performance.now() - started);
      const used = process.cpuUsage(cpu);
      cpuMs.push((used.user + used.system) / 1000);
      if (answer.status !== 200) throw new Error(`report of ${host}: ${answer.status} ${JSON.stringify(answer.json)}`);
      current.set(host, releaseId);
    };

    for (let index = 1; index <= DEPLOYMENTS; index++) {
      const content = `release ${index}\n`;
      await server.call('PUT', `/api/v1/blobs/${sha(content)}`, deployer, Buffer.from(content));
      const created = await server.call('POST', '/api/v1/releases', deployer, { version: `r${index}`, entries: [{ path: 'VERSION', type: 'file', mode: 0o644, size: content.length, sha256: sha(content) }] });
      const releaseId = created.json.release.id as string;
      const started = await server.call('POST', '/api/v1/deployments', deployer, { release: releaseId, env: 'production' });
      if (started.status !== 201 && started.status !== 200) throw new Error(`deploy: ${started.status} ${JSON.stringify(started.json)}`);
      const id = started.json.id as number;
      const first = wallMs.length;
      for (;;) {
        const view = await server.call('GET', `/api/v1/deployments/${id}`, deployer);
        if (view.json.state !== 'running') {
          if (view.json.state !== 'succeeded') throw new Error(`deployment #${id} ${view.json.state}: ${view.json.error}`);
          break;
        }
        const pending = (view.json.hosts as StepView[]).filter((step) => step.state === 'pending');
        if (pending.length === 0) throw new Error(`deployment #${id} is running with no pending host`);
        for (const step of pending) {
          await report(step.host, id, 'activated', releaseId);
          await report(step.host, id, 'succeeded', releaseId);
        }
      }
      const sum = (values: number[]): number => values.slice(first).reduce((total, value) => total + value, 0);
      perDeployment.push({ deployment: id, reports: wallMs.length - first, wallMs: sum(wallMs), cpuMs: sum(cpuMs) });
      log(`deployment #${id}: ${wallMs.length - first} reports, ${sum(wallMs).toFixed(0)} ms wall, ${sum(cpuMs).toFixed(0)} ms CPU; load ${loadavg()[0]?.toFixed(1)}`);
    }

    const wall = summarize(wallMs);
    const cpu = summarize(cpuMs);
    const result = { benchmark: 'report-cost', machine: machine(), hosts: HOSTS, deployments: DEPLOYMENTS, load: loadavg(), wallPerReport: wall, cpuPerReport: cpu, perDeployment };
    if (JSON_OUTPUT) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    const f = (value: number): string => `${value.toFixed(2)} ms`;
    process.stdout.write(
      `\nreports to the server in-process, ${HOSTS} hosts, ${DEPLOYMENTS} deployments (canary 1, batches of 25%), 2 reports per host per deployment, load ${loadavg().map((value) => value.toFixed(1)).join(' ')}\n\n` +
        table([
          ['per report', 'median', 'p95', 'min', 'max'],
          ['wall time of the route call', f(wall.median), f(wall.p95), f(wall.min), f(wall.max)],
          ['CPU time of the server process', f(cpu.median), f(cpu.p95), f(cpu.min), f(cpu.max)],
        ]),
    );
  } finally {
    await server.close();
  }
}

await main();
