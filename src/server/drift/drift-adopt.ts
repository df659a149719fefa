/**
 * `lockstep drift adopt HOST --version V --reason TEXT`: a new release made of
 * the host's active release plus its open release-scope drift, from the
 * content the agent uploaded. An ordinary release: it goes through the
 * promotion gate like any other, and the items stay open, marked adopted,
 * until it runs on the host.
 */
import type { DriftAdoptResponse, DriftEntryAttrs } from '../../api/schemas.js';
import { promotionOrder } from '../../core/config.js';
import { LockstepError } from '../../core/errors.js';
import { shortId, type Manifest, type ManifestEntry } from '../../core/manifest.js';
import { requireConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';
import type { UserPrincipal } from '../deployments/deployment-service.js';
import { requireActionableHost } from './drift-service.js';
import { keptReleasePath, releaseScopePrefix } from '../hosts/host-settings.js';
import { createRelease, manifestOf } from '../releases/release-service.js';
import type { DriftItemRow } from '../../store/store.js';
import { OPEN_DRIFT_STATES, packageNameOf } from '../../core/drift-items.js';
import { declareHostPackage } from '../releases/release-capture.js';

/** One drifted release path, relative to the release root. */
export interface AdoptedChange {
  readonly path: string;
  readonly kinds: readonly string[];
  readonly expected: DriftEntryAttrs | null;
  readonly actual: DriftEntryAttrs | null;
}

/**
 * The entries of `base` with the host's changes applied: removed paths (and
 * what was under them) go, added and changed ones take what the host has.
 * Pure; throws naming the path that cannot become part of a release.
 */
export function adoptedEntries(base: Manifest, changes: readonly AdoptedChange[]): ManifestEntry[] {
  const entries = new Map(base.entries.map((entry) => [entry.path, entry]));
  for (const change of [...changes].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    const actual = change.actual;
    if (actual === null) {
      for (const path of [...entries.keys()]) if (path === change.path || path.startsWith(`${change.path}/`)) entries.delete(path);
      continue;
    }
    if (actual.problem !== undefined) throw new LockstepError('bad-input', `cannot adopt ${change.path}: the host could not read it (${actual.problem}${actual.detail ? `: ${actual.detail}` : ''})`);
    const before = entries.get(change.path);
    switch (actual.type) {
      case 'file': {
        const contentChanged = change.kinds.some((kind) => kind === 'content' || kind === 'added' || kind === 'type');
        const sha256 = actual.sha256 ?? (contentChanged || before?.type !== 'file' ? undefined : before.sha256);
        const size = actual.size ?? (before?.type === 'file' ? before.size : undefined);
        const mode = actual.mode ?? (before?.type === 'file' ? before.mode : undefined);
        if (sha256 === undefined || size === undefined || mode === undefined) throw new LockstepError('bad-input', `cannot adopt ${change.path}: the host reported no hash, size or mode for it; run lockstep drift scan with --full and try again`);
        entries.set(change.path, { path: change.path, type: 'file', mode: mode & 0o7777, size, sha256 });
        break;
      }
      case 'dir': {
        const mode = actual.mode ?? (before?.type === 'dir' ? before.mode : 0o755);
        entries.set(change.path, { path: change.path, type: 'dir', mode });
        // A file replaced by a directory: what the release had under it is not on the host either, unless reported.
        break;
      }
      case 'symlink':
        if (actual.target === undefined) throw new LockstepError('bad-input', `cannot adopt ${change.path}: the host reported no symlink target`);
        entries.set(change.path, { path: change.path, type: 'symlink', target: actual.target });
        break;
      case 'other':
        throw new LockstepError('bad-input', `cannot adopt ${change.path}: a ${actual.special ?? 'special file'} cannot be part of a release; remove it on the host or revert it`);
    }
  }
  return [...entries.values()];
}

/** Makes the release and marks the host's open release-scope items adopted into it (audited). */
export async function adoptDrift(
  context: ServerContext,
  principal: UserPrincipal,
  hostName: string,
  version: string,
  reason: string,
  /** Which of the host's open release-scope items to adopt (default: all). */
  only: (item: DriftItemRow) => boolean = () => true,
): Promise<DriftAdoptResponse> {
  const repo = context.store.read;
  const config = await requireConfig(repo);
  const host = await requireActionableHost(repo, principal, hostName);
  if (host.current_release_id === null) throw new LockstepError('conflict', `host ${host.name} runs no release; there is nothing to adopt into`);
  const base = await repo.release(host.current_release_id);
  if (!base) throw new Error(`host ${host.name} runs release ${host.current_release_id}, which is not in the store`);
  const kept = keptReleasePath(config.deploy_to);
  // Drift of a kept (not active) release tree is not part of what the host runs: revert it, never adopt it.
  const open = (await repo.driftItems({ host: host.name, states: OPEN_DRIFT_STATES })).filter((item) => only(item));
  const items = open.filter((item) => item.scope === 'release' && !kept.test(item.path));
  // A package finding is adopted as the package's new version (or its removal) declared by the new release.
  const packageItems = open.filter((item) => item.scope === 'package');
  if (items.length === 0 && packageItems.length === 0) {
    throw new LockstepError('bad-input', `host ${host.name} has no open drift in release files or packages; nothing to adopt (watched paths are accepted instead: lockstep drift accept)`);
  }
  const prefix = releaseScopePrefix(config.deploy_to);
  const repointed = items.find((item) => item.path === prefix.slice(0, -1));
  if (repointed) {
    throw new LockstepError('refused', `${repointed.path} was re-pointed by hand on ${host.name}, so its files are not those of one release; revert that first (lockstep drift revert ${host.name} --path ${repointed.path}), then adopt`);
  }
  const changes = items.map((item) => ({
    path: item.path.slice(prefix.length),
    kinds: JSON.parse(item.kinds) as string[],
    expected: item.expected ? (JSON.parse(item.expected) as DriftEntryAttrs) : null,
    actual: item.actual ? (JSON.parse(item.actual) as DriftEntryAttrs) : null,
  }));
  const baseManifest = manifestOf(base);
  const entries = adoptedEntries(baseManifest, changes);
  const known = new Map(baseManifest.entries.map((entry) => [entry.path, entry]));
  for (const entry of entries) {
    if (entry.type !== 'file') continue;
    const was = known.get(entry.path);
    if (was?.type === 'file' && was.sha256 === entry.sha256) continue;
    if ((await context.blobs.sizeOf(entry.sha256)) === undefined) {
      throw new LockstepError('bad-input', `cannot adopt ${prefix}${entry.path}: its content (${shortId(entry.sha256)}) was never uploaded by the agent of ${host.name}; run: lockstep drift scan ${host.name}, then adopt again`);
    }
  }
  // The adopted release keeps the system parts of the release it was made from, with the adopted package versions.
  const tree = new Map(entries.map((entry) => [entry.path, entry]));
  const packages = new Map((baseManifest.system?.packages ?? []).map((entry) => [entry.name, entry]));
  for (const item of packageItems) {
    const name = packageNameOf(item.path) ?? item.path;
    const actual = item.actual ? (JSON.parse(item.actual) as DriftEntryAttrs) : null;
    if (actual?.version === undefined) {
      packages.delete(name);
      continue;
    }
    const uploaded = actual.sha256 !== undefined && actual.size !== undefined && actual.architecture !== undefined && (await context.blobs.sizeOf(actual.sha256)) === actual.size;
    declareHostPackage(tree, packages, { name, version: actual.version, ...(uploaded ? { deb: { sha256: actual.sha256 as string, size: actual.size as number, architecture: actual.architecture as string } } : {}) });
  }
  const system = baseManifest.system === undefined && packageItems.length === 0 ? {} : { system: { files: [...(baseManifest.system?.files ?? [])], packages: [...packages.values()] } };
  const { release, created } = await createRelease(context, principal.name, { app: base.app, version, entries: [...tree.values()], ...system });
  const at = context.now().toISOString();
  await context.store.transaction(async (write) => {
    for (const item of [...items, ...packageItems]) await write.updateDriftItem(item.id, { adopted_into: release.id, reason });
    await write.appendAudit({
      at,
      actor: principal.name,
      action: 'drift.adopted',
      target: `host:${host.name}`,
      details: { env: host.env, release: release.id, version: release.version, from: base.id, paths: [...items, ...packageItems].slice(0, 100).map((item) => item.path), count: items.length + packageItems.length, reason },
    });
  });
  return { release, created, host: host.name, items: items.length + packageItems.length, firstEnv: promotionOrder(config)[0] ?? null };
}
