/**
 * Hosts that go quiet, end to end: a real server with `--offline-after 4s`, a
 * real agent, a webhook receiver and a real SMTP server. An agent frozen
 * with SIGSTOP (its connections stay open, it just says nothing) is alerted
 * offline once by webhook and by email, and back online once after SIGCONT;
 * the same for an agent killed and started again. Each change is audited.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startFleet, type AgentHandle, type Fleet } from '../helpers/fleet.js';
import { startSmtpReceiver, type SmtpReceiver } from '../helpers/smtp-receiver.js';
import { until } from '../helpers/until.js';
import { startWebhookReceiver, type WebhookReceiver } from './rollout-app.js';

describe('alerts on hosts that go quiet', () => {
  let fleet: Fleet;
  let webhook: WebhookReceiver;
  let smtp: SmtpReceiver;
  let agent: AgentHandle;

  const alertsOf = (kind: string) => webhook.alerts.filter((alert) => alert.kind === kind && alert.details.host === 'dev-1');
  const mailsOf = (kind: string) => smtp.mails.filter((mail) => mail.raw.includes(`X-Lockstep-Alert: ${kind}`) && mail.subject.includes('dev-1'));
  const audited = async (action: string) => {
    const events = JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as { action: string; target: string }[];
    return events.filter((event) => event.action === action && event.target === 'host:dev-1').length;
  };
  /**
   * The alerts so far, once the host is online and every alert has arrived by both channels. A busy machine
   * may delay a young agent past the window once; what counts is one alert per change from here.
   */
  const settled = () =>
    until('the host to be online with every alert delivered', async () => {
      const offline = alertsOf('host.offline').length;
      const online = alertsOf('host.online').length;
      return offline === online && mailsOf('host.offline').length === offline && mailsOf('host.online').length === online ? { offline, online } : undefined;
    }, 60_000);
  /** Waits until `kind` has arrived `count` times by webhook and by email. */
  const arrived = (kind: string, count: number) =>
    until(`${count} ${kind} alert(s) by webhook and email`, async () => (alertsOf(kind).length >= count && mailsOf(kind).length >= count ? true : undefined), 60_000);

  before(async () => {
    webhook = await startWebhookReceiver();
    smtp = await startSmtpReceiver();
    fleet = await startFleet({ serverArgs: ['--offline-after', '4s'] });
    await fleet.applyConfig(`app: app
deploy_to: /srv/app
environments:
  development:
    alerts:
      webhooks: [${webhook.url}]
      email: { smtp: "${smtp.url}", from: lockstep@example.com, to: [ops@example.com] }
`);
    agent = await fleet.addAgent('dev-1', 'development');
  });

  after(async () => {
    if (agent?.process.signalCode === null && agent.process.exitCode === null) agent.process.kill('SIGCONT');
    await fleet?.stop();
    await webhook?.close();
    await smtp?.close();
  });

  it('an agent frozen with SIGSTOP is alerted offline once, and back online once after SIGCONT', async () => {
    const { offline: offlineBefore, online: onlineBefore } = await settled();
    agent.process.kill('SIGSTOP');
    await arrived('host.offline', offlineBefore + 1);
    const [offline] = alertsOf('host.offline').slice(-1);
    assert.equal(offline?.env, 'development');
    assert.match(offline?.summary ?? '', /^host dev-1 in development is offline: its agent was last heard from \S+ \(offline after 4s\)/);
    assert.match(mailsOf('host.offline').at(-1)?.subject ?? '', /host dev-1 in development is offline/);

    agent.process.kill('SIGCONT');
    await arrived('host.online', onlineBefore + 1);
    assert.match(alertsOf('host.online').at(-1)?.summary ?? '', /^host dev-1 in development is back online \(offline since \S+\)$/);
    assert.equal(alertsOf('host.offline').length, offlineBefore + 1, 'one offline alert for one silence');
    assert.equal(alertsOf('host.online').length, onlineBefore + 1);
    assert.equal(mailsOf('host.offline').length, offlineBefore + 1);
    assert.equal(await audited('host.offline'), offlineBefore + 1);
    assert.equal(await audited('host.online'), onlineBefore + 1);
  });

  it('an agent killed and started again is alerted offline once and back online once', async () => {
    const { offline: offlineBefore, online: onlineBefore } = await settled();
    await agent.kill('SIGKILL');
    await arrived('host.offline', offlineBefore + 1);
    await agent.restart();
    await arrived('host.online', onlineBefore + 1);
    assert.equal(alertsOf('host.offline').length, offlineBefore + 1);
    assert.equal(alertsOf('host.online').length, onlineBefore + 1);
    assert.equal(mailsOf('host.online').length, onlineBefore + 1);
    const status = JSON.parse(await fleet.ok(['status', 'development', '--json'])) as { environments: { hosts: { name: string; online: boolean }[] }[] };
    assert.equal(status.environments[0]?.hosts[0]?.online, true);
  });
});
