/** Real dpkg for tests: small .deb files built with dpkg-deb, installed under a sandbox root without chroot. */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Builds `dir/NAME_VERSION_all.deb` holding `files` (absolute host path → content); returns its path. */
export async function buildDeb(dir: string, name: string, version: string, files: Readonly<Record<string, string>>): Promise<string> {
  const tree = join(dir, `${name}-${version}-tree`);
  await mkdir(join(tree, 'DEBIAN'), { recursive: true });
  await writeFile(join(tree, 'DEBIAN/control'), `Package: ${name}\nVersion: ${version}\nArchitecture: all\nMaintainer: Lockstep tests <tests@example.com>\nDescription: a test package\n`);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(tree, path)), { recursive: true });
    await writeFile(join(tree, path), content);
  }
  const deb = join(dir, `${name}_${version}_all.deb`);
  await run('dpkg-deb', ['--build', '--root-owner-group', tree, deb]);
  return deb;
}

/** Prepares an empty dpkg database under `root` (status, info/, updates/, the log directory). */
export async function initDpkgRoot(root: string): Promise<void> {
  await mkdir(join(root, 'var/lib/dpkg/info'), { recursive: true });
  await mkdir(join(root, 'var/lib/dpkg/updates'), { recursive: true });
  await mkdir(join(root, 'var/log'), { recursive: true });
  await writeFile(join(root, 'var/lib/dpkg/status'), '', { flag: 'a' });
}

/** `dpkg -i DEB` under `root`, logging to ROOT/var/log/dpkg.log, as an administrator would by hand. */
export async function dpkgInstall(root: string, deb: string): Promise<void> {
  await run('dpkg', [`--root=${root}`, '--force-script-chrootless', '--force-not-root', `--log=${join(root, 'var/log/dpkg.log')}`, '-i', deb]);
}
