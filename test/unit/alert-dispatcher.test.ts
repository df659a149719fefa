import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { Alert, AlertChannel } from '../../src/server/alerts/alert-channel.js';
import type { AlertSettings } from '../../src/server/alerts/alert-channels.js';
import { AlertDispatcher } from '../../src/server/alerts/alert-dispatcher.js';

const ALERT: Alert = { kind: 'deployment.failed', env: 'production', summary: 'it failed', at: '2026-01-01T00:00:00.000Z', details: {} };

describe('AlertDispatcher: the one place alert channels are built', () => {
  it('builds the channels of one alerts: setting once, and sends to a channel named by several settings once', async () => {
    const built: string[] = [];
    const sent: string[] = [];
    const channelsOf = (settings: AlertSettings): AlertChannel[] => {
      built.push(settings.webhooks.join(','));
      return settings.webhooks.map((url) => ({ name: `webhook ${url}`, send: async () => void sent.push(url) }));
    };
    const dispatcher = new AlertDispatcher(pino({ level: 'silent' }), { attempts: 1, firstDelayMs: 1 }, channelsOf);
    const production: AlertSettings = { webhooks: ['http://a', 'http://b'] };
    const test: AlertSettings = { webhooks: ['http://b'] };

    dispatcher.dispatch(ALERT, production);
    dispatcher.dispatch(ALERT, { webhooks: ['http://a', 'http://b'] });
    dispatcher.dispatch(ALERT, [production, test, undefined]);
    dispatcher.dispatch(ALERT, undefined);
    await dispatcher.drain();

    assert.deepEqual(built, ['http://a,http://b', 'http://b'], 'equal settings reuse their channels');
    assert.deepEqual(sent.sort(), ['http://a', 'http://a', 'http://a', 'http://b', 'http://b', 'http://b'], 'b, named by production and test, gets the third alert once');
  });
});
