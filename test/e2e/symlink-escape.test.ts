/**
 * The symlink escape of issue 10, as an attacker would try it: a link ten
 * levels deep that leads back to the release root, and a link that goes
 * through it and then climbs with "..". Text normalisation keeps the second
 * link inside the tree; the kernel does not. Refused by `release create`
 * before anything is uploaded, and by the API for a hand-made manifest,
 * each naming the offending path; nothing reaches a host.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access, mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFleet, testConfig, writeApp, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { assertExit, DEPLOY_TO } from './host-tree.js';

interface ErrorJson {
  error: { kind: string; message: string; details?: { problems?: { path: string; problem: string }[] } };
}

const deep = Array.from({ length: 10 }, (_, index) => `d${index + 1}`).join('/');
/** The link at the bottom of the ten directories: back up to the release root. */
const up = { path: `${deep}/up`, target: Array(10).fill('..').join('/') };
/** Through `up`, then two levels above the release root: DEPLOY_TO/etc/passwd, or /etc/passwd with more "..". */
const passwd = { path: 'passwd', target: `${deep}/up/../../etc/passwd` };

describe('symlink escape: a chain of links may not lead outside the release', () => {
  let fleet: Fleet;
  let host: AgentHandle;

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(testConfig());
    host = await fleet.addAgent('dev-1', 'development');
  });

  after(async () => {
    await fleet?.stop();
  });

  async function nothingReachedTheHost(): Promise<void> {
    assert.deepEqual(JSON.parse(await fleet.ok(['release', 'list', '--json'])), [], 'no release was stored');
    const releases = host.path(`${DEPLOY_TO}/releases`);
    assert.equal(
      await access(releases).then(
        () => true,
        () => false,
      ),
      false,
      'the host staged nothing',
    );
  }

  it('release create refuses the tree (exit 2, naming the path) and uploads nothing', async () => {
    const build = await writeApp(join(fleet.dir, 'build'), 'escape');
    await mkdir(join(build, deep), { recursive: true });
    await symlink(up.target, join(build, up.path));
    await symlink(passwd.target, join(build, passwd.path));

    const result = await fleet.cli(['release', 'create', build, '--version', '6.6.6']);
    assertExit(result, 2, 'release create of a tree with the escaping chain');
    assert.match(result.stderr, new RegExp(`: passwd: symlink target "${passwd.target}" leaves the release tree`));
    assert.equal(result.stdout, '', 'no release id printed');
    assert.doesNotMatch(result.stderr, /^\s+at /m, 'no stack trace');
    const page = createHash('sha256').update('<h1>escape page 0</h1>\n').digest('hex');
    const missing = await fleet.http('POST', '/api/v1/blobs/missing', { hashes: [page] });
    assert.deepEqual((missing.json as { missing: string[] }).missing, [page], "the tree's content was not uploaded");
    await nothingReachedTheHost();
  });

  const dirs = (path: string) => path.split('/').map((_, index, names) => ({ path: names.slice(0, index + 1).join('/'), type: 'dir', mode: 0o755 }));
  const shapes: { name: string; path: string; entries: unknown[] }[] = [
    {
      name: "the issue's chain",
      path: 'passwd',
      entries: [...dirs(deep), { ...up, type: 'symlink' }, { ...passwd, type: 'symlink' }],
    },
    {
      name: "a link to a directory link, then '..'",
      path: 'out',
      entries: [...dirs('a/b'), { path: 'a/b/top', type: 'symlink', target: '../..' }, { path: 'to-top', type: 'symlink', target: 'a/b/top' }, { path: 'out', type: 'symlink', target: 'to-top/../etc' }],
    },
    {
      name: 'a loop',
      path: 'ping',
      entries: [
        { path: 'ping', type: 'symlink', target: 'pong' },
        { path: 'pong', type: 'symlink', target: 'ping' },
      ],
    },
  ];
  for (const shape of shapes) {
    it(`POST /releases with ${shape.name} gives 400 naming ${shape.path}`, async () => {
      const result = await fleet.http('POST', '/api/v1/releases', { version: '6.6.6', entries: shape.entries });
      assert.equal(result.status, 400, JSON.stringify(result.json));
      const body = result.json as ErrorJson;
      assert.equal(body.error.kind, 'bad-input');
      assert.ok(body.error.message.startsWith(`release rejected: ${shape.path}: symlink target `), body.error.message);
      assert.ok(body.error.details?.problems?.some((problem) => problem.path === shape.path), JSON.stringify(body.error.details));
      await nothingReachedTheHost();
    });
  }
});
