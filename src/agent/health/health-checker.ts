/**
 * Health checks run by the agent: `http` (status range, optional body
 * substring), `tcp` (connect) and `exec` (exit 0), each with a timeout. A
 * host is healthy after `healthy_after` consecutive passing rounds within
 * `timeout` of activation.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import type { HealthCheckSpec, HealthSpec } from '../../api/schemas.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCurrentReleaseId } from '../release/activator.js';
import type { DeployLayout } from '../release/deploy-layout.js';
import { releaseProcess, type ReleaseProcess } from '../release/release-process.js';

/** One round's result: every check passed, or the first failure. */
export type RoundResult = { readonly healthy: true; readonly detail: string } | { readonly healthy: false; readonly detail: string };

/** Runs every check once, exec checks in the release's directory with its variables (`where`); healthy when all pass. */
export async function checkRound(checks: readonly HealthCheckSpec[], where: ReleaseProcess, signal: AbortSignal): Promise<RoundResult> {
  for (const check of checks) {
    const failure = await runCheck(check, where, signal);
    if (failure !== undefined) return { healthy: false, detail: `${describe(check)}: ${failure}` };
  }
  return { healthy: true, detail: `${checks.length} check${checks.length === 1 ? '' : 's'} passed` };
}

/**
 * A round of continuous health checks between deployments, run like a
 * deployment's: in the directory of the release `current` points at, with its
 * variables. Undefined when no release is active (nothing to check).
 */
export async function checkCurrentRelease(
  checks: readonly HealthCheckSpec[],
  host: { readonly root: string; readonly layout: DeployLayout; readonly env: string; readonly host: string },
  signal: AbortSignal,
): Promise<RoundResult | undefined> {
  let releaseId: string | null;
  try {
    releaseId = await readCurrentReleaseId(host.layout);
  } catch (error) {
    return { healthy: false, detail: `cannot read ${host.layout.currentLink}: ${(error as Error).message}` };
  }
  if (releaseId === null) return undefined;
  return checkRound(checks, releaseProcess({ ...host, releaseId }), signal);
}

/**
 * Waits until the host is healthy (`healthy_after` consecutive passing
 * rounds) or `timeout` passes. Calls `onRound` after each round (for logs).
 */
export async function waitHealthy(spec: HealthSpec, where: ReleaseProcess, signal: AbortSignal, onRound: (round: RoundResult) => void): Promise<RoundResult> {
  if (spec.checks.length === 0) return { healthy: true, detail: 'no health checks configured' };
  const deadline = Date.now() + spec.timeout;
  let passes = 0;
  let last: RoundResult = { healthy: false, detail: 'no round finished' };
  for (;;) {
    signal.throwIfAborted();
    last = await checkRound(spec.checks, where, signal);
    onRound(last);
    passes = last.healthy ? passes + 1 : 0;
    if (passes >= spec.healthy_after) return last;
    if (Date.now() + spec.interval > deadline) {
      return { healthy: false, detail: `not healthy within ${spec.timeout} ms (${passes}/${spec.healthy_after} passes): ${last.detail}` };
    }
    await sleep(spec.interval, undefined, { signal });
  }
}

/** A check's name for people, with `${VAR}` expanded where the agent's environment has it. */
export function describe(check: HealthCheckSpec): string {
  const expanded = (text: string) => {
    try {
      return expandVariables(text);
    } catch {
      return text;
    }
  };
  if ('http' in check) return `http ${expanded(check.http)}`;
  if ('tcp' in check) return `tcp ${expanded(check.tcp)}`;
  return `exec ${check.exec}`;
}

/**
 * Replaces `${NAME}` with the agent's environment variable NAME, so values
 * that differ per host (a port, an address) can live in the agent's
 * environment while the check is written once per environment.
 */
export function expandVariables(text: string, env: NodeJS.ProcessEnv = process.env): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_match, name: string) => {
    const value = env[name];
    if (value === undefined) throw new Error(`variable \${${name}} is not set in the agent's environment`);
    return value;
  });
}

/** Runs one check; returns why it failed, or undefined when it passed. */
async function runCheck(check: HealthCheckSpec, where: ReleaseProcess, signal: AbortSignal): Promise<string | undefined> {
  const timeout = AbortSignal.any([signal, AbortSignal.timeout(check.timeout)]);
  try {
    if ('http' in check) {
      const response = await fetch(expandVariables(check.http), { signal: timeout, redirect: 'manual' });
      const body = await response.text();
      if (response.status < check.status.min || response.status > check.status.max) return `status ${response.status}, expected ${check.status.min}-${check.status.max}`;
      if (check.body !== undefined && !body.includes(check.body)) return `body does not contain ${JSON.stringify(check.body)}`;
      return undefined;
    }
    if ('tcp' in check) return await tcpCheck(expandVariables(check.tcp), timeout);
    return await execCheck(check.exec, where, timeout);
  } catch (error) {
    if (timeout.aborted && !signal.aborted) return `no answer within ${check.timeout} ms`;
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    return cause ?? (error as Error).message;
  }
}

function tcpCheck(address: string, signal: AbortSignal): Promise<string | undefined> {
  const match = /^\[?(.+?)\]?:(\d+)$/.exec(address);
  return new Promise((resolve) => {
    const socket = connect({ host: match?.[1] ?? address, port: Number(match?.[2]) });
    const done = (result: string | undefined) => {
      socket.destroy();
      signal.removeEventListener('abort', onAbort);
      resolve(result);
    };
    const onAbort = () => done('connection timed out');
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => done(undefined));
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
  });
}

function execCheck(command: string, where: ReleaseProcess, signal: AbortSignal): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], { cwd: where.cwd, env: { ...process.env, ...where.env }, stdio: ['ignore', 'ignore', 'pipe'], signal, killSignal: 'SIGKILL' });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 1000) stderr += chunk.toString('utf8');
    });
    child.once('error', (error) => resolve(signal.aborted ? 'timed out' : error.message));
    child.once('exit', (code) => resolve(code === 0 ? undefined : `exited with status ${code ?? 'killed'}${stderr.trim() ? `: ${stderr.trim().split('\n')[0]}` : ''}`));
  });
}
