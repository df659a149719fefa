/**
 * Bad input is rejected at the boundary with nothing stored: release trees
 * with forbidden entries (through the CLI), hand-made manifests and blobs
 * whose content does not match their hash (through the raw API), and
 * invalid lockstep.yaml files.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type Fleet } from '../helpers/fleet.js';
import { assertExit } from './host-tree.js';

interface ErrorJson {
  error: { kind: string; message: string; details?: { problems?: { path: string; problem: string }[] } };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

describe('rejection: bad releases and bad configs store nothing', () => {
  let fleet: Fleet;
  let releasesBefore = '';
  /** A blob the server has, for manifests that are valid apart from one entry. */
  const okContent = 'fine\n';

  async function putBlob(hash: string, body: string): Promise<{ status: number; json: unknown }> {
    const response = await fleet.fetch(`${fleet.url}/api/v1/blobs/${hash}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${fleet.token}`, 'content-type': 'application/octet-stream' },
      body,
    });
    const text = await response.text();
    return { status: response.status, json: text ? (JSON.parse(text) as unknown) : undefined };
  }

  async function missing(hashes: string[]): Promise<string[]> {
    const result = await fleet.http('POST', '/api/v1/blobs/missing', { hashes });
    assert.equal(result.status, 200);
    return (result.json as { missing: string[] }).missing;
  }

  async function configVersion(): Promise<number> {
    const result = await fleet.http('GET', '/api/v1/config');
    assert.equal(result.status, 200);
    return (result.json as { version: number }).version;
  }

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(testConfig());
    assert.equal((await putBlob(sha256(okContent), okContent)).status, 200);
    // One good release, so "unchanged" means more than "still empty".
    const good = await writeApp(join(fleet.dir, 'good'), 'good');
    await fleet.ok(['release', 'create', good, '--version', '1.0.0']);
    releasesBefore = await fleet.ok(['release', 'list', '--json']);
  });

  after(async () => {
    await fleet?.stop();
  });

  describe('through the CLI', () => {
    async function badTree(name: string, add: (dir: string) => Promise<void>): Promise<{ dir: string; marker: string }> {
      const dir = await writeApp(join(fleet.dir, name), `tree ${name}`);
      await add(dir);
      return { dir, marker: `<h1>tree ${name} page 0</h1>\n` };
    }

    const cases: { name: string; path: string; message: RegExp; add: (dir: string) => Promise<void> }[] = [
      {
        name: 'a FIFO',
        path: 'public/pipe',
        message: /public\/pipe: FIFOs are not allowed/,
        add: async (dir) => {
          execFileSync('mkfifo', [join(dir, 'public/pipe')]);
        },
      },
      {
        name: 'a symlink climbing out of the tree',
        path: 'public/passwd',
        message: /public\/passwd: symlink target "\.\.\/\.\.\/etc\/passwd" leaves the release tree/,
        add: (dir) => symlink('../../etc/passwd', join(dir, 'public/passwd')),
      },
      {
        name: 'an absolute symlink',
        path: 'etc-passwd',
        message: /etc-passwd: symlink target "\/etc\/passwd" leaves the release tree/,
        add: (dir) => symlink('/etc/passwd', join(dir, 'etc-passwd')),
      },
    ];

    for (const testCase of cases) {
      it(`refuses a tree with ${testCase.name} (exit 2, naming ${testCase.path}) and uploads nothing`, async () => {
        const tree = await badTree(testCase.name.replace(/\W+/g, '-'), testCase.add);
        const result = await fleet.cli(['release', 'create', tree.dir, '--version', '9.9.9']);
        assertExit(result, 2, `release create with ${testCase.name}`);
        assert.match(result.stderr, testCase.message);
        assert.equal(result.stdout, '', 'no release id printed');
        assert.doesNotMatch(result.stderr, /^\s+at /m, 'no stack trace');
        assert.deepEqual(await missing([sha256(tree.marker)]), [sha256(tree.marker)], "the tree's content was not uploaded");
        assert.equal(await fleet.ok(['release', 'list', '--json']), releasesBefore);
      });
    }
  });

  describe('through the HTTP API', () => {
    const ok = { path: 'ok.txt', type: 'file', mode: 0o644, size: Buffer.byteLength(okContent), sha256: sha256(okContent) };
    const someHash = sha256('anything');
    const cases: { name: string; path: string; entries: unknown[] }[] = [
      { name: 'an absolute path', path: '/etc/passwd', entries: [ok, { path: '/etc/passwd', type: 'file', mode: 0o644, size: 8, sha256: someHash }] },
      { name: 'a ".." segment', path: 'a/../../escape', entries: [ok, { path: 'a', type: 'dir', mode: 0o755 }, { path: 'a/../../escape', type: 'file', mode: 0o644, size: 8, sha256: someHash }] },
      { name: 'an empty name', path: '', entries: [ok, { path: '', type: 'file', mode: 0o644, size: 8, sha256: someHash }] },
      { name: 'a NUL in a name', path: 'bad\0name', entries: [ok, { path: 'bad\0name', type: 'file', mode: 0o644, size: 8, sha256: someHash }] },
      { name: 'a duplicate path', path: 'ok.txt', entries: [ok, { ...ok, mode: 0o755 }] },
      { name: 'a symlink climbing out of the tree', path: 'up', entries: [ok, { path: 'up', type: 'symlink', target: '../etc/passwd' }] },
      { name: 'an absolute symlink', path: 'abs', entries: [ok, { path: 'abs', type: 'symlink', target: '/etc/shadow' }] },
      { name: 'a nested symlink climbing out', path: 'd/e/up', entries: [ok, { path: 'd', type: 'dir', mode: 0o755 }, { path: 'd/e', type: 'dir', mode: 0o755 }, { path: 'd/e/up', type: 'symlink', target: '../../../x' }] },
      { name: 'a character device', path: 'console', entries: [ok, { path: 'console', type: 'char-device' }] },
      { name: 'a block device', path: 'sda', entries: [ok, { path: 'sda', type: 'block-device' }] },
      { name: 'a FIFO', path: 'pipe', entries: [ok, { path: 'pipe', type: 'fifo' }] },
      { name: 'a file whose content was never uploaded', path: 'ghost.txt', entries: [ok, { path: 'ghost.txt', type: 'file', mode: 0o644, size: 8, sha256: someHash }] },
    ];

    for (const testCase of cases) {
      it(`POST /releases with ${testCase.name} gives 400 naming the path`, async () => {
        const result = await fleet.http('POST', '/api/v1/releases', { version: '6.6.6', entries: testCase.entries });
        assert.equal(result.status, 400, JSON.stringify(result.json));
        const body = result.json as ErrorJson;
        assert.equal(body.error.kind, 'bad-input');
        assert.ok(body.error.message.startsWith(`release rejected: ${testCase.path}: `), `message names the path: ${JSON.stringify(body.error.message)}`);
        if (body.error.details?.problems) {
          assert.ok(
            body.error.details.problems.some((problem) => problem.path === testCase.path),
            `problems name ${JSON.stringify(testCase.path)}: ${JSON.stringify(body.error.details.problems)}`,
          );
        }
        assert.equal(await fleet.ok(['release', 'list', '--json']), releasesBefore);
      });
    }

    it('reports every problem of a manifest, not only the first', async () => {
      const result = await fleet.http('POST', '/api/v1/releases', {
        version: '6.6.7',
        entries: [ok, { path: '/abs', type: 'file', mode: 0o644, size: 1, sha256: someHash }, { path: 'dev', type: 'char-device' }],
      });
      assert.equal(result.status, 400);
      const problems = (result.json as ErrorJson).error.details?.problems ?? [];
      assert.deepEqual(problems.map((problem) => problem.path).sort(), ['/abs', 'dev']);
      assert.match((result.json as ErrorJson).error.message, /\(and 1 more problem\)/);
    });

    it('a blob whose content does not match its hash gives 400 and is not stored', async () => {
      const claimed = sha256('the real content\n');
      const result = await putBlob(claimed, 'other bytes\n');
      assert.equal(result.status, 400, JSON.stringify(result.json));
      assert.match((result.json as ErrorJson).error.message, new RegExp(`blob content does not match its hash: expected ${claimed}`));
      assert.deepEqual(await missing([claimed, sha256('other bytes\n')]), [claimed, sha256('other bytes\n')]);
      // The same hash with the right bytes is then accepted.
      const right = await putBlob(claimed, 'the real content\n');
      assert.equal(right.status, 200);
      assert.deepEqual(await missing([claimed]), []);
    });
  });

  describe('a bad lockstep.yaml', () => {
    const cases: { name: string; yaml: string; marker: string; column: number; message: RegExp }[] = [
      {
        name: 'an unknown key (promote_form)',
        yaml: testConfig().replace('  test:\n    promote_from: development\n', '  test:\n    promote_form: development\n'),
        marker: 'promote_form:',
        column: 5,
        message: /environments\.test\.promote_form: unknown key "promote_form" \(did you mean "promote_from"\?\)/,
      },
      {
        name: 'a promote_from cycle',
        yaml: testConfig().replace('  development:\n', '  development:\n    promote_from: production\n'),
        marker: 'promote_from: production',
        column: 19,
        message: /environments\.development\.promote_from: promote_from forms a cycle: development -> production -> test -> development/,
      },
    ];
    for (const testCase of cases) {
      it(`apply refuses ${testCase.name} with file:line:col, no stack trace, and keeps the stored config`, async () => {
        const versionBefore = await configVersion();
        const auditBefore = (JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as unknown[]).length;
        const dir = join(fleet.dir, 'configs', testCase.name.replace(/\W+/g, '-'));
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, 'lockstep.yaml'), testCase.yaml);
        const keyLine = testCase.yaml.split('\n').findIndex((text) => text.includes(testCase.marker)) + 1;
        assert.ok(keyLine > 0, `the test's YAML contains ${testCase.marker}`);
        const result = await fleet.cli(['apply', '-f', 'lockstep.yaml'], { cwd: dir });
        assertExit(result, 2, `apply with ${testCase.name}`);
        assert.match(result.stderr, new RegExp(`lockstep\\.yaml:${keyLine}:${testCase.column}: `));
        assert.match(result.stderr, testCase.message);
        assert.doesNotMatch(result.stderr, /^ {4}at /m, 'no stack trace');
        assert.doesNotMatch(result.stderr, /internal error/);
        assert.equal(await configVersion(), versionBefore, 'the stored config is unchanged');
        assert.equal((JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as unknown[]).length, auditBefore, 'nothing audited');

        // The server applies the same rules to a client that skips the CLI's check.
        const direct = await fleet.http('POST', '/api/v1/config', { yaml: testCase.yaml, file: 'lockstep.yaml' });
        assert.equal(direct.status, 400, JSON.stringify(direct.json));
        assert.match((direct.json as ErrorJson).error.message, new RegExp(`lockstep\\.yaml:${keyLine}:${testCase.column}: `));
        assert.equal(await configVersion(), versionBefore, 'the stored config is unchanged');
      });
    }
  });
});
