/**
 * Host facts for `lockstep parity`: OS, kernel, architecture, installed
 * packages, the watched paths' digests and the system facts (system-facts.ts), read under the agent's --root (so
 * sandbox hosts can differ), sent at start and whenever they change.
 */
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { arch, release } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { HostSettings } from '../api/schemas.js';
import { canonicalJson } from '../core/manifest.js';
import type { HostFacts } from '../core/parity.js';
import { isTransient, retry, sleep } from './retry.js';
import { ifMissing } from '../core/errors.js';
import { readSystemFacts } from './system-facts.js';

/** How long live system facts are reused: they change with what runs, not with what Lockstep deploys. */
export const LIVE_FACTS_MS = 55_000;
/** How often facts are re-read; reading is cheap (a stat of the package database decides whether to parse it). */
export const FACTS_CHECK_MS = 60_000;
/** How often the settings getter is looked at between checks: new settings (watch paths) are worth a check at once. */
const SETTINGS_POLL_MS = 1_000;
const RPM_TIMEOUT_MS = 60_000;
/** The server's caps (factsReport in src/api/schemas.ts): longer values are cut, more watched entries left out. */
const MAX_TEXT = 256;
const MAX_WATCHED = 100_000;

/** What the facts loop needs from the rest of the agent. */
export interface HostFactsOptions {
  /** The directory treated as `/`. */
  readonly root: string;
  /** The latest host settings (null before the first fetch). */
  readonly settings: () => HostSettings | null;
  /** The drift monitor's digests of the watched entries as they are now (absent: no monitor, nothing watched). */
  readonly watchedSummary?: (() => Record<string, string>) | undefined;
  /** Resolves once the monitor has its first baseline: facts sent before would name no watched path ("(absent)" in parity). */
  readonly watchedReady?: (() => Promise<void>) | undefined;
  /** Sends one facts report (once; the loop retries transient failures). */
  /** The files the active release manages, path → rendered digest (absent: no system parts on this agent). */
  readonly managed?: (() => Promise<Readonly<Record<string, string>>>) | undefined;
  readonly send: (facts: HostFacts, signal: AbortSignal) => Promise<void>;
  readonly logger: Logger;
  readonly checkMs?: number;
  /** A count the agent raises when the host changed (a task installed packages): facts are re-read within a second, not at the next check. */
  readonly changes?: (() => number) | undefined;
}

/** Reads facts every `checkMs` and sends them when they differ from the last ones sent, until the signal aborts; never throws. */
export async function reportHostFacts(options: HostFactsOptions, signal: AbortSignal): Promise<void> {
  const reader = new HostFactsReader(options.root);
  let sent = '';
  let lastProblem = '';
  if (options.watchedReady !== undefined) {
    const aborted = signal.aborted ? Promise.resolve() : new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    await Promise.race([options.watchedReady(), aborted]);
  }
  while (!signal.aborted) {
    const revision = options.settings()?.revision ?? null;
    const changes = options.changes?.() ?? 0;
    try {
      const facts = await reader.read(options.watchedSummary?.() ?? {}, await options.managed?.());
      const text = canonicalJson(facts);
      if (text !== sent) {
        await retry(() => options.send(facts, signal), {
          signal,
          onRetry: (error, attempt, delayMs) => options.logger.warn({ err: error, attempt, delayMs }, 'cannot send host facts yet; retrying'),
        });
        sent = text;
        lastProblem = '';
        options.logger.info({ os: facts.os, kernel: facts.kernel, packages: facts.packages ? Object.keys(facts.packages.installed).length : null, watched: Object.keys(facts.watched).length }, 'host facts sent');
      }
    } catch (error) {
      if (signal.aborted) return;
      // Said once per distinct problem: an older server without the route would otherwise log every minute.
      const problem = error instanceof Error ? error.message : String(error);
      if (problem !== lastProblem) options.logger.warn({ err: error, transient: isTransient(error) }, 'cannot report host facts');
      lastProblem = problem;
    }
    const until = Date.now() + (options.checkMs ?? FACTS_CHECK_MS);
    try {
      while (Date.now() < until && (options.settings()?.revision ?? null) === revision && (options.changes?.() ?? 0) === changes) await sleep(Math.min(SETTINGS_POLL_MS, until - Date.now()), signal);
    } catch {
      return;
    }
  }
}

/** Reads a host's facts; keeps the parsed package list until the package database changes. */
export class HostFactsReader {
  #packages: { readonly signature: string; readonly value: HostFacts['packages'] } | undefined;
  /** The live system facts and when they were read: kept between the periodic checks (see LIVE_FACTS_MS). */
  #live: { readonly at: number; readonly value: NonNullable<HostFacts['system']>['live'] } | undefined;

  constructor(private readonly root: string) {}

  /** The facts now; `watched` comes from the drift monitor. */
  async read(watched: Readonly<Record<string, string>>, managed?: Readonly<Record<string, string>>): Promise<HostFacts> {
    const paths = Object.keys(watched).sort().slice(0, MAX_WATCHED);
    return {
      os: await this.os(),
      kernel: release().slice(0, MAX_TEXT),
      arch: arch(),
      packages: await this.packages(),
      watched: Object.fromEntries(paths.map((path) => [path, watched[path] ?? ''])),
      system: await this.system(),
      ...(managed === undefined ? {} : { managed: Object.fromEntries(Object.entries(managed).sort(([x], [y]) => (x < y ? -1 : 1)).slice(0, MAX_WATCHED)) }),
    };
  }

