/**
 * The symlink rules as a table of shapes: each manifest is resolved the way
 * the kernel would resolve it on the staged tree, and every link that leaves
 * the tree (at any step), loops or is absolute is refused with its path.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { manifestProblems, type ManifestEntry } from '../../src/core/manifest.js';
import { MAX_SYMLINK_HOPS, symlinkProblems, type SymlinkProblemKind } from '../../src/core/symlink-resolver.js';

const dir = (path: string): ManifestEntry => ({ path, type: 'dir', mode: 0o755 });
const file = (path: string): ManifestEntry => ({ path, type: 'file', mode: 0o644, size: 1, sha256: 'a'.repeat(64) });
const link = (path: string, target: string): ManifestEntry => ({ path, type: 'symlink', target });

/** The directories d1, d1/d2 … d1/…/dN and the path of the deepest one. */
function deepDirs(depth: number): { entries: ManifestEntry[]; deepest: string } {
  const names = Array.from({ length: depth }, (_, index) => `d${index + 1}`);
  return { entries: names.map((_, index) => dir(names.slice(0, index + 1).join('/'))), deepest: names.join('/') };
}

const tenDeep = deepDirs(10);

interface Shape {
  readonly name: string;
  readonly entries: readonly ManifestEntry[];
  /** The refused links and why; empty when the manifest is accepted. */
  readonly refused: readonly { readonly path: string; readonly kind: SymlinkProblemKind }[];
}

const shapes: Shape[] = [
  {
    name: "the issue's attack: a link to the root ten levels deep, then '..' after it",
    entries: [...tenDeep.entries, link(`${tenDeep.deepest}/up`, Array(10).fill('..').join('/')), link('passwd', `${tenDeep.deepest}/up/../../etc/passwd`)],
    refused: [{ path: 'passwd', kind: 'escapes' }],
  },
  {
    name: "'up -> ../../..' ten levels deep, chained until it leaves",
    entries: [...tenDeep.entries, link(`${tenDeep.deepest}/up`, '../../..'), link('passwd', `${tenDeep.deepest}/up/../../../../../../../../etc/passwd`)],
    refused: [{ path: 'passwd', kind: 'escapes' }],
  },
  {
    name: "a link to a directory link, then '..'",
    entries: [dir('a'), dir('a/b'), link('a/b/top', '../..'), link('to-top', 'a/b/top'), link('out', 'to-top/..')],
    refused: [{ path: 'out', kind: 'escapes' }],
  },
  {
    name: 'a chain of two links whose last step leaves',
    entries: [dir('a'), link('a/up', '..'), link('b', 'a/up/..')],
    refused: [{ path: 'b', kind: 'escapes' }],
  },
  {
    name: 'a chain of three links, the last one leaving',
    entries: [dir('a'), dir('a/b'), link('a/b/l3', '../../..'), link('a/l2', 'b/l3'), link('l1', 'a/l2')],
    refused: [
      { path: 'a/b/l3', kind: 'escapes' },
      { path: 'a/l2', kind: 'escapes' },
      { path: 'l1', kind: 'escapes' },
    ],
  },
  {
    name: "'a/b -> ..' repeated: each stays, the path through them does not",
    entries: [dir('a'), link('a/b', '..'), dir('c'), link('c/b', '..'), link('x', 'a/b/c/b/..')],
    refused: [{ path: 'x', kind: 'escapes' }],
  },
  {
    name: 'an exit that comes back in is still an exit',
    entries: [dir('a'), link('a/back', '../../release/a')],
    refused: [{ path: 'a/back', kind: 'escapes' }],
  },
  {
    name: 'a self loop',
    entries: [link('self', 'self')],
    refused: [{ path: 'self', kind: 'loop' }],
  },
  {
    name: 'a self loop through ".."',
    entries: [dir('a'), link('a/x', '../a/x/..')],
    refused: [{ path: 'a/x', kind: 'loop' }],
  },
  {
    name: 'a mutual loop',
    entries: [link('ping', 'pong'), link('pong', 'ping')],
    refused: [
      { path: 'ping', kind: 'loop' },
      { path: 'pong', kind: 'loop' },
    ],
  },
  {
    name: `a chain longer than ${MAX_SYMLINK_HOPS} links`,
    entries: [file('end'), ...Array.from({ length: MAX_SYMLINK_HOPS + 1 }, (_, index) => link(`l${index}`, index === MAX_SYMLINK_HOPS ? 'end' : `l${index + 1}`))],
    refused: [{ path: 'l0', kind: 'loop' }],
  },
  {
    name: 'absolute and empty targets',
    entries: [link('abs', '/etc/passwd'), link('empty', ''), link('through-abs', 'abs/..')],
    refused: [
      { path: 'abs', kind: 'absolute' },
      { path: 'empty', kind: 'empty' },
      { path: 'through-abs', kind: 'escapes' },
    ],
  },
  {
    name: 'a dangling name walked past is treated as a directory: no way out through it',
    entries: [dir('a'), link('a/m', 'missing/../../..')],
    refused: [{ path: 'a/m', kind: 'escapes' }],
  },
  {
    name: "links to '.' and to the root stay inside",
    entries: [dir('a'), link('a/here', '.'), link('root', '.'), link('a/root', '..'), link('a/loop-free', 'here/here/here')],
    refused: [],
  },
  {
    name: 'a benign chain that stays inside',
    entries: [dir('a'), dir('a/b'), link('a/b/up', '..'), link('a/up2', 'b/up/..'), link('top', 'a/up2/a/b')],
    refused: [],
  },
  {
    name: 'a link through a link to a file stays inside',
    entries: [dir('bin'), file('bin/server'), link('bin/current', 'server'), dir('etc'), link('etc/app', '../bin/current')],
    refused: [],
  },
  {
    name: 'a dangling link inside the tree is allowed',
    entries: [dir('a'), link('a/later', '../not-yet/there')],
    refused: [],
  },
];

