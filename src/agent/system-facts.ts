/**
 * The host facts that make test differ from production in practice: systemd
 * units, local users and groups, sysctl values, listening ports, mounts and
 * kernel modules. Files are read under the agent's --root (`configured`);
 * what only the running kernel knows is read from the live system (`live`),
 * so two sandbox agents on one machine report equal live facts.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ifMissing, isMissing } from '../core/errors.js';
import { SYSTEM_CATEGORIES, type SystemCategory, type SystemFacts, type SystemFactSet } from '../core/parity.js';

/** The server's caps (hostFacts in src/api/schemas.ts): more entries per category are left out, longer values cut. */
export const MAX_SYSTEM_ENTRIES = 10_000;
const MAX_TEXT = 256;
const SYSTEMCTL_TIMEOUT_MS = 30_000;

/**
 * Live sysctl values worth comparing: settings people tune, never counters
 * (fs.file-nr) that change by themselves.
 */
export const LIVE_SYSCTL_KEYS = [
  'fs.file-max',
  'fs.inotify.max_user_watches',
  'kernel.panic',
  'kernel.pid_max',
  'kernel.randomize_va_space',
  'net.core.rmem_max',
  'net.core.somaxconn',
  'net.core.wmem_max',
  'net.ipv4.conf.all.rp_filter',
  'net.ipv4.ip_forward',
  'net.ipv4.tcp_syncookies',
  'net.ipv6.conf.all.disable_ipv6',
  'vm.max_map_count',
  'vm.overcommit_memory',
  'vm.swappiness',
] as const;

/** Where the live system is read from; tests point it at a fixture tree. */
export interface LiveSources {
  /** The proc filesystem, normally `/proc`. */
  readonly proc: string;
  /** Running units, or undefined when systemd is not there to ask. */
  readonly runningUnits: () => Promise<string[] | undefined>;
}

/** The real live system. */
export const LIVE_SYSTEM: LiveSources = { proc: '/proc', runningUnits: listRunningUnits };

/** Reads the system facts of the host whose `/` is `root`; running units only when root is `/` (a sandbox does not run its own). */
export async function readSystemFacts(root: string, live: LiveSources = LIVE_SYSTEM, keptLive?: SystemFactSet): Promise<SystemFacts> {
  const configured: SystemFactSet = {
    service: await enabledUnits(root),
    user: parsePasswd((await ifMissing(readFile(join(root, 'etc/passwd'), 'utf8'))) ?? ''),
    group: parseGroup((await ifMissing(readFile(join(root, 'etc/group'), 'utf8'))) ?? ''),
    sysctl: await configuredSysctl(root),
    mount: parseFstab((await ifMissing(readFile(join(root, 'etc/fstab'), 'utf8'))) ?? ''),
  };
  if (keptLive !== undefined) return { configured: bounded(configured), live: keptLive };
  const running = root === '/' ? await live.runningUnits() : undefined;
  const mounts = await ifMissing(readFile(join(live.proc, 'self/mounts'), 'utf8'));
  const modules = await ifMissing(readFile(join(live.proc, 'modules'), 'utf8'));
  const ports = await listeningPorts(live.proc);
  const liveSet: SystemFactSet = {
    ...(running === undefined ? {} : { service: Object.fromEntries(running.map((unit) => [unit, 'running'])) }),
    sysctl: await liveSysctl(live.proc),
    ...(ports === undefined ? {} : { port: ports }),
    ...(mounts === undefined ? {} : { mount: parseMounts(mounts) }),
    ...(modules === undefined ? {} : { module: parseModules(modules) }),
  };
  return { configured: bounded(configured), live: bounded(liveSet) };
}

function bounded(set: SystemFactSet): SystemFactSet {
  const out: Partial<Record<SystemCategory, Record<string, string>>> = {};
  for (const category of SYSTEM_CATEGORIES) {
    const entries = set[category];
    if (entries === undefined) continue;
    const names = Object.keys(entries).filter((name) => name.length <= MAX_TEXT).sort().slice(0, MAX_SYSTEM_ENTRIES);
    out[category] = Object.fromEntries(names.map((name) => [name, (entries[name] ?? '').slice(0, MAX_TEXT)]));
  }
  return out;
}

/** Units enabled by a symlink in ROOT/etc/systemd/system/TARGET.wants (or .requires): unit → `enabled (TARGET, …)`. */
async function enabledUnits(root: string): Promise<Record<string, string>> {
  const base = join(root, 'etc/systemd/system');
  const targets = new Map<string, string[]>();
  for (const directory of ((await ifMissing(readdir(base, { withFileTypes: true }))) ?? []).filter((entry) => /\.(wants|requires)$/.test(entry.name))) {
    const target = directory.name.replace(/\.(wants|requires)$/, '');
    for (const unit of (await ifMissing(readdir(join(base, directory.name)))) ?? []) targets.set(unit, [...(targets.get(unit) ?? []), target]);
  }
  return Object.fromEntries([...targets].map(([unit, wantedBy]) => [unit, `enabled (${[...new Set(wantedBy)].sort().join(', ')})`]));
}

