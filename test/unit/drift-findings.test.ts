/** What the agent tells the server about a diff (one finding per path, wire attributes), and how watch paths map to scans. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { diffAgainstManifest, diffSnapshot, type SnapshotEntry } from '../../src/core/drift.js';
import type { ManifestEntry } from '../../src/core/manifest.js';
import { compileGlobs } from '../../src/fim/glob.js';
import { cappedFindings, entryDigest, groupFindings, keptRelative, MAX_REPORTED_FINDINGS, ownedByRelease, releaseFindings, releaseRelative, watchFindings } from '../../src/agent/drift/drift-findings.js';
import { scopeHostPath, scopeRelative, watchScope } from '../../src/agent/drift/watch-scope.js';

const hash = (char: string) => char.repeat(64);
const file = (path: string, extra: Partial<SnapshotEntry> = {}): SnapshotEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, sha256: hash('a'), ...extra });

describe('groupFindings', () => {
  it('groups the kinds of one path into one finding with expected and actual attributes', () => {
    const baseline = [file('a.conf'), file('gone.conf')];
    const actual = [file('a.conf', { mode: 0o666, uid: 1000, sha256: hash('b') }), file('new.conf', { problem: 'too-large', detail: 'cap' })];
    const expected = new Map(baseline.map((entry) => [entry.path, entry]));
    const found = new Map(actual.map((entry) => [entry.path, entry]));
    const grouped = groupFindings({
      scope: 'watch',
      findings: diffSnapshot(baseline, actual),
      expected: (path) => expected.get(path),
      actual: (path) => found.get(path),
      hostPath: (path) => `/etc/${path}`,
    });
    assert.deepEqual(grouped, [
      {
        scope: 'watch',
        path: '/etc/a.conf',
        kinds: ['content', 'mode', 'owner'],
        expected: { type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, sha256: hash('a') },
        actual: { type: 'file', mode: 0o666, uid: 1000, gid: 0, size: 3, sha256: hash('b') },
      },
      { scope: 'watch', path: '/etc/gone.conf', kinds: ['removed'], expected: { type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, sha256: hash('a') }, actual: null },
      {
        scope: 'watch',
        path: '/etc/new.conf',
        kinds: ['added', 'too-large'],
        expected: null,
        actual: { type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, sha256: hash('a'), problem: 'too-large', detail: 'cap' },
      },
    ]);
  });

  it('gives manifest entries without owner, and leaves out the ids of a vanished entry', () => {
    const manifest: ManifestEntry[] = [{ path: 'app.txt', type: 'file', mode: 0o644, size: 3, sha256: hash('a') }];
    const vanished: SnapshotEntry = { path: 'app.txt', type: 'other', special: 'unknown', mode: 0, uid: -1, gid: -1, size: 0, problem: 'vanished', detail: 'ENOENT' };
    const [finding] = groupFindings({
      scope: 'release',
      findings: diffAgainstManifest(manifest, [vanished]),
      expected: () => manifest[0],
      actual: () => vanished,
      hostPath: (path) => `/srv/app/current/${path}`,
    });
    assert.deepEqual(finding, {
      scope: 'release',
      path: '/srv/app/current/app.txt',
      kinds: ['vanished'],
      expected: { type: 'file', mode: 0o644, size: 3, sha256: hash('a') },
      actual: { type: 'other', special: 'unknown', problem: 'vanished', detail: 'ENOENT' },
    });
  });

  it('caps a report at the schema limit and says so', () => {
    const many = Array.from({ length: MAX_REPORTED_FINDINGS + 5 }, (_, index) => ({ scope: 'watch' as const, path: `/p${index}`, kinds: ['added'], expected: null, actual: null }));
    const capped = cappedFindings([many.slice(0, 10), many.slice(10)]);
    assert.equal(capped.findings.length, MAX_REPORTED_FINDINGS);
    assert.equal(capped.truncated, true);
    assert.equal(cappedFindings([many.slice(0, 3)]).truncated, false);
  });

  it('digests an entry for parity without the baseline', () => {
    assert.equal(entryDigest(file('x', { mode: 0o600 })), `file 0600 0:0 ${hash('a')}`);
    assert.equal(entryDigest({ path: 'l', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, target: 'x' }), 'symlink 0777 0:0 x');
  });
});

describe('watchScope', () => {
  it('scans a watch path as its basename under its parent, with globs re-anchored', () => {
    const scope = watchScope('/sandbox', { path: '/etc/nginx', include: [], exclude: ['*.swp', 'cache/**'] });
    assert.equal(scope.root, '/sandbox/etc');
    assert.equal(scope.base, 'nginx');
    const excluded = compileGlobs(scope.exclude);
    assert.equal(excluded('nginx/a.swp'), true);
    assert.equal(excluded('nginx/sites/b.swp'), true);
    assert.equal(excluded('nginx/cache/x'), true);
    assert.equal(excluded('nginx/nginx.conf'), false);
    assert.equal(excluded('nginx'), false);
    assert.equal(scopeHostPath(scope, 'nginx/nginx.conf'), '/etc/nginx/nginx.conf');
    assert.equal(scopeRelative(scope, '/etc/nginx/nginx.conf'), 'nginx/nginx.conf');
    assert.equal(scopeRelative(scope, '/etc/nginx'), 'nginx');
    assert.equal(scopeRelative(scope, '/etc/nginxx'), undefined);
  });

  it('treats glob characters in the watched name literally', () => {
    const scope = watchScope('/', { path: '/etc/a[1]', include: ['*.conf'], exclude: [] });
    const included = compileGlobs(scope.include);
    assert.equal(included('a[1]/x.conf'), true);
    assert.equal(included('a1/x.conf'), false);
  });
});

describe('scope findings', () => {
  const manifest = new Map<string, ManifestEntry>([['app.txt', { path: 'app.txt', type: 'file', mode: 0o644, size: 3, sha256: hash('a') }]]);
  const release = { releaseId: hash('r'), deployTo: '/srv/app', dir: '/sandbox/srv/app/releases/r', manifest };

  it('compares the active tree with the manifest of the activated release and `current` with its target', () => {
    const found = releaseFindings({ ...release, pointer: `releases/${hash('o')}`, snapshot: [file('app.txt', { sha256: hash('b') })] });
    assert.deepEqual(
      found.findings.map((finding) => [finding.path, finding.kinds, finding.expected?.sha256 ?? finding.expected?.target]),
      [
        ['/srv/app/current', ['target'], `releases/${hash('r')}`],
        ['/srv/app/current/app.txt', ['content'], hash('a')],
      ],
    );
    assert.deepEqual(found.uploads, [{ sha256: hash('b'), size: 3, file: '/sandbox/srv/app/releases/r/app.txt' }]);
    assert.deepEqual(releaseFindings({ ...release, pointer: `releases/${hash('r')}`, snapshot: [file('app.txt')] }).findings, []);
  });

  it("leaves what the release scope owns to it when a watch path covers DEPLOY_TO, and holds back Lockstep's own writes", () => {
    const view = {
      baseline: [file('app/shared/lockstep.env')],
      snapshot: [file('app/shared/lockstep.env', { sha256: hash('b') }), file('app/releases/x/f'), file('app/current.tmp-1'), file('app/current'), file('app/notes')],
      hostPath: (path: string) => `/srv/${path}`,
    };
    assert.deepEqual(
      watchFindings(view, '/srv/app').map((finding) => finding.path),
      ['/srv/app/notes', '/srv/app/shared/lockstep.env'],
    );
    assert.deepEqual(
      watchFindings(view, '/srv/app', (path) => path === '/srv/app/shared/lockstep.env').map((finding) => finding.path),
      ['/srv/app/notes'],
    );
  });

  it('knows which host paths belong to the release scope', () => {
    assert.equal(ownedByRelease('/srv/app', '/srv/app/current'), true);
    assert.equal(ownedByRelease('/srv/app', '/srv/app/current.tmp-ab12'), true);
    assert.equal(ownedByRelease('/srv/app', '/srv/app/releases'), true);
    assert.equal(ownedByRelease('/srv/app', '/srv/app/releases/x/y'), true);
    assert.equal(ownedByRelease('/srv/app', '/srv/app/current-notes'), false);
    assert.equal(ownedByRelease('/srv/app', '/srv/app/shared/lockstep.env'), false);
    assert.equal(ownedByRelease('/srv/app', '/srv/app'), false);
    assert.equal(ownedByRelease('/srv/app', '/srv/other/current'), false);
  });

  it('maps a host path to the active release or a kept release tree, for revert', () => {
    const id = 'c'.repeat(64);
    assert.equal(releaseRelative('/srv/app', '/srv/app/current/conf/app.conf'), 'conf/app.conf');
    assert.equal(releaseRelative('/srv/app', '/srv/app/current/./conf//app.conf'), 'conf/app.conf');
    assert.equal(releaseRelative('/srv/app', '/srv/app/current'), undefined, '`current` itself is the link, not a file of the release');
    assert.equal(releaseRelative('/srv/app', '/srv/app/current-notes/a'), undefined);
    assert.deepEqual(keptRelative('/srv/app', `/srv/app/releases/${id}/conf/app.conf`), { releaseId: id, relative: 'conf/app.conf' });
    assert.equal(keptRelative('/srv/app', `/srv/app/releases/${id}`), undefined, 'a whole tree is not a path in it');
    assert.equal(keptRelative('/srv/app', '/srv/app/releases/not-a-release-id/a'), undefined);
    assert.equal(keptRelative('/srv/app', '/srv/app/shared/a'), undefined);
  });
});
