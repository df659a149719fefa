/**
 * Manifest deltas: the server answers a delta only against a base the
 * agent's environment may see; the agent rebuilds the manifest from its
 * stored base, checks the release id, and falls back to the full manifest
 * when the rebuilt one is not the release asked for.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { BlobCache } from '../../src/content/blob-cache.js';
import { readBlobFrames } from '../../src/content/blob-frames.js';
import { removeTree } from '../../src/content/remove-tree.js';
import { releaseIdOf, type Manifest, type ManifestEntry } from '../../src/core/manifest.js';
import { deployLayout } from '../../src/agent/release/deploy-layout.js';
import { ManifestStore } from '../../src/agent/release/manifest-store.js';
import { applyDelta, stageRelease, type ReleaseSource, type UntrustedDelta, type UntrustedManifest } from '../../src/agent/release/release-stager.js';
import { manifestDeltaOf } from '../../src/server/releases/manifest-delta.js';
import { startFleet, testConfig, writeApp, type Fleet } from '../helpers/fleet.js';

const logger = pino({ level: 'silent' });
const signal = new AbortController().signal;

function sha(content: string): string {
  return createHash('sha256').update(content).digest('hex');
}
function file(path: string, content: string, mode = 0o644): ManifestEntry {
  return { path, type: 'file', mode, size: Buffer.byteLength(content), sha256: sha(content) };
}

const blobs = new Map(['one\n', 'two\n', 'three\n', 'two v2\n', 'four\n'].map((content) => [sha(content), content]));
const v1: Manifest = {
  app: 'shop',
  version: '1.0.0',
  entries: [{ path: 'a', type: 'dir', mode: 0o755 }, file('a/one', 'one\n'), file('a/two', 'two\n'), file('three', 'three\n', 0o600), { path: 'link', type: 'symlink', target: 'three' }],
};
const v2: Manifest = {
  app: 'shop',
  version: '2.0.0',
  // a/two changed, three removed, four added, link retargeted.
  entries: [{ path: 'a', type: 'dir', mode: 0o755 }, file('a/one', 'one\n'), file('a/two', 'two v2\n'), file('four', 'four\n', 0o755), { path: 'link', type: 'symlink', target: 'four' }],
};
const id1 = releaseIdOf(v1);
const id2 = releaseIdOf(v2);

/** A source that answers deltas from `delta` (which a test may tamper with) when asked with a base. */
class DeltaSource implements ReleaseSource {
  readonly requests: { releaseId: string; base?: string }[] = [];
  constructor(private readonly delta: (releaseId: string, base: string) => UntrustedDelta | undefined) {}
  async fetchManifest(releaseId: string, _signal: AbortSignal, base?: string): Promise<UntrustedManifest | UntrustedDelta> {
    this.requests.push(base === undefined ? { releaseId } : { releaseId, base });
    if (base !== undefined) {
      const delta = this.delta(releaseId, base);
      if (delta) return delta;
    }
    const manifest = [v1, v2].find((candidate) => releaseIdOf(candidate) === releaseId);
    if (!manifest) throw new Error(`no release ${releaseId}`);
    return manifest;
  }
  async fetchBlob(hash: string): Promise<AsyncIterable<Uint8Array>> {
    const content = blobs.get(hash);
    if (content === undefined) throw new Error(`no blob ${hash}`);
    return (async function* () {
      yield Buffer.from(content);
    })();
  }
}

describe('manifest delta (pure)', () => {
  it('lists changed and added entries and removed paths; base + delta rebuilds the release', () => {
    const delta = manifestDeltaOf(id1, v1, v2);
    assert.equal(delta.base, id1);
    assert.deepEqual(
      delta.entries.map((entry) => entry.path),
      ['a/two', 'four', 'link'],
    );
    assert.deepEqual(delta.removed, ['three']);
    assert.equal(releaseIdOf(applyDelta(v1, delta) as Manifest), id2);
  });
});