  /**
   * Files under the root at every read; the live system (ports, mounts, modules, live sysctl) at most once per
   * LIVE_FACTS_MS: the facts are re-read after every task, and scanning every process's descriptors for the
   * listening ports cost ~30 ms of CPU each time, a quarter of an agent's CPU per deployment (bench/rolling-deploy).
   */
  private async system(): Promise<HostFacts['system']> {
    const now = performance.now();
    const kept = this.#live !== undefined && now - this.#live.at < LIVE_FACTS_MS ? this.#live.value : undefined;
    const facts = await readSystemFacts(this.root, undefined, kept);
    if (kept === undefined) this.#live = { at: now, value: facts.live };
    return facts;
  }

  private async os(): Promise<HostFacts['os']> {
    // os-release(5): /etc/os-release, else /usr/lib/os-release. A sandbox root without one falls back to the real host's.
    const candidates = [join(this.root, 'etc/os-release'), join(this.root, 'usr/lib/os-release')];
    if (this.root !== '/') candidates.push('/etc/os-release', '/usr/lib/os-release');
    for (const file of candidates) {
      const text = await ifMissing(readFile(file, 'utf8'));
      if (text !== undefined) return parseOsRelease(text);
    }
    return { id: '', version: '' };
  }

  private async packages(): Promise<HostFacts['packages']> {
    const dpkg = join(this.root, 'var/lib/dpkg/status');
    const dpkgSignature = await signatureOf(dpkg);
    if (dpkgSignature !== undefined) {
      return this.cached(`dpkg ${dpkgSignature}`, async () => ({ manager: 'dpkg', installed: parseDpkgStatus(await readFile(dpkg, 'utf8')) }));
    }
    const rpmDir = join(this.root, 'var/lib/rpm');
    const rpmSignature = (await signatureOf(join(rpmDir, 'rpmdb.sqlite'))) ?? (await signatureOf(join(rpmDir, 'Packages'))) ?? (await signatureOf(rpmDir));
    if (rpmSignature === undefined) return this.cached('none', async () => null);
    return this.cached(`rpm ${rpmSignature}`, async () => {
      const installed = await queryRpm(this.root);
      return installed === undefined ? null : { manager: 'rpm', installed };
    });
  }

  private async cached(signature: string, read: () => Promise<HostFacts['packages']>): Promise<HostFacts['packages']> {
    if (this.#packages?.signature !== signature) this.#packages = { signature, value: await read() };
    return this.#packages.value;
  }
}

/** Size, mtime and inode: what changes when a package manager rewrites its database. */
async function signatureOf(path: string): Promise<string | undefined> {
  const info = await ifMissing(stat(path, { bigint: true }));
  return info === undefined ? undefined : `${info.size}:${info.mtimeNs}:${info.ino}`;
}

/** `rpm -qa` under the root; undefined when there is no rpm program. */
function queryRpm(root: string): Promise<Record<string, string> | undefined> {
  return new Promise((resolve, reject) => {
    execFile('rpm', ['-qa', '--root', root, '--qf', '%{NAME} %{VERSION}-%{RELEASE}\\n'], { timeout: RPM_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }, (error, stdout) => {
      if ((error as NodeJS.ErrnoException | null)?.code === 'ENOENT') return resolve(undefined);
      if (error) return reject(new Error(`rpm -qa failed: ${error.message.split('\n')[0] ?? ''}`));
      resolve(parseRpmList(stdout));
    });
  });
}

/** ID and VERSION_ID of an os-release file (shell-style assignments, values optionally quoted). */
export function parseOsRelease(text: string): HostFacts['os'] {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!match?.[1]) continue;
    let value = (match[2] ?? '').trim();
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2) value = value.slice(1, -1);
    fields.set(match[1], value.replace(/\\(["'$`\\])/g, '$1'));
  }
  return { id: (fields.get('ID') ?? '').slice(0, 64), version: (fields.get('VERSION_ID') ?? '').slice(0, 64) };
}

/**
 * Installed packages of a dpkg status file: name → version for every stanza
 * whose Status is "install ok installed". A name installed for several
 * architectures (multiarch) is listed as name:arch for each.
 */
export function parseDpkgStatus(text: string): Record<string, string> {
  const found: { name: string; arch: string; version: string }[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of stanza.split('\n')) {
      // Continuation lines (descriptions, conffiles) start with whitespace; no field we read spans lines.
      const match = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (match?.[1]) fields.set(match[1].toLowerCase(), (match[2] ?? '').trim());
    }
    const name = fields.get('package');
    const version = fields.get('version');
    if (!name || version === undefined || fields.get('status') !== 'install ok installed') continue;
    found.push({ name, arch: fields.get('architecture') ?? '', version });
  }
  const count = new Map<string, number>();
  for (const { name } of found) count.set(name, (count.get(name) ?? 0) + 1);
  const installed: Record<string, string> = {};
  for (const { name, arch: architecture, version } of found) installed[(count.get(name) ?? 0) > 1 ? `${name}:${architecture}` : name] = version.slice(0, MAX_TEXT);
  return installed;
}

/** `NAME VERSION-RELEASE` lines of rpm -qa; a name installed twice (several versions, e.g. kernels) keeps them all, sorted. */
export function parseRpmList(text: string): Record<string, string> {
  const versions = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const [name, version] = line.trim().split(/\s+/, 2);
    if (!name || !version || name === '(none)') continue;
    versions.set(name, [...(versions.get(name) ?? []), version]);
  }
  return Object.fromEntries([...versions].map(([name, list]) => [name, list.sort().join(', ').slice(0, MAX_TEXT)]));
}
