/**
 * Small helpers shared by the benchmarks: statistics, a plain text table,
 * the machine description, and running a process with a wall-clock timer.
 * Benchmarks print figures; they never assert on time.
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readlink } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import type { AgentHandle } from '../test/helpers/fleet.js';

/** Summary of a series of measurements (same unit as the input). */
export interface Summary {
  readonly n: number;
  readonly median: number;
  readonly p95: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
}

/** Median, nearest-rank p95, min, max and mean of a non-empty series. */
export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) throw new Error('summarize: no values');
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  const at = (index: number): number => sorted[Math.min(n - 1, Math.max(0, index))] as number;
  const median = n % 2 === 1 ? at((n - 1) / 2) : (at(n / 2 - 1) + at(n / 2)) / 2;
  const p95 = at(Math.ceil(0.95 * n) - 1);
  const mean = sorted.reduce((sum, value) => sum + value, 0) / n;
  return { n, median, p95, min: at(0), max: at(n - 1), mean };
}

/** Renders rows as an aligned text table; the first row is the header. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, index) => (widths[index] = Math.max(widths[index] ?? 0, cell.length)));
  const render = (row: readonly string[]): string =>
    row.map((cell, index) => (index === 0 ? cell.padEnd(widths[index] ?? 0) : cell.padStart(widths[index] ?? 0))).join('  ').trimEnd();
  const [header, ...body] = rows;
  if (!header) return '';
  return [render(header), widths.map((width) => '-'.repeat(width)).join('  '), ...body.map(render)].join('\n');
}

export const ms = (value: number): string => `${value.toFixed(0)} ms`;

export function bytes(value: number): string {
  if (value >= 1024 * 1024) return `${(value / 1024 / 1024).toFixed(2)} MiB`;
  if (value >= 1024) return `${(value / 1024).toFixed(1)} KiB`;
  return `${value} B`;
}

/** What the figures were measured on. */
export function machine(): Record<string, string | number> {
  let kernel = '';
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    kernel = 'unknown';
  }
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    kernel,
  };
}

/** The result of a timed process run. */
export interface Timed {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** From spawn() to the 'close' event (exit and stdio drained), in ms. */
  readonly ms: number;
}

/** Runs a command and measures its wall time from spawn to exit. */
export function timedRun(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, ms: performance.now() - started }));
  });
}

/** Throws with the output when a timed run did not exit 0. */
export function mustSucceed(what: string, result: Timed): Timed {
  if (result.code !== 0) throw new Error(`${what} exited ${result.code}:\n${result.stderr}${result.stdout}`);
  return result;
}

/** Parses `--name value` and `--flag` from argv. */
export function args(argv: readonly string[]): { has(flag: string): boolean; number(name: string, fallback: number): number } {
  return {
    has: (flag) => argv.includes(flag),
    number(name, fallback) {
      const index = argv.indexOf(name);
      if (index < 0) return fallback;
      const value = Number(argv[index + 1]);
      if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} needs a positive number`);
      return value;
    },
  };
}

/** Drops the page cache when allowed (root, not in a restricted container); says whether it worked. */
export async function dropCaches(): Promise<boolean> {
  const result = await timedRun('sh', ['-c', 'sync && echo 3 > /proc/sys/vm/drop_caches']);
  return result.code === 0;
}

/** Checks, outside the timed region, that every host's `current` points at the release. */
export async function expectHostsOn(hosts: readonly AgentHandle[], releaseId: string): Promise<void> {
  const wrong: string[] = [];
  await Promise.all(
    hosts.map(async (host) => {
      const target = await readlink(host.path('/srv/app/current')).catch((error: Error) => error.message);
      if (target !== `releases/${releaseId}`) wrong.push(`${host.name}: ${target}`);
    }),
  );
  if (wrong.length > 0) throw new Error(`hosts not on ${releaseId.slice(0, 12)}: ${wrong.join('; ')}`);
}

/** Incompressible, deterministic file content: AES-256-CTR keystream keyed by path and generation. */
export function incompressible(path: string, generation: number, size: number): Buffer {
  const key = createHash('sha256').update(`lockstep-bench:${path}:${generation}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

/** The 1-, 5- and 15-minute load averages, as /proc/loadavg gives them. */
export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'unknown';
  }
}

/** CPU time (user + system) a running process has used so far, in ms, from /proc/PID/stat (clock ticks of 10 ms). */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at state, field 3; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Like timedRun, with the CPU time (user + system) of the command and its children, from the shell's `times`. */
export async function timedRunWithCpu(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Timed & { readonly cpuMs: number }> {
  const result = await timedRun('sh', ['-c', '"$@"; status=$?; times >&2; exit $status', 'sh', command, ...args], options);
  const lines = result.stderr.trimEnd().split('\n');
  const children = lines.at(-1) ?? '';
  const seconds = [...children.matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, match) => sum + Number(match[1]) * 60 + Number(match[2]), 0);
  return { ...result, stderr: lines.slice(0, -2).join('\n'), cpuMs: seconds * 1000 };
}
