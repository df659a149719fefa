/** `lockstep agent`: takes the agent lock, builds the logger and runs the agent until SIGINT or SIGTERM. */
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { acquireAgentLock } from './agent-lock.js';
import { runAgent } from './agent.js';

/** Runs the agent until SIGINT or SIGTERM; refuses to start while another agent runs with the same state dir. */
export async function runAgentCommand(options: { server: string; token?: string | undefined; root: string; stateDir?: string | undefined; sshdLog?: string | undefined; caFingerprint?: string | undefined; ca?: string | undefined }): Promise<void> {
  const root = resolve(options.root);
  const stateDir = resolve(options.stateDir ?? join(root, 'var/lib/lockstep-agent'));
  const lock = await acquireAgentLock(stateDir);
  try {
    const logger = pino({ base: { service: 'lockstep-agent' } });
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await runAgent({ server: options.server, token: options.token, root, stateDir, logger, sshdLog: options.sshdLog, caFingerprint: options.caFingerprint, caFile: options.ca }, controller.signal);
  } finally {
    await lock.release();
  }
}
