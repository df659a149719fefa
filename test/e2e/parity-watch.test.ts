/**
 * Scheduled parity end to end: with `parity:` in lockstep.yaml the server
 * compares test and production by itself; a new undeclared difference (a
 * sysctl configured on production only) is alerted once by webhook, across
 * later checks and a server restart, and `lockstep status` shows it; once it
 * is declared, the pair is clean and nothing more is alerted.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StatusResponse } from '../../src/api/schemas.js';
import { startFleet, writeApp, type Fleet } from '../helpers/fleet.js';
import { until } from '../helpers/until.js';
import { startWebhookReceiver, type WebhookReceiver } from './rollout-app.js';

const DIFFERENCE = 'sysctl vm.swappiness';

describe('scheduled parity', () => {
  let fleet: Fleet;
  let webhook: WebhookReceiver;

  const config = (declared: readonly string[]) => `app: app
deploy_to: /srv/app
parity:
  pairs: [[test, production]]
  every: 10s
environments:
  test:
    host_timeout: 20s
  production:
    promote_from: test
    host_timeout: 20s
    declared_differences: [${declared.join(', ')}]
    alerts:
      webhooks: [${webhook.url}]
`;
  const alertsNaming = (what: string) => webhook.alerts.filter((alert) => alert.kind === 'parity.undeclared' && JSON.stringify(alert.details).includes(what));
  const pair = async () => {
    const status = JSON.parse(await fleet.ok(['status', '--json'])) as StatusResponse;
    return status.parity?.find((candidate) => candidate.a === 'test' && candidate.b === 'production');
  };
  /** Waits for a check that started after now (checkedAt moves on) and returns its summary. */
  const nextCheck = async () => {
    const before = (await pair())?.checkedAt ?? '';
    return until('the next scheduled check', async () => {
      const now = await pair();
      return now?.checkedAt && now.checkedAt > before ? now : undefined;
    }, 60_000);
  };

  before(async () => {
    webhook = await startWebhookReceiver();
    fleet = await startFleet();
    await fleet.applyConfig(config([]));
    for (const [name, swappiness] of [['test-1', '10'], ['prod-1', '60']] as const) {
      await mkdir(join(fleet.dir, 'hosts', name, 'etc/sysctl.d'), { recursive: true });
      await writeFile(join(fleet.dir, 'hosts', name, 'etc/sysctl.d/99-tuning.conf'), `vm.swappiness = ${swappiness}\n`);
    }
    await Promise.all([fleet.addAgent('test-1', 'test'), fleet.addAgent('prod-1', 'production')]);
    const build = await writeApp(join(fleet.dir, 'build'), '1.0.0');
    await fleet.ok(['release', 'create', build, '--version', '1.0.0']);
    await fleet.ok(['deploy', 'app@1.0.0', '--to', 'test']);
    await fleet.ok(['deploy', 'app@1.0.0', '--to', 'production']);
  });

  after(async () => {
    await fleet?.stop();
    await webhook?.close();
  });

  it('a new undeclared difference is alerted once, across later checks and a restart, and status shows it', async () => {
    const alert = await webhook.waitFor('the parity alert', (candidate) => candidate.kind === 'parity.undeclared' && JSON.stringify(candidate.details).includes(DIFFERENCE), 90_000);
    assert.match(alert.summary, /^parity test vs production: \d+ new undeclared differences? \(.*sysctl vm\.swappiness/);

    await nextCheck();
    await fleet.killServer('SIGTERM');
    await fleet.startServer();
    await nextCheck();
    assert.equal(alertsNaming(DIFFERENCE).length, 1, 'alerted once: later checks and the restarted server know it');

    const summary = await pair();
    assert.ok((summary?.undeclared ?? 0) >= 1);
    assert.match(await fleet.ok(['status']), /parity test vs production: \d+ undeclared differences? since \d{4}-/);
  });

  it('once declared, the pair is clean and nothing more is alerted', async () => {
    await fleet.applyConfig(config(['sysctl:vm.swappiness']));
    const clean = await until('a check without the declared difference', async () => {
      const now = await nextCheck();
      const audit = await fleet.ok(['parity', 'test', 'production', '--json']).catch((error: unknown) => String(error));
      return audit.includes('"undeclared":0') || now.undeclared === 0 ? now : undefined;
    }, 90_000);
    assert.equal(clean.undeclared, 0);
    assert.equal(clean.since, null);
    assert.equal(alertsNaming(DIFFERENCE).length, 1, 'declaring raises no alert');
    assert.match(await fleet.ok(['status']), /parity test vs production: no undeclared differences/);
  });
});