describe('manifest delta (agent staging)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lockstep-manifest-delta-'));
  });
  after(async () => {
    await removeTree(dir);
  });

  async function host(name: string) {
    const layout = deployLayout(join(dir, name), '/srv/shop');
    const cache = new BlobCache(join(dir, name, 'state/blobs'));
    await cache.open();
    const manifests = new ManifestStore(join(dir, name, 'state/manifests'));
    return { layout, cache, manifests };
  }

  it('stores the manifest of a staged release, asks for a delta against the base, rebuilds and verifies it', async () => {
    const { layout, cache, manifests } = await host('good');
    const source = new DeltaSource((releaseId, base) => (releaseId === id2 && base === id1 ? manifestDeltaOf(id1, v1, v2) : undefined));
    const first = await stageRelease({ layout, releaseId: id1, source, cache, logger, signal, manifests, baseReleaseId: null });
    assert.equal(first.kind === 'staged' && first.manifest, 'full');
    assert.equal(releaseIdOf(JSON.parse(await readFile(join(dir, 'good/state/manifests', `${id1}.json`), 'utf8')) as Manifest), id1);

    const second = await stageRelease({ layout, releaseId: id2, source, cache, logger, signal, manifests, baseReleaseId: id1 });
    assert.equal(second.kind === 'staged' && second.manifest, 'delta');
    assert.deepEqual(source.requests.at(-1), { releaseId: id2, base: id1 });
    const tree = join(layout.releasesDir, id2);
    assert.equal(await readFile(join(tree, 'a/two'), 'utf8'), 'two v2\n');
    assert.equal(await readFile(join(tree, 'link'), 'utf8'), 'four\n');
    assert.deepEqual((await readdir(tree)).sort(), ['a', 'four', 'link']);
    // Both manifests are kept; retain() drops those of releases no longer on disk.
    assert.deepEqual((await readdir(join(dir, 'good/state/manifests'))).sort(), [`${id1}.json`, `${id2}.json`].sort());
    await manifests.retain([id2]);
    assert.deepEqual(await readdir(join(dir, 'good/state/manifests')), [`${id2}.json`]);
  });

  it('falls back to the full manifest when a tampered delta does not rebuild the release', async () => {
    const { layout, cache, manifests } = await host('tampered');
    const tampered = (): UntrustedDelta => {
      const delta = manifestDeltaOf(id1, v1, v2);
      // Swap a changed file's content for an old blob: the rebuilt id differs.
      return { ...delta, entries: delta.entries.map((entry) => (entry.path === 'a/two' ? file('a/two', 'two\n') : entry)) };
    };
    const source = new DeltaSource((releaseId, base) => (releaseId === id2 && base === id1 ? tampered() : undefined));
    await stageRelease({ layout, releaseId: id1, source, cache, logger, signal, manifests, baseReleaseId: null });
    const second = await stageRelease({ layout, releaseId: id2, source, cache, logger, signal, manifests, baseReleaseId: id1 });
    assert.equal(second.kind === 'staged' && second.manifest, 'full');
    assert.deepEqual(source.requests.slice(-2), [{ releaseId: id2, base: id1 }, { releaseId: id2 }]);
    assert.equal(await readFile(join(layout.releasesDir, id2, 'a/two'), 'utf8'), 'two v2\n');
  });

  it('falls back when the stored base manifest is corrupt, and refuses a delta where a full manifest was asked for', async () => {
    const { layout, cache, manifests } = await host('corrupt');
    const honest = new DeltaSource((releaseId, base) => (releaseId === id2 && base === id1 ? manifestDeltaOf(id1, v1, v2) : undefined));
    await stageRelease({ layout, releaseId: id1, source: honest, cache, logger, signal, manifests, baseReleaseId: null });
    const stored = join(dir, 'corrupt/state/manifests', `${id1}.json`);
    await writeFile(stored, JSON.stringify({ ...v1, entries: v1.entries.filter((entry) => entry.path !== 'a/one') }));
    const second = await stageRelease({ layout, releaseId: id2, source: honest, cache, logger, signal, manifests, baseReleaseId: id1 });
    assert.equal(second.kind === 'staged' && second.manifest, 'full');

    const { layout: otherLayout, cache: otherCache } = await host('always-delta');
    const alwaysDelta: ReleaseSource = { fetchManifest: async () => manifestDeltaOf(id1, v1, v2), fetchBlob: honest.fetchBlob.bind(honest) };
    await assert.rejects(stageRelease({ layout: otherLayout, releaseId: id2, source: alwaysDelta, cache: otherCache, logger, signal }), /delta .* when asked for its full manifest/);
  });
});

