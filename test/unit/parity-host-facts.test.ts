import assert from 'node:assert/strict';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { arch, release } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { HostSettings } from '../../src/api/schemas.js';
import { HostFactsReader, parseDpkgStatus, parseOsRelease, parseRpmList, reportHostFacts } from '../../src/agent/host-facts.js';
import type { HostFacts } from '../../src/core/parity.js';
import { withTempDir } from '../helpers/tmp.js';

const DPKG_STATUS = `Package: nginx
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 1.22.1-9
Description: small, powerful, scalable web/proxy server
 Nginx ("engine X") is a high-performance web and reverse proxy server.
 .
 Version: 9.9 (not a field: a continuation line)

Package: removed-but-configured
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9

Package: libc6
Status: install ok installed
Architecture: i386
Version: 2.36-9

Package: openssl
Status: install ok installed
Version: 3.0.11-1~deb12u2
`;

describe('host facts parsing', () => {
  it('reads installed packages from a dpkg status file, multiarch names with their architecture', () => {
    assert.deepEqual(parseDpkgStatus(DPKG_STATUS), { nginx: '1.22.1-9', 'libc6:amd64': '2.36-9', 'libc6:i386': '2.36-9', openssl: '3.0.11-1~deb12u2' });
    assert.deepEqual(parseDpkgStatus(''), {});
  });

  it('reads ID and VERSION_ID of os-release, quoted or not', () => {
    assert.deepEqual(parseOsRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'), { id: 'debian', version: '12' });
    assert.deepEqual(parseOsRelease("ID='rocky'\nVERSION_ID=9.3\n# a comment\n"), { id: 'rocky', version: '9.3' });
    assert.deepEqual(parseOsRelease('garbage'), { id: '', version: '' });
  });

  it('reads rpm -qa lines; a package installed in several versions keeps them all', () => {
    assert.deepEqual(parseRpmList('bash 5.1.8-6.el9\nkernel 5.14.0-362.el9\nkernel 5.14.0-284.el9\n\n'), { bash: '5.1.8-6.el9', kernel: '5.14.0-284.el9, 5.14.0-362.el9' });
  });
});

describe('HostFactsReader', () => {
  it('reads the facts under its root and sees a changed package database', () =>
    withTempDir(async (root) => {
      await mkdir(join(root, 'etc'), { recursive: true });
      await mkdir(join(root, 'var/lib/dpkg'), { recursive: true });
      await writeFile(join(root, 'etc/os-release'), 'ID=debian\nVERSION_ID="12"\n');
      await writeFile(join(root, 'var/lib/dpkg/status'), DPKG_STATUS);
      const reader = new HostFactsReader(root);
      const facts = await reader.read({ '/etc/nginx/nginx.conf': 'file 0644 0:0 abc' });
      assert.deepEqual(facts.os, { id: 'debian', version: '12' });
      assert.equal(facts.kernel, release());
      assert.equal(facts.arch, arch());
      assert.equal(facts.packages?.manager, 'dpkg');
      assert.equal(facts.packages?.installed.nginx, '1.22.1-9');
      assert.deepEqual(facts.watched, { '/etc/nginx/nginx.conf': 'file 0644 0:0 abc' });

      await writeFile(join(root, 'var/lib/dpkg/status'), DPKG_STATUS.replace('1.22.1-9', '1.22.1-10'));
      assert.equal((await reader.read({})).packages?.installed.nginx, '1.22.1-10');
    }));

  it('a root without a package database has packages null', () =>
    withTempDir(async (root) => {
      const facts = await new HostFactsReader(root).read({});
      assert.equal(facts.packages, null);
    }));

  it('an os-release or package database that is there but cannot be read is an error, not an absent file', () =>
    withTempDir(async (root) => {
      // A directory where the file should be (EISDIR) and a symlink loop (ELOOP) stand for any read error, also as root.
      await mkdir(join(root, 'etc/os-release'), { recursive: true });
      await assert.rejects(new HostFactsReader(root).read({}), { code: 'EISDIR' });
      await rm(join(root, 'etc/os-release'), { recursive: true });
      await writeFile(join(root, 'etc/os-release'), 'ID=debian\nVERSION_ID="12"\n');
      await mkdir(join(root, 'var/lib/dpkg'), { recursive: true });
      await symlink('status', join(root, 'var/lib/dpkg/status'));
      await assert.rejects(new HostFactsReader(root).read({}), { code: 'ELOOP' });
    }));
});

describe('reportHostFacts', () => {
  it('sends at start, again when facts change, and not when they do not; new settings trigger a check at once', () =>
    withTempDir(async (root) => {
      await mkdir(join(root, 'var/lib/dpkg'), { recursive: true });
      await writeFile(join(root, 'var/lib/dpkg/status'), DPKG_STATUS);
      const sent: HostFacts[] = [];
      let settings: HostSettings | null = null;
      let watched: Record<string, string> = {};
      const stop = new AbortController();
      const loop = reportHostFacts(
        {
          root,
          settings: () => settings,
          watchedSummary: () => watched,
          send: async (facts) => {
            sent.push(facts);
          },
          logger: pino({ level: 'silent' }),
          // Long: only a settings change may cause a second check within this test.
          checkMs: 600_000,
        },
        stop.signal,
      );
      const until = async (count: number) => {
        for (let attempt = 0; attempt < 100 && sent.length < count; attempt++) await new Promise((done) => setTimeout(done, 50));
      };
      await until(1);
      assert.equal(sent.length, 1);
      assert.deepEqual(sent[0]?.watched, {});

      watched = { '/etc/app.conf': 'file 0644 0:0 abc' };
      settings = { revision: 'r1', env: 'test', deployTo: '/srv/app', watch: [{ path: '/etc/app.conf', include: [], exclude: [] }], scan: { periodicMs: 5000, fullMs: 60000, nice: 10, ionice: 'idle', maxReadBytesPerSecond: null } };
      await until(2);
      assert.equal(sent.length, 2);
      assert.deepEqual(sent[1]?.watched, watched);

      // A new revision with the same facts: checked, not sent again.
      settings = { ...settings, revision: 'r2' };
      await new Promise((done) => setTimeout(done, 1500));
      assert.equal(sent.length, 2);
      stop.abort();
      await loop;
    }));

  it('facts that cannot be read are logged as a problem and nothing is sent in their place', () =>
    withTempDir(async (root) => {
      await mkdir(join(root, 'etc/os-release'), { recursive: true });
      const sent: HostFacts[] = [];
      const warnings: string[] = [];
      const stop = new AbortController();
      const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
      const loop = reportHostFacts({ root, settings: () => null, send: async (facts) => void sent.push(facts), logger, checkMs: 600_000 }, stop.signal);
      for (let attempt = 0; attempt < 200 && warnings.length === 0; attempt++) await new Promise((done) => setTimeout(done, 50));
      stop.abort();
      await loop;
      assert.equal(warnings.length, 1);
      assert.match(warnings[0] ?? '', /cannot report host facts/);
      assert.match(warnings[0] ?? '', /EISDIR/);
      assert.deepEqual(sent, []);
    }));
});
