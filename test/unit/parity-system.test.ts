import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseFstab, parseGroup, parseModules, parseMounts, parsePasswd, parseProcNet, parseRunningUnits, parseSysctlConf, readSystemFacts } from '../../src/agent/system-facts.js';
import { compareEnvironments, type HostFacts, type ParityEnvironment, type SystemFacts } from '../../src/core/parity.js';
import { withTempDir } from '../helpers/tmp.js';

const PROC_NET_TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1CE8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:A3F2 0100007F:0016 01 00000000:00000000 00:00000000 00000000  1000        0 3333 1 0000000000000000 20 4 30 10 -1
`;
const PROC_NET_TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
`;
const PROC_NET_UDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5555 2 0000000000000000 0
  101: 0A00020F:D431 08080808:0035 01 00000000:00000000 00:00000000 00000000  1000        0 6666 2 0000000000000000 0
`;

describe('system fact parsers', () => {
  it('passwd: name, uid, gid and shell, never the password field', () => {
    const users = parsePasswd('root:x:0:0:root:/root:/bin/bash\n# comment\nwww-data:$6$secrethash:33:33:www-data:/var/www:/usr/sbin/nologin\nbroken:x:1\n');
    assert.deepEqual(users, { root: 'uid=0 gid=0 shell=/bin/bash', 'www-data': 'uid=33 gid=33 shell=/usr/sbin/nologin' });
    assert.ok(!JSON.stringify(users).includes('secrethash'));
  });

  it('group: gid and sorted members, never the password field', () => {
    assert.deepEqual(parseGroup('sudo:x:27:bob,alice\nadm:!secret:4:\n'), { sudo: 'gid=27 members=alice,bob', adm: 'gid=4 members=' });
  });

  it('sysctl.conf: comments, a leading dash and slash separators', () => {
    assert.deepEqual(parseSysctlConf('# c\n; c\nvm.swappiness = 10\n-net/ipv4/ip_forward=1\n\nnonsense\n'), { 'vm.swappiness': '10', 'net.ipv4.ip_forward': '1' });
  });

  it('fstab and /proc/self/mounts: mount point → type, source, options, octal escapes decoded', () => {
    assert.deepEqual(parseFstab('# <file system> <mount point>\nUUID=abc / ext4 errors=remount-ro 0 1\n/dev/sdb1 /srv/my\\040data xfs\n'), { '/': 'ext4 UUID=abc errors=remount-ro', '/srv/my data': 'xfs /dev/sdb1 defaults' });
    assert.deepEqual(parseMounts('proc /proc proc rw,nosuid 0 0\n/dev/sda1 / ext4 rw,relatime 0 0\n'), { '/proc': 'proc proc rw,nosuid', '/': 'ext4 /dev/sda1 rw,relatime' });
  });

  it('/proc/modules and systemctl list-units output', () => {
    assert.deepEqual(parseModules('overlay 151552 2 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\n'), { overlay: 'loaded', br_netfilter: 'loaded' });
    assert.deepEqual(parseRunningUnits('ssh.service loaded active running OpenBSD Secure Shell server\ncron.service loaded active running Regular background program processing daemon\n'), ['cron.service', 'ssh.service']);
  });

  it('/proc/net tables: TCP LISTEN and unconnected UDP sockets only, addresses decoded', () => {
    assert.deepEqual(parseProcNet(PROC_NET_TCP, 'tcp'), [
      { protocol: 'tcp', address: '0.0.0.0', port: 22, inode: '1111' },
      { protocol: 'tcp', address: '127.0.0.1', port: 7400, inode: '2222' },
    ]);
    assert.deepEqual(parseProcNet(PROC_NET_TCP6, 'tcp'), [{ protocol: 'tcp', address: '::', port: 80, inode: '4444' }]);
    assert.deepEqual(parseProcNet(PROC_NET_UDP, 'udp'), [{ protocol: 'udp', address: '0.0.0.0', port: 68, inode: '5555' }]);
  });
});

describe('readSystemFacts', () => {
  it('reads files under the root as configured facts and a proc tree as live facts, ports with their programs', () =>
    withTempDir(async (dir) => {
      const root = join(dir, 'root');
      const proc = join(dir, 'proc');
      await mkdir(join(root, 'etc/systemd/system/multi-user.target.wants'), { recursive: true });
      await mkdir(join(root, 'etc/sysctl.d'), { recursive: true });
      await symlink('/lib/systemd/system/nginx.service', join(root, 'etc/systemd/system/multi-user.target.wants/nginx.service'));
      await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
      await writeFile(join(root, 'etc/group'), 'root:x:0:\n');
      await writeFile(join(root, 'etc/sysctl.conf'), 'vm.swappiness = 60\n');
      await writeFile(join(root, 'etc/sysctl.d/99-tuning.conf'), 'vm.swappiness = 10\n');
      await writeFile(join(root, 'etc/fstab'), '/dev/sdb1 /srv xfs defaults 0 2\n');
      await mkdir(join(proc, 'net'), { recursive: true });
      await mkdir(join(proc, 'sys/vm'), { recursive: true });
      await mkdir(join(proc, 'sys/net/ipv4'), { recursive: true });
      await mkdir(join(proc, 'self'), { recursive: true });
      await mkdir(join(proc, '321/fd'), { recursive: true });
      await writeFile(join(proc, 'net/tcp'), PROC_NET_TCP);
      await writeFile(join(proc, 'net/udp'), PROC_NET_UDP);
      await writeFile(join(proc, 'sys/vm/swappiness'), '30\n');
      await writeFile(join(proc, 'sys/net/ipv4/ip_local_port_range'), '32768\t60999\n');
      await writeFile(join(proc, 'self/mounts'), '/dev/sda1 / ext4 rw 0 0\n');
      await writeFile(join(proc, 'modules'), 'overlay 151552 2 - Live 0x0\n');
      await writeFile(join(proc, '321/comm'), 'sshd\n');
      await symlink('socket:[1111]', join(proc, '321/fd/3'));

      const facts = await readSystemFacts(root, { proc, runningUnits: () => Promise.resolve(['should-not-be-asked.service']) });
      assert.deepEqual(facts.configured, {
        service: { 'nginx.service': 'enabled (multi-user.target)' },
        user: { root: 'uid=0 gid=0 shell=/bin/bash' },
        group: { root: 'gid=0 members=' },
        sysctl: { 'vm.swappiness': '10' },
        mount: { '/srv': 'xfs /dev/sdb1 defaults' },
      });
      assert.deepEqual(facts.live, {
        sysctl: { 'vm.swappiness': '30' },
        port: { '22/tcp': '0.0.0.0 sshd', '7400/tcp': '127.0.0.1 ?', '68/udp': '0.0.0.0 ?' },
        mount: { '/': 'ext4 /dev/sda1 rw' },
        module: { overlay: 'loaded' },
      }, 'running units are asked only when the root is /');
    }));

  it('an empty root has no configured units, users or values, and is not an error', () =>
    withTempDir(async (dir) => {
      const facts = await readSystemFacts(dir, { proc: join(dir, 'no-proc'), runningUnits: () => Promise.resolve(undefined) });
      assert.deepEqual(facts, { configured: { service: {}, user: {}, group: {}, sysctl: {}, mount: {} }, live: { sysctl: {} } });
    }));

  it('live facts kept from an earlier read are returned as they were, and the live system is not read again', () =>
    withTempDir(async (dir) => {
      const kept = { port: { '443/tcp': 'nginx' }, module: { overlay: 'loaded' } };
      const asked: string[] = [];
      const facts = await readSystemFacts(dir, { proc: join(dir, 'no-proc'), runningUnits: () => (asked.push('units'), Promise.resolve(undefined)) }, kept);
      assert.deepEqual(facts.live, kept);
      assert.deepEqual(facts.configured, { service: {}, user: {}, group: {}, sysctl: {}, mount: {} }, 'files under the root are read every time');
      assert.deepEqual(asked, []);
    }));
});

const baseFacts: HostFacts = { os: { id: 'debian', version: '12' }, kernel: '6.1', arch: 'x64', packages: null, watched: {} };

function system(configured: SystemFacts['configured'], live: SystemFacts['live'] = {}): HostFacts {
  return { ...baseFacts, system: { configured, live } };
}

function env(name: string, hosts: Record<string, HostFacts>, declared: string[] = []): ParityEnvironment {
  return { name, release: null, vars: {}, secrets: {}, declared, hosts: Object.entries(hosts).map(([host, facts]) => ({ name: host, releaseId: null, facts })) };
}

describe('parity of system facts', () => {
  const test = system(
    { service: { 'nginx.service': 'enabled (multi-user.target)' }, user: { app: 'uid=1000 gid=1000 shell=/bin/sh' }, sysctl: { 'vm.swappiness': '10' } },
    { port: { '22/tcp': '0.0.0.0 sshd' }, module: { overlay: 'loaded' } },
  );
  const production = system(
    { service: { 'nginx.service': 'enabled (multi-user.target)', 'debug-shell.service': 'enabled (sysinit.target)' }, user: { app: 'uid=1001 gid=1000 shell=/bin/sh' }, sysctl: { 'vm.swappiness': '60' } },
    { port: { '22/tcp': '0.0.0.0 sshd', '8080/tcp': '0.0.0.0 python3' }, module: { overlay: 'loaded' } },
  );

  it('each category is compared item by item; live facts are marked', () => {
    const result = compareEnvironments(env('test', { t1: test }), env('production', { p1: production }));
    assert.deepEqual(
      result.differences.map((difference) => [difference.category, difference.name, difference.values, difference.declared, difference.live ?? false]),
      [
        ['service', 'debug-shell.service', { test: [], production: ['enabled (sysinit.target)'] }, false, false],
        ['user', 'app', { test: ['uid=1000 gid=1000 shell=/bin/sh'], production: ['uid=1001 gid=1000 shell=/bin/sh'] }, false, false],
        ['sysctl', 'vm.swappiness', { test: ['10'], production: ['60'] }, false, false],
        ['port', '8080/tcp', { test: [], production: ['0.0.0.0 python3'] }, false, true],
      ],
    );
    assert.equal(result.undeclared, 4);
  });

  it('service:, user:, sysctl: and port:N entries declare them (port:N both protocols)', () => {
    const result = compareEnvironments(env('test', { t1: test }, ['service:debug-shell.service', 'user:app']), env('production', { p1: production }, ['sysctl:vm.swappiness', 'port:8080']));
    assert.equal(result.undeclared, 0, JSON.stringify(result.differences));
    assert.equal(result.declared, 4);
    assert.equal(result.score, 100);
  });

  it('a host that differs from the others of its environment is named; a category a host did not read is not compared', () => {
    const sandbox = system({ service: { 'nginx.service': 'enabled (multi-user.target)' }, user: { app: 'uid=1000 gid=1000 shell=/bin/sh' }, sysctl: { 'vm.swappiness': '10' } }, { module: { overlay: 'loaded' } });
    const other = system({ service: {}, user: { app: 'uid=1000 gid=1000 shell=/bin/sh' }, sysctl: { 'vm.swappiness': '10' } }, { module: { overlay: 'loaded' } });
    const result = compareEnvironments(env('test', { t1: test, t2: sandbox, t3: other }), env('production', { p1: test }, ['mount:/srv']));
    assert.deepEqual(
      result.differences.map((difference) => [difference.category, difference.name, difference.within]),
      [['service', 'nginx.service', { env: 'test', host: 't3', reference: 't1' }]],
      't2 read no ports (compared only where read)',
    );
  });

  it('facts from an agent without system facts compare as before', () => {
    const result = compareEnvironments(env('test', { t1: baseFacts }), env('production', { p1: production }));
    assert.equal(result.undeclared, 0);
  });
});
