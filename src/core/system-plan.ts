/**
 * What deploying a release does to a host's system parts, computed purely
 * from the two releases' declarations and their source texts: each managed
 * file created, changed or given back its original, with a unified diff of
 * the rendered content (secrets masked), and each package installed,
 * upgraded, downgraded or removed.
 */
import { declaredVersions, packageChanges, type PackageChange, type SystemParts } from './system-parts.js';
import { maskedContext, renderTemplate, TemplateError, type TemplateContext } from './template.js';
import { unifiedDiff } from './unified-diff.js';

/** One side of the plan: a release's parts and the content of each source they name (by release path). */
export interface PlannedRelease {
  readonly parts: SystemParts | undefined;
  readonly sources: ReadonlyMap<string, Buffer>;
}

/** What happens to one managed file. */
export interface FilePlan {
  readonly path: string;
  /** create: not managed before; update: its content or mode changes; release: no longer managed, its original comes back. */
  readonly change: 'create' | 'update' | 'release';
  /** The unified diff of the rendered content ('' when only the mode changes or for binary content). */
  readonly diff: string;
  /** A template that cannot be rendered: why (the plan is refused for it). */
  readonly error?: string;
}

/** A host's system plan. */
export interface SystemPlan {
  readonly files: readonly FilePlan[];
  readonly packages: readonly PackageChange[];
}

/** The rendered content of every managed file of a release for one host, secrets masked; errors per path. */
function renderAll(release: PlannedRelease | null, context: Omit<TemplateContext, 'secrets'>, secretNames: readonly string[]): Map<string, { text: string; mode: number } | { error: string }> {
  const out = new Map<string, { text: string; mode: number } | { error: string }>();
  for (const file of release?.parts?.files ?? []) {
    const source = release?.sources.get(file.source);
    if (source === undefined) {
      out.set(file.path, { error: `the content of ${file.source} is not available` });
      continue;
    }
    if (!file.template) {
      out.set(file.path, { text: source.includes(0) ? `(binary, ${source.length} bytes)\n` : source.toString('utf8'), mode: file.mode });
      continue;
    }
    try {
      out.set(file.path, { text: renderTemplate(source.toString('utf8'), maskedContext(context, secretNames)), mode: file.mode });
    } catch (error) {
      if (!(error instanceof TemplateError)) throw error;
      out.set(file.path, { error: `${file.source}: ${error.message}` });
    }
  }
  return out;
}

/**
 * The plan from `from` (the release a host runs; null: none) to `to` for a host with this context. The
 * content before a file was managed is not known to the server: a created file's diff starts empty.
 * `installed` (the host's package set from its facts, when it reported one) is what package changes start
 * from; without it, from what `from` declares.
 */
export function planSystem(
  from: PlannedRelease | null,
  to: PlannedRelease,
  context: Omit<TemplateContext, 'secrets'>,
  secretNames: readonly string[],
  installed?: Readonly<Record<string, string>>,
): SystemPlan {
  const before = renderAll(from, context, secretNames);
  const after = renderAll(to, context, secretNames);
  const files: FilePlan[] = [];
  for (const [path, next] of after) {
    const previous = before.get(path);
    if ('error' in next) {
      files.push({ path, change: previous === undefined ? 'create' : 'update', diff: '', error: next.error });
      continue;
    }
    if (previous === undefined) {
      files.push({ path, change: 'create', diff: unifiedDiff('', next.text, '(not managed before)', path) });
      continue;
    }
    const old = 'error' in previous ? '' : previous.text;
    const modeChanged = 'error' in previous || previous.mode !== next.mode;
    if (old !== next.text || modeChanged) files.push({ path, change: 'update', diff: unifiedDiff(old, next.text, path, path) });
  }
  for (const path of before.keys()) if (!after.has(path)) files.push({ path, change: 'release', diff: '' });
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const declaredBefore = declaredVersions(from?.parts);
  const target = declaredVersions(to.parts);
  let startFrom = declaredBefore;
  if (installed !== undefined) {
    // The host's own versions of every package either release declares.
    startFrom = new Map();
    for (const name of new Set([...declaredBefore.keys(), ...target.keys()])) {
      const version = installed[name];
      if (version !== undefined) startFrom.set(name, version);
    }
  }
  return { files, packages: packageChanges(startFrom, target).filter((change) => change.action !== 'remove' || declaredBefore.has(change.name)) };
}
