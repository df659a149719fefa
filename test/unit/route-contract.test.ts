/**
 * The wire contract: the route table, its schemas, the handlers bound to it,
 * the checked-in OpenAPI document, and the CLI's start-up path staying free
 * of the schema library.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { openApiText } from '../../src/api/openapi.js';
import { ROUTE_SCHEMAS, type RouteSchemaSet } from '../../src/api/route-schemas.js';
import { ROUTE_NAMES, ROUTES, routePath, type RouteSpec } from '../../src/api/routes.js';
import { bindRoutes, type RouteHandlers } from '../../src/server/http/route-binder.js';
import { withTempDir } from '../helpers/tmp.js';

/** The repository root (tests run from dist/test/unit/). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** A handler for every route of the table. */
function everyHandler(): Record<string, () => Promise<unknown>> {
  return Object.fromEntries(ROUTE_NAMES.map((name) => [name, async () => ({ ok: true })]));
}

describe('route table', () => {
  it('path parameters and params schemas name the same fields; stream bodies have no JSON schema', () => {
    for (const name of ROUTE_NAMES) {
      const spec: RouteSpec = ROUTES[name];
      const schemas: RouteSchemaSet = ROUTE_SCHEMAS[name];
      const inPath = [...spec.path.matchAll(/:([A-Za-z]+)/g)].map((match) => match[1]).sort();
      const shape = (schemas.params as { shape?: Record<string, unknown> } | undefined)?.shape ?? {};
      assert.deepEqual(Object.keys(shape).sort(), inPath, `${name}: params schema vs ${spec.path}`);
      if (spec.request === 'stream') assert.equal(schemas.body, undefined, `${name} streams its body`);
      if (spec.method === 'GET') assert.equal(schemas.body, undefined, `${name} is a GET`);
    }
  });

  it('no two routes share a method and path', () => {
    const keys = ROUTE_NAMES.map((name) => `${ROUTES[name].method} ${ROUTES[name].path}`);
    assert.equal(new Set(keys).size, keys.length);
  });

  it('routePath fills and encodes parameters, and names a missing one', () => {
    assert.equal(routePath('showRelease', { ref: 'app@1.0 beta' }), '/releases/app%401.0%20beta');
    assert.equal(routePath('agentCommandResult', { id: 7 }), '/agent/commands/7');
    assert.throws(() => routePath('showRelease'), /route showRelease needs the path parameter ref/);
  });
});

describe('bindRoutes', () => {
  it('binds a handler to every route of the table', async () => {
    const app = Fastify();
    bindRoutes(app, [everyHandler() as RouteHandlers]);
    await app.ready();
    for (const name of ROUTE_NAMES) assert.ok(app.hasRoute({ method: ROUTES[name].method, url: `/api/v1${ROUTES[name].path}` }), name);
    await app.close();
  });

  it('refuses a table entry without a handler', () => {
    const { parity: _parity, agentBlob: _blob, ...handlers } = everyHandler();
    assert.throws(() => bindRoutes(Fastify(), [handlers as RouteHandlers]), /routes without a handler: agentBlob \(GET \/agent\/blobs\/:hash\), parity \(GET \/parity\)|routes without a handler: parity \(GET \/parity\), agentBlob/);
  });

  it('refuses a handler without a table entry, and a route handled twice', () => {
    assert.throws(() => bindRoutes(Fastify(), [{ ...everyHandler(), metrics: async () => ({}) } as RouteHandlers]), /a handler is bound to route "metrics", which is not in the route table/);
    assert.throws(() => bindRoutes(Fastify(), [everyHandler() as RouteHandlers, { health: async () => ({}) } as RouteHandlers]), /route "health" has two handlers/);
  });
});

describe('OpenAPI document', () => {
  it('docs/openapi.json is the document generated from the route table', async () => {
    const checkedIn = await readFile(resolve(ROOT, 'docs/openapi.json'), 'utf8').catch(() => '');
    assert.ok(checkedIn === openApiText(), 'docs/openapi.json differs from the route table; regenerate it with `npm run openapi` and commit it');
  });

  it('describes every route, with its access level and success status', () => {
    const document = JSON.parse(openApiText()) as { openapi: string; paths: Record<string, Record<string, { operationId: string; 'x-lockstep-access': string; responses: Record<string, unknown> }>> };
    assert.equal(document.openapi, '3.1.0');
    for (const name of ROUTE_NAMES) {
      const spec: RouteSpec = ROUTES[name];
      const operation = document.paths[spec.path.replace(/:([A-Za-z]+)/g, '{$1}')]?.[spec.method.toLowerCase()];
      assert.equal(operation?.operationId, name);
      assert.equal(operation['x-lockstep-access'], spec.access);
      assert.ok(String(spec.status ?? 200) in operation.responses, name);
    }
  });
});

