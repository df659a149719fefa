/**
 * Alerts on hosts that go quiet, through the real server code over a real
 * SQLite store, with a real webhook receiver and SMTP server and the
 * server's clock in the test's hand: an agent that stops being heard from is
 * alerted offline once, its return once, a drift monitor that stops
 * reporting once and its return once, each audited, and a restarted server
 * (same database, a new start time) repeats none of them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sweepHostPresence } from '../../src/server/hosts/host-presence-service.js';
import { startInProcessApp, type InProcessApp } from '../helpers/in-process-app.js';
import { startSmtpReceiver, type SmtpReceiver } from '../helpers/smtp-receiver.js';
import { startWebhookReceiver, type WebhookReceiver } from '../e2e/rollout-app.js';

/** The audit actions (and alert kinds) of this feature. */
const QUIET_ACTIONS = ['host.offline', 'host.online', 'host.drift_silent', 'host.drift_reporting'];
const T0 = Date.parse('2030-01-01T12:00:00.000Z');

function config(webhook: string, smtp: string): string {
  return `app: shop
deploy_to: /srv/shop
drift: { scan_interval: 10s }
environments:
  production:
    alerts:
      webhooks: [${webhook}]
      email: { smtp: "${smtp}", from: lockstep@example.com, to: [ops@example.com] }
`;
}

const emptyDriftReport = { host: 'web-1', releaseId: null, full: false, cause: { kind: 'scan' }, findings: [], truncated: false, stats: { entries: 0, hashedFiles: 0, elapsedMs: 1 } };

describe('alerts on hosts that go quiet', () => {
  let webhook: WebhookReceiver;
  let smtp: SmtpReceiver;
  let server: InProcessApp;
  let agent: string;
  let clock = T0;
  /** Seconds since T0 on the server's clock. */
  const setClock = (seconds: number) => (clock = T0 + seconds * 1000);
  /** When the "running server" started: an hour before T0. */
  let startedAt = T0 - 3_600_000;

  // Host alerts only: the audit trail's anchors (sent at once for config and token changes) go to the same webhook.
  const hostAlerts = () => webhook.alerts.filter((alert) => alert.kind !== 'audit.checkpoint');
  const kinds = () => hostAlerts().map((alert) => alert.kind);
  const sweep = async () => {
    await sweepHostPresence(server.context, startedAt);
    await server.context.alerts.drain();
  };
  const heartbeat = async () => assert.equal((await server.call('POST', '/api/v1/agent/heartbeat', agent, { host: 'web-1', currentReleaseId: null })).status, 200);
  const driftReport = async () => assert.equal((await server.call('POST', '/api/v1/agent/drift', agent, emptyDriftReport)).status, 200);
  const auditedActions = async () => {
    const audit = await server.call('GET', '/api/v1/audit', server.adminToken);
    return (audit.json.events as { action: string; target: string }[]).filter((event) => QUIET_ACTIONS.includes(event.action) && event.target === 'host:web-1').map((event) => event.action);
  };

  before(async () => {
    webhook = await startWebhookReceiver();
    smtp = await startSmtpReceiver();
    server = await startInProcessApp(config(webhook.url, smtp.url), { now: () => new Date(clock) });
    agent = await server.enroll('web-1', 'production');
    await driftReport();
  });
  after(async () => {
    await server?.close();
    await webhook?.close();
    await smtp?.close();
  });

  it('an agent heard from within 40 s raises nothing', async () => {
    setClock(30);
    await heartbeat();
    setClock(65);
    await driftReport();
    await sweep();
    assert.deepEqual(kinds(), []);
  });

  it('an agent not heard from for more than 40 s is alerted offline once, by webhook and by email, and audited', async () => {
    setClock(71);
    await sweep();
    assert.deepEqual(kinds(), ['host.offline']);
    const [alert] = hostAlerts();
    assert.equal(alert?.env, 'production');
    assert.match(alert?.summary ?? '', /^host web-1 in production is offline: its agent was last heard from 2030-01-01T12:00:30\.000Z \(offline after 40s\)/);
    assert.equal(alert?.details.host, 'web-1');
    assert.equal(smtp.mails.length, 1);
    assert.match(smtp.mails[0]?.subject ?? '', /host web-1 in production is offline/);
    assert.match(smtp.mails[0]?.raw ?? '', /X-Lockstep-Alert: host\.offline/);

    setClock(200);
    await sweep();
    await sweep();
    assert.deepEqual(kinds(), ['host.offline'], 'still offline: no second alert');
    assert.deepEqual(await auditedActions(), ['host.offline']);
  });

  it('a restarted server alerts nothing again: not the offline host, not its own start for a return', async () => {
    startedAt = T0 + 250_000;
    setClock(251);
    await sweep();
    setClock(400);
    await sweep();
    assert.deepEqual(kinds(), ['host.offline']);
  });

  it('the agent heard from again is alerted back online once', async () => {
    setClock(401);
    await heartbeat();
    await sweep();
    await sweep();
    assert.deepEqual(kinds(), ['host.offline', 'host.online']);
    assert.match(hostAlerts()[1]?.summary ?? '', /^host web-1 in production is back online \(offline since 2030-01-01T12:01:11\.000Z\)$/);
    assert.equal(smtp.mails.length, 2);
    assert.deepEqual(await auditedActions(), ['host.offline', 'host.online']);
  });

  it('an online agent that sends no drift report for 2 scan intervals and a minute is alerted silent once, and its next report once', async () => {
    // Online all along (a heartbeat every 30 s), but no drift report since the return at 401 s: silent after 401 + 80 s.
    for (const seconds of [430, 460]) {
      setClock(seconds);
      await heartbeat();
      await sweep();
    }
    assert.deepEqual(kinds(), ['host.offline', 'host.online'], 'within the period since the return');
    setClock(482);
    await heartbeat();
    await sweep();
    setClock(500);
    await heartbeat();
    await sweep();
    assert.deepEqual(kinds(), ['host.offline', 'host.online', 'host.drift_silent']);
    assert.match(hostAlerts()[2]?.summary ?? '', /^host web-1 in production sends no drift reports \(last 2030-01-01T12:01:05\.000Z; expected every 1m20s at most\): changes on it go unseen$/);

    setClock(501);
    await driftReport();
    await sweep();
    await sweep();
    assert.deepEqual(kinds(), ['host.offline', 'host.online', 'host.drift_silent', 'host.drift_reporting']);
    assert.equal(smtp.mails.length, 4);
    assert.deepEqual(await auditedActions(), ['host.offline', 'host.online', 'host.drift_silent', 'host.drift_reporting']);
  });
});
