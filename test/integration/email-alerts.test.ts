/**
 * Email alerts against a real SMTP server on loopback: a drift report with a
 * new item sends one message whose subject names the host and the path; the
 * same drift reported again sends nothing; a temporary refusal is retried.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startInProcessApp, type InProcessApp } from '../helpers/in-process-app.js';
import { startSmtpReceiver, type SmtpReceiver } from '../helpers/smtp-receiver.js';

function config(smtp: string): string {
  return `app: shop
deploy_to: /srv/shop
environments:
  production:
    alerts:
      email: { smtp: "${smtp}", from: lockstep@example.com, to: [ops@example.com, oncall@example.com] }
`;
}

function report(host: string, paths: readonly string[]) {
  return {
    host,
    releaseId: null,
    full: false,
    cause: { kind: 'scan' },
    findings: paths.map((path) => ({ scope: 'release', path, kinds: ['content'], expected: { type: 'file', size: 3, sha256: 'a'.repeat(64) }, actual: { type: 'file', size: 4, sha256: 'b'.repeat(64) } })),
    truncated: false,
    stats: { entries: 10, hashedFiles: 1, elapsedMs: 2 },
  };
}

async function waitFor(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((done) => setTimeout(done, 50));
  }
}

describe('email alerts over SMTP', () => {
  let smtp: SmtpReceiver;
  let server: InProcessApp;
  let agent: string;

  before(async () => {
    smtp = await startSmtpReceiver();
    server = await startInProcessApp(config(smtp.url));
    agent = await server.enroll('web-1', 'production');
  });
  after(async () => {
    await server?.close();
    await smtp?.close();
  });

  it('a new drift item sends one message naming the host and the path, to every recipient', async () => {
    const sent = await server.call('POST', '/api/v1/agent/drift', agent, report('web-1', ['/srv/shop/current/public/index.html']));
    assert.equal(sent.status, 200, JSON.stringify(sent.json));
    await waitFor('the drift email', () => smtp.mails.length > 0);
    const [mail] = smtp.mails;
    assert.match(mail?.subject ?? '', /^\[lockstep\] drift on web-1 in production: \/srv\/shop\/current\/public\/index\.html \(content\)$/);
    assert.equal(mail?.from, 'lockstep@example.com');
    assert.deepEqual(mail?.to, ['ops@example.com', 'oncall@example.com']);
    assert.match(mail?.raw ?? '', /X-Lockstep-Alert: drift\.detected/);

    // The same findings again (a periodic scan), then one more path: only the new path is mailed.
    assert.equal((await server.call('POST', '/api/v1/agent/drift', agent, report('web-1', ['/srv/shop/current/public/index.html']))).status, 200);
    assert.equal((await server.call('POST', '/api/v1/agent/drift', agent, report('web-1', ['/srv/shop/current/public/index.html', '/srv/shop/current/app.js']))).status, 200);
    await server.context.alerts.drain();
    assert.equal(smtp.mails.length, 2, smtp.mails.map((m) => m.subject).join('\n'));
    assert.match(smtp.mails[1]?.subject ?? '', /drift on web-1 in production: \/srv\/shop\/current\/app\.js \(content\)$/);
  });

  it('a temporary refusal by the SMTP server is retried until the message is accepted', async () => {
    const flaky = await startSmtpReceiver({ refuseFirst: 2 });
    const other = await startInProcessApp(config(flaky.url), { alertDelayMs: 20 });
    try {
      const credential = await other.enroll('web-2', 'production');
      assert.equal((await other.call('POST', '/api/v1/agent/drift', credential, report('web-2', ['/srv/shop/current/x']))).status, 200);
      await waitFor('the retried email', () => flaky.mails.length > 0);
      assert.equal(flaky.refused, 2);
      assert.equal(flaky.mails.length, 1);
      assert.match(flaky.mails[0]?.subject ?? '', /web-2.*\/srv\/shop\/current\/x/);
    } finally {
      await other.close();
      await flaky.close();
    }
  });
});
