/**
 * What the agent keeps about system parts in STATE_DIR/system/ (0700, files
 * 0600, written atomically):
 * - originals.json and originals/<sha256>: what each managed host path held
 *   before Lockstep first managed it (content, mode, owner, or absence), and
 *   which version of each managed package was installed then (or none), so
 *   that a release that no longer manages it gives the host back exactly that;
 * - applied.json: what the active release's system parts are on this host (the
 *   rendered digest of each managed file, each package's version). While a
 *   change is under way it names every path and package being touched
 *   (`complete: false`), so an interrupted change is still undone completely.
 *   Drift and parity read it to know what the host declares.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../content/atomic-file.js';
import { ifMissing } from '../../core/errors.js';

const originalFile = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('absent') }),
  z.object({ kind: z.literal('file'), sha256: z.string().regex(/^[0-9a-f]{64}$/), mode: z.number().int(), uid: z.number().int(), gid: z.number().int() }),
]);
/** What a managed path held before Lockstep first managed it. */
export type OriginalFile = z.infer<typeof originalFile>;

const originalsSchema = z.object({
  files: z.record(z.string(), originalFile),
  /** Package name → the version installed before Lockstep first managed it (null: not installed). */
  packages: z.record(z.string(), z.string().nullable()),
});
/** Every original kept. */
export type Originals = z.infer<typeof originalsSchema>;

const appliedSchema = z.object({
  /** The release whose parts these are (null: none, the originals are back). */
  releaseId: z.string().nullable(),
  /** False while a change is under way: then `files` and `packages` name everything it may have touched. */
  complete: z.boolean(),
  files: z.array(z.object({ path: z.string(), sha256: z.string().nullable(), mode: z.number().int().nullable() })),
  packages: z.array(z.object({ name: z.string(), version: z.string().nullable() })),
});
/** The system parts applied on this host: host path → rendered digest, package → version. */
export type AppliedSystem = z.infer<typeof appliedSchema>;

/** The state directory part for system parts. */
export class SystemState {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'system');
  }

  async #ensure(): Promise<void> {
    await mkdir(join(this.dir, 'originals'), { recursive: true, mode: 0o700 });
  }

  /** The originals kept so far (none yet: empty). A corrupt file is an error: guessing would lose a host's files. */
  async originals(): Promise<Originals> {
    return (await this.#read('originals.json', originalsSchema)) ?? { files: {}, packages: {} };
  }

  /** Stores the originals (after the content of every new file original was saved with saveContent). */
  async writeOriginals(originals: Originals): Promise<void> {
    await this.#ensure();
    await writeFileAtomic(join(this.dir, 'originals.json'), `${JSON.stringify(originals)}\n`, 0o600);
  }

  /** Keeps a file's original content; returns its digest. */
  async saveContent(content: Buffer): Promise<string> {
    await this.#ensure();
    const sha256 = createHash('sha256').update(content).digest('hex');
    await writeFileAtomic(join(this.dir, 'originals', sha256), content, 0o600);
    return sha256;
  }

  /** The original content kept under `sha256`. */
  async content(sha256: string): Promise<Buffer> {
    return readFile(join(this.dir, 'originals', sha256));
  }

  /** What is applied now (null: nothing ever was). */
  async applied(): Promise<AppliedSystem | null> {
    return (await this.#read('applied.json', appliedSchema)) ?? null;
  }

  /** Records what is applied (or, with complete: false, what is being changed). */
  async writeApplied(applied: AppliedSystem): Promise<void> {
    await this.#ensure();
    await writeFileAtomic(join(this.dir, 'applied.json'), `${JSON.stringify(applied)}\n`, 0o600);
  }

  async #read<T>(name: string, schema: z.ZodType<T>): Promise<T | undefined> {
    const path = join(this.dir, name);
    const text = await ifMissing(readFile(path, 'utf8'));
    if (text === undefined) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw new Error(`${path} is corrupt; restore it from a backup or remove it knowing that originals it held are lost`);
    return parsed.data;
  }
}

/** The managed files as host facts report them: host path → digest of the content written (none before anything was applied). */
export function managedDigests(applied: AppliedSystem | null): Record<string, string> {
  const digests: Record<string, string> = {};
  for (const file of applied?.files ?? []) if (file.sha256 !== null) digests[file.path] = `sha256:${file.sha256}`;
  return digests;
}
