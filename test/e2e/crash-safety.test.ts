/**
 * Crash safety of staging and activation, end to end: a real server, a real
 * agent process, the real CLI. Each trial starts a deployment, SIGKILLs the
 * agent after a random delay spread over the whole deployment (fetching,
 * building the tree, activation, reporting, pruning), then checks the disk:
 * `current` is absent only when nothing was ever activated, and otherwise
 * resolves to the old or the new release, whose tree matches its manifest
 * entry by entry. The agent is then restarted and must finish the deployment;
 * afterwards `current` is the new release, complete, and no `.staging-*` or
 * `current.tmp-*` leftovers remain.
 *
 * Releases: a few hundred files of varied sizes and modes (many shared by all
 * versions, some unique to each), several dirs with different modes, and
 * symlinks. Trials mix three kinds of work: a fresh release (blobs fetched,
 * tree built), a release pruned long ago (tree rebuilt from the blob cache)
 * and a release still on disk (the fast "already staged" path, one rename).
 * keep_releases is small so pruning runs (and is killed) too.
 *
 * CRASH_SEED=N reproduces a run's delays and plan; CRASH_TRIALS=N changes the count.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, link, lstat, mkdir, readFile, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startFleet, testConfig, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { prng } from '../helpers/prng.js';

const TRIALS = Number(process.env.CRASH_TRIALS ?? 50);
const SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const KEEP = 3;
const ENV = 'development';
const DEPLOY_TO = '/srv/app';
const SHARED_FILES = 200;
const UNIQUE_FILES = 40;
/** Share of trials that deploy a release never deployed before (the rest re-deploy one from the cache or the disk). */
const FRESH_SHARE = 0.25;
/** Fresh releases made up front: trial 0, three calibration deployments, and FRESH_SHARE of the other trials. */
const FRESH_RELEASES = Math.ceil((TRIALS - 1) * FRESH_SHARE) + 4;

interface WireEntry {
  readonly path: string;
  readonly type: string;
  readonly mode?: number;
  readonly size?: number;
  readonly sha256?: string;
  readonly target?: string;
}
interface Release {
  readonly id: string;
  readonly version: string;
  readonly entries: readonly WireEntry[];
}
interface DeploymentView {
  readonly id: number;
  readonly state: 'running' | 'succeeded' | 'failed';
  readonly revision: number;
  readonly error: string | null;
  readonly hosts: readonly { readonly host: string; readonly state: string; readonly error: string | null }[];
}
type Kind = 'fresh' | 'cache' | 'disk';
/** Where a kill landed, judged from the disk and the server afterwards. */
type Phase = 'not started' | 'fetching manifest/blobs' | 'building tree' | 'staged, not active' | 'activated, not reported' | 'reported (pruning/idle)';
const BEFORE_ACTIVATION: readonly Phase[] = ['not started', 'fetching manifest/blobs', 'building tree', 'staged, not active'];

const random = prng(SEED);

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

/** Mostly small files, some medium, a few large (up to 512 KiB). */
function fileSize(rand: () => number): number {
  const roll = rand();
  if (roll < 0.6) return 50 + Math.floor(rand() * 2000);
  if (roll < 0.9) return 2048 + Math.floor(rand() * 30_000);
  if (roll < 0.98) return 32_768 + Math.floor(rand() * 200_000);
  return 262_144 + Math.floor(rand() * 262_144);
}

function content(marker: string, size: number): Buffer {
  const unit = Buffer.from(`${marker}|`);
  const buffer = Buffer.alloc(size);
  for (let offset = 0; offset < size; offset += unit.length) unit.copy(buffer, offset);
  return buffer;
}

async function writeWithMode(path: string, data: Buffer | string, mode: number): Promise<void> {
  await writeFile(path, data);
  await chmod(path, mode);
}