describe("the CLI's start-up path", () => {
  /** Every module main.js loads statically (dynamic import() is lazy: the server, agent and demo roles). */
  async function staticImports(entry: string): Promise<Set<string>> {
    const seen = new Set<string>();
    const pending = [entry];
    while (pending.length > 0) {
      const file = pending.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      const text = await readFile(file, 'utf8');
      for (const match of text.matchAll(/^(?:import|export)\s[^;]*?\bfrom\s+'([^']+)'|^import\s+'([^']+)'/gm)) {
        const specifier = match[1] ?? match[2] ?? '';
        if (specifier.startsWith('.')) pending.push(resolve(dirname(file), specifier));
        else seen.add(specifier);
      }
    }
    return seen;
  }

  it('does not load zod (it costs ~150 ms per command), yet uses the route table', async () => {
    const loaded = await staticImports(resolve(ROOT, 'dist/src/main.js'));
    assert.ok(!loaded.has('zod'), 'the CLI loads zod at start-up; keep zod out of src/api/routes.ts, src/client/ and src/cli/');
    assert.ok([...loaded].some((file) => file.endsWith('/dist/src/api/routes.js')), 'the CLI builds its requests from the route table');
  });

  /** Resolve hooks (node:module register) that append every URL the process loads to the file named by `data.file`. */
  const RECORDER = `import { appendFileSync } from 'node:fs';
let file;
export function initialize(data) { file = data.file; }
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(file, result.url + '\\n');
  return result;
}
`;

  /** Runs the installed command (dist/src/bin.js) with `args` and returns its exit code and every module URL it loaded. */
  async function loadedBy(dir: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string; loaded: string[] }> {
    const record = join(dir, `loaded-${args[0] ?? 'none'}.txt`);
    await writeFile(join(dir, 'recorder.mjs'), RECORDER);
    await writeFile(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister('./recorder.mjs', import.meta.url, { data: { file: ${JSON.stringify(record)} } });\n`);
    await writeFile(record, '');
    const child = spawn(process.execPath, ['--import', join(dir, 'register.mjs'), resolve(ROOT, 'dist/src/bin.js'), ...args], {
      cwd: dir, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const code = await new Promise<number | null>((done) => child.on('close', done));
    return { code, stderr, loaded: (await readFile(record, 'utf8')).split('\n').filter((url) => url !== '' && !url.endsWith('/register.mjs') && !url.endsWith('/recorder.mjs')) };
  }

  /** What the fast path must not load: the schema library, the server's and agent's libraries, and any module of theirs. */
  function heavy(loaded: readonly string[]): string[] {
    return loaded.filter((url) => /\/node_modules\/(zod|fastify|kysely|pino|better-sqlite3|pg|yaml|log-update)\//.test(url) || /\/dist\/src\/(server|agent|store|demo|fim)\//.test(url));
  }

  it('`lockstep --version` and `lockstep rollback` load only the one-file bundle and node built-ins', async () => {
    await withTempDir(async (dir) => {
      const version = await loadedBy(dir, ['--version']);
      assert.equal(version.code, 0, version.stderr);
      assert.deepEqual(heavy(version.loaded), [], 'the CLI loads heavy modules for --version; keep them behind a dynamic import() (scripts/bundle-cli.mjs)');
      const ours = version.loaded.filter((url) => url.startsWith('file:')).map((url) => url.slice(url.indexOf('/dist/') + 1));
      assert.deepEqual(ours.sort(), ['dist/src/bin.js', 'dist/src/core/errors.js', 'dist/src/lockstep.mjs']);

      // A port nothing listens on: the rollback gets as far as its request (exit 6, unavailable).
      const closed = createServer();
      await new Promise<void>((done) => closed.listen({ host: '127.0.0.1', port: 0 }, done));
      const port = (closed.address() as AddressInfo).port;
      await new Promise<void>((done) => closed.close(() => done()));
      const rollback = await loadedBy(dir, ['rollback', 'production'], { LOCKSTEP_SERVER: `http://127.0.0.1:${port}`, LOCKSTEP_TOKEN: 'lst_x' });
      assert.equal(rollback.code, 6, rollback.stderr);
      assert.match(rollback.stderr, /^lockstep: .*127\.0\.0\.1/);
      assert.deepEqual(heavy(rollback.loaded), []);
    });
  });

  it('the bundle loads the roles from dist/src on demand, and their errors keep their exit codes', async () => {
    await withTempDir(async (dir) => {
      // `server --checkpoint-every x` is refused by the server role itself (a LockstepError from dist/src/server/).
      const server = await loadedBy(dir, ['server', '--data-dir', join(dir, 'data'), '--checkpoint-every', 'x']);
      assert.equal(server.code, 2, server.stderr);
      assert.equal(server.stderr.trim().split('\n').length, 1, server.stderr);
      assert.match(server.stderr, /^lockstep: .*checkpoint-every/);
      assert.ok(server.loaded.some((url) => url.endsWith('/dist/src/server/command.js')));
    });
  });
});
