/** The pure parts of drift on the server: reconciling a report with open items, and the manifest an adoption makes. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DriftFinding } from '../../src/api/schemas.js';
import type { Manifest } from '../../src/core/manifest.js';
import { adoptedEntries } from '../../src/server/drift/drift-adopt.js';
import { reconcileDrift, storedFields, type OpenDriftItem } from '../../src/server/drift/drift-reconcile.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const finding = (path: string, kinds = ['content'], scope: 'release' | 'watch' = 'release'): DriftFinding => ({
  scope,
  path,
  kinds,
  expected: { type: 'file', mode: 0o644, size: 1, sha256: A },
  actual: { type: 'file', mode: 0o644, size: 2, sha256: B },
});
const open = (id: number, f: DriftFinding, adoptedInto: string | null = null): OpenDriftItem => ({ id, scope: f.scope, path: f.path, adoptedInto, ...storedFields(f) });

describe('reconcileDrift', () => {
  it('opens new findings once, reports changed ones, and closes gone ones as resolved after a scan', () => {
    const same = finding('/srv/app/current/a');
    const changed = finding('/srv/app/current/b');
    const gone = finding('/srv/app/current/c');
    const result = reconcileDrift(
      [open(1, same), open(2, changed), open(3, gone)],
      { findings: [same, { ...changed, kinds: ['content', 'mode'] }, finding('/etc/x', ['added'], 'watch'), finding('/etc/x', ['added'], 'watch')], truncated: false, releaseId: null },
      { kind: 'scan' },
    );
    assert.deepEqual(result.opened.map((f) => f.path), ['/etc/x'], 'a duplicated finding opens one item');
    assert.deepEqual(result.changed.map((c) => c.id), [2]);
    assert.deepEqual(result.closed, [{ id: 3, path: '/srv/app/current/c', state: 'resolved' }]);
  });

  it('the same path in the other scope is another item', () => {
    const release = finding('/srv/app/current/a');
    const result = reconcileDrift([open(1, release)], { findings: [{ ...release, scope: 'watch' }], truncated: false, releaseId: null }, { kind: 'watch' });
    assert.equal(result.opened.length, 1);
    assert.deepEqual(result.closed.map((c) => c.id), [1]);
  });

  it('a truncated report closes nothing', () => {
    const result = reconcileDrift([open(1, finding('/srv/app/current/a'))], { findings: [], truncated: true, releaseId: null }, { kind: 'scan' });
    assert.deepEqual(result.closed, []);
  });

  it('closes as reverted or accepted only the paths the command named, others as resolved', () => {
    const items = [open(1, finding('/a')), open(2, finding('/b'))];
    const gone = { findings: [], truncated: false, releaseId: null };
    assert.deepEqual(reconcileDrift(items, gone, { kind: 'revert', paths: null }).closed.map((c) => c.state), ['reverted', 'reverted']);
    assert.deepEqual(reconcileDrift(items, gone, { kind: 'accept', paths: ['/b'] }).closed.map((c) => c.state), ['resolved', 'accepted']);
    assert.deepEqual(reconcileDrift(items, gone, { kind: 'deployment', deploymentId: 3 }).closed.map((c) => c.state), ['resolved', 'resolved']);
  });

  it('an item adopted into the release the host now runs closes as adopted, whatever made it go', () => {
    const items = [open(1, finding('/a'), 'r1'), open(2, finding('/b'), 'r2')];
    const result = reconcileDrift(items, { findings: [], truncated: false, releaseId: 'r1' }, { kind: 'deployment', deploymentId: 9 });
    assert.deepEqual(result.closed.map((c) => c.state), ['adopted', 'resolved']);
  });
});

describe('adoptedEntries', () => {
  const base: Manifest = {
    app: 'shop',
    version: '1.0.0',
    entries: [
      { path: 'bin', type: 'dir', mode: 0o755 },
      { path: 'bin/start', type: 'file', mode: 0o755, size: 1, sha256: A },
      { path: 'index.html', type: 'file', mode: 0o644, size: 1, sha256: A },
      { path: 'latest', type: 'symlink', target: 'index.html' },
    ],
  };

  it('applies removals (with what was under them), additions, content, mode and symlink changes', () => {
    const entries = adoptedEntries(base, [
      { path: 'bin', kinds: ['removed'], expected: { type: 'dir', mode: 0o755 }, actual: null },
      { path: 'index.html', kinds: ['mode'], expected: { type: 'file', mode: 0o644, size: 1, sha256: A }, actual: { type: 'file', mode: 0o600 } },
      { path: 'new.txt', kinds: ['added'], expected: null, actual: { type: 'file', mode: 0o640, size: 3, sha256: B } },
      { path: 'latest', kinds: ['target'], expected: { type: 'symlink', target: 'index.html' }, actual: { type: 'symlink', target: 'new.txt' } },
    ]);
    assert.deepEqual(
      entries.sort((a, b) => (a.path < b.path ? -1 : 1)),
      [
        { path: 'index.html', type: 'file', mode: 0o600, size: 1, sha256: A },
        { path: 'latest', type: 'symlink', target: 'new.txt' },
        { path: 'new.txt', type: 'file', mode: 0o640, size: 3, sha256: B },
      ],
    );
  });

  it('refuses what cannot be part of a release, naming the path', () => {
    assert.throws(() => adoptedEntries(base, [{ path: 'sock', kinds: ['added'], expected: null, actual: { type: 'other', special: 'socket' } }]), /cannot adopt sock: a socket cannot be part of a release/);
    assert.throws(() => adoptedEntries(base, [{ path: 'index.html', kinds: ['unreadable'], expected: null, actual: { type: 'file', problem: 'unreadable', detail: 'EACCES' } }]), /cannot adopt index\.html: the host could not read it \(unreadable: EACCES\)/);
    assert.throws(() => adoptedEntries(base, [{ path: 'index.html', kinds: ['content'], expected: null, actual: { type: 'file', mode: 0o644, size: 4 } }]), /cannot adopt index\.html: the host reported no hash/);
  });
});
