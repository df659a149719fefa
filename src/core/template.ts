/**
 * Managed-file templates: Mustache syntax, logic-less and without code. Only
 * variables are allowed (`{{ vars.NAME }}`, `{{ secrets.NAME }}`,
 * `{{ host.name }}`, `{{ env }}`); sections, inverted sections and partials
 * are refused, so nothing in a template can run or include anything. Values
 * are inserted as they are: config files are not HTML, so there is no
 * escaping (`{{ x }}` and `{{{ x }}}` are the same).
 */
import Mustache from 'mustache';

/** What a template is rendered with. */
export interface TemplateContext {
  readonly vars: Readonly<Record<string, string>>;
  readonly secrets: Readonly<Record<string, string>>;
  readonly host: { readonly name: string };
  readonly env: string;
}

/** What a template may name, without values: for checking a template where the values are not known (plan time). */
export interface TemplateNames {
  readonly vars: Iterable<string>;
  readonly secrets: Iterable<string>;
}

/** One problem of a template, with its 1-based line. */
export interface TemplateProblem {
  readonly line: number;
  readonly message: string;
}

/** The parsed template: literal text and the names to insert, in order. */
type Piece = { readonly kind: 'text'; readonly text: string } | { readonly kind: 'name'; readonly name: string; readonly offset: number };

/** Parses `text` into pieces, or returns its problems (syntax errors, sections, partials). */
function parsePieces(text: string): { pieces: Piece[]; problems: TemplateProblem[] } {
  let tokens: unknown[];
  try {
    // Parsed without the cache: a template is parsed a few times per deployment, and the cache would keep every one.
    tokens = new Mustache.Writer().parse(text) as unknown[];
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n', 1)[0] ?? 'syntax error' : String(error);
    const at = /at (\d+)/.exec(message);
    return { pieces: [], problems: [{ line: at ? lineOf(text, Number(at[1])) : 1, message: `template syntax: ${message}` }] };
  }
  const pieces: Piece[] = [];
  const problems: TemplateProblem[] = [];
  for (const token of tokens) {
    const [type, value, start] = token as [string, string, number];
    switch (type) {
      case 'text':
        pieces.push({ kind: 'text', text: value });
        break;
      case 'name':
      case '&':
        pieces.push({ kind: 'name', name: value, offset: start });
        break;
      case '!':
      case '=':
        break; // comments and delimiter changes insert nothing
      case '#':
      case '^':
        problems.push({ line: lineOf(text, start), message: `sections ({{#${value}}}, {{^${value}}}) are not supported in managed-file templates: only names are` });
        break;
      default:
        problems.push({ line: lineOf(text, start), message: `partials and other tags ({{${type}${value}}}) are not supported in managed-file templates: only names are` });
    }
  }
  return { pieces, problems };
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let index = 0; index < offset && index < text.length; index++) if (text.charCodeAt(index) === 10) line++;
  return line;
}

/** Whether `name` is one a context with these names can answer. */
function known(name: string, names: { readonly vars: ReadonlySet<string>; readonly secrets: ReadonlySet<string> }): boolean {
  if (name === 'env' || name === 'host.name') return true;
  if (name.startsWith('vars.')) return names.vars.has(name.slice(5));
  if (name.startsWith('secrets.')) return names.secrets.has(name.slice(8));
  return false;
}

/** The names a template inserts (`vars.PORT`, `host.name`…), each once; none for a template that does not parse. */
export function templateNames(text: string): string[] {
  return [...new Set(parsePieces(text).pieces.flatMap((piece) => (piece.kind === 'name' ? [piece.name] : [])))].sort();
}

/** Every problem of a template against the names it may use: syntax, refused tags, and each unknown name with its line. */
export function templateProblems(text: string, names: TemplateNames): TemplateProblem[] {
  const { pieces, problems } = parsePieces(text);
  const sets = { vars: new Set(names.vars), secrets: new Set(names.secrets) };
  for (const piece of pieces) {
    if (piece.kind === 'name' && !known(piece.name, sets)) {
      problems.push({ line: lineOf(text, piece.offset), message: `unknown name "${piece.name}" (known: env, host.name, vars.NAME, secrets.NAME for the environment's vars and secrets)` });
    }
  }
  return problems.sort((a, b) => a.line - b.line);
}

/** The error of a template that cannot be rendered: thrown as a value-carrying Error by renderTemplate. */
export class TemplateError extends Error {
  constructor(readonly problems: readonly TemplateProblem[]) {
    super(problems.map((problem) => `line ${problem.line}: ${problem.message}`).join('; '));
    this.name = 'TemplateError';
  }
}

/** Renders a template; an unknown name or a refused tag throws TemplateError (never an empty string in its place). */
export function renderTemplate(text: string, context: TemplateContext): string {
  const problems = templateProblems(text, { vars: Object.keys(context.vars), secrets: Object.keys(context.secrets) });
  if (problems.length > 0) throw new TemplateError(problems);
  let out = '';
  for (const piece of parsePieces(text).pieces) out += piece.kind === 'text' ? piece.text : valueOf(piece.name, context);
  return out;
}

function valueOf(name: string, context: TemplateContext): string {
  if (name === 'env') return context.env;
  if (name === 'host.name') return context.host.name;
  if (name.startsWith('vars.')) return context.vars[name.slice(5)] ?? '';
  return context.secrets[name.slice(8)] ?? '';
}

/** What a secret shows as wherever a rendered template is shown to people (plan, release show). */
export const SECRET_MASK = '****';

/** A context whose secrets all read as SECRET_MASK: for showing rendered content without secret values. */
export function maskedContext(context: Omit<TemplateContext, 'secrets'>, secretNames: Iterable<string>): TemplateContext {
  return { ...context, secrets: Object.fromEntries([...secretNames].map((name) => [name, SECRET_MASK])) };
}
