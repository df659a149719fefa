// ESLint with type information (STYLE.md, "Strict tooling"): the recommended
// rules plus the type-aware ones that catch real bugs here: promises that are
// neither awaited nor explicitly `void`ed, and misused promises.
import js from '@eslint/js';
import { readFileSync } from 'node:fs';
import { dirname, relative, resolve, sep } from 'node:path';
import tseslint from 'typescript-eslint';

/**
 * The layer rule of docs/architecture.md, read from its table (between
 * <!-- layers:begin --> and <!-- layers:end -->): folder → the folders of
 * src/ it may import from. The doc is the single source; a folder it does
 * not list may import nothing of ours.
 */
function readLayers() {
  const doc = readFileSync(resolve(import.meta.dirname, 'docs/architecture.md'), 'utf8');
  const table = /<!-- layers:begin -->([\s\S]*?)<!-- layers:end -->/.exec(doc)?.[1];
  if (table === undefined) throw new Error('docs/architecture.md has no <!-- layers:begin --> table');
  const layers = new Map();
  for (const row of table.split('\n')) {
    const match = /^\|\s*`([a-z-]+)`\s*\|(.*)\|\s*$/.exec(row.trim());
    if (match) layers.set(match[1], new Set([...match[2].matchAll(/`([a-z-]+)`/g)].map((name) => name[1])));
  }
  if (layers.size === 0) throw new Error('the layers table of docs/architecture.md has no rows');
  return layers;
}

const SRC = resolve(import.meta.dirname, 'src');

/** The top-level folder of src/ a file is in ('' for src/main.ts), or undefined outside src/. */
function layerOf(file) {
  const path = relative(SRC, file);
  if (path.startsWith('..')) return undefined;
  return path.includes(sep) ? path.split(sep)[0] : '';
}

/** `lockstep/layers`: an import from src/<a>/ into src/<b>/ must be allowed by the architecture table. */
const layersRule = {
  meta: { type: 'problem', schema: [], docs: { description: 'imports follow the layers of docs/architecture.md' } },
  create(context) {
    const layers = readLayers();
    const from = layerOf(context.filename);
    // src/main.ts is the composition root; tests and benches may import anything.
    if (from === undefined || from === '') return {};
    const check = (node, source) => {
      if (typeof source !== 'string' || !source.startsWith('.')) return;
      const to = layerOf(resolve(dirname(context.filename), source));
      if (to === undefined || to === from) return;
      if (to === '' || !layers.get(from)?.has(to)) {
        context.report({ node, message: `src/${from}/ may not import from src/${to || 'main.ts'}/ (the layers of docs/architecture.md: ${from} may import ${[...(layers.get(from) ?? [])].join(', ') || 'nothing of ours'})` });
      }
    };
    return {
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => check(node, node.source?.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
      ImportExpression: (node) => check(node, node.source.type === 'Literal' ? node.source.value : undefined),
    };
  },
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'lockstep-data/', 'test/run.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/**/*.ts'],
    plugins: { lockstep: { rules: { layers: layersRule } } },
    rules: { 'lockstep/layers': 'error' },
  },
  {
    // node:test's describe/it return promises the runner itself awaits; tests read JSON bodies field by field.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-floating-promises': 'off', '@typescript-eslint/no-explicit-any': 'off' },
  },
);