describe('symlink resolver', () => {
  for (const shape of shapes) {
    it(shape.name, () => {
      const problems = symlinkProblems(shape.entries);
      assert.deepEqual(
        problems.map(({ path, kind }) => ({ path, kind })),
        shape.refused,
        problems.map((problem) => `${problem.path}: ${problem.problem}`).join('\n'),
      );
      // manifestProblems refuses exactly the same links, each with its path.
      assert.deepEqual(
        manifestProblems(shape.entries).map((problem) => problem.path),
        shape.refused.map((refused) => refused.path),
      );
    });
  }

  it("names the offending link and where it leaves in the issue's attack", () => {
    const [problem] = symlinkProblems(shapes[0]!.entries);
    assert.equal(
      problem?.problem,
      `symlink target "${tenDeep.deepest}/up/../../etc/passwd" leaves the release tree ("${tenDeep.deepest}/up/.." is above the release root once the links in it are followed)`,
    );
  });

  it('names the link a chain leaves through', () => {
    const problems = symlinkProblems([dir('a'), dir('a/b'), link('a/b/top', '../../..'), link('via', 'a/b/top/x')]);
    assert.deepEqual(
      problems.map((problem) => `${problem.path}: ${problem.problem}`),
      ['a/b/top: symlink target "../../.." leaves the release tree', 'via: symlink target "a/b/top/x" leaves the release tree through the link "a/b/top" -> "../../.."'],
    );
  });

  it('refuses a target longer than the kernel stores', () => {
    assert.deepEqual(
      symlinkProblems([link('long', 'a/'.repeat(2048))]).map((problem) => `${problem.path}: ${problem.problem}`),
      ['long: symlink target is longer than 4095 bytes'],
    );
  });

  it('resolves 2,000 links whose targets climb a 600-deep tree and back (linear work: the tree is walked by node, not by joined path)', () => {
    const names = Array<string>(600).fill('x');
    const entries = [...names.map((_, index) => dir(names.slice(0, index + 1).join('/'))), ...Array.from({ length: 2000 }, (_, index) => link(`l${index}`, `${names.join('/')}/${'../'.repeat(599)}x`))];
    assert.deepEqual(symlinkProblems(entries), []);
  });

  it('resolves ten thousand chained links in one pass', () => {
    const entries = [file('end'), ...Array.from({ length: 10_000 }, (_, index) => link(`l${index}`, index % 30 === 29 ? 'end' : `l${index + 1}`))];
    assert.deepEqual(symlinkProblems(entries), []);
  });
});
