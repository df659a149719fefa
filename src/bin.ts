#!/usr/bin/env node
/**
 * The installed `lockstep` command (package.json "bin"): turns on V8's
 * on-disk compile cache where Node has it (22.1 and newer), then loads the
 * CLI bundled into one file by `npm run build` (scripts/bundle-cli.mjs).
 * `node dist/src/main.js` runs the same program unbundled.
 */
import module from 'node:module';

// Node 20 has no compile cache (module.enableCompileCache arrived in 22.1); there the bundle alone keeps start-up short.
(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();

// A variable, so that tsc does not look for the bundle, which is built after it.
const bundle = './lockstep.mjs';
await import(bundle);
