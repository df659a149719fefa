/**
 * Runs a deployment hook (`before_activate`, `after_activate`,
 * `after_rollback`) with /bin/sh, the release's facts in its environment and
 * a timeout. The hook's own process group is killed on timeout, so a hung
 * hook cannot hang the deployment.
 */
import { spawn } from 'node:child_process';

/** The outcome of one hook run; a failure is a value, not an exception. */
export type HookResult =
  | { readonly kind: 'ok'; readonly output: readonly string[] }
  | { readonly kind: 'failed'; readonly reason: string; readonly output: readonly string[] };

/** Output kept per hook run; beyond it lines are dropped (and the drop is said). */
const MAX_OUTPUT_BYTES = 64 * 1024;

/** Runs `command` and resolves when it exits (not when its background children close their output). */
export function runHook(command: string, options: { cwd: string; env: Readonly<Record<string, string>>; timeoutMs: number; signal: AbortSignal }): Promise<HookResult> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    let dropped = false;
    const collect = (chunk: Buffer) => {
      if (output.length < MAX_OUTPUT_BYTES) output += chunk.toString('utf8');
      else dropped = true;
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let timedOut = false;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeoutMs);
    const onAbort = () => killGroup();
    options.signal.addEventListener('abort', onAbort, { once: true });
    const finish = (result: HookResult) => {
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      // A hook may leave a daemon running (that is how services start);
      // stop listening to its inherited output so it cannot hold us.
      child.stdout.destroy();
      child.stderr.destroy();
      child.unref();
      resolve(result);
    };
    const lines = () => {
      const all = output.split('\n').filter((line) => line.length > 0);
      return dropped ? [...all, `[output truncated after ${MAX_OUTPUT_BYTES} bytes]`] : all;
    };
    child.once('error', (error) => finish({ kind: 'failed', reason: `cannot run: ${error.message}`, output: lines() }));
    child.once('exit', (code, signal) => {
      if (timedOut) finish({ kind: 'failed', reason: `timed out after ${options.timeoutMs} ms`, output: lines() });
      else if (code === 0) finish({ kind: 'ok', output: lines() });
      else finish({ kind: 'failed', reason: code !== null ? `exited with status ${code}` : `killed by ${signal ?? 'a signal'}`, output: lines() });
    });
  });
}
