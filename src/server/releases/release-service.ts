/** Creating, finding and describing releases. */
import type { z } from 'zod';
import type { CreateReleaseRequest, ReleaseSummary, releaseSummary } from '../../api/schemas.js';
import { LockstepError, notFound } from '../../core/errors.js';
import { blobsOf, canonicalManifest, manifestProblems, releaseIdOf, shortId, type Manifest, type ManifestEntry } from '../../core/manifest.js';
import { systemPartsProblems } from '../../core/system-parts.js';
import type { ReleaseReadRepo, ReleaseRow } from '../../store/release-repo.js';
import { requireConfig } from '../config-service.js';
import { closeUploadSession } from './upload-service.js';
import type { ServerContext } from '../context.js';

/**
 * Validates a manifest (paths, kinds, symlinks, blobs present with the
 * declared sizes) and stores the release. Idempotent: the same tree and
 * version give the same id and store nothing new.
 */
export async function createRelease(context: ServerContext, actor: string, request: CreateReleaseRequest): Promise<{ release: ReleaseSummary; created: boolean }> {
  const config = await requireConfig(context.store.read);
  const app = request.app ?? config.app;
  if (app !== config.app) throw new LockstepError('bad-input', `release app "${app}" is not the configured app "${config.app}"`);
  const problems = manifestProblems(request.entries);
  if (problems.length > 0) {
    const first = problems[0];
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
    throw new LockstepError('bad-input', `release rejected: ${first?.path}: ${first?.problem}${more}`, { problems });
  }
  const entries = request.entries as ManifestEntry[];
  const systemProblems = request.system === undefined ? [] : systemPartsProblems(request.system, entries, config.deploy_to);
  if (systemProblems.length > 0) {
    const first = systemProblems[0];
    const more = systemProblems.length > 1 ? ` (and ${systemProblems.length - 1} more problem${systemProblems.length > 2 ? 's' : ''})` : '';
    throw new LockstepError('bad-input', `release rejected: ${first?.path}: ${first?.problem}${more}`, { problems: systemProblems });
  }
  const manifest = canonicalManifest({ app, version: request.version, entries, ...(request.system === undefined ? {} : { system: request.system }) });
  const files = manifest.entries.filter((entry) => entry.type === 'file');
  const sizes = await context.blobs.sizesOf(files.map((entry) => entry.sha256));
  for (const [index, entry] of files.entries()) {
    const size = sizes[index];
    if (size === undefined) throw new LockstepError('bad-input', `release rejected: ${entry.path}: content ${shortId(entry.sha256)} was not uploaded`);
    if (size !== entry.size) throw new LockstepError('bad-input', `release rejected: ${entry.path}: declared size ${entry.size} but the content has ${size} bytes`);
  }
  const id = releaseIdOf(manifest);
  const at = context.now().toISOString();
  const created = await context.store.transaction(async (repo) => {
    // Its blobs are referenced from now on: no quota holds them, and the upload session that carried them is done.
    await repo.releaseBlobHolds(blobsOf(manifest));
    if (request.uploadSession !== undefined) await closeUploadSession(repo, actor, request.uploadSession, at);
    if (await repo.release(id)) return false;
    const sameVersion = await repo.releaseByVersion(app, manifest.version);
    if (sameVersion) {
      throw new LockstepError(
        'bad-input',
        `version ${manifest.version} of ${app} already exists as release ${shortId(sameVersion.id)} with different content; versions are immutable, choose a new --version`,
      );
    }
    const files = manifest.entries.filter((entry) => entry.type === 'file');
    await repo.insertRelease({
      id,
      app,
      version: manifest.version,
      manifest: JSON.stringify(manifest),
      files: files.length,
      bytes: files.reduce((sum, entry) => sum + entry.size, 0),
      created_by: actor,
      created_at: at,
    });
    await repo.appendAudit({ at, actor, action: 'release.created', target: `release:${id}`, details: { app, version: manifest.version, files: files.length, blobs: blobsOf(manifest).length } });
    return true;
  });
  return { release: await summarize(context.store.read, (await context.store.read.release(id)) as ReleaseRow), created };
}

/** Finds a release by full id, unique id prefix (at least 4 hex digits), or `app@version`. */
export async function resolveRelease(repo: ReleaseReadRepo, ref: string): Promise<ReleaseRow> {
  const at = ref.indexOf('@');
  if (at > 0) {
    const found = await repo.releaseByVersion(ref.slice(0, at), ref.slice(at + 1));
    if (!found) throw notFound(`no release ${ref}; list them with: lockstep release list`);
    return found;
  }
  if (!/^[0-9a-f]{4,64}$/.test(ref)) {
    throw new LockstepError('bad-input', `"${ref}" is not a release id, id prefix (4+ hex digits) or app@version`);
  }
  const matches = await repo.releasesByPrefix(ref, 2);
  if (matches.length === 0) throw notFound(`no release with id ${ref}; list them with: lockstep release list`);
  if (matches.length > 1) throw new LockstepError('bad-input', `release id prefix ${ref} is ambiguous; give more digits`);
  return matches[0] as ReleaseRow;
}

/** The manifest stored with a release. */
export function manifestOf(row: ReleaseRow): Manifest {
  return JSON.parse(row.manifest) as Manifest;
}

/** A release as the API shows it. */
export async function summarize(repo: ReleaseReadRepo, row: Omit<ReleaseRow, 'manifest'>): Promise<z.infer<typeof releaseSummary>> {
  const environments = await repo.releaseEnvironments(row.id);
  const current = await Promise.all(environments.map(async (env) => (await repo.environmentCurrent(env.env)) === row.id));
  return {
    id: row.id,
    app: row.app,
    version: row.version,
    createdAt: row.created_at,
    createdBy: row.created_by,
    files: Number(row.files),
    bytes: Number(row.bytes),
    environments: environments.map((env, index) => ({
      env: env.env,
      succeededAt: env.succeeded_at,
      rolledBackAt: env.rolled_back_at,
      current: current[index] ?? false,
    })),
  };
}
