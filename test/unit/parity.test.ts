import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Manifest } from '../../src/core/manifest.js';
import { compareEnvironments, type HostFacts, type ParityEnvironment, type ParityHost } from '../../src/core/parity.js';

const hash = (char: string) => char.repeat(64);
const RELEASE_ID = hash('1');

function facts(overrides: Partial<HostFacts> & { installed?: Record<string, string> } = {}): HostFacts {
  const { installed, ...rest } = overrides;
  return {
    os: { id: 'debian', version: '12' },
    kernel: '6.1.0-18-amd64',
    arch: 'x64',
    packages: { manager: 'dpkg', installed: installed ?? { nginx: '1.22.1-9', openssl: '3.0.11-1' } },
    watched: { '/etc/nginx/nginx.conf': 'file 644 0:0 aaaa' },
    ...rest,
  };
}

function host(name: string, hostFacts: HostFacts | null = facts(), releaseId: string | null = RELEASE_ID): ParityHost {
  return { name, releaseId, facts: hostFacts };
}

const manifest: Manifest = {
  app: 'shop',
  version: '1.0',
  entries: [
    { path: 'index.html', type: 'file', mode: 0o644, size: 3, sha256: hash('a') },
    { path: 'old.txt', type: 'file', mode: 0o644, size: 3, sha256: hash('b') },
  ],
};

function env(name: string, overrides: Partial<ParityEnvironment> = {}): ParityEnvironment {
  return {
    name,
    release: { id: RELEASE_ID, version: '1.0', manifest },
    vars: { DB_POOL: '10', DB_HOST: `db.${name}` },
    secrets: {},
    declared: ['DB_HOST'],
    hosts: [host(`${name}-1`)],
    ...overrides,
  };
}

