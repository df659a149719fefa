import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Manifest } from '../../src/core/manifest.js';
import { diffManifests } from '../../src/core/manifest-diff.js';

const hash = (char: string) => char.repeat(64);

const v1: Manifest = {
  app: 'shop',
  version: '1',
  entries: [
    { path: 'bin', type: 'dir', mode: 0o755 },
    { path: 'bin/start', type: 'file', mode: 0o755, size: 10, sha256: hash('a') },
    { path: 'index.html', type: 'file', mode: 0o644, size: 100, sha256: hash('b') },
    { path: 'old.txt', type: 'file', mode: 0o644, size: 5, sha256: hash('c') },
    { path: 'link', type: 'symlink', target: 'index.html' },
  ],
};

describe('diffManifests', () => {
  it('lists added, changed and removed paths and the bytes a host must fetch', () => {
    const v2: Manifest = {
      app: 'shop',
      version: '2',
      entries: [
        { path: 'bin', type: 'dir', mode: 0o755 },
        { path: 'bin/start', type: 'file', mode: 0o700, size: 10, sha256: hash('a') },
        { path: 'index.html', type: 'file', mode: 0o644, size: 120, sha256: hash('d') },
        { path: 'new.txt', type: 'file', mode: 0o644, size: 7, sha256: hash('e') },
        { path: 'copy.html', type: 'file', mode: 0o644, size: 120, sha256: hash('d') },
        { path: 'link', type: 'symlink', target: 'new.txt' },
      ],
    };
    const diff = diffManifests(v1, v2);
    assert.deepEqual(diff.added, ['copy.html', 'new.txt']);
    assert.deepEqual(diff.changed, ['bin/start', 'index.html', 'link']);
    assert.deepEqual(diff.removed, ['old.txt']);
    // d (120 bytes, needed twice but fetched once) and e (7 bytes); a mode change fetches nothing.
    assert.equal(diff.fetchBytes, 127);
    assert.equal(diff.fetchBlobs, 2);
  });

  it('treats a host with nothing deployed as needing everything', () => {
    const diff = diffManifests(null, v1);
    assert.equal(diff.added.length, 5);
    assert.equal(diff.fetchBytes, 115);
  });

  it('finds nothing to do between identical manifests', () => {
    const diff = diffManifests(v1, v1);
    assert.deepEqual([diff.added, diff.changed, diff.removed, diff.fetchBytes], [[], [], [], 0]);
  });
});
