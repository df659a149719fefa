import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/core/config.js';
import { releaseIdOf, type ManifestEntry } from '../../src/core/manifest.js';
import { parseReleaseParts } from '../../src/core/release-parts-file.js';
import { compareDebianVersions, packageChanges, systemPartsProblems, type SystemParts } from '../../src/core/system-parts.js';
import { planSystem } from '../../src/core/system-plan.js';
import { renderTemplate, templateProblems, TemplateError } from '../../src/core/template.js';
import { unifiedDiff } from '../../src/core/unified-diff.js';

const TREE = new Map([
  ['config/site.conf', 0o644],
  ['debs/hello_1.0_all.deb', 0o644],
  ['bin/run', 0o755],
]);

/** The problems of a lockstep-release.yaml as `line:column field: message`. */
function problems(text: string): string[] {
  try {
    parseReleaseParts(text, TREE);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.problems.map((p) => `${p.line}:${p.column} ${p.field}: ${p.message}`);
  }
  return assert.fail('the file was accepted');
}

describe('lockstep-release.yaml', () => {
  it('parses files and packages; the mode defaults to the source file\'s, octal strings and numbers are read as such', () => {
    const parts = parseReleaseParts(
      `files:
  - path: /etc/nginx/sites-enabled/app.conf
    source: config/site.conf
    mode: "0640"
    owner: root:www-data
    template: true
    after_change: systemctl reload nginx
  - path: /usr/local/bin/app
    source: bin/run
  - path: /etc/app.conf
    source: config/site.conf
    mode: 384
packages:
  - deb: debs/hello_1.0_all.deb
  - name: nginx
    version: 1.22.1-9
`,
      TREE,
    );
    assert.deepEqual(parts.files, [
      { path: '/etc/nginx/sites-enabled/app.conf', source: 'config/site.conf', mode: 0o640, template: true, owner: 'root:www-data', afterChange: 'systemctl reload nginx' },
      { path: '/usr/local/bin/app', source: 'bin/run', mode: 0o755, template: false },
      { path: '/etc/app.conf', source: 'config/site.conf', mode: 0o600, template: false },
    ]);
    assert.deepEqual(parts.packages, [
      { kind: 'deb', deb: 'debs/hello_1.0_all.deb' },
      { kind: 'apt', name: 'nginx', version: '1.22.1-9' },
    ]);
  });

  it('reports every problem with its line, column and field, schema and tree problems together', () => {
    assert.deepEqual(
      problems(`files:
  - path: etc/relative.conf
    source: config/site.conf
  - path: /etc/a/../b.conf
    source: config/missing.conf
    mode: 0644
    templte: true
packages:
  - deb: debs/absent.deb
  - name: Nginx
    version: latest
`),
      [
        '2:11 files.0.path: expected an absolute, normalized host path such as /etc/nginx/sites-enabled/app.conf; found "etc/relative.conf"',
        '4:11 files.1.path: expected an absolute, normalized host path such as /etc/nginx/sites-enabled/app.conf; found "/etc/a/../b.conf"',
        '5:13 files.1.source: config/missing.conf is not a file of the release dir',
        '6:11 files.1.mode: expected permission bits up to 0777; a YAML number such as 0644 is read as decimal 644, write "0644" (quoted) instead; found number 644',
        '7:5 files.1.templte: unknown key "templte" (did you mean "template"?)',
        '9:10 packages.0.deb: debs/absent.deb is not a file of the release dir',
        '10:11 packages.1.name: expected a package name (lowercase letters, digits, + . -); found "Nginx"',
        '11:14 packages.1.version: expected an exact package version such as 1.22.1-9; found "latest"',
      ],
    );
  });

  it('sources and .deb files must be files of the release; a host path is managed once', () => {
    assert.deepEqual(
      problems(`files:
  - path: /etc/a.conf
    source: config/missing.conf
  - path: /etc/a.conf
    source: config/site.conf
packages:
  - deb: debs/absent.deb
`),
      [
        '3:13 files.0.source: config/missing.conf is not a file of the release dir',
        '4:11 files.1.path: /etc/a.conf is already managed by files[0]',
        '7:10 packages.0.deb: debs/absent.deb is not a file of the release dir',
      ],
    );
  });

  it('YAML syntax errors carry their line', () => {
    assert.match(problems('files:\n  - path: /etc/a\n    source: [unclosed\n')[0] ?? '', /^\d+:\d+ : YAML syntax: /);
  });
});

