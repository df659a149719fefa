/**
 * One agent per identity: an exclusive flock(2) on STATE_DIR/agent.lock for
 * as long as the agent runs. Two agents with one credential would both scan,
 * report and take tasks, so each would see the other's writes as drift.
 *
 * Node has no flock(), so the lock is taken by flock(1) (util-linux) on a
 * descriptor it inherits from this process: a flock belongs to the open file
 * description, which the child shares with us, so the lock outlives the
 * child and is held until this process closes the file or dies. The kernel
 * releases it on any death, SIGKILL included, and a recycled pid can never
 * hold it. The file stays in place (unlinking a lock file races with the
 * next opener) and carries the holder's pid for the refusal message only.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { LockstepError } from '../core/errors.js';

/** The lock file's name inside the agent's state directory. */
const AGENT_LOCK_FILE = 'agent.lock';

/** flock(1)'s exit status when the lock is held elsewhere (-E); EX_TEMPFAIL, distinct from its usage errors. */
const CONFLICT_EXIT = 75;

/** A held agent lock; `release()` lets the next agent start (dying does too). */
export interface AgentLock {
  readonly path: string;
  release(): Promise<void>;
}

/**
 * Takes the agent lock of `stateDir` (created if missing), or throws a
 * bad-input LockstepError naming the running agent's pid when another agent
 * holds it.
 */
export async function acquireAgentLock(stateDir: string): Promise<AgentLock> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const path = join(stateDir, AGENT_LOCK_FILE);
  // O_NOFOLLOW: a symlink planted at the lock's name must not make us write through it.
  const file = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    if (!(await flockNonBlocking(file.fd))) {
      const holder = await readHolderPid(file);
      throw new LockstepError(
        'bad-input',
        `another agent (${holder === undefined ? 'pid unknown' : `pid ${holder}`}) is running with state dir ${stateDir}; stop it first`,
      );
    }
    await file.truncate(0);
    await file.write(`${process.pid}\n`, 0);
  } catch (error) {
    await file.close();
    throw error;
  }
  return { path, release: () => file.close() };
}

/** Runs `flock -n` on descriptor `fd` of this process (passed to the child as fd 3); resolves false when another holds the lock. */
function flockNonBlocking(fd: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const child = spawn('flock', ['--nonblock', '--exclusive', '--conflict-exit-code', String(CONFLICT_EXIT), '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'ENOENT'
          ? new LockstepError('failed', 'the flock command is missing (it takes the agent lock); install util-linux')
          : error,
      );
    });
    child.once('close', (code, signal) => {
      if (code === 0 || code === CONFLICT_EXIT) resolve(code === 0);
      else reject(new LockstepError('failed', `flock on the agent lock failed (${signal ?? `exit ${code}`}): ${stderr.trim()}`));
    });
  });
}

/**
 * The pid the running agent wrote into the lock file, for the message only;
 * undefined while the holder has not written it yet (the file may then still
 * name its dead predecessor, hence the liveness check).
 */
async function readHolderPid(file: FileHandle): Promise<number | undefined> {
  const buffer = Buffer.alloc(32);
  const { bytesRead } = await file.read(buffer, 0, buffer.length, 0);
  const pid = Number.parseInt(buffer.subarray(0, bytesRead).toString('utf8'), 10);
  if (!(Number.isInteger(pid) && pid > 0)) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (error) {
    // EPERM: alive but another user's.
    return (error as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}
