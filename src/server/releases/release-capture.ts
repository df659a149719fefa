/**
 * `lockstep release capture HOST --version V [--packages] [--path P...]`: a
 * release made from what a host runs. The host's agent gets a
 * `release-capture` command, uploads the .deb files of its apt cache and the
 * given files, and answers with their list; that answer becomes the release:
 * the host's active release (tree and system parts) with every captured
 * package declared (its .deb when the cache had it, name and version
 * otherwise) and every captured file managed. It is an ordinary release:
 * promoted like any other, so production converges to what test runs.
 */
import { posix } from 'node:path';
import type { CommandResult, CommandView } from '../../api/schemas.js';
import { requireConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';
import type { UserPrincipal } from '../deployments/deployment-service.js';
import { LockstepError } from '../../core/errors.js';
import { shortId, type ManifestEntry } from '../../core/manifest.js';
import type { DeclaredPackage, ManagedFile } from '../../core/system-parts.js';
import { createCommands, requireActionableHost } from '../drift/drift-service.js';
import { requestOf } from '../drift/agent-command-service.js';
import { createRelease, manifestOf } from './release-service.js';

/** The folder of a captured release's tree that holds what was captured (.deb files and file sources). */
export const CAPTURE_DIR = 'lockstep-capture';

/** Asks the host's agent to capture (the release is made when it answers; follow the command). */
export async function requestCapture(context: ServerContext, principal: UserPrincipal, hostName: string, version: string, packages: boolean, paths: readonly string[]): Promise<CommandView> {
  if (!packages && paths.length === 0) throw new LockstepError('bad-input', 'nothing to capture: give --packages, --path P, or both');
  const repo = context.store.read;
  const config = await requireConfig(repo);
  const host = await requireActionableHost(repo, principal, hostName);
  if (await repo.releaseByVersion(config.app, version)) throw new LockstepError('conflict', `release ${config.app}@${version} already exists; capture into a new version`);
  const [view] = await createCommands(context, principal.name, [host.name], { kind: 'release-capture', version, packages, paths: paths.map((path) => posix.normalize(path)) });
  return view as CommandView;
}

/**
 * The command result to store for an agent's answer: for a capture, the release made from it (named in `detail`),
 * or why none could be made; any other answer as it came.
 */
export async function captureOutcome(context: ServerContext, host: string, id: number, answer: CommandResult): Promise<CommandResult> {
  const row = await context.store.read.agentCommand(id);
  if (row?.host !== host || row.kind !== 'release-capture' || row.state === 'done' || row.state === 'failed') return answer;
  const { capture, ...rest } = answer;
  if (!answer.ok) return rest;
  const request = requestOf(row);
  if (request.kind !== 'release-capture') return rest;
  if (capture === undefined) return { host, ok: false, error: 'the agent answered the capture without what it captured (is it older than the server?)' };
  try {
    const { release, created } = await captureRelease(context, row.host, row.created_by, request.version, capture);
    const debs = capture.packages.filter((entry) => entry.deb !== undefined).length;
    const detail = `${created ? 'created' : 'already exists:'} release ${release.app}@${release.version} ${release.id} from ${host}: ${capture.packages.length} package(s) (${debs} as .deb from the apt cache), ${capture.files.length} file(s)`;
    return { host, ok: true, detail };
  } catch (error) {
    if (!(error instanceof LockstepError)) throw error;
    return { host, ok: false, error: `could not make the release: ${error.message}`.slice(0, 4000) };
  }
}

/** A host's package at a version, with the .deb its apt cache held (uploaded), if any. */
export type HostPackage = NonNullable<CommandResult['capture']>['packages'][number];

/** Adds a file (and its missing parent directories) to a release tree being built. */
export function addFileEntry(entries: Map<string, ManifestEntry>, path: string, sha256: string, size: number, mode: number): void {
  for (let parent = posix.dirname(path); parent !== '.'; parent = posix.dirname(parent)) if (!entries.has(parent)) entries.set(parent, { path: parent, type: 'dir', mode: 0o755 });
  entries.set(path, { path, type: 'file', mode, size, sha256 });
}

/** Declares a host's package in a release being built: its uploaded .deb under lockstep-capture/debs/, or name and version for apt. */
export function declareHostPackage(entries: Map<string, ManifestEntry>, packages: Map<string, DeclaredPackage>, entry: HostPackage): void {
  if (entry.deb === undefined) {
    packages.set(entry.name, { kind: 'apt', name: entry.name, version: entry.version });
    return;
  }
  // apt's cache names files NAME_VERSION_ARCH.deb with the epoch's colon escaped; so does the release.
  const deb = `${CAPTURE_DIR}/debs/${entry.name}_${entry.version.replaceAll(':', '%3a')}_${entry.deb.architecture}.deb`;
  addFileEntry(entries, deb, entry.deb.sha256, entry.deb.size, 0o644);
  packages.set(entry.name, { kind: 'deb', deb, name: entry.name, version: entry.version, architecture: entry.deb.architecture });
}

async function captureRelease(context: ServerContext, hostName: string, actor: string, version: string, capture: NonNullable<CommandResult['capture']>) {
  const repo = context.store.read;
  const config = await requireConfig(repo);
  const host = await repo.host(hostName);
  const base = host?.current_release_id ? await repo.release(host.current_release_id) : undefined;
  const baseManifest = base ? manifestOf(base) : undefined;
  const entries = new Map<string, ManifestEntry>((baseManifest?.entries ?? []).filter((entry) => entry.path !== CAPTURE_DIR && !entry.path.startsWith(`${CAPTURE_DIR}/`)).map((entry) => [entry.path, entry]));
  const addFile = (path: string, sha256: string, size: number, mode: number) => addFileEntry(entries, path, sha256, size, mode);
  const packages = new Map<string, DeclaredPackage>((baseManifest?.system?.packages ?? []).map((entry) => [entry.name, entry]));
  for (const entry of capture.packages) declareHostPackage(entries, packages, entry);
  const files = new Map<string, ManagedFile>((baseManifest?.system?.files ?? []).map((file) => [file.path, file]));
  for (const file of capture.files) {
    const source = `${CAPTURE_DIR}/files${file.path}`;
    addFile(source, file.sha256, file.size, 0o644);
    files.set(file.path, { path: file.path, source, mode: file.mode & 0o777, template: false });
  }
  for (const entry of entries.values()) {
    if (entry.type === 'file' && (await context.blobs.sizeOf(entry.sha256)) === undefined) {
      throw new LockstepError('bad-input', `${entry.path}: its content (${shortId(entry.sha256)}) was never uploaded by the agent of ${hostName}; run the capture again`);
    }
  }
  return createRelease(context, actor, { app: base?.app ?? config.app, version, entries: [...entries.values()], system: { files: [...files.values()], packages: [...packages.values()] } });
}
