/**
 * lockstep.yaml: its schema, and parsing that reports every problem with
 * file:line:column, the field, what was expected and what was found.
 */
import { LineCounter, isMap, isNode, isPair, isScalar, parseDocument, type Document, type Node } from 'yaml';
import { z } from 'zod';
import { parseDuration } from './duration.js';
import { LockstepError } from './errors.js';

const NAME = /^[a-z][a-z0-9-]{0,31}$/;
const VAR_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

const duration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .refine((text) => parseDuration(text) !== undefined, { message: 'expected a duration such as 30s, 5m or 1h' })
    .transform((text) => parseDuration(text) ?? 0);

const varValue = z
  .union([z.string(), z.number(), z.boolean()])
  .transform((value) => String(value))
  .refine((value) => !/[\n\r\0]/.test(value), { message: 'expected a single-line value (no newline or NUL)' });

/** A count of hosts (`2`) or a share of them (`25%`). */
const countOrShare = (minimum: number) =>
  z.union([
    z.number().int().min(minimum, `expected at least ${minimum}`),
    z.string().regex(/^(100|[1-9]?[0-9])%$/, 'expected a number of hosts or a percentage such as 25%'),
  ]);

const statusRange = z
  .union([z.number().int(), z.string().regex(/^[1-5]\d\d(-[1-5]\d\d)?$/, 'expected a status such as 200 or a range such as 200-399')])
  .default('200-399')
  .transform((value) => {
    const [low, high] = String(value).split('-').map(Number);
    return { min: low ?? 200, max: high ?? low ?? 200 };
  });

const healthCheckSchema = z.union([
  z.strictObject({
    http: z.string().regex(/^https?:\/\/[^\s]+$/, 'expected an http:// or https:// URL'),
    status: statusRange,
    body: z.string().optional(),
    timeout: duration('2s'),
  }),
  z.strictObject({ tcp: z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'expected HOST:PORT'), timeout: duration('2s') }),
  z.strictObject({ exec: z.string().min(1, 'expected a command'), timeout: duration('10s') }),
], { error: 'expected a check: one of `http: URL` (with status, body, timeout), `tcp: HOST:PORT` (with timeout) or `exec: COMMAND` (with timeout)' });

/** One health check: exactly one of http, tcp or exec, with its options. */
export type HealthCheck = z.output<typeof healthCheckSchema>;

const rolloutSchema = z
  .strictObject({
    /** Hosts deployed first, alone. */
    canary: z.number().int().min(0).default(1),
    /** Hosts per following batch. */
    batch: countOrShare(1).default('25%'),
    /** Wait between batches. */
    pause: duration('0s'),
    /** Failed hosts tolerated before the rollout stops and rolls back. */
    max_failures: countOrShare(0).default(0),
  })
  .default({ canary: 1, batch: '25%', pause: 0, max_failures: 0 });

const healthSchema = z
  .strictObject({
    checks: z.array(healthCheckSchema).default([]),
    /** Time between two rounds of checks. */
    interval: duration('1s'),
    /** Consecutive passing rounds that make a host healthy. */
    healthy_after: z.number().int().min(1).max(100).default(1),
    /** A host not healthy this long after activation fails its step. */
    timeout: duration('60s'),
    /** How often agents re-check health between deployments. */
    watch_interval: duration('30s'),
  })
  .default({ checks: [], interval: 1000, healthy_after: 1, timeout: 60_000, watch_interval: 30_000 });

const hooksSchema = z
  .strictObject({
    before_activate: z.string().min(1).optional(),
    after_activate: z.string().min(1).optional(),
    after_rollback: z.string().min(1).optional(),
    /** Each hook is killed after this long, failing the host's step. */
    timeout: duration('60s'),
  })
  .default({ timeout: 60_000 });

const emailAlertSchema = z.strictObject({
  /** The SMTP server: smtp://host:port (STARTTLS when offered) or smtps://host:port (TLS). */
  smtp: z.string().regex(/^smtps?:\/\/[^\s/@]+(:\d{1,5})?\/?$/, 'expected smtp://HOST:PORT or smtps://HOST:PORT (no credentials in the URL)'),
  from: z.string().regex(/^[^\s@]+@[^\s@]+$/, 'expected an email address such as lockstep@example.com'),
  to: z.array(z.string().regex(/^[^\s@]+@[^\s@]+$/, 'expected an email address such as ops@example.com')).min(1, 'expected at least one recipient'),
});

