import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  blobsOf,
  canonicalJson,
  canonicalManifest,
  manifestProblems,
  pathProblem,
  releaseIdOf,
  type ForbiddenEntry,
  type Manifest,
  type ManifestEntry,
} from '../../src/core/manifest.js';

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const file = (path: string, content = path, mode = 0o644): ManifestEntry => ({ path, type: 'file', mode, size: content.length, sha256: sha(content) });
const dir = (path: string, mode = 0o755): ManifestEntry => ({ path, type: 'dir', mode });
const link = (path: string, target: string): ManifestEntry => ({ path, type: 'symlink', target });

/** The problems of a manifest as `path: problem` strings. */
const problemsOf = (entries: readonly (ManifestEntry | ForbiddenEntry)[]) => manifestProblems(entries).map((p) => `${p.path}: ${p.problem}`);

describe('path rules', () => {
  it('accept ordinary relative paths', () => {
    for (const path of ['index.html', 'bin/server', 'a/b/c.d', '.env', '..hidden', 'x..y', 'ünïcode/文件']) {
      assert.equal(pathProblem(path), undefined, path);
    }
  });

  it('reject absolute, empty, NUL, "..", "." and empty segments', () => {
    assert.equal(pathProblem('/etc/passwd'), 'absolute paths are not allowed');
    assert.equal(pathProblem(''), 'empty path');
    assert.equal(pathProblem('a\0b'), 'path contains a NUL byte');
    assert.equal(pathProblem('..'), '".." segments are not allowed');
    assert.equal(pathProblem('a/../../etc'), '".." segments are not allowed');
    assert.equal(pathProblem('.'), '"." segments are not allowed');
    assert.equal(pathProblem('a/./b'), '"." segments are not allowed');
    assert.equal(pathProblem('a//b'), 'empty path segment (double or trailing slash)');
    assert.equal(pathProblem('a/'), 'empty path segment (double or trailing slash)');
  });

  it('reject over-long segments and paths', () => {
    assert.equal(pathProblem('x'.repeat(256)), 'a path segment is longer than 255 bytes');
    assert.equal(pathProblem('x'.repeat(255)), undefined);
    assert.equal(pathProblem(Array.from({ length: 20 }, () => 'y'.repeat(250)).join('/')), 'path is longer than 4096 bytes');
  });
});

describe('manifestProblems', () => {
  it('finds nothing wrong with a well-formed tree', () => {
    assert.deepEqual(problemsOf([dir('bin'), file('bin/server', 'x', 0o755), dir('public'), file('public/index.html'), link('public/latest', 'index.html'), link('root-link', 'bin/server')]), []);
  });

  it('names every bad path, not only the first', () => {
    assert.deepEqual(problemsOf([file('/abs'), file('a/../b'), file('./x'), file(''), file('nul\0'), file('ok')]), [
      '/abs: absolute paths are not allowed',
      'a/../b: ".." segments are not allowed',
      './x: "." segments are not allowed',
      ': empty path',
      'nul\0: path contains a NUL byte',
    ]);
  });

  it('rejects duplicate paths, whatever their kinds', () => {
    assert.deepEqual(problemsOf([file('a'), file('a', 'other'), dir('d'), link('d', 'a')]), ['a: duplicate path', 'd: duplicate path']);
  });

  it('rejects entries whose parent is missing or not a directory', () => {
    assert.deepEqual(problemsOf([file('f'), file('f/child'), link('l', 'f'), file('l/child'), file('missing/child')]), [
      'f/child: parent "f" is not a directory of the release',
      'l/child: parent "l" is not a directory of the release',
      'missing/child: parent "missing" is not a directory of the release',
    ]);
  });

  it('rejects symlinks leaving the tree and accepts those staying inside', () => {
    assert.deepEqual(problemsOf([dir('a'), link('a/up', '..'), link('a/out', '../..'), link('a/abs', '/etc'), link('a/in', '../a/up')]), [
      'a/out: symlink target "../.." leaves the release tree',
      'a/abs: symlink target "/etc" leaves the release tree (absolute targets are not allowed)',
    ]);
  });

  it('rejects FIFOs, sockets and device files', () => {
    const forbidden: ForbiddenEntry[] = [
      { path: 'pipe', type: 'fifo' },
      { path: 'sock', type: 'socket' },
      { path: 'tty', type: 'char-device' },
      { path: 'disk', type: 'block-device' },
    ];
    assert.deepEqual(problemsOf(forbidden), [
      'pipe: FIFOs are not allowed in a release',
      'sock: sockets are not allowed in a release',
      'tty: device files are not allowed in a release',
      'disk: device files are not allowed in a release',
    ]);
  });

  it('rejects malformed hashes, sizes and modes, including setuid bits', () => {
    assert.deepEqual(
      problemsOf([
        { path: 'a', type: 'file', mode: 0o644, size: 1, sha256: sha('a').toUpperCase() },
        { path: 'b', type: 'file', mode: 0o644, size: -1, sha256: sha('b') },
        { path: 'c', type: 'file', mode: 0o4755, size: 1, sha256: sha('c') },
        { path: 'd', type: 'dir', mode: 0o1777 },
      ]),
      [
        'a: sha256 is not 64 lowercase hex digits',
        'b: size is not a non-negative integer',
        'c: mode must be permission bits between 0 and 0777 (no setuid, setgid or sticky bits)',
        'd: mode must be permission bits between 0 and 0777 (no setuid, setgid or sticky bits)',
      ],
    );
  });
});

