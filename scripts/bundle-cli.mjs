// `npm run build`, after tsc: bundles the CLI (dist/src/main.js and what it
// imports, commander and log-update included) into one file,
// dist/src/lockstep.mjs, which the installed `lockstep` command
// (dist/src/bin.js) loads. One file parses and links in a few milliseconds
// where ~30 separate modules cost ~50 ms of start-up (issue 12, "A fast CLI").
//
// Left outside the bundle and loaded from tsc's output only when used:
// - the server, agent and demo roles (fastify, kysely, pino, better-sqlite3…);
// - core/config.js (zod and yaml, ~1 MB: only `init` and `apply` need it) and
//   core/release-parts-file.js (yaml: only `release create` of a dir with lockstep-release.yaml);
// - fim/worker-pool.js, whose threads load ./fim-worker.js next to it (from
//   the bundle that path would not exist and hashing would fall back to one thread);
// - core/errors.js, so that LockstepError is one class for the bundle and the
//   roles it loads: the CLI entry maps errors to exit codes with instanceof.
import { build } from 'esbuild';
import { dirname, relative, resolve } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const distSrc = resolve(root, 'dist/src');
const EXTERNAL = new Set(['server/command.js', 'agent/command.js', 'demo/demo.js', 'core/config.js', 'core/release-parts-file.js', 'fim/worker-pool.js', 'core/errors.js']);

/** Keeps the modules above out, importing them by their path from dist/src/ (where the bundle is written). */
const keepOutside = {
  name: 'lockstep-external',
  setup(builder) {
    builder.onResolve({ filter: /^\.\.?\// }, (args) => {
      const path = relative(distSrc, resolve(args.resolveDir, args.path));
      return EXTERNAL.has(path) ? { path: `./${path}`, external: true } : undefined;
    });
  },
};

const result = await build({
  entryPoints: [resolve(distSrc, 'main.js')],
  outfile: resolve(distSrc, 'lockstep.mjs'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  plugins: [keepOutside],
  // commander is CommonJS: its require() of node built-ins needs a real require in an ES module.
  banner: { js: "import { createRequire as lockstepCreateRequire } from 'node:module'; const require = lockstepCreateRequire(import.meta.url);" },
  logLevel: 'warning',
  metafile: true,
});
const heavy = Object.keys(result.metafile.inputs).filter((input) => /node_modules\/(zod|yaml|fastify|kysely|pino|better-sqlite3|pg)\//.test(input));
if (heavy.length > 0) {
  process.stderr.write(`bundle-cli: the CLI bundle pulled in ${heavy.slice(0, 3).join(', ')}; load it lazily (see scripts/bundle-cli.mjs)\n`);
  process.exit(1);
}