const alertsSchema = z
  .strictObject({
    /** URLs that receive a JSON POST for every alert. */
    webhooks: z.array(z.string().regex(/^https?:\/\/[^\s]+$/, 'expected an http:// or https:// URL')).default([]),
    /** Email for every alert, over SMTP. */
    email: emailAlertSchema.optional(),
  })
  .default({ webhooks: [] });

/** An absolute host path without `..` segments, trailing slashes removed. */
const hostPath = z
  .string()
  .refine((path) => path.startsWith('/') && !path.split('/').includes('..') && !path.includes('\0'), {
    message: 'expected an absolute path without ".." segments',
  })
  .transform((path) => (path.length > 1 ? path.replace(/\/+$/, '') : path));

/** A path whose changes are drift unless Lockstep made them (e.g. /etc/nginx), with optional globs relative to it. */
const watchSchema = z.strictObject({
  path: hostPath,
  /** Only entries matching one of these globs are watched (default: all). */
  include: z.array(z.string().min(1)).default([]),
  /** Entries matching one of these globs are not watched, directories with their subtree. */
  exclude: z.array(z.string().min(1)).default([]),
});

const scanPrioritySchema = z
  .strictObject({
    nice: z.number().int('expected an integer nice value 0..19').min(0, 'expected a nice value 0..19').max(19, 'expected a nice value 0..19').default(10),
    ionice: z.enum(['idle', 'best-effort', 'none']).default('idle'),
    /** Absent: no cap. */
    max_read_mb_s: z.number().positive('expected a positive number of MB per second (omit it for no cap)').optional(),
  })
  .default({ nice: 10, ionice: 'idle' });

const driftSchema = z
  .strictObject({
    /** A scan that trusts the stat cache, covering what the watcher can miss. */
    scan_interval: duration('5m'),
    /** A scan that re-hashes every file. */
    full_scan_interval: duration('24h'),
    /** How politely the scanner's threads run (issue 12): CPU nice, I/O class, read-rate cap in MB (10^6 bytes) per second. */
    scan: scanPrioritySchema,
  })
  .default({ scan_interval: 300_000, full_scan_interval: 86_400_000, scan: { nice: 10, ionice: 'idle' } });

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;

const timeZone = z.string().refine(
  (zone) => {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: zone });
      return true;
    } catch {
      return false;
    }
  },
  { message: 'expected an IANA time zone such as Europe/Berlin or UTC' },
);

