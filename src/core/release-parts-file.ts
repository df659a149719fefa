/**
 * lockstep-release.yaml: the optional file of a release dir that declares its
 * system parts (see system-parts.ts). Parsed strictly, every problem reported
 * with file:line:column like lockstep.yaml. What a .deb contains (its package
 * name and version) is not known here: the caller reads it and completes the
 * declaration with `completeSystemParts`.
 */
import { LineCounter, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { ConfigError, locateProblem, parseYamlFile, type ConfigProblem } from './config.js';
import { pathProblem } from './manifest.js';
import { hostPathProblem, PACKAGE_NAME, PACKAGE_VERSION, RELEASE_PARTS_FILE, type DeclaredPackage, type ManagedFile, type SystemParts } from './system-parts.js';

const mode = z.union([
  z.string().regex(/^0?[0-7]{3}$/, 'expected an octal mode such as "0644"').transform((text) => parseInt(text, 8)),
  z
    .number()
    .int()
    .min(0)
    .max(0o777, 'expected permission bits up to 0777; a YAML number such as 0644 is read as decimal 644, write "0644" (quoted) instead'),
]);

const fileSchema = z.strictObject({
  path: z.string().refine((path) => hostPathProblem(path) === undefined, { message: 'expected an absolute, normalized host path such as /etc/nginx/sites-enabled/app.conf' }),
  source: z.string().refine((path) => pathProblem(path) === undefined, { message: 'expected a relative path of a file in the release dir' }),
  mode: mode.optional(),
  owner: z
    .string()
    .regex(/^([a-z_][a-z0-9_-]*\$?|\d+)(:([a-z_][a-z0-9_-]*\$?|\d+))?$/, 'expected user or user:group')
    .optional(),
  template: z.boolean().default(false),
  after_change: z.string().min(1).max(4096).optional(),
});

const packageSchema = z.union([
  z.strictObject({ deb: z.string().refine((path) => pathProblem(path) === undefined && path.endsWith('.deb'), { message: 'expected the relative path of a .deb file in the release dir' }) }),
  z.strictObject({
    name: z.string().regex(PACKAGE_NAME, 'expected a package name (lowercase letters, digits, + . -)'),
    version: z.union([z.string(), z.number()]).transform(String).pipe(z.string().regex(PACKAGE_VERSION, 'expected an exact package version such as 1.22.1-9')),
  }),
]);

const partsSchema = z.strictObject({
  files: z.array(fileSchema).default([]),
  packages: z.array(packageSchema).default([]),
});

/** A package as the file declares it: a .deb path (not yet read) or a name and version. */
export type DraftPackage = { readonly kind: 'deb'; readonly deb: string } | { readonly kind: 'apt'; readonly name: string; readonly version: string };

/** The file's declarations, modes resolved; .deb packages still to be read. */
export interface DraftSystemParts {
  readonly files: readonly ManagedFile[];
  readonly packages: readonly DraftPackage[];
}

/**
 * Parses lockstep-release.yaml against the release tree: `files` maps each
 * file of the release to its mode (the default mode of a managed file is
 * its source's). Sources and .deb files must be files of the release;
 * a host path may be managed once. Throws ConfigError listing every problem.
 */
export function parseReleaseParts(text: string, files: ReadonlyMap<string, number>, file = RELEASE_PARTS_FILE): DraftSystemParts {
  let parsed: z.output<typeof partsSchema> | undefined;
  let schemaProblems: readonly ConfigProblem[] = [];
  try {
    parsed = parseYamlFile(text, file, partsSchema, keysAt);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    schemaProblems = error.problems;
  }
  // Schema and tree problems are reported together, so one run of release create names them all.
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const tree = doc.errors.length > 0 ? [] : treeProblems(doc, lineCounter, doc.toJS() as unknown, files);
  if (parsed === undefined || tree.length > 0) throw new ConfigError(file, [...schemaProblems, ...tree].sort((a, b) => a.line - b.line || a.column - b.column));
  return {
    files: parsed.files.map((entry) => ({
      path: entry.path,
      source: entry.source,
      mode: entry.mode ?? files.get(entry.source) ?? 0o644,
      template: entry.template,
      ...(entry.owner === undefined ? {} : { owner: entry.owner }),
      ...(entry.after_change === undefined ? {} : { afterChange: entry.after_change }),
    })),
    packages: parsed.packages.map((entry): DraftPackage => ('deb' in entry ? { kind: 'deb', deb: entry.deb } : { kind: 'apt', name: entry.name, version: entry.version })),
  };
}

/** What a .deb's control file says (read by the caller with dpkg-deb). */
export interface DebControl {
  readonly name: string;
  readonly version: string;
  readonly architecture: string;
}

/** The system parts with every .deb's control fields filled in; a package declared twice is an error naming both. */
export function completeSystemParts(draft: DraftSystemParts, controls: ReadonlyMap<string, DebControl>, file = RELEASE_PARTS_FILE): SystemParts {
  const packages: DeclaredPackage[] = [];
  const seen = new Map<string, string>();
  const problems: string[] = [];
  for (const declared of draft.packages) {
    let complete: DeclaredPackage;
    if (declared.kind === 'deb') {
      const control = controls.get(declared.deb);
      if (control === undefined) throw new Error(`no control fields read for ${declared.deb}`);
      complete = { kind: 'deb', deb: declared.deb, ...control };
    } else {
      complete = declared;
    }
    const where = complete.kind === 'deb' ? complete.deb : `${complete.name}=${complete.version}`;
    const before = seen.get(complete.name);
    if (before !== undefined) problems.push(`package ${complete.name} is declared twice (${before} and ${where})`);
    seen.set(complete.name, where);
    packages.push(complete);
  }
  if (problems.length > 0) throw new ConfigError(file, problems.map((message) => ({ line: 1, column: 1, field: 'packages', message })));
  return { files: draft.files, packages };
}

function keysAt(path: readonly (string | number)[]): string[] {
  if (path.length === 0) return Object.keys(partsSchema.shape);
  if (path.length === 2 && path[0] === 'files') return Object.keys(fileSchema.shape);
  if (path.length === 2 && path[0] === 'packages') return ['deb', 'name', 'version'];
  return [];
}

/** Problems against the release tree, read leniently from the data (valid or not): each string-valued source, path and deb. */
function treeProblems(doc: Document, lineCounter: LineCounter, data: unknown, files: ReadonlyMap<string, number>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const paths = new Map<string, number>();
  const list = (key: string): unknown[] => {
    const value = data !== null && typeof data === 'object' ? (data as Record<string, unknown>)[key] : undefined;
    return Array.isArray(value) ? value : [];
  };
  const field = (entry: unknown, key: string): string | undefined => {
    const value = entry !== null && typeof entry === 'object' ? (entry as Record<string, unknown>)[key] : undefined;
    return typeof value === 'string' ? value : undefined;
  };
  list('files').forEach((entry, index) => {
    const source = field(entry, 'source');
    if (source !== undefined && pathProblem(source) === undefined && !files.has(source)) problems.push(locateProblem(doc, lineCounter, ['files', index, 'source'], `${source} is not a file of the release dir`));
    const path = field(entry, 'path');
    if (path === undefined) return;
    const first = paths.get(path);
    if (first !== undefined) problems.push(locateProblem(doc, lineCounter, ['files', index, 'path'], `${path} is already managed by files[${first}]`));
    else paths.set(path, index);
  });
  list('packages').forEach((entry, index) => {
    const deb = field(entry, 'deb');
    if (deb !== undefined && pathProblem(deb) === undefined && !files.has(deb)) problems.push(locateProblem(doc, lineCounter, ['packages', index, 'deb'], `${deb} is not a file of the release dir`));
  });
  return problems;
}
