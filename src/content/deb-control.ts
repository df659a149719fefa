/** Reading a .deb's control fields with dpkg-deb, the tool that defines them. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { LockstepError } from '../core/errors.js';
import type { DebControl } from '../core/release-parts-file.js';

const run = promisify(execFile);

/** Package, Version and Architecture of the .deb at `path`; a file dpkg-deb cannot read is a bad-input error naming it. */
export async function readDebControl(path: string, label = path): Promise<DebControl> {
  let stdout: string;
  try {
    ({ stdout } = await run('dpkg-deb', ['--field', path, 'Package', 'Version', 'Architecture'], { maxBuffer: 1 << 20 }));
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') throw new LockstepError('bad-input', `${label}: reading a .deb needs dpkg-deb; install dpkg (apt-get install dpkg) and run again`);
    const reason = (failure.stderr ?? failure.message).trim().split('\n').pop() ?? 'unreadable';
    throw new LockstepError('bad-input', `${label} is not a readable .deb: ${reason}`);
  }
  const fields = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const name = fields.get('Package');
  const version = fields.get('Version');
  const architecture = fields.get('Architecture');
  if (!name || !version || !architecture) throw new LockstepError('bad-input', `${label}: its control file lacks Package, Version or Architecture`);
  return { name, version, architecture };
}
