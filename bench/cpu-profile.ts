/**
 * Preloaded with `node --import` (through NODE_OPTIONS, which does not allow
 * `--cpu-prof`): profiles the process's CPU with the inspector and writes
 * `DIR/<pid>.cpuprofile` (Chrome DevTools format) when it exits normally.
 * DIR is LOCKSTEP_CPU_PROFILE_DIR. Used by `rolling-deploy --profile-agents`.
 */
import { writeFileSync } from 'node:fs';
import { Session, type Profiler } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.LOCKSTEP_CPU_PROFILE_DIR;
if (dir !== undefined) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
  // The inspector answers a session of the same thread synchronously, so this completes inside 'exit'.
  process.on('exit', () => {
    session.post('Profiler.stop', (error, result: Profiler.StopReturnType) => {
      if (error === null) writeFileSync(join(dir, `${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