/** `systemctl list-units --state=running`: the running units' names; undefined without systemd (a container, no systemctl). */
function listRunningUnits(): Promise<string[] | undefined> {
  return new Promise((resolve) => {
    execFile('systemctl', ['list-units', '--state=running', '--no-legend', '--plain', '--no-pager'], { timeout: SYSTEMCTL_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 }, (error, stdout) => {
      // No systemctl, or systemd not PID 1 ("System has not been booted with systemd"): running units are unknown, not none.
      if (error) return resolve(undefined);
      resolve(parseRunningUnits(stdout));
    });
  });
}

/** The unit names of `systemctl list-units --no-legend --plain` output. */
export function parseRunningUnits(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((unit) => unit !== '' && unit.includes('.'))
    .sort();
}

/** passwd(5): name → `uid=U gid=G shell=S`; the password field is never read. */
export function parsePasswd(text: string): Record<string, string> {
  const users: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    const name = fields[0]?.trim();
    if (!name || name.startsWith('#') || fields.length < 7) continue;
    users[name] = `uid=${fields[2] ?? ''} gid=${fields[3] ?? ''} shell=${fields[6] ?? ''}`;
  }
  return users;
}

/** group(5): name → `gid=G members=a,b` (members sorted); the password field is never read. */
export function parseGroup(text: string): Record<string, string> {
  const groups: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    const name = fields[0]?.trim();
    if (!name || name.startsWith('#') || fields.length < 4) continue;
    const members = (fields[3] ?? '').split(',').map((member) => member.trim()).filter((member) => member !== '').sort();
    groups[name] = `gid=${fields[2] ?? ''} members=${members.join(',')}`;
  }
  return groups;
}

/** ROOT/etc/sysctl.conf, then ROOT/etc/sysctl.d/*.conf in name order; a later assignment of a key wins, as in sysctl --system. */
async function configuredSysctl(root: string): Promise<Record<string, string>> {
  const directory = join(root, 'etc/sysctl.d');
  const files = [join(root, 'etc/sysctl.conf'), ...((await ifMissing(readdir(directory))) ?? []).filter((name) => name.endsWith('.conf')).sort().map((name) => join(directory, name))];
  let values: Record<string, string> = {};
  for (const file of files) values = { ...values, ...parseSysctlConf((await ifMissing(readFile(file, 'utf8'))) ?? '') };
  return values;
}

/** sysctl.conf(5) lines `key = value`; `#`/`;` comments; a leading `-` (ignore errors) dropped; `/` separators as dots. */
export function parseSysctlConf(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const equals = line.indexOf('=');
    if (equals < 0) continue;
    const key = line.slice(0, equals).trim().replace(/^-/, '').replaceAll('/', '.');
    if (key !== '') values[key] = line.slice(equals + 1).trim();
  }
  return values;
}

/** The live values of LIVE_SYSCTL_KEYS, whitespace normalised; a key this kernel lacks is left out. */
async function liveSysctl(proc: string): Promise<Record<string, string>> {
  const values: Record<string, string> = {};
  for (const key of LIVE_SYSCTL_KEYS) {
    const text = await ifMissing(readFile(join(proc, 'sys', ...key.split('.')), 'utf8'));
    if (text !== undefined) values[key] = text.trim().split(/\s+/).join(' ');
  }
  return values;
}

/** fstab(5): mount point → `TYPE SPEC OPTIONS`. */
export function parseFstab(text: string): Record<string, string> {
  const mounts: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [spec, path, type, options] = line.split(/\s+/);
    if (!spec || !path || !type) continue;
    mounts[unescapeOctal(path)] = `${type} ${unescapeOctal(spec)} ${options ?? 'defaults'}`;
  }
  return mounts;
}

/** /proc/self/mounts: mount point → `TYPE SOURCE OPTIONS` (the last mount over a point is the one in effect). */
export function parseMounts(text: string): Record<string, string> {
  const mounts: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const [source, path, type, options] = line.trim().split(/\s+/);
    if (!source || !path || !type) continue;
    mounts[unescapeOctal(path)] = `${type} ${unescapeOctal(source)} ${options ?? ''}`.trim();
  }
  return mounts;
}

/** /proc/modules: loaded module name → `loaded`. */
export function parseModules(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .map((line) => line.trim().split(/\s+/)[0] ?? '')
      .filter((name) => name !== '')
      .map((name) => [name, 'loaded']),
  );
}

