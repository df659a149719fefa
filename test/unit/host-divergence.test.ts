import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDiverged } from '../../src/core/host-divergence.js';

const OLD = 'a'.repeat(64);
const NEW = 'b'.repeat(64);

describe('isDiverged', () => {
  const rows: readonly [string, { enrolled: boolean; releaseId: string | null }, string | null, boolean, boolean][] = [
    ['on the environment\'s release', { enrolled: true, releaseId: OLD }, OLD, false, false],
    ['on another release', { enrolled: true, releaseId: NEW }, OLD, false, true],
    ['on another release while a deployment runs', { enrolled: true, releaseId: NEW }, OLD, true, false],
    ['on a release where the environment runs none', { enrolled: true, releaseId: NEW }, null, false, true],
    ['on nothing where the environment runs a release', { enrolled: true, releaseId: null }, OLD, false, true],
    ['nothing anywhere', { enrolled: true, releaseId: null }, null, false, false],
    ['not enrolled', { enrolled: false, releaseId: null }, OLD, false, false],
  ];
  for (const [name, host, current, moving, expected] of rows) {
    it(name, () => assert.equal(isDiverged(host, current, moving), expected));
  }
});