describe('canonical form and release id', () => {
  const entries = [dir('bin'), file('bin/server', 'v1', 0o755), file('README'), link('latest', 'bin/server'), dir('public'), file('public/index.html')];
  const manifest: Manifest = { app: 'shop', version: '1.0.0', entries };

  it('canonical JSON sorts keys, drops undefined and has no whitespace', () => {
    assert.equal(canonicalJson({ b: 1, a: [3, { d: undefined, c: 'x' }], e: null }), '{"a":[3,{"c":"x"}],"b":1,"e":null}');
    assert.equal(canonicalJson({ a: 1, b: 2 }), canonicalJson({ b: 2, a: 1 }));
  });

  it('the release id does not depend on entry order or extra fields', () => {
    const id = releaseIdOf(manifest);
    assert.match(id, /^[0-9a-f]{64}$/);
    assert.equal(releaseIdOf({ ...manifest, entries: [...entries].reverse() }), id);
    assert.equal(releaseIdOf({ ...manifest, entries: [entries[3]!, entries[0]!, entries[5]!, entries[1]!, entries[4]!, entries[2]!] }), id);
    // A field that is not part of an entry's kind is not part of its identity.
    const withExtra = entries.map((entry): ManifestEntry => Object.assign({ mtime: 12345 }, entry));
    assert.equal(releaseIdOf({ ...manifest, entries: withExtra }), id);
    assert.equal(canonicalJson(canonicalManifest({ ...manifest, entries: [...entries].reverse() })), canonicalJson(canonicalManifest(manifest)));
    assert.deepEqual(
      canonicalManifest(manifest).entries.map((entry) => entry.path),
      ['README', 'bin', 'bin/server', 'latest', 'public', 'public/index.html'],
    );
  });

  it('the release id changes when any content, mode, link target, version or app changes', () => {
    const id = releaseIdOf(manifest);
    const replace = (index: number, entry: ManifestEntry): Manifest => ({ ...manifest, entries: entries.map((e, i) => (i === index ? entry : e)) });
    const variants: Manifest[] = [
      replace(1, file('bin/server', 'v2', 0o755)), // content
      replace(1, file('bin/server', 'v1', 0o700)), // mode
      replace(3, link('latest', 'README')), // link target
      replace(4, dir('public', 0o700)), // directory mode
      { ...manifest, entries: entries.slice(0, -1) }, // a file removed
      { ...manifest, version: '1.0.1' },
      { ...manifest, app: 'shop2' },
    ];
    const ids = new Set([id, ...variants.map(releaseIdOf)]);
    assert.equal(ids.size, variants.length + 1, 'every variant has its own id');
  });

  it('blobsOf lists each referenced content hash once', () => {
    const twice: Manifest = { app: 'shop', version: '1', entries: [dir('a'), file('a/x', 'same'), file('a/y', 'same'), file('z', 'other')] };
    assert.deepEqual(blobsOf(twice).sort(), [sha('same'), sha('other')].sort());
  });
});