const windowSchema = z.strictObject({
  /** Days of the week, e.g. [mon, tue, wed, thu, fri]. */
  days: z.array(z.enum(DAYS, { error: `expected days among ${DAYS.join(', ')}` })).min(1).default([...DAYS]),
  /** Local hours `HH:MM-HH:MM` (the end is exclusive; 24:00 is midnight). */
  hours: z
    .string()
    .regex(/^([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)$/, 'expected hours such as 09:00-17:00')
    .refine((text) => text.slice(0, 5) < text.slice(6), { message: 'expected the window to end after it starts (no overnight windows: write two)' })
    .default('00:00-24:00'),
  timezone: timeZone.default('UTC'),
});

/** An instant or a day: `2026-12-20`, `2026-12-20T18:00:00Z`, `2026-12-20T18:00+01:00`. */
const instant = (end: boolean) =>
  z
    .union([z.string(), z.date()])
    .transform((value) => (value instanceof Date ? value.toISOString() : value))
    .refine((text) => !Number.isNaN(Date.parse(text)) && /^\d{4}-\d{2}-\d{2}/.test(text), { message: 'expected a date (2026-12-20) or a date and time with a zone (2026-12-20T18:00:00Z)' })
    // A bare date as an end means the end of that day (UTC).
    .transform((text) => (/^\d{4}-\d{2}-\d{2}$/.test(text) ? new Date(Date.parse(text) + (end ? 86_400_000 : 0)).toISOString() : new Date(text).toISOString()));

const freezeSchema = z
  .strictObject({ from: instant(false), to: instant(true), reason: z.string().min(1, 'expected a reason') })
  .refine((freeze) => freeze.from < freeze.to, { message: 'expected from before to' });

/** The shortest certificate a fire call issues: shorter ones could expire before the first login. */
export const MIN_FIRECALL_TTL_MS = 5000;

/** A login name a fire-call certificate may use (sshd compares it with the account logged into). */
const principalName = z.string().regex(/^[a-z_][a-z0-9_.-]{0,31}$/, 'expected an account name such as root or oncall');

/**
 * Emergency access (issue 5). Without this block an environment has no fire call.
 * `notify` adds recipients to the environment's `alerts:` for fire-call alerts only:
 * webhooks of their own, and email addresses sent through `alerts.email`'s server.
 */
const firecallSchema = z
  .strictObject({
    /** The longest a certificate may be valid (`firecall open --ttl`). */
    max_ttl: duration('60m'),
    /** Accounts the certificate may log in as (its principals). */
    principals: z.array(principalName).min(1, 'expected at least one account, e.g. [root]'),
    notify: z
      .strictObject({
        webhooks: z.array(z.string().regex(/^https?:\/\/[^\s]+$/, 'expected an http:// or https:// URL')).default([]),
        email: z.array(z.string().regex(/^[^\s@]+@[^\s@]+$/, 'expected an email address such as oncall@example.com')).default([]),
      })
      .default({ webhooks: [], email: [] }),
    /** How agents make sshd re-read its configuration after they changed the drop-in. */
    sshd_reload: z.string().min(1, 'expected a command').default('systemctl reload ssh'),
    /** A fire call waits for an approver other than its requester (or an admin's --override); pending requests expire after approvals.expire_after. */
    require_approval: z.boolean().default(false),
    /** `firecall close` needs --note: the post-mortem, stored and shown by `firecall show`. */
    require_note: z.boolean().default(false),
  })
  .refine((firecall) => firecall.max_ttl >= MIN_FIRECALL_TTL_MS, { message: 'expected max_ttl of at least 5s' });

const environmentSchema = z.strictObject({
  promote_from: z.string().regex(NAME, 'expected an environment name').optional(),
  vars: z
    .record(z.string().regex(VAR_KEY, 'expected a variable name of letters, digits and _ (not starting with a digit)'), varValue)
    .default({}),
  host_timeout: duration('2m'),
  rollout: rolloutSchema,
  health: healthSchema,
  hooks: hooksSchema,
  alerts: alertsSchema,
  /** Deployments wait for this many approvals (approver role; not the requester nor the release's creator). */
  approvals: z
    .strictObject({ required: z.number().int().min(0).max(10).default(0), expire_after: duration('24h') })
    .default({ required: 0, expire_after: 86_400_000 }),
  /** Deployments only inside one of these windows (none: any time). */
  windows: z.array(windowSchema).default([]),
  /** No deployments inside these ranges. */
  freezes: z.array(freezeSchema).default([]),
  /** How long a release must have been the current, healthy release of promote_from. */
  soak: duration('0s'),
  rollback: z.strictObject({ require_reason: z.boolean().default(false) }).default({ require_reason: false }),
  /** Whether an admin may override refusals with --override --reason. */
  allow_override: z.boolean().default(true),
  /**
   * Differences from the environment this one is compared with (`lockstep parity`) that are intended:
   * a var name (`DB_HOST`), or `fact:NAME` / `package:NAME` for host facts.
   */
  declared_differences: z.array(z.string().min(1)).default([]),
  /** Emergency access through short-lived SSH certificates; absent: no fire call in this environment. */
  firecall: firecallSchema.optional(),
  /** Overrides the top-level secrets_in_env for this environment. */
  secrets_in_env: z.boolean().optional(),
});

/** The shortest period of scheduled parity checks: each one reads every host's facts. */
export const MIN_PARITY_EVERY_MS = 10_000;

/** `parity:`: environment pairs the server compares by itself, every period and after each deployment to either. */
const parityWatchSchema = z
  .strictObject({
    pairs: z
      .array(z.tuple([z.string().regex(NAME, 'expected an environment name'), z.string().regex(NAME, 'expected an environment name')], { message: 'expected a pair of environments such as [test, production]' }))
      .min(1, 'expected at least one pair such as [test, production]'),
    every: duration('1h').refine((ms) => ms >= MIN_PARITY_EVERY_MS, { message: 'expected at least 10s' }),
  })
  .optional();

/** The schema of lockstep.yaml. Unknown keys are errors: a typo must not silently disable a gate. */
export const configSchema = z.strictObject({
  app: z.string().regex(NAME, 'expected an application name of lowercase letters, digits and - (at most 32)'),
  deploy_to: hostPath,
  keep_releases: z.number().int().min(2, 'expected at least 2 (the active and the previous release)').max(100).default(5),
  /** Paths outside the release watched for drift on every host. */
  watch: z.array(watchSchema).default([]),
  drift: driftSchema,
  /**
   * Where hosts get the environment's secrets (`lockstep secret set`): false, each in
   * DEPLOY_TO/shared/secrets/NAME (0400); true, as KEY=VALUE lines of shared/lockstep.env, then 0600.
   * Absent: false.
   */
  secrets_in_env: z.boolean().optional(),
  parity: parityWatchSchema,
  environments: z
    .record(z.string().regex(NAME, 'expected an environment name of lowercase letters, digits and - (at most 32)'), environmentSchema)
    .refine((envs) => Object.keys(envs).length > 0, { message: 'expected at least one environment' }),
});

/** A validated lockstep.yaml. */
export type Config = z.output<typeof configSchema>;
/** One environment of a validated lockstep.yaml. */
export type EnvironmentConfig = Config['environments'][string];

/** One problem of a config file, located. */
export interface ConfigProblem {
  readonly line: number;
  readonly column: number;
  /** Dotted path of the field, e.g. `environments.production.promote_from`. */
  readonly field: string;
  readonly message: string;
}

/** Thrown when a config file is invalid; `details` holds every problem. */
export class ConfigError extends LockstepError {
  readonly problems: readonly ConfigProblem[];
  constructor(file: string, problems: readonly ConfigProblem[]) {
    const lines = problems.map((p) => `${file}:${p.line}:${p.column}: ${p.field ? `${p.field}: ` : ''}${p.message}`);
    super('bad-input', lines.join('\n'), { file, problems });
    this.problems = problems;
  }
}

/** The environment named `env`, or a not-found error that lists the environments there are. */
export function environmentOf(config: Config, env: string): EnvironmentConfig {
  // Own keys only: "constructor" or "__proto__" from a request are no environment.
  const environment = Object.hasOwn(config.environments, env) ? config.environments[env] : undefined;
  if (environment === undefined) throw new LockstepError('not-found', `environment "${env}" is not in lockstep.yaml (environments: ${Object.keys(config.environments).join(', ')})`);
  return environment;
}

/** Whether an environment's secrets go into lockstep.env (its own secrets_in_env, else the top-level one). */
export function secretsInEnvOf(config: Config, env: string): boolean {
  return config.environments[env]?.secrets_in_env ?? config.secrets_in_env ?? false;
}

/** Parses and validates the text of lockstep.yaml; throws ConfigError listing every problem. */
export function parseConfig(text: string, file = 'lockstep.yaml'): Config {
  return parseYamlFile(text, file, configSchema, knownKeys, environmentGraphProblems);
}

/**
 * Parses a YAML file and validates it with `schema`, reporting every problem
 * with file:line:column (ConfigError): the one way Lockstep reads its YAML
 * files (lockstep.yaml, lockstep-release.yaml). `keysAt` names the keys a map
 * may hold, for "did you mean"; `more` adds checks on the valid data.
 */
export function parseYamlFile<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
  keysAt: (path: readonly (string | number)[]) => string[] = () => [],
  more?: (doc: Document, lineCounter: LineCounter, data: z.output<S>) => ConfigProblem[],
): z.output<S> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((error) => {
        const position = lineCounter.linePos(error.pos[0]);
        return { line: position.line, column: position.col, field: '', message: `YAML syntax: ${firstLine(error.message)}` };
      }),
    );
  }
  let data: unknown;
  try {
    data = doc.toJS();
  } catch (error) {
    // yaml refuses to expand aliases past its budget ("a resource exhaustion attack"): a problem of the file, not of the server.
    throw new ConfigError(file, [{ line: 1, column: 1, field: '', message: `YAML: ${firstLine((error as Error).message)}` }]);
  }
  const result = schema.safeParse(data ?? {});
  const problems: ConfigProblem[] = [];
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(...describeIssue(doc, lineCounter, data, issue, keysAt));
  } else if (more) {
    problems.push(...more(doc, lineCounter, result.data));
  }
  if (problems.length > 0) {
    problems.sort((a, b) => a.line - b.line || a.column - b.column);
    throw new ConfigError(file, problems);
  }
  return (result as { data: z.output<S> }).data;
}

