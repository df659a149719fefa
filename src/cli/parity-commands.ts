/** `lockstep parity A B`: two environments compared, every difference on one line, an exit code a pipeline can gate on. */
import type { ParityResponse } from '../api/schemas.js';
import type { LockstepClient } from '../client/lockstep-client.js';
import { LockstepError } from '../core/errors.js';
import { color, json, line } from './output.js';

type Difference = ParityResponse['differences'][number];

/** Differing files of a release listed for people; --json has them all. */
const FILES_SHOWN = 10;

/**
 * Prints the score and every difference; exit 0 when only declared
 * differences remain, 1 (`mismatch`) otherwise, 2 for an unknown environment.
 */
export async function parity(client: LockstepClient, a: string, b: string, options: { readonly json?: boolean | undefined }): Promise<void> {
  const result = await client.parity(a, b);
  if (options.json) json(result);
  else printParity(result);
  if (result.undeclared > 0) {
    throw new LockstepError('mismatch', `${result.undeclared} undeclared difference${result.undeclared === 1 ? '' : 's'} between ${a} and ${b}; declare intended ones under declared_differences in lockstep.yaml`, {
      quiet: options.json === true,
    });
  }
}

function printParity(result: ParityResponse): void {
  const score = `${result.score}%`;
  line(`parity ${result.a} vs ${result.b}: ${result.undeclared > 0 ? color.red(score) : color.green(score)} (${result.compared} items compared: ${result.equal} equal, ${result.declared} declared, ${result.undeclared} undeclared)`);
  let group = '';
  for (const difference of result.differences) {
    // Grouped by what differs (the differences arrive sorted by category): a heading per group.
    const heading = GROUP_HEADINGS[difference.category];
    if (heading !== group) line(color.dim(`${heading}:`));
    group = heading;
    line(`  ${formatDifference(difference, result.a, result.b)}`);
    const files = difference.files ?? [];
    for (const file of files.slice(0, FILES_SHOWN)) line(`    ${file.onlyIn === null ? `~ ${file.path}` : `${file.onlyIn === result.a ? '-' : '+'} ${file.path} (only in ${file.onlyIn})`}`);
    const more = (difference.fileCount ?? files.length) - Math.min(files.length, FILES_SHOWN);
    if (more > 0) line(`    … and ${more} more (see --json)`);
  }
  for (const note of result.notes) line(color.dim(`note: ${note}`));
}

/**
 * One difference for people, e.g. `undeclared  var DB_POOL: test=10 production=20`
 * or `undeclared  host web2 differs from web1 in production: kernel: web1=6.1.0-18 web2=6.1.0-20`.
 */
export function formatDifference(difference: Difference, a: string, b: string): string {
  const label = difference.declared ? color.yellow('declared') : color.red('undeclared');
  const what = `${difference.category === 'release' || difference.category === 'fact' ? difference.name : `${difference.category} ${difference.name}`}${difference.live ? ' (live)' : ''}`;
  const sides = difference.within ? [difference.within.reference, difference.within.host] : [a, b];
  const values = sides.map((side) => `${side}=${shown(difference.values[side] ?? [], difference.category, difference.live === true)}`).join(' ');
  const files = difference.category === 'release' && difference.fileCount ? `: ${difference.fileCount} file${difference.fileCount === 1 ? '' : 's'} differ` : '';
  if (difference.within) return `${label}  host ${difference.within.host} differs from ${difference.within.reference} in ${difference.within.env}: ${what}: ${values}`;
  return `${label}  ${what}: ${values}${files}`;
}

const ABSENT: Readonly<Record<Difference['category'], string>> = {
  release: '(nothing deployed)',
  var: '(not set)',
  secret: '(not set)',
  fact: '(unknown)',
  package: '(not installed)',
  file: '(not managed)',
  watched: '(absent)',
  service: '(not enabled)',
  user: '(no such user)',
  group: '(no such group)',
  sysctl: '(not set)',
  port: '(not listening)',
  mount: '(not mounted)',
  module: '(not loaded)',
};

/** The group heading of each category in the printed comparison. */
const GROUP_HEADINGS: Readonly<Record<Difference['category'], string>> = {
  release: 'release',
  var: 'vars',
  secret: 'secrets',
  fact: 'host facts',
  package: 'packages',
  file: 'managed files',
  watched: 'watched paths',
  service: 'services',
  user: 'users',
  group: 'groups',
  sysctl: 'sysctl',
  port: 'listening ports',
  mount: 'mounts',
  module: 'kernel modules',
};

function shown(values: readonly string[], category: Difference['category'], live: boolean): string {
  if (values.length === 0) return live && category === 'service' ? '(not running)' : ABSENT[category];
  return values.length === 1 ? (values[0] ?? '') : `{${values.join(', ')}}`;
}
