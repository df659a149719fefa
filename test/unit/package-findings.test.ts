import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DriftFinding } from '../../src/api/schemas.js';
import { changedPackages, parseConffiles, parseDpkgLog, parseMd5sums, withPackageFindings, type PackageView } from '../../src/agent/drift/package-findings.js';

const LOG = `2024-05-01 10:00:00 startup archives unpack
2024-05-01 10:00:00 install nginx:amd64 <none> 1.22.1-9
2024-05-01 10:00:01 status installed nginx:amd64 1.22.1-9
2024-06-02 09:30:12 upgrade nginx:amd64 1.22.1-9 1.22.1-9+deb12u1
2024-06-02 09:30:13 status installed nginx:amd64 1.22.1-9+deb12u1
2024-06-03 08:00:00 remove curl:amd64 7.88.1-10 <none>
`;

const file = (path: string, scope: DriftFinding['scope'] = 'watch'): DriftFinding => ({ scope, path, kinds: ['content'], expected: { type: 'file', size: 1 }, actual: { type: 'file', size: 2 } });

function view(overrides: Partial<PackageView> = {}): PackageView {
  const owners: Record<string, string> = { '/etc/nginx/nginx.conf': 'nginx', '/usr/sbin/nginx': 'nginx', '/usr/bin/curl': 'curl', '/etc/ssl/openssl.cnf': 'openssl' };
  return {
    baseline: { nginx: '1.22.1-9', curl: '7.88.1-10', openssl: '3.0.11-1' },
    installed: { nginx: '1.22.1-9+deb12u1', openssl: '3.0.11-1' },
    operations: parseDpkgLog(LOG),
    ownerOf: (path) => owners[path],
    editedAfterDpkg: () => false,
    ...overrides,
  };
}

describe('package drift findings', () => {
  it('dpkg.log: the last install/upgrade/remove of each package, by name and by name:arch', () => {
    const operations = parseDpkgLog(LOG);
    assert.deepEqual(operations.get('nginx'), { action: 'upgrade', at: '2024-06-02 09:30:12' });
    assert.deepEqual(operations.get('nginx:amd64'), { action: 'upgrade', at: '2024-06-02 09:30:12' });
    assert.deepEqual(operations.get('curl'), { action: 'remove', at: '2024-06-03 08:00:00' });
  });

  it('md5sums and status Conffiles: host path → md5', () => {
    assert.deepEqual([...parseMd5sums('0123456789abcdef0123456789abcdef  usr/sbin/nginx\nbad line\n')], [['/usr/sbin/nginx', '0123456789abcdef0123456789abcdef']]);
    const status = 'Package: nginx\nStatus: install ok installed\nConffiles:\n /etc/nginx/nginx.conf 0123456789abcdef0123456789abcdef\n /etc/nginx/old.conf newconffile\nVersion: 1\n';
    assert.deepEqual([...parseConffiles(status)], [['/etc/nginx/nginx.conf', '0123456789abcdef0123456789abcdef']]);
  });

  it('installed, upgraded and removed packages are the changes; equal versions are not', () => {
    assert.deepEqual(changedPackages({ baseline: { a: '1', b: '1', c: '1' }, installed: { a: '2', b: '1', d: '1' } }), ['a', 'c', 'd']);
  });

  it('the files a changed package owns, its dpkg info files and dpkg bookkeeping fold into one finding per package', () => {
    const { findings, attributed } = withPackageFindings(
      [file('/etc/nginx/nginx.conf'), file('/usr/sbin/nginx'), file('/var/lib/dpkg/info/nginx.md5sums'), file('/var/lib/dpkg/status'), file('/var/log/dpkg.log'), file('/usr/bin/curl')],
      view(),
    );
    assert.deepEqual(findings, [
      {
        scope: 'package',
        path: 'package:curl',
        kinds: ['package'],
        expected: { type: 'other', special: 'package', version: '7.88.1-10', detail: 'remove by dpkg at 2024-06-03 08:00:00 (dpkg.log); 1 file changed with it' },
        actual: null,
      },
      {
        scope: 'package',
        path: 'package:nginx',
        kinds: ['package'],
        expected: { type: 'other', special: 'package', version: '1.22.1-9' },
        actual: { type: 'other', special: 'package', version: '1.22.1-9+deb12u1', detail: 'upgrade by dpkg at 2024-06-02 09:30:12 (dpkg.log); 3 files changed with it' },
      },
    ]);
    assert.deepEqual(attributed.get('nginx'), ['/etc/nginx/nginx.conf', '/usr/sbin/nginx', '/var/lib/dpkg/info/nginx.md5sums']);
  });

  it('a hand edit of a packaged file stays a file finding with its owner: unchanged package, or content no longer as dpkg wrote it', () => {
    const { findings } = withPackageFindings([file('/etc/ssl/openssl.cnf'), file('/etc/nginx/nginx.conf'), file('/etc/motd')], view({ editedAfterDpkg: (path) => path === '/etc/nginx/nginx.conf' }));
    assert.deepEqual(
      findings.filter((finding) => finding.scope === 'watch').map((finding) => [finding.path, finding.actual?.ownedBy]),
      [
        ['/etc/ssl/openssl.cnf', 'openssl'],
        ['/etc/nginx/nginx.conf', 'nginx'],
        ['/etc/motd', undefined],
      ],
    );
  });

  it('no package change: dpkg bookkeeping files are ordinary findings, and nothing is added', () => {
    const unchanged = view({ installed: { nginx: '1.22.1-9', curl: '7.88.1-10', openssl: '3.0.11-1' } });
    const { findings } = withPackageFindings([file('/var/lib/dpkg/status')], unchanged);
    assert.deepEqual(findings.map((finding) => finding.path), ['/var/lib/dpkg/status']);
  });

  it('a change dpkg.log does not record says so', () => {
    const { findings } = withPackageFindings([], view({ operations: new Map() }));
    assert.match(findings.find((finding) => finding.path === 'package:nginx')?.actual?.detail ?? '', /^not in dpkg\.log/);
  });
});