/** Where the node at `path` starts in a parsed document (walking up to the nearest node that exists), as a ConfigProblem. */
export function locateProblem(doc: Document, lineCounter: LineCounter, path: readonly (string | number)[], message: string): ConfigProblem {
  return locate(doc, lineCounter, path, message);
}

/**
 * A configuration read back from its stored JSON. Its environments are an
 * object without a prototype, so that looking up a name from a request
 * ("constructor", "__proto__") finds no environment.
 */
export function configFromJson(text: string): Config {
  const config = JSON.parse(text) as Config;
  return { ...config, environments: Object.assign(Object.create(null) as Config['environments'], config.environments) };
}

/** Environments in promotion order: every environment after the one it promotes from. */
export function promotionOrder(config: Config): string[] {
  const names = Object.keys(config.environments);
  const order: string[] = [];
  const placed = new Set<string>();
  while (order.length < names.length) {
    const before = order.length;
    for (const name of names) {
      if (placed.has(name)) continue;
      const from = config.environments[name]?.promote_from;
      if (from === undefined || placed.has(from)) {
        order.push(name);
        placed.add(name);
      }
    }
    if (order.length === before) break; // a cycle; validation reports it
  }
  return order;
}

function environmentGraphProblems(doc: Document, lineCounter: LineCounter, config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const names = Object.keys(config.environments);
  for (const [index, [a, b]] of (config.parity?.pairs ?? []).entries()) {
    for (const [side, env] of [a, b].entries()) {
      if (config.environments[env] === undefined) problems.push(locate(doc, lineCounter, ['parity', 'pairs', index, side], `expected one of ${names.join(', ')}; found "${env}"`));
    }
    if (a === b) problems.push(locate(doc, lineCounter, ['parity', 'pairs', index], 'compare two different environments'));
  }
  for (const [name, env] of Object.entries(config.environments)) {
    if ((env.firecall?.notify.email.length ?? 0) > 0 && env.alerts.email === undefined) {
      problems.push(locate(doc, lineCounter, ['environments', name, 'firecall', 'notify', 'email'], 'fire-call email goes through alerts.email (its smtp and from); configure alerts.email in this environment'));
    }
  }
  for (const [name, env] of Object.entries(config.environments)) {
    const path = ['environments', name, 'promote_from'];
    if (env.promote_from === undefined) continue;
    if (!names.includes(env.promote_from)) {
      problems.push(locate(doc, lineCounter, path, `expected one of ${names.join(', ')}; found "${env.promote_from}"`));
    } else if (env.promote_from === name) {
      problems.push(locate(doc, lineCounter, path, 'an environment cannot promote from itself'));
    }
  }
  if (problems.length > 0) return problems;
  for (const name of names) {
    const seen: string[] = [name];
    let current = config.environments[name]?.promote_from;
    while (current !== undefined) {
      if (current === name) {
        problems.push(locate(doc, lineCounter, ['environments', name, 'promote_from'], `promote_from forms a cycle: ${[...seen, name].join(' -> ')}`));
        break;
      }
      if (seen.includes(current)) break;
      seen.push(current);
      current = config.environments[current]?.promote_from;
    }
  }
  return problems;
}