describe('system parts in the manifest', () => {
  const entries: ManifestEntry[] = [
    { path: 'config', type: 'dir', mode: 0o755 },
    { path: 'config/site.conf', type: 'file', mode: 0o644, size: 3, sha256: 'a'.repeat(64) },
  ];
  const parts: SystemParts = { files: [{ path: '/etc/site.conf', source: 'config/site.conf', mode: 0o644, template: true }], packages: [{ kind: 'apt', name: 'nginx', version: '1.22.1-9' }] };

  it('the release id covers them: the same tree with other parts is another release, a tree without any keeps its id', () => {
    const plain = releaseIdOf({ app: 'app', version: '1', entries });
    const withParts = releaseIdOf({ app: 'app', version: '1', entries, system: parts });
    const otherVersion = releaseIdOf({ app: 'app', version: '1', entries, system: { ...parts, packages: [{ kind: 'apt', name: 'nginx', version: '1.22.1-10' }] } });
    assert.notEqual(plain, withParts);
    assert.notEqual(withParts, otherVersion);
    assert.equal(plain, releaseIdOf({ app: 'app', version: '1', entries: [...entries].reverse() }));
  });

  it('are checked against the tree and deploy_to at every boundary', () => {
    const bad: SystemParts = {
      files: [
        { path: '/srv/app/shared/x.conf', source: 'config/site.conf', mode: 0o644, template: false },
        { path: '/etc/x.conf', source: 'config/none.conf', mode: 0o4755, template: false },
      ],
      packages: [{ kind: 'deb', deb: 'debs/x.deb', name: 'x', version: 'v1', architecture: 'all' }],
    };
    assert.deepEqual(
      systemPartsProblems(bad, entries, '/srv/app').map((problem) => `${problem.path}: ${problem.problem}`),
      [
        'system.files[0].path: /srv/app/shared/x.conf is inside deploy_to (/srv/app), where the release tree itself lives; manage files outside it',
        'system.files[1].source: config/none.conf is not a file of the release',
        'system.files[1].mode: mode must be permission bits between 0 and 0777',
        'system.packages[0].name: "x" is not a package name (lowercase letters, digits, + . -)',
        'system.packages[0].version: "v1" is not a package version',
        'system.packages[0].deb: debs/x.deb is not a file of the release',
      ],
    );
  });
});

describe('templates', () => {
  const context = { vars: { SERVER_NAME: 'www.example.com', PORT: '8080' }, secrets: { DB_PASSWORD: 's3<r>t&"' }, host: { name: 'prod-1' }, env: 'production' };

  it('render names from vars, secrets, host and env without HTML escaping', () => {
    assert.equal(
      renderTemplate('server_name {{ vars.SERVER_NAME }}:{{vars.PORT}};\npassword {{ secrets.DB_PASSWORD }}\n# {{ host.name }} in {{ env }} {{! a comment }}{{{ vars.PORT }}}\n', context),
      'server_name www.example.com:8080;\npassword s3<r>t&"\n# prod-1 in production 8080\n',
    );
  });

  it('an unknown name is an error with its line, never an empty string', () => {
    assert.deepEqual(templateProblems('a {{ vars.SERVER_NAME }}\nb {{ vars.MISSING }}\nc {{ secrets.NOPE }} {{ hostname }}\n', { vars: ['SERVER_NAME'], secrets: [] }), [
      { line: 2, message: 'unknown name "vars.MISSING" (known: env, host.name, vars.NAME, secrets.NAME for the environment\'s vars and secrets)' },
      { line: 3, message: 'unknown name "secrets.NOPE" (known: env, host.name, vars.NAME, secrets.NAME for the environment\'s vars and secrets)' },
      { line: 3, message: 'unknown name "hostname" (known: env, host.name, vars.NAME, secrets.NAME for the environment\'s vars and secrets)' },
    ]);
    assert.throws(() => renderTemplate('x {{ vars.MISSING }}', context), (error: unknown) => error instanceof TemplateError && /line 1: unknown name "vars.MISSING"/.test(error.message));
  });

  it('sections and partials are refused: nothing in a template runs or includes anything', () => {
    assert.deepEqual(
      templateProblems('{{#vars.PORT}}x{{/vars.PORT}}\n{{> other}}\n', { vars: ['PORT'], secrets: [] }).map((problem) => problem.line),
      [1, 2],
    );
    assert.match(templateProblems('{{ vars.PORT ', { vars: ['PORT'], secrets: [] })[0]?.message ?? '', /^template syntax: /);
  });
});

