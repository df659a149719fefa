import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/core/config.js';
import { isKnownGood, knownGoodSoak } from '../../src/core/known-good.js';

const config = parseConfig(`app: shop
deploy_to: /srv/shop
environments:
  development: {}
  test: { promote_from: development, soak: 10m }
  production: { promote_from: test, soak: 30m }
`);
const now = new Date('2030-01-01T12:00:00Z');
const minutesAgo = (minutes: number) => new Date(now.getTime() - minutes * 60_000).toISOString();

describe('known-good releases', () => {
  it('takes the soak that the next environment asks for', () => {
    assert.equal(knownGoodSoak(config, 'development'), 600_000);
    assert.equal(knownGoodSoak(config, 'test'), 1_800_000);
    assert.equal(knownGoodSoak(config, 'production'), 0);
  });

  it('needs a success that was not rolled back', () => {
    assert.equal(isKnownGood({ succeeded_at: null, rolled_back_at: null, superseded_at: null }, 0, now, false), false);
    assert.equal(isKnownGood({ succeeded_at: minutesAgo(60), rolled_back_at: minutesAgo(5), superseded_at: null }, 0, now, false), false);
    assert.equal(isKnownGood({ succeeded_at: minutesAgo(1), rolled_back_at: null, superseded_at: null }, 0, now, false), true);
  });

  it('needs the release to have stayed current through the soak', () => {
    const soak = 30 * 60_000;
    assert.equal(isKnownGood({ succeeded_at: minutesAgo(20), rolled_back_at: null, superseded_at: null }, soak, now, false), false, 'still current, 20m of 30m');
    assert.equal(isKnownGood({ succeeded_at: minutesAgo(40), rolled_back_at: null, superseded_at: null }, soak, now, false), true, 'still current, 40m');
    assert.equal(isKnownGood({ succeeded_at: minutesAgo(40), rolled_back_at: null, superseded_at: null }, soak, now, true), false, 'current but a host is unhealthy');
    assert.equal(isKnownGood({ succeeded_at: minutesAgo(90), rolled_back_at: null, superseded_at: minutesAgo(80) }, soak, now, true), false, 'replaced after 10m');
    assert.equal(isKnownGood({ succeeded_at: minutesAgo(90), rolled_back_at: null, superseded_at: minutesAgo(50) }, soak, now, true), true, 'replaced after 40m');
  });
});