type Issue = z.core.$ZodIssue;

function describeIssue(doc: Document, lineCounter: LineCounter, data: unknown, issue: Issue, keysAt: (path: readonly (string | number)[]) => string[]): ConfigProblem[] {
  const path = issue.path.map((part) => (typeof part === 'symbol' ? String(part) : part));
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const problem = locateKey(doc, lineCounter, path, key);
      return { ...problem, message: `unknown key "${key}"${suggest(key, keysAt(path))}` };
    });
  }
  const found = valueAt(data, path);
  let message: string;
  switch (issue.code) {
    case 'invalid_type':
      message = found === undefined ? `required: expected ${issue.expected}` : `expected ${issue.expected}; found ${describe(found)}`;
      break;
    case 'too_small':
    case 'too_big':
    case 'invalid_format':
    case 'custom':
      message = `${issue.message.replace(/^Invalid input: /, '')}; found ${describe(found)}`;
      break;
    case 'invalid_key':
      message = `invalid key: ${issue.issues.map((inner) => inner.message).join('; ')}`;
      return [locateKey(doc, lineCounter, path.slice(0, -1), String(path.at(-1)), message)];
    default:
      message = `${issue.message}; found ${describe(found)}`;
  }
  return [locate(doc, lineCounter, path, message)];
}

function locate(doc: Document, lineCounter: LineCounter, path: readonly (string | number)[], message: string): ConfigProblem {
  // Walk up until a node exists: a missing key is reported at its parent map.
  for (let depth = path.length; depth >= 0; depth--) {
    const node = doc.getIn(path.slice(0, depth), true);
    if (isNode(node) && node.range) {
      const position = lineCounter.linePos(node.range[0]);
      return { line: position.line, column: position.col, field: path.join('.'), message };
    }
  }
  return { line: 1, column: 1, field: path.join('.'), message };
}

