/**
 * OS packages through dpkg (and apt for packages named by version): what is
 * installed, and one dpkg transaction that installs a set of .deb files.
 * Under `--root DIR` dpkg works on DIR (`--root`: DIR as install dir, its
 * var/lib/dpkg as database) and runs maintainer scripts without chroot
 * (`--force-script-chrootless`, with DPKG_ROOT set for them), so a test
 * fleet's hosts each have their own package database.
 */
import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { LockstepError } from '../../core/errors.js';

/** The outcome of a dpkg or apt run: its output for the deployment's logs. */
export interface PackageRun {
  readonly output: readonly string[];
}

/** dpkg's database dir for a host root. */
export function dpkgAdminDir(root: string): string {
  return join(root, 'var/lib/dpkg');
}

function rootArguments(root: string): string[] {
  return root === '/' ? [] : [`--root=${root}`, '--force-script-chrootless'];
}

/** Runs a command; resolves with its exit code and output (never rejects on a non-zero exit). */
function run(command: string, args: readonly string[], signal: AbortSignal, env?: Readonly<Record<string, string>>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { signal, maxBuffer: 16 << 20, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') reject(new LockstepError('failed', `${command} is not installed on this host; system packages need dpkg`));
        else reject(error);
        return;
      }
      resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
    });
  });
}

/** Refuses to go on when the host root has no dpkg database (an empty --root): say what to create. */
export async function requireDpkgDatabase(root: string): Promise<void> {
  try {
    await access(join(dpkgAdminDir(root), 'status'));
  } catch {
    throw new LockstepError('failed', `no dpkg database at ${join(dpkgAdminDir(root), 'status')}; this host cannot take packages (under --root, create DIR/var/lib/dpkg with an empty status file)`);
  }
}

/** Package name → installed version, for the names asked about that are installed (config-files only or absent: left out). */
export async function installedVersions(root: string, names: readonly string[], signal: AbortSignal): Promise<Map<string, string>> {
  const versions = new Map<string, string>();
  if (names.length === 0) return versions;
  const result = await run('dpkg-query', [`--admindir=${dpkgAdminDir(root)}`, '--show', '--showformat=${Package}\\t${Version}\\t${db:Status-Status}\\n', ...names], signal);
  // Exit status 1 means some name is unknown, which is an answer too; more is an error.
  if (result.code > 1) throw new LockstepError('failed', `dpkg-query failed: ${lastLine(result.stderr)}`);
  for (const line of result.stdout.split('\n')) {
    const [name, version, status] = line.split('\t');
    if (name && version && status === 'installed') versions.set(name, version);
  }
  return versions;
}

/** Installs .deb files in one dpkg run (downgrades included); a failure names dpkg's last error line. */
export async function installDebs(root: string, debs: readonly string[], signal: AbortSignal): Promise<PackageRun> {
  if (debs.length === 0) return { output: [] };
  const result = await run('dpkg', [...rootArguments(root), '--install', ...debs], signal);
  const output = lines(result.stdout, result.stderr);
  if (result.code !== 0) throw new PackageError(`dpkg --install failed (status ${result.code}): ${lastLine(result.stderr || result.stdout)}`, output);
  return { output };
}

/** Removes packages in one dpkg run (their conffiles stay, as with `dpkg --remove`). */
export async function removePackages(root: string, names: readonly string[], signal: AbortSignal): Promise<PackageRun> {
  if (names.length === 0) return { output: [] };
  const result = await run('dpkg', [...rootArguments(root), '--remove', ...names], signal);
  const output = lines(result.stdout, result.stderr);
  if (result.code !== 0) throw new PackageError(`dpkg --remove failed (status ${result.code}): ${lastLine(result.stderr || result.stdout)}`, output);
  return { output };
}

/** Installs exact versions with the host's apt (name=version), downgrades allowed; only on a real host, not under --root. */
export async function installWithApt(root: string, packages: readonly { name: string; version: string }[], signal: AbortSignal): Promise<PackageRun> {
  if (packages.length === 0) return { output: [] };
  if (root !== '/') throw new LockstepError('failed', `packages by name and version (${packages.map((p) => `${p.name}=${p.version}`).join(', ')}) need the host's apt, which does not work under --root; ship them as .deb files in the release instead`);
  const result = await run(
    'apt-get',
    ['-y', '-o', 'DPkg::Lock::Timeout=600', '--allow-downgrades', '--no-install-recommends', 'install', ...packages.map((p) => `${p.name}=${p.version}`)],
    signal,
    { DEBIAN_FRONTEND: 'noninteractive' },
  );
  const output = lines(result.stdout, result.stderr);
  if (result.code !== 0) throw new PackageError(`apt-get install failed (status ${result.code}): ${lastLine(result.stderr || result.stdout)}`, output);
  return { output };
}

/** A failed package operation, with dpkg's or apt's output for the deployment's logs. */
export class PackageError extends LockstepError {
  constructor(
    message: string,
    readonly output: readonly string[],
  ) {
    super('failed', message);
  }
}

function lines(...texts: string[]): string[] {
  return texts.flatMap((text) => text.split('\n')).filter((line) => line.trim().length > 0);
}

function lastLine(text: string): string {
  return lines(text).at(-1) ?? 'no output';
}