/** The files every version shares (hard-linked into each version's source dir). */
async function writeSharedFiles(dir: string): Promise<string[]> {
  const rand = prng(1234);
  const paths: string[] = [];
  for (const sub of ['lib/vendor', 'public/assets', 'docs']) await mkdir(join(dir, sub), { recursive: true });
  for (let index = 0; index < SHARED_FILES; index++) {
    const sub = index % 4 === 0 ? 'public/assets' : index % 9 === 0 ? 'docs' : 'lib/vendor';
    const path = `${sub}/shared-${String(index).padStart(3, '0')}.${sub === 'docs' ? 'md' : sub === 'lib/vendor' ? 'js' : 'bin'}`;
    const mode = sub === 'docs' ? 0o444 : index % 13 === 0 ? 0o755 : 0o644;
    await writeWithMode(join(dir, path), content(`shared ${index}`, fileSize(rand)), mode);
    paths.push(path);
  }
  return paths;
}

/** Writes the source tree of version `n`: shared files, unique files, dirs of several modes, symlinks. */
async function writeVersion(dir: string, sharedDir: string, sharedPaths: readonly string[], n: number): Promise<void> {
  const rand = prng(n * 7919 + 17);
  const marker = `v${n}`;
  for (const sub of ['bin', 'lib/vendor', 'public/assets', 'docs', 'config']) await mkdir(join(dir, sub), { recursive: true });
  for (const path of sharedPaths) await link(join(sharedDir, path), join(dir, path));
  for (let index = 0; index < UNIQUE_FILES; index++) {
    const path = index % 2 === 0 ? `public/page-${index}.html` : `lib/app-${index}.js`;
    await writeWithMode(join(dir, path), content(`${marker} unique ${index}`, fileSize(rand)), index % 7 === 0 ? 0o600 : 0o644);
  }
  await writeWithMode(join(dir, 'VERSION'), `${marker}\n`, 0o644);
  await writeWithMode(join(dir, 'config/settings.json'), `{"version":"${marker}"}\n`, 0o640);
  // Same content in every version, but its mode alternates: a blob-cache variant per mode.
  await writeWithMode(join(dir, 'bin/tool'), '#!/bin/sh\necho tool\n', n % 2 === 0 ? 0o755 : 0o700);
  if (n % 2 === 0) {
    await mkdir(join(dir, 'secrets'));
    await writeWithMode(join(dir, 'secrets/key'), `secret ${marker}\n`, 0o600);
    await chmod(join(dir, 'secrets'), 0o700);
  }
  await symlink('../lib/app-1.js', join(dir, 'bin/run'));
  await symlink(`page-${(n % 5) * 2}.html`, join(dir, 'public/home.html'));
  await symlink('assets', join(dir, 'public/static'));
  await chmod(join(dir, 'config'), 0o750);
  await chmod(join(dir, 'docs'), 0o555);
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Content hashes by inode and change time. Release files are hard links into
 * the agent's blob cache, so the same inodes are checked again and again; an
 * inode's content cannot change without its ctime (nanoseconds) changing.
 */
const hashes = new Map<string, string>();

async function contentHash(path: string, info: BigIntStats): Promise<string> {
  const key = `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`;
  const known = hashes.get(key);
  if (known !== undefined) return known;
  const hash = sha256(await readFile(path));
  hashes.set(key, hash);
  return hash;
}

/** Every difference between a release tree on disk and its manifest (empty: identical). */
async function treeProblems(dir: string, entries: readonly WireEntry[]): Promise<string[]> {
  const problems: string[] = [];
  const rootInfo = await lstat(dir).catch(() => undefined);
  if (!rootInfo?.isDirectory()) return [`${dir} is not a directory`];
  if ((rootInfo.mode & 0o777) !== 0o755) problems.push(`release root has mode ${(rootInfo.mode & 0o777).toString(8)}, expected 755`);
  const expected = new Map(entries.map((entry) => [entry.path, entry]));
  const seen = new Set<string>();
  async function walk(abs: string, prefix: string): Promise<void> {
    for (const name of await readdir(abs)) {
      const path = prefix ? `${prefix}/${name}` : name;
      const full = join(abs, name);
      const info = await lstat(full, { bigint: true });
      seen.add(path);
      const entry = expected.get(path);
      if (!entry) {
        problems.push(`${path}: extra ${info.isDirectory() ? 'dir' : info.isSymbolicLink() ? 'symlink' : 'file'} not in the manifest`);
        if (info.isDirectory()) await walk(full, path);
        continue;
      }
      const mode = Number(info.mode) & 0o777;
      if (entry.type === 'dir') {
        if (!info.isDirectory()) problems.push(`${path}: expected a dir`);
        else {
          if (mode !== entry.mode) problems.push(`${path}: dir mode ${mode.toString(8)}, expected ${entry.mode?.toString(8)}`);
          await walk(full, path);
        }
      } else if (entry.type === 'symlink') {
        if (!info.isSymbolicLink()) problems.push(`${path}: expected a symlink`);
        else if ((await readlink(full)) !== entry.target) problems.push(`${path}: symlink to ${await readlink(full)}, expected ${entry.target}`);
      } else if (entry.type === 'file') {
        if (!info.isFile()) problems.push(`${path}: expected a regular file`);
        else {
          if (Number(info.size) !== entry.size) problems.push(`${path}: ${info.size} bytes, expected ${entry.size}`);
          if (mode !== entry.mode) problems.push(`${path}: mode ${mode.toString(8)}, expected ${entry.mode?.toString(8)}`);
          const hash = await contentHash(full, info);
          if (hash !== entry.sha256) problems.push(`${path}: content hashes to ${hash.slice(0, 12)}, expected ${entry.sha256?.slice(0, 12)}`);
        }
      } else {
        problems.push(`${path}: manifest entry of unexpected type ${entry.type}`);
      }
    }
  }
  await walk(dir, '');
  for (const path of expected.keys()) if (!seen.has(path)) problems.push(`${path}: missing`);
  return problems;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

async function namesIn(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

let fleet: Fleet;
let agent: AgentHandle;

before(async () => {
  fleet = await startFleet();
  await fleet.applyConfig(testConfig({ keep: KEEP, hostTimeout: '20s' }));
  agent = await fleet.addAgent('dev-1', ENV);
});

after(async () => {
  await fleet?.stop();
});

test(`crash safety: ${TRIALS} trials SIGKILL the agent while it stages and activates`, { timeout: 480_000 }, async (t) => {
  const testStarted = Date.now();
  t.diagnostic(`seed ${SEED} (replay with CRASH_SEED=${SEED})`);
  const deployTo = agent.path(DEPLOY_TO);
  const releasesDir = join(deployTo, 'releases');
  const currentLink = join(deployTo, 'current');
  const cacheDir = join(agent.stateDir, 'blobs');
  const logFile = join(agent.root, 'agent.log');

  // ---- releases ----
  const sourceRoot = join(fleet.dir, 'sources');
  const sharedPaths = await writeSharedFiles(join(sourceRoot, 'shared'));
  /** Fresh releases, in the order they became ready. */
  const fresh: Release[] = [];
  const byId = new Map<string, Release>();
  const makeRelease = async (n: number): Promise<Release> => {
    const dir = join(sourceRoot, `v${n}`);
    await writeVersion(dir, join(sourceRoot, 'shared'), sharedPaths, n);
    const created = JSON.parse(await fleet.ok(['release', 'create', dir, '--version', `1.0.${n}`, '--json'])) as { id: string };
    const shown = JSON.parse(await fleet.ok(['release', 'show', created.id, '--json'])) as { id: string; version: string; manifest: { entries: WireEntry[] } };
    assert.equal(shown.id, created.id);
    const release: Release = { id: shown.id, version: shown.version, entries: shown.manifest.entries };
    fresh.push(release);
    byId.set(release.id, release);
    return release;
  };
  // The first one uploads the shared files; trial 0 and the calibration need
  // three more. The rest are made in the background while the trials run
  // (a trial mostly waits on one process at a time, leaving a core free).
  const made = Date.now();
  const first = await makeRelease(0);
  await Promise.all([makeRelease(1), makeRelease(2)]);
  await makeRelease(3);
  t.diagnostic(
    `releases of ${first.entries.length} entries (${first.entries.filter((e) => e.type === 'file').length} files, ` +
      `${UNIQUE_FILES + 3} unique per version); the first 4 made in ${Date.now() - made} ms, ${FRESH_RELEASES - 4} more in the background`,
  );
  const producer = (async () => {
    for (let n = 4; n < FRESH_RELEASES; n++) await makeRelease(n);
  })();
  // Surfaced when awaited at the end; until then a failure only means fewer fresh releases.
  producer.catch(() => undefined);
  let nextFresh = 0;
  const freshReady = (): boolean => nextFresh < fresh.length;
  const takeFresh = (): Release => {
    const release = fresh[nextFresh++];
    if (!release) throw new Error('no fresh release is ready');
    return release;
  };
  const deployed: Release[] = [];

  // ---- helpers over the host and the server ----
  const readCurrent = async (): Promise<string | null> => {
    const info = await lstat(currentLink).catch(() => undefined);
    if (!info) return null;
    assert.ok(info.isSymbolicLink(), `${currentLink} is not a symlink`);
    const target = await readlink(currentLink);
    const match = /^releases\/([0-9a-f]{64})$/.exec(target);
    assert.ok(match?.[1], `current points at "${target}", not at releases/<id>`);
    return match[1];
  };
  const assertComplete = async (id: string, context: string): Promise<void> => {
    const release = byId.get(id);
    assert.ok(release, `${context}: current points at unknown release ${id}`);
    const problems = await treeProblems(join(releasesDir, id), release.entries);
    assert.deepEqual(problems.slice(0, 20), [], `${context}: release ${release.version} (${id.slice(0, 12)}) is torn: ${problems.length} problems`);
  };
  const assertEnvFile = async (context: string): Promise<void> => {
    const path = join(deployTo, 'shared/lockstep.env');
    const info = await lstat(path).catch(() => undefined);
    if (!info) return;
    assert.equal(await readFile(path, 'utf8'), 'STAGE=dev\n', `${context}: lockstep.env`);
    assert.equal(info.mode & 0o777, 0o640, `${context}: lockstep.env mode`);
  };
  const leftovers = async (): Promise<string[]> => [
    ...(await namesIn(releasesDir)).filter((name) => name.startsWith('.staging-')).map((name) => `releases/${name}`),
    ...(await namesIn(deployTo)).filter((name) => name.startsWith('current.tmp-')),
  ];
  const releaseDirs = async (): Promise<string[]> => (await namesIn(releasesDir)).filter((name) => /^[0-9a-f]{64}$/.test(name));
  const blobCount = async (): Promise<number> => {
    let count = 0;
    for (const sub of await namesIn(cacheDir)) if (/^[0-9a-f]{2}$/.test(sub)) count += (await namesIn(join(cacheDir, sub))).length;
    return count;
  };
  const agentStarts = async (): Promise<number> => ((await readFile(logFile, 'utf8').catch(() => '')).match(/"msg":"agent started"/g) ?? []).length;
  const getDeployment = async (id: number, since?: number): Promise<DeploymentView> => {
    const query = since === undefined ? '' : `?since=${since}&wait=5`;
    const result = await fleet.http('GET', `/api/v1/deployments/${id}${query}`);
    assert.equal(result.status, 200, `GET deployment ${id}: ${JSON.stringify(result.json)}`);
    return result.json as DeploymentView;
  };
  const waitEnded = async (id: number, timeoutMs: number): Promise<DeploymentView> => {
    const deadline = Date.now() + timeoutMs;
    let view = await getDeployment(id);
    while (view.state === 'running') {
      if (Date.now() > deadline) assert.fail(`deployment #${id} still running after ${timeoutMs} ms: ${JSON.stringify(view.hosts)}`);
      view = await getDeployment(id, view.revision);
    }
    return view;
  };
  /**
   * Starts a deployment with the CLI while the agent is paused (SIGSTOP), then
   * resumes it: the task waits in its long-poll socket, so the agent's work
   * starts at the returned instant, whatever the CLI's own start-up and exit
   * cost. Kill delays count from there; without this, the fast paths would be
   * over before `deploy` had even exited.
   */
  const startDeploy = async (release: Release): Promise<{ view: DeploymentView; resumedAt: number }> => {
    agent.process.kill('SIGSTOP');
    let view: DeploymentView;
    try {
      view = JSON.parse(await fleet.ok(['deploy', release.id, '--to', ENV, '--no-wait', '--json'])) as DeploymentView;
    } finally {
      agent.process.kill('SIGCONT');
    }
    return { view, resumedAt: performance.now() };
  };
  /** Waits until the agent has started (after a restart) and no leftovers remain (a prune may be finishing). */
  const settle = async (startsBefore: number | undefined, context: string): Promise<void> => {
    const deadline = Date.now() + 10_000;
    if (startsBefore !== undefined) {
      while ((await agentStarts()) <= startsBefore) {
        if (Date.now() > deadline) assert.fail(`${context}: the restarted agent did not start within 10 s`);
        await sleep(20);
      }
    }
    for (;;) {
      const left = await leftovers();
      if (left.length === 0) return;
      if (Date.now() > deadline) assert.fail(`${context}: leftovers remain after the restarted agent ran: ${left.join(', ')}`);
      await sleep(20);
    }
  };

  // ---- calibration: how long a deployment of each kind takes, no kill ----
  /** Deploys without killing; returns ms from the agent's resumption to the deployment succeeding. */
  const cleanDeploy = async (release: Release): Promise<number> => {
    const { view: started, resumedAt } = await startDeploy(release);
    const view = await waitEnded(started.id, 30_000);
    const elapsed = performance.now() - resumedAt;
    assert.equal(view.state, 'succeeded', `calibration deployment #${view.id}: ${view.error}`);
    assert.equal(await readCurrent(), release.id);
    await assertComplete(release.id, 'calibration');
    await settle(undefined, 'calibration');
    deployed.push(release);
    return elapsed;
  };

  const phases = new Map<Phase, { count: number; delays: number[] }>();
  const kinds = new Map<Kind, Map<Phase, number>>();
  let failures = 0;
  let restartMsTotal = 0;
  const durations: Record<Kind, number> = { fresh: 0, cache: 0, disk: 0 };

  /** One trial: deploy, kill at `delayMs`, check the disk, restart, check the outcome. */
  const trial = async (index: number, kind: Kind, target: Release, delayMs: number): Promise<Phase> => {
    const label = `trial ${index} (${kind} ${target.version}, kill at ${delayMs} ms)`;
    const trialStarted = performance.now();
    const mark = (what: string): void => {
      if (process.env.CRASH_VERBOSE) t.diagnostic(`${label}: ${what} at ${Math.round(performance.now() - trialStarted)} ms`);
    };
    const before = await readCurrent();
    assert.notEqual(before, target.id, `${label}: target is already current`);
    const onDiskBefore = await exists(join(releasesDir, target.id));
    const blobsBefore = await blobCount();
    mark('before deploy');
    const { view: started, resumedAt } = await startDeploy(target);
    mark('deploy returned');
    const wait = resumedAt + delayMs - performance.now();
    if (wait > 0) await sleep(wait);
    await agent.kill('SIGKILL');
    assert.equal(agent.process.signalCode, 'SIGKILL', `${label}: the agent exited by itself (code ${agent.process.exitCode}) before it was killed`);

    // The disk right after the kill: the old release or the new one, complete.
    const after = await readCurrent();
    if (after === null) assert.equal(before, null, `${label}: current vanished (it pointed at ${before})`);
    else {
      assert.ok(after === before || after === target.id, `${label}: current points at ${after}, neither old ${before} nor new ${target.id}`);
      await assertComplete(after, `${label}, after the kill`);
    }
    // A release dir exists only once complete (staging renames a finished tree
    // into place; pruning renames one away before deleting it), since a later
    // deployment of it would activate it as it is.
    for (const id of await releaseDirs()) if (id !== after) await assertComplete(id, `${label}, after the kill (not active)`);
    await assertEnvFile(`${label}, after the kill`);

    mark('checked after kill');
    // Where the kill landed.
    const step = (await getDeployment(started.id)).hosts[0];
    let phase: Phase;
    if (after === target.id) phase = step?.state === 'succeeded' ? 'reported (pruning/idle)' : 'activated, not reported';
    else if (!onDiskBefore && (await exists(join(releasesDir, target.id)))) phase = 'staged, not active';
    else if ((await namesIn(releasesDir)).some((name) => name.startsWith(`.staging-${target.id}`))) phase = 'building tree';
    else if (step?.state === 'staging' || (await blobCount()) > blobsBefore || (await namesIn(join(cacheDir, 'tmp'))).length > 0) phase = onDiskBefore ? 'staged, not active' : 'fetching manifest/blobs';
    else phase = 'not started';
    const slot = phases.get(phase) ?? { count: 0, delays: [] };
    slot.count++;
    slot.delays.push(delayMs);
    phases.set(phase, slot);
    const perKind = kinds.get(kind) ?? new Map<Phase, number>();
    perKind.set(phase, (perKind.get(phase) ?? 0) + 1);
    kinds.set(kind, perKind);

    // A restarted agent finishes (or reports) the deployment.
    const startsBefore = await agentStarts();
    const restarted = performance.now();
    await agent.restart();
    const view = await waitEnded(started.id, 30_000);
    restartMsTotal += performance.now() - restarted;
    mark(`ended (${phase})`);
    await settle(startsBefore, label);
    mark('settled');
    if (view.state === 'failed') {
      failures++;
      const error = view.hosts[0]?.error ?? view.error ?? '';
      assert.doesNotMatch(error, /did not finish within/, `${label}: deployment #${view.id} timed out instead of being finished by the restarted agent: ${error}`);
      assert.ok(error.length > 0, `${label}: deployment #${view.id} failed without a host error`);
      t.diagnostic(`${label}: deployment #${view.id} failed with a reported host error: ${error}`);
      const now = await readCurrent();
      assert.ok(now === before || now === target.id, `${label}: after the failure current points at ${now}`);
      if (now !== null) await assertComplete(now, `${label}, after the failure`);
    } else {
      assert.equal(view.state, 'succeeded');
      assert.equal(view.hosts[0]?.state, 'succeeded');
      assert.equal(await readCurrent(), target.id, `${label}: deployment #${view.id} succeeded but current is not the new release`);
      await assertComplete(target.id, `${label}, after the restart`);
      deployed.push(target);
    }
    await assertEnvFile(`${label}, after the restart`);
    const strays = (await namesIn(join(deployTo, 'shared'))).filter((name) => name !== 'lockstep.env');
    assert.deepEqual(strays, [], `${label}: stray files in shared/ after the restarted agent ran`);
    assert.deepEqual(await namesIn(join(cacheDir, 'tmp')), [], `${label}: the blob cache's tmp dir is not empty after the restarted agent ran`);
    // Pruning follows the success report (and the repair of the tree left behind), so it is waited for, not
    // assumed done. A kill during pruning leaves its remaining doomed releases to the next deployment: one extra at most.
    // The outer bound is generous: on a loaded machine pruning 40 MB trees took longer than 10 s (CI at load ~10).
    const pruneDeadline = Date.now() + 120_000;
    let kept = await releaseDirs();
    while (kept.length > KEEP + 1 && Date.now() < pruneDeadline) {
      await sleep(20);
      kept = await releaseDirs();
    }
    mark('done');
    assert.ok(kept.length <= KEEP + 1, `${label}: ${kept.length} releases on disk with keep_releases ${KEEP}`);
    return phase;
  };

  // Trial 0 runs before anything was ever activated: `current` may then be absent.
  const spread = (ms: number): number => Math.round(random() * ms);
  await trial(0, 'fresh', takeFresh(), spread(400));

  // Three fresh releases (the last one prunes the release of trial 0), that
  // pruned release again (rebuilt from the blob cache, nothing fetched), and
  // one still on disk (the "already staged" path: a rename).
  const trial0 = deployed[0];
  const calibrated = [await cleanDeploy(takeFresh()), await cleanDeploy(takeFresh()), await cleanDeploy(takeFresh())];
  durations.fresh = calibrated.reduce((sum, ms) => sum + ms, 0) / calibrated.length;
  if (trial0 && !(await releaseDirs()).includes(trial0.id)) durations.cache = await cleanDeploy(trial0);
  else durations.cache = durations.fresh / 2;
  const onDisk = deployed.at(-2);
  assert.ok(onDisk);
  durations.disk = await cleanDeploy(onDisk);
  t.diagnostic(
    `calibration (agent resumed to deployment succeeded): fresh ${calibrated.map(Math.round).join('/')} ms, ` +
      `from the blob cache ${Math.round(durations.cache)} ms, already on disk ${Math.round(durations.disk)} ms`,
  );

  for (let index = 1; index < TRIALS; index++) {
    const current = await readCurrent();
    const onDiskIds = new Set(await releaseDirs());
    const onDiskCandidates = [...onDiskIds].filter((id) => id !== current).map((id) => byId.get(id)).filter((r): r is Release => r !== undefined);
    const prunedCandidates = [...new Set(deployed)].filter((release) => !onDiskIds.has(release.id) && release.id !== current);
    const roll = random();
    let kind: Kind = 'fresh';
    if (roll < (1 - FRESH_SHARE) * 0.45 && onDiskCandidates.length > 0) kind = 'disk';
    else if (roll < 1 - FRESH_SHARE && prunedCandidates.length > 0) kind = 'cache';
    if (kind === 'fresh' && !freshReady()) kind = prunedCandidates.length > 0 ? 'cache' : 'disk';
    const pool = kind === 'disk' ? onDiskCandidates : prunedCandidates;
    const target = kind === 'fresh' ? takeFresh() : pool[Math.floor(random() * pool.length)];
    assert.ok(target);
    // Spread kills over the whole deployment and a bit past it (pruning, idle),
    // 0 included; a fifth aim at its end, where the switch and the report are.
    const duration = durations[kind];
    const aim = random();
    const uniform = aim >= 0.26;
    const delayMs = aim < 0.06 ? 0 : !uniform ? Math.round(duration * (0.75 + random() * 0.35)) : spread(duration * 1.3 + 10);
    const phase = await trial(index, kind, target, delayMs);
    // The machine's speed drifts (other processes, the background release
    // maker), so the estimate follows the kills: a kill after activation
    // shrinks it, one before grows it. At equilibrium about a quarter of the
    // uniform kills land after activation (1.03^3 * 0.915 ≈ 1).
    if (uniform) durations[kind] *= BEFORE_ACTIVATION.includes(phase) ? 1.03 : 0.915;
  }
  t.diagnostic(`final estimates: fresh ${Math.round(durations.fresh)} ms, from the blob cache ${Math.round(durations.cache)} ms, already on disk ${Math.round(durations.disk)} ms`);

  await producer;
  // ---- the run in figures ----
  let beforeActivation = 0;
  let afterActivation = 0;
  for (const [phase, slot] of phases) {
    if (BEFORE_ACTIVATION.includes(phase)) beforeActivation += slot.count;
    else afterActivation += slot.count;
    const sorted = [...slot.delays].sort((a, b) => a - b);
    t.diagnostic(`killed ${phase}: ${slot.count} (delays ${sorted[0]}..${sorted.at(-1)} ms)`);
  }
  for (const [kind, perKind] of kinds) {
    t.diagnostic(`${kind}: ${[...perKind].map(([phase, count]) => `${phase} ${count}`).join(', ')}`);
  }
  t.diagnostic(
    `${TRIALS} trials: ${beforeActivation} kills before activation, ${afterActivation} after; ${failures} reported failures; ` +
      `restart to end ${Math.round(restartMsTotal / TRIALS)} ms on average; ${Math.round((Date.now() - testStarted) / 1000)} s in all`,
  );
  assert.ok(TRIALS >= 50 || process.env.CRASH_TRIALS !== undefined, 'the issue asks for at least 50 trials');
  // Not vacuous: kills landed on both sides of the switch.
  assert.ok(beforeActivation > 0 && afterActivation > 0, 'kills did not land on both sides of activation');
});