function locateKey(doc: Document, lineCounter: LineCounter, path: readonly (string | number)[], key: string, message = ''): ConfigProblem {
  const parent = path.length === 0 ? doc.contents : doc.getIn(path, true);
  if (isMap(parent)) {
    for (const pair of parent.items) {
      if (isPair(pair) && isScalar(pair.key) && String(pair.key.value) === key && pair.key.range) {
        const position = lineCounter.linePos(pair.key.range[0]);
        return { line: position.line, column: position.col, field: [...path, key].join('.'), message };
      }
    }
  }
  return locate(doc, lineCounter, path, message);
}

function valueAt(data: unknown, path: readonly (string | number)[]): unknown {
  let current = data;
  for (const part of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[part];
  }
  return current;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return JSON.stringify(value);
  return `${typeof value} ${String(value)}`;
}

function knownKeys(path: readonly (string | number)[]): string[] {
  if (path.length === 0) return Object.keys(configSchema.shape);
  if (path.length === 2 && path[0] === 'environments') return Object.keys(environmentSchema.shape);
  return [];
}

function suggest(key: string, known: readonly string[]): string {
  const close = known.find((candidate) => editDistance(candidate, key) <= 2);
  return close ? ` (did you mean "${close}"?)` : known.length ? ` (expected one of ${known.join(', ')})` : '';
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const saved = row[j] ?? 0;
      row[j] = Math.min((row[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = saved;
    }
  }
  return row[b.length] ?? 0;
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

/** Whether a value is a YAML node (re-exported for tests that inspect documents). */
export function isYamlNode(value: unknown): value is Node {
  return isNode(value);
}

/** The commented starter file written by `lockstep init`. */
export const STARTER_CONFIG = `# lockstep.yaml: what Lockstep deploys, where, and through which environments.
# Validate and store it with: lockstep apply -f lockstep.yaml

# The application's name (lowercase letters, digits and -).
app: shop

# Where releases live on every host (under the agent's --root, if given):
#   DEPLOY_TO/releases/<release-id>/   immutable release trees
#   DEPLOY_TO/current                  symlink to the active release
#   DEPLOY_TO/shared/lockstep.env      the environment's vars, KEY=VALUE
#   DEPLOY_TO/shared/secrets/NAME      each secret (lockstep secret set ENV NAME), 0400
deploy_to: /srv/shop

# How many release trees each host keeps on disk (the active and the previous
# one are never removed). Rollback to any of them takes one rename.
keep_releases: 5

# Secrets (lockstep secret set ENV NAME, never in this file) reach each host of
# their environment as DEPLOY_TO/shared/secrets/NAME (0400); with
# secrets_in_env: true (here, or per environment) as lines of lockstep.env (0600).
# secrets_in_env: false

# Paths outside the release whose changes are drift unless a deployment made
# them (the release itself is always watched); lockstep drift lists them.
# watch:
#   - path: /etc/nginx
#     exclude: ['*.bak']

# Environments, in any order; promote_from decides the order of promotion:
# a release may enter an environment only after it succeeded in the
# environment named by promote_from.
environments:
  development:
    vars:
      LOG_LEVEL: debug
  test:
    promote_from: development
    vars:
      LOG_LEVEL: info
  production:
    promote_from: test
    # A host that has not finished its step after this long fails the deployment.
    host_timeout: 2m
    vars:
      LOG_LEVEL: info
    # One canary host first, then batches of 25%; any failure stops the
    # rollout and returns the switched hosts to the release they had.
    rollout: { canary: 1, batch: 25%, pause: 0s, max_failures: 0 }
    # A batch starts only when the hosts before it are healthy:
    # health:
    #   healthy_after: 3
    #   checks:
    #     - http: http://127.0.0.1:8080/healthz
    # hooks:
    #   after_activate: sudo systemctl reload shop
    #   after_rollback: sudo systemctl reload shop
    # alerts:
    #   webhooks: [https://chat.example/hooks/lockstep]
    #   email: { smtp: 'smtp://mail.example:25', from: lockstep@example.com, to: [ops@example.com] }
    # What may differ from test (lockstep parity test production):
    # declared_differences: [DATABASE_URL]
    # Emergency access: short-lived OpenSSH certificates (docs/firecall.md).
    # firecall: { max_ttl: 60m, principals: [root] }
`;