describe('plans of system parts', () => {
  const source = (text: string) => Buffer.from(text);
  const v1 = { parts: { files: [{ path: '/etc/site.conf', source: 'site', mode: 0o644, template: true }], packages: [{ kind: 'apt' as const, name: 'nginx', version: '1.22.1-9' }] }, sources: new Map([['site', source('a\nname {{ vars.NAME }}\npass {{ secrets.PW }}\n')]]) };
  const v2 = { parts: { files: [{ path: '/etc/other.conf', source: 'other', mode: 0o600, template: false }], packages: [{ kind: 'apt' as const, name: 'nginx', version: '1.22.1-9+deb12u1' }, { kind: 'apt' as const, name: 'curl', version: '7.88.1-10' }] }, sources: new Map([['other', source('x\n')]]) };

  it('secrets are masked in diffs; packages are installed, upgraded, downgraded and removed by dpkg order', () => {
    const plan = planSystem(null, v1, { vars: { NAME: 'www' }, host: { name: 'h' }, env: 'production' }, ['PW']);
    assert.deepEqual(plan.files, [{ path: '/etc/site.conf', change: 'create', diff: '--- (not managed before)\n+++ /etc/site.conf\n@@ -0,0 +1,3 @@\n+a\n+name www\n+pass ****\n' }]);
    assert.deepEqual(plan.packages, [{ action: 'install', name: 'nginx', to: '1.22.1-9' }]);
    const forward = planSystem(v1, v2, { vars: { NAME: 'www' }, host: { name: 'h' }, env: 'production' }, ['PW']);
    assert.deepEqual(forward.files.map((file) => `${file.path} ${file.change}`), ['/etc/other.conf create', '/etc/site.conf release']);
    assert.deepEqual(forward.packages, [
      { action: 'install', name: 'curl', to: '7.88.1-10' },
      { action: 'upgrade', name: 'nginx', from: '1.22.1-9', to: '1.22.1-9+deb12u1' },
    ]);
    assert.deepEqual(packageChanges(new Map([['nginx', '1.22.1-9+deb12u1'], ['curl', '1']]), new Map([['nginx', '1.22.1-9']])), [
      { action: 'remove', name: 'curl', from: '1' },
      { action: 'downgrade', name: 'nginx', from: '1.22.1-9+deb12u1', to: '1.22.1-9' },
    ]);
  });

  it("with the host's installed packages, changes start from what the host has, not from what its release declared", () => {
    const plan = planSystem(v1, v2, { vars: { NAME: 'www' }, host: { name: 'h' }, env: 'production' }, ['PW'], { nginx: '1.22.1-9+deb12u2', curl: '7.88.1-10', other: '1' });
    assert.deepEqual(plan.packages, [{ action: 'downgrade', name: 'nginx', from: '1.22.1-9+deb12u2', to: '1.22.1-9+deb12u1' }]);
  });

  it('dpkg version order: epochs, tildes, digits and letters', () => {
    const ascending = ['1.0~rc1-1', '1.0-1', '1.0-1+b1', '1.0a-1', '1.0.1-1', '1.2-1', '1.10-1', '1:0.1-1'];
    for (let index = 1; index < ascending.length; index++) {
      assert.ok(compareDebianVersions(ascending[index - 1] ?? '', ascending[index] ?? '') < 0, `${ascending[index - 1]} < ${ascending[index]}`);
      assert.ok(compareDebianVersions(ascending[index] ?? '', ascending[index - 1] ?? '') > 0, `${ascending[index]} > ${ascending[index - 1]}`);
    }
    assert.equal(compareDebianVersions('1.0-1', '1.0-1'), 0);
  });

  it('unified diffs keep three lines of context and split distant changes into hunks', () => {
    const before = Array.from({ length: 20 }, (_, index) => `line ${index + 1}`).join('\n') + '\n';
    const after = before.replace('line 2\n', 'line two\n').replace('line 18\n', 'line eighteen\n');
    assert.equal(
      unifiedDiff(before, after, 'a', 'b'),
      '--- a\n+++ b\n@@ -1,5 +1,5 @@\n line 1\n-line 2\n+line two\n line 3\n line 4\n line 5\n@@ -15,6 +15,6 @@\n line 15\n line 16\n line 17\n-line 18\n+line eighteen\n line 19\n line 20\n',
    );
    assert.equal(unifiedDiff('same\n', 'same\n', 'a', 'b'), '');
  });
});