describe('compareEnvironments', () => {
  it('two environments that differ only as declared score 100 with the declared differences listed', () => {
    const result = compareEnvironments(env('test'), env('production'));
    assert.equal(result.undeclared, 0);
    assert.equal(result.score, 100);
    assert.deepEqual(result.differences, [{ category: 'var', name: 'DB_HOST', values: { test: ['db.test'], production: ['db.production'] }, declared: true, within: null }]);
    // release, 2 vars, 3 facts, 2 packages, 1 watched path between; the same within each env has one host: nothing.
    assert.equal(result.compared, 9);
    assert.equal(result.declared, 1);
    assert.equal(result.equal, 8);
    assert.deepEqual(result.notes, []);
  });

  it('reports an undeclared var value, a missing var and a different package version, each undeclared', () => {
    const production = env('production', {
      vars: { DB_POOL: '20', DB_HOST: 'db.production', ONLY_HERE: '1' },
      hosts: [host('production-1', facts({ installed: { nginx: '1.22.1-10', openssl: '3.0.11-1' } }))],
    });
    const result = compareEnvironments(env('test'), production);
    const undeclared = result.differences.filter((difference) => !difference.declared);
    assert.deepEqual(
      undeclared.map((difference) => [difference.category, difference.name, difference.values]),
      [
        ['var', 'DB_POOL', { test: ['10'], production: ['20'] }],
        ['var', 'ONLY_HERE', { test: [], production: ['1'] }],
        ['package', 'nginx', { test: ['1.22.1-9'], production: ['1.22.1-10'] }],
      ],
    );
    assert.equal(result.undeclared, 3);
    assert.equal(result.compared, 10);
    assert.equal(result.score, 70);
  });

  it('declares a package, a fact, a var and a watched directory from either side', () => {
    const production = env('production', {
      vars: { DB_POOL: '20', DB_HOST: 'x' },
      declared: ['package:nginx', 'fact:kernel', 'DB_POOL', 'watch:/etc/nginx/'],
      hosts: [host('production-1', facts({ kernel: '6.1.0-20-amd64', installed: { nginx: '1.22.1-10', openssl: '3.0.11-1' }, watched: { '/etc/nginx/nginx.conf': 'file 644 0:0 bbbb' } }))],
    });
    const result = compareEnvironments(env('test'), production);
    assert.equal(result.undeclared, 0, JSON.stringify(result.differences));
    assert.deepEqual(result.differences.map((difference) => `${difference.category}:${difference.name}`), ['var:DB_HOST', 'var:DB_POOL', 'fact:kernel', 'package:nginx', 'watched:/etc/nginx/nginx.conf']);
    assert.ok(result.differences.every((difference) => difference.declared));
  });

  it('secrets are compared by digest: the same value is equal, another value or a missing one differs, and no value is shown', () => {
    const test = env('test', { secrets: { API_KEY: 'digest-1', DB_PASSWORD: 'digest-2', ONLY_TEST: 'digest-3' } });
    const production = env('production', { secrets: { API_KEY: 'digest-1', DB_PASSWORD: 'digest-9' } });
    const secrets = compareEnvironments(test, production).differences.filter((difference) => difference.category === 'secret');
    assert.deepEqual(secrets, [
      { category: 'secret', name: 'DB_PASSWORD', values: { test: ['differs'], production: ['differs'] }, declared: false, within: null },
      { category: 'secret', name: 'ONLY_TEST', values: { test: ['set'], production: [] }, declared: false, within: null },
    ]);
    const declared = compareEnvironments(test, env('production', { secrets: production.secrets, declared: ['DB_HOST', 'secret:DB_PASSWORD'] }));
    assert.deepEqual(
      declared.differences.filter((difference) => difference.category === 'secret').map((difference) => [difference.name, difference.declared]),
      [['DB_PASSWORD', true], ['ONLY_TEST', false]],
    );
    // release, 2 vars, 3 secrets, 3 facts, 2 packages, 1 watched path.
    assert.equal(declared.compared, 12);
    assert.ok(!JSON.stringify(declared).includes('digest-'), 'digests are compared, never shown');
  });

  it('a different active release is never declared and lists the files that differ', () => {
    const next: Manifest = {
      app: 'shop',
      version: '1.1',
      entries: [
        { path: 'index.html', type: 'file', mode: 0o644, size: 3, sha256: hash('c') },
        { path: 'new.txt', type: 'file', mode: 0o644, size: 3, sha256: hash('d') },
      ],
    };
    const test = env('test', { declared: ['release', 'DB_HOST'], release: { id: hash('2'), version: '1.1', manifest: next }, hosts: [host('test-1', facts(), hash('2'))] });
    const result = compareEnvironments(test, env('production'));
    const release = result.differences.find((difference) => difference.category === 'release');
    assert.ok(release);
    assert.equal(release.declared, false);
    assert.deepEqual(release.values, { test: [`1.1 (${hash('2').slice(0, 12)})`], production: [`1.0 (${RELEASE_ID.slice(0, 12)})`] });
    assert.deepEqual(release.files, [
      { path: 'index.html', onlyIn: null },
      { path: 'new.txt', onlyIn: 'test' },
      { path: 'old.txt', onlyIn: 'production' },
    ]);
    assert.equal(release.fileCount, 3);
  });

  it('nothing deployed on one side is a release difference with an empty side', () => {
    const result = compareEnvironments(env('test', { release: null, hosts: [host('test-1', facts(), null)] }), env('production'));
    const release = result.differences.find((difference) => difference.category === 'release');
    assert.deepEqual(release?.values, { test: [], production: [`1.0 (${RELEASE_ID.slice(0, 12)})`] });
    assert.deepEqual(release?.files, []);
  });

  it('within an environment, hosts that differ from the most common value are reported against a host holding it', () => {
    const production = env('production', {
      hosts: [
        host('web1', facts({ kernel: '6.1.0-20-amd64' })),
        host('web2', facts()),
        host('web3', facts({ installed: { nginx: '1.22.1-9', openssl: '3.0.11-1', curl: '7.88' } })),
        host('web4', facts(), hash('9')),
      ],
    });
    const result = compareEnvironments(env('test'), production);
    const within = result.differences.filter((difference) => difference.within !== null);
    assert.deepEqual(
      within.map((difference) => [difference.category, difference.name, difference.within, difference.values, difference.declared]),
      [
        ['release', 'release', { env: 'production', host: 'web4', reference: 'web1' }, { web1: [`1.0 (${RELEASE_ID.slice(0, 12)})`], web4: [hash('9').slice(0, 12)] }, false],
        ['fact', 'kernel', { env: 'production', host: 'web1', reference: 'web2' }, { web2: ['6.1.0-18-amd64'], web1: ['6.1.0-20-amd64'] }, false],
        ['package', 'curl', { env: 'production', host: 'web3', reference: 'web1' }, { web1: [], web3: ['7.88'] }, false],
      ],
    );
    // Between the environments, production's kernels and curl are sets of what its hosts run.
    const kernel = result.differences.find((difference) => difference.category === 'fact' && difference.within === null);
    assert.deepEqual(kernel?.values, { test: ['6.1.0-18-amd64'], production: ['6.1.0-18-amd64', '6.1.0-20-amd64'] });
    assert.ok(result.score < 100);
  });

  it('a tie within an environment goes to the first host by name', () => {
    const production = env('production', { hosts: [host('b', facts({ arch: 'arm64' })), host('a', facts())] });
    const arch = compareEnvironments(env('test'), production).differences.find((difference) => difference.within?.env === 'production');
    assert.deepEqual(arch?.within, { env: 'production', host: 'b', reference: 'a' });
  });

  it('a within-environment difference is declared by the environment\'s own declarations only', () => {
    const hosts = [host('web1'), host('web2', facts({ installed: { nginx: '1.22.1-10', openssl: '3.0.11-1' } }))];
    const declaredHere = compareEnvironments(env('test', { declared: ['DB_HOST'] }), env('production', { hosts, declared: ['DB_HOST', 'package:nginx'] }));
    assert.ok(declaredHere.differences.filter((difference) => difference.within !== null).every((difference) => difference.declared));
    const declaredElsewhere = compareEnvironments(env('test', { declared: ['DB_HOST', 'package:nginx'] }), env('production', { hosts }));
    assert.ok(declaredElsewhere.differences.some((difference) => difference.within !== null && !difference.declared));
  });

  it('hosts without facts and environments without package databases are notes, not differences', () => {
    const test = env('test', { hosts: [host('test-1', facts({ packages: null })), host('test-2', null)] });
    const result = compareEnvironments(test, env('production'));
    assert.deepEqual(result.notes, ['no facts reported yet by test-2 (test)', 'packages not compared: no host of test reported a package database (dpkg or rpm)']);
    assert.ok(!result.differences.some((difference) => difference.category === 'package'));

    const silent = compareEnvironments(env('test', { hosts: [] }), env('production', { hosts: [host('p', null)] }));
    assert.deepEqual(silent.notes, ['test has no hosts', 'no facts reported yet by p (production)', 'host facts not compared: no host of test or production reported any']);
  });
});