describe('manifest delta (server)', () => {
  let fleet: Fleet;
  const ids: Record<string, string> = {};
  let credential: string;

  before(async () => {
    fleet = await startFleet();
    await fleet.applyConfig(testConfig());
    const agent = await fleet.addAgent('web-1', 'development');
    credential = (JSON.parse(await readFile(join(agent.stateDir, 'credential.json'), 'utf8')) as { credential: string }).credential;
    for (const version of ['1.0.0', '2.0.0', '3.0.0']) {
      const app = await writeApp(join(fleet.dir, `app-${version}`), version, 20);
      ids[version] = (JSON.parse(await fleet.ok(['release', 'create', app, '--version', version, '--json'])) as { id: string }).id;
    }
    // 1.0.0 and 2.0.0 reach development; 3.0.0 is never deployed anywhere.
    await fleet.ok(['deploy', ids['1.0.0'] ?? '', '--to', 'development']);
    await fleet.ok(['deploy', ids['2.0.0'] ?? '', '--to', 'development']);
  });
  after(async () => {
    await fleet?.stop();
  });

  async function ask(id: string, base?: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown>; encoding: string | null }> {
    const url = new URL(`${fleet.url}/api/v1/agent/releases/${id}`);
    url.searchParams.set('host', 'web-1');
    if (base !== undefined) url.searchParams.set('base', base);
    const response = await fleet.fetch(url, { headers: { authorization: `Bearer ${credential}`, ...headers } });
    return { status: response.status, body: (await response.json()) as Record<string, unknown>, encoding: response.headers.get('content-encoding') };
  }

  it('answers a delta against a base deployed to the environment, which rebuilds the release', async () => {
    const full = await ask(ids['1.0.0'] ?? '');
    const answer = await ask(ids['2.0.0'] ?? '', ids['1.0.0']);
    assert.equal(answer.status, 200);
    const delta = answer.body.delta as UntrustedDelta;
    assert.ok(delta, 'expected a delta');
    assert.equal(delta.base, ids['1.0.0']);
    // VERSION and the 20 pages changed; bin/ and bin/start did not.
    assert.ok(!delta.entries.some((entry) => entry.path === 'bin/start'));
    const rebuilt = applyDelta(full.body.manifest as UntrustedManifest, delta);
    assert.equal(releaseIdOf(rebuilt as Manifest), ids['2.0.0']);
  });

  it('answers the full manifest without a base, for a base never deployed there, and for an unknown base', async () => {
    for (const base of [undefined, ids['3.0.0'], 'f'.repeat(64), ids['2.0.0']]) {
      const answer = await ask(ids['2.0.0'] ?? '', base);
      assert.equal(answer.status, 200);
      assert.ok(answer.body.manifest && !answer.body.delta, `base ${base}`);
    }
    // The release itself must still be allowed, whatever the base.
    assert.equal((await ask(ids['3.0.0'] ?? '', ids['1.0.0'])).status, 403);
  });

  it('bulk fetch: streams the blobs of a release deployed to the environment, checked once for the request; refuses another release and a foreign blob', async () => {
    const bulk = (releaseId: string, hashes: readonly string[]) =>
      fleet.fetch(`${fleet.url}/api/v1/agent/blobs`, { method: 'POST', headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' }, body: JSON.stringify({ host: 'web-1', releaseId, hashes }) });
    const manifest = (await ask(ids['2.0.0'] ?? '')).body.manifest as Manifest;
    const sizes = new Map(manifest.entries.flatMap((entry) => (entry.type === 'file' ? [[entry.sha256, entry.size] as const] : [])));
    const answer = await bulk(ids['2.0.0'] ?? '', [...sizes.keys()]);
    assert.equal(answer.status, 200);
    let blobs = 0;
    for await (const frame of readBlobFrames(answer.body as AsyncIterable<Uint8Array>, sizes)) {
      assert.equal(frame.kind, 'blob');
      if (frame.kind !== 'blob') continue;
      const hasher = createHash('sha256');
      for await (const chunk of frame.body) hasher.update(chunk);
      assert.equal(hasher.digest('hex'), frame.hash);
      blobs++;
    }
    assert.equal(blobs, sizes.size, 'every blob asked for arrived, then the end line');
    const never = await bulk(ids['3.0.0'] ?? '', [...sizes.keys()].slice(0, 1));
    assert.equal(never.status, 403);
    assert.match(((await never.json()) as { error: { message: string } }).error.message, /was never deployed to development/);
    const v3 = (await fleet.http('GET', `/api/v1/releases/${ids['3.0.0'] ?? ''}`)).json as { manifest: Manifest };
    const foreign = v3.manifest.entries.find((entry) => entry.type === 'file' && !sizes.has(entry.sha256));
    assert.ok(foreign?.type === 'file');
    const mixed = await bulk(ids['2.0.0'] ?? '', [[...sizes.keys()][0] ?? '', foreign.sha256]);
    assert.equal(mixed.status, 403);
    assert.match(((await mixed.json()) as { error: { message: string } }).error.message, new RegExp(`blob ${foreign.sha256} is not part of release`));
  });

  it('gzips a large manifest for a client that accepts it', async () => {
    const app = join(fleet.dir, 'app-big');
    await writeApp(app, 'big', 1500);
    const big = (JSON.parse(await fleet.ok(['release', 'create', app, '--version', '4.0.0', '--json'])) as { id: string }).id;
    await fleet.ok(['deploy', big, '--to', 'development']);
    const url = new URL(`${fleet.url}/api/v1/agent/releases/${big}`);
    url.searchParams.set('host', 'web-1');
    // fleet.fetch gunzips a gzip body (and fails on one that is not), keeping the header.
    const response = await fleet.fetch(url, { headers: { authorization: `Bearer ${credential}`, 'accept-encoding': 'gzip' } });
    assert.equal(response.headers.get('content-encoding'), 'gzip');
    const manifest = ((await response.json()) as { manifest: Manifest }).manifest;
    assert.equal(releaseIdOf(manifest), big);
  });
});