/** Mount tables escape space, tab, newline and backslash as \ooo. */
function unescapeOctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** One socket of /proc/net/{tcp,udp}{,6} that listens. */
export interface ListeningSocket {
  readonly protocol: 'tcp' | 'udp';
  readonly address: string;
  readonly port: number;
  readonly inode: string;
}

const TCP_LISTEN = '0A';
const UDP_UNCONNECTED = '07';

/**
 * Listening sockets of one /proc/net table: TCP in state LISTEN, UDP
 * unconnected (no remote address). Addresses are shown as the kernel stores
 * them decoded (IPv4 dotted, IPv6 hex groups).
 */
export function parseProcNet(text: string, protocol: 'tcp' | 'udp'): ListeningSocket[] {
  const sockets: ListeningSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const [local, remote, state, inode] = [fields[1], fields[2], fields[3], fields[9]];
    if (!local || !remote || !state || inode === undefined) continue;
    if (state !== (protocol === 'tcp' ? TCP_LISTEN : UDP_UNCONNECTED)) continue;
    if (protocol === 'udp' && !/^0+:0+$/.test(remote)) continue;
    const [addressHex, portHex] = local.split(':');
    if (!addressHex || !portHex) continue;
    sockets.push({ protocol, address: decodeAddress(addressHex), port: parseInt(portHex, 16), inode });
  }
  return sockets;
}

/** /proc/net stores each 32-bit word of an address in host (little-endian on the platforms we run on) byte order. */
function decodeAddress(hex: string): string {
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = words.flatMap((word) => (word.match(/../g) ?? []).reverse().map((byte) => parseInt(byte, 16)));
  if (bytes.length === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let index = 0; index < bytes.length; index += 2) groups.push((((bytes[index] ?? 0) << 8) | (bytes[index + 1] ?? 0)).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

/**
 * Listening ports with their programs: `N/tcp` → `ADDRESS… PROGRAM…` (`?`
 * when the owning process is not ours to see). Ports in the kernel's
 * ephemeral range (ip_local_port_range) are left out: they are bound to port
 * 0 by tests and clients, differ on every start and would be noise in parity.
 */
async function listeningPorts(proc: string): Promise<Record<string, string> | undefined> {
  const sockets: ListeningSocket[] = [];
  let readAny = false;
  for (const [file, protocol] of [['tcp', 'tcp'], ['tcp6', 'tcp'], ['udp', 'udp'], ['udp6', 'udp']] as const) {
    const text = await ifMissing(readFile(join(proc, 'net', file), 'utf8'));
    if (text === undefined) continue;
    readAny = true;
    sockets.push(...parseProcNet(text, protocol));
  }
  if (!readAny) return undefined;
  const range = ((await ifMissing(readFile(join(proc, 'sys/net/ipv4/ip_local_port_range'), 'utf8'))) ?? '32768 60999').trim().split(/\s+/).map(Number);
  const [low = 32768, high = 60999] = range;
  const kept = sockets.filter((socket) => socket.port < low || socket.port > high);
  const programs = kept.length === 0 ? new Map<string, string>() : await socketPrograms(proc);
  const ports = new Map<string, { addresses: Set<string>; programs: Set<string> }>();
  for (const socket of kept) {
    const key = `${socket.port}/${socket.protocol}`;
    const entry = ports.get(key) ?? { addresses: new Set(), programs: new Set() };
    entry.addresses.add(socket.address);
    entry.programs.add(programs.get(socket.inode) ?? '?');
    ports.set(key, entry);
  }
  return Object.fromEntries([...ports].map(([key, entry]) => [key, `${[...entry.addresses].sort().join(',')} ${[...entry.programs].sort().join(',')}`]));
}

/** Socket inode → the name (comm) of a process holding it, from /proc/PID/fd links. */
async function socketPrograms(proc: string): Promise<Map<string, string>> {
  const programs = new Map<string, string>();
  for (const pid of (await readdir(proc)).filter((name) => /^\d+$/.test(name))) {
    let fds: string[];
    try {
      fds = await readdir(join(proc, pid, 'fd'));
    } catch (error) {
      // Gone (ENOENT/ESRCH) or another user's process (EACCES): its sockets show as `?`, which is the report.
      if (isMissing(error) || isDenied(error)) continue;
      throw error;
    }
    let name: string | undefined;
    for (const fd of fds) {
      const target = await readlink(join(proc, pid, 'fd', fd)).catch((error: unknown) => {
        if (isMissing(error) || isDenied(error)) return '';
        throw error;
      });
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode === undefined || programs.has(inode)) continue;
      name ??= ((await ifMissing(readFile(join(proc, pid, 'comm'), 'utf8'))) ?? '?').trim();
      programs.set(inode, name);
    }
  }
  return programs;
}

function isDenied(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'EACCES' || code === 'EPERM' || code === 'ESRCH';
}
