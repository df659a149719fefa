#!/usr/bin/env node
/**
 * `npm test`: makes sure the system programs the tests drive are installed,
 * then runs the compiled tests (dist/test/**) with node's test runner.
 *
 *   node test/run.mjs               every suite
 *   node test/run.mjs store config  only files whose path contains "store" or "config"
 *
 * Unit and integration files run two at a time (a 2-core machine); e2e files
 * run one at a time afterwards, since they start real servers and agents.
 * Exits non-zero when a test failed or when no test ran at all.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'test');

/**
 * System programs the tests need, and the Debian package that provides them.
 * `dirs` are extra places to look besides PATH (Debian keeps PostgreSQL's
 * server binaries out of PATH). Add openssh-server, chromium… here.
 */
const REQUIREMENTS = [
  { binaries: ['initdb', 'pg_ctl', 'postgres'], package: 'postgresql', dirs: postgresBinDirs },
  // The fire-call test runs a real sshd and logs in with ssh; sessions are recorded with util-linux script.
  { binaries: ['sshd'], package: 'openssh-server', dirs: () => ['/usr/sbin'] },
  { binaries: ['ssh', 'ssh-keygen'], package: 'openssh-client', dirs: () => [] },
  { binaries: ['script'], package: 'bsdutils', dirs: () => [] },
  // Agents take their one-per-state-dir lock with util-linux flock (src/agent/agent-lock.ts).
  { binaries: ['flock'], package: 'util-linux', dirs: () => [] },
];

function postgresBinDirs() {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .filter((version) => /^\d+(\.\d+)?$/.test(version))
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => join(base, version, 'bin'));
}

function findBinary(name, extraDirs) {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

function missingRequirements() {
  return REQUIREMENTS.filter((requirement) => requirement.binaries.some((binary) => !findBinary(binary, requirement.dirs())));
}

function ensureRequirements() {
  let missing = missingRequirements();
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((requirement) => requirement.package))];
  const names = missing.flatMap((requirement) => requirement.binaries).join(', ');
  if (process.getuid?.() !== 0) {
    console.error(`test: missing ${names}; install the Debian package(s): ${packages.join(' ')} (e.g. sudo apt-get install -y ${packages.join(' ')})`);
    process.exit(1);
  }
  console.error(`test: missing ${names}; installing ${packages.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // Wait for the dpkg lock (unattended-upgrades, another test run) instead of failing at once.
  const waitForLock = ['-o', 'DPkg::Lock::Timeout=600'];
  for (const args of [[...waitForLock, 'update'], [...waitForLock, 'install', '-y', '--no-install-recommends', ...packages]]) {
    const result = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (result.status !== 0) {
      console.error(`test: apt-get ${args.join(' ')} failed (exit ${result.status ?? result.signal}); install ${packages.join(' ')} by hand`);
      process.exit(1);
    }
  }
  missing = missingRequirements();
  if (missing.length > 0) {
    console.error(`test: still missing ${missing.flatMap((r) => r.binaries).join(', ')} after installing ${packages.join(' ')}`);
    process.exit(1);
  }
}

/** test/unit/x.test.ts for dist/test/unit/x.test.js. */
function sourceOf(compiledFile) {
  return join(root, 'test', relative(compiled, compiledFile)).replace(/\.js$/, '.ts');
}

function testFiles(kind, filters) {
  const dir = join(compiled, kind);
  if (!existsSync(dir)) return [];
  const files = [];
  const walk = (current) => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) walk(path);
      // Only files whose TypeScript source still exists: a deleted test's stale output must not run.
      else if (entry.isFile() && entry.name.endsWith('.test.js') && existsSync(sourceOf(path))) files.push(path);
    }
  };
  walk(dir);
  return files
    .filter((file) => filters.length === 0 || filters.some((filter) => relative(compiled, file).includes(filter)))
    .sort();
}

/** Runs one `node --test` over `files`: spec output to the terminal, counts to a file. */
function runTests(files, concurrency, scratch, label) {
  const countFile = join(scratch, `${label}.json`);
  const args = [
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    `--test-reporter=${pathToFileURL(join(root, 'test', 'count-reporter.mjs')).href}`,
    `--test-reporter-destination=${countFile}`,
    ...files,
  ];
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, args, { stdio: 'inherit', cwd: root });
    child.on('exit', (code, signal) => {
      let counts = { tests: 0, pass: 0, fail: 0, skipped: 0, todo: 0 };
      try {
        counts = JSON.parse(readFileSync(countFile, 'utf8'));
      } catch {
        // The runner died before reporting; the exit code says it failed.
      }
      resolvePromise({ code: code ?? 1, signal, ...counts });
    });
  });
}

ensureRequirements();

const filters = process.argv.slice(2);
const parallel = [...testFiles('unit', filters), ...testFiles('integration', filters)];
const serial = testFiles('e2e', filters);
if (parallel.length + serial.length === 0) {
  console.error(`test: no *.test.js files under ${relative(root, compiled)}/{unit,integration,e2e}${filters.length ? ` matching ${filters.join(', ')}` : ''} (did the build run?)`);
  process.exit(1);
}

const scratch = mkdtempSync(join(tmpdir(), 'lockstep-test-run-'));
const results = [];
try {
  if (parallel.length > 0) results.push(await runTests(parallel, 2, scratch, 'unit-integration'));
  if (serial.length > 0) results.push(await runTests(serial, 1, scratch, 'e2e'));
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

const total = (key) => results.reduce((sum, result) => sum + result[key], 0);
console.log(`\n# files ${parallel.length + serial.length}`);
console.log(`# tests ${total('tests')}`);
console.log(`# pass ${total('pass')}`);
console.log(`# fail ${total('fail')}`);
if (total('skipped') > 0) console.log(`# skipped ${total('skipped')}`);
if (total('todo') > 0) console.log(`# todo ${total('todo')}`);

if (results.some((result) => result.code !== 0)) {
  console.error('test: FAILED');
  process.exit(1);
}
if (total('pass') + total('fail') === 0) {
  console.error('test: no tests ran');
  process.exit(1);
}