describe('managed files in parity', () => {
  const SITE = '/etc/nginx/sites-enabled/shop.conf';
  const withSite = (name: string, digest: string, extra: Partial<ParityEnvironment> = {}) =>
    env(name, { hosts: [host(`${name}-1`, facts({ managed: { [SITE]: digest } }))], ...extra });
  const fileDifference = (result: ReturnType<typeof compareEnvironments>) => result.differences.find((difference) => difference.category === 'file');

  it('equal rendered content is no difference; another digest is undeclared unless declared as file:PATH', () => {
    assert.equal(fileDifference(compareEnvironments(withSite('test', 'sha256:aa'), withSite('production', 'sha256:aa'))), undefined);
    const undeclared = fileDifference(compareEnvironments(withSite('test', 'sha256:aa'), withSite('production', 'sha256:bb')));
    assert.deepEqual(undeclared, { category: 'file', name: SITE, values: { test: ['sha256:aa'], production: ['sha256:bb'] }, declared: false, within: null });
    const declared = compareEnvironments(withSite('test', 'sha256:aa'), withSite('production', 'sha256:bb', { declared: ['DB_HOST', `file:${SITE}`] }));
    assert.equal(fileDifference(declared)?.declared, true);
  });

  it('a template that inserts a declared var (or the environment or host name) renders a declared difference; one that inserts an undeclared var does not', () => {
    const declaredVar = compareEnvironments(withSite('test', 'sha256:aa', { templates: { [SITE]: ['vars.DB_HOST'] } }), withSite('production', 'sha256:bb', { templates: { [SITE]: ['vars.DB_HOST'] } }));
    assert.equal(fileDifference(declaredVar)?.declared, true);
    const undeclaredVar = compareEnvironments(withSite('test', 'sha256:aa', { templates: { [SITE]: ['vars.DB_POOL'] } }), withSite('production', 'sha256:bb', { templates: { [SITE]: ['vars.DB_POOL'] } }));
    assert.equal(fileDifference(undeclaredVar)?.declared, false);
    const envName = compareEnvironments(withSite('test', 'sha256:aa', { templates: { [SITE]: ['env'] } }), withSite('production', 'sha256:bb', { templates: { [SITE]: ['env'] } }));
    assert.equal(fileDifference(envName)?.declared, true);
  });

  it('within an environment, hosts differ as declared only when the template inserts the host name', () => {
    const twoHosts = (templates: Record<string, string[]>) =>
      env('production', { templates, hosts: [host('production-1', facts({ managed: { [SITE]: 'sha256:aa' } })), host('production-2', facts({ managed: { [SITE]: 'sha256:bb' } }))] });
    const byHostName = compareEnvironments(env('test'), twoHosts({ [SITE]: ['host.name'] })).differences.find((difference) => difference.category === 'file' && difference.within !== null);
    assert.equal(byHostName?.declared, true);
    const byEnvOnly = compareEnvironments(env('test'), twoHosts({ [SITE]: ['env'] })).differences.find((difference) => difference.category === 'file' && difference.within !== null);
    assert.equal(byEnvOnly?.declared, false);
  });
});
