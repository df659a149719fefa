/**
 * The denial-of-service repro of issue 13: 100 MB POSTed to the enrollment
 * route, which needs no token, with a Content-Length and chunked. The server
 * must refuse each at once with 413, keep answering /health meanwhile, and
 * not grow its memory by the bodies (RSS measured from /proc).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { startFleet, type Fleet } from '../helpers/fleet.js';

const ATTACK_BYTES = 100 * 1024 * 1024;
const CHUNK = Buffer.alloc(1024 * 1024, 0x5b); // '[': JSON nesting, the worst a parser could be fed
/** The first piece: just past every small JSON limit (64 KiB), so a server that refuses has read all of it. */
const OPENING_BYTES = 80 * 1024;

/** The resident memory of a process, in bytes (Linux). */
async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match?.[1]) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** What the server answered to a streamed attack body, and how many bytes went out before it did. */
interface AttackOutcome {
  readonly status: number;
  readonly body: string;
  readonly sentBeforeAnswer: number;
}

/**
 * POSTs ATTACK_BYTES of JSON to `url` over a raw socket (TLS for an https:// URL): an opening piece, then one megabyte at a
 * time, honouring backpressure, and stops sending once an answer arrives.
 * The server closes the connection after answering, so writes still in
 * flight may fail (EPIPE, reset): that ends the attack, and the answer read
 * until then is the outcome.
 */
function postHuge(url: string, withLength: boolean, ca: string | undefined): Promise<AttackOutcome> {
  const { hostname, port, pathname, protocol } = new URL(url);
  return new Promise((resolveOutcome) => {
    let sent = 0;
    let answeredAt: number | undefined;
    let received = '';
    let failure = '';
    const socket = protocol === 'https:' ? connectTls({ host: hostname, port: Number(port), ...(ca === undefined ? {} : { ca }) }) : connect({ host: hostname, port: Number(port) });
    const finish = (): void => {
      const match = /^HTTP\/1\.1 (\d{3})[^]*?\r\n\r\n([^]*)$/.exec(received);
      let body = match?.[2] ?? '';
      // A chunked answer: keep the one chunk's data.
      if (/transfer-encoding: chunked/i.test(received)) body = body.split('\r\n')[1] ?? '';
      // No answer at all: the body says why, for the assertion's message.
      resolveOutcome({ status: Number(match?.[1] ?? 0), body: match ? body : `no answer (${failure || 'closed'}) after ${sent} bytes`, sentBeforeAnswer: answeredAt ?? sent });
      socket.destroy();
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      answeredAt ??= sent;
      received += chunk;
      if (/\r\n\r\n/.test(received) && (/\r\n0\r\n\r\n$/.test(received) || /content-length: (\d+)/i.test(received))) {
        const length = /content-length: (\d+)/i.exec(received)?.[1];
        if (length === undefined || Buffer.byteLength(received.slice(received.indexOf('\r\n\r\n') + 4)) >= Number(length)) finish();
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => (failure = error.code ?? error.message)); // the close that follows ends it
    socket.on('close', finish);
    socket.write(
      `POST ${pathname} HTTP/1.1\r\nhost: ${hostname}:${port}\r\ncontent-type: application/json\r\n` +
        (withLength ? `content-length: ${ATTACK_BYTES}\r\n\r\n` : 'transfer-encoding: chunked\r\n\r\n'),
    );
    const pump = (): void => {
      while (answeredAt === undefined && !socket.destroyed && sent < ATTACK_BYTES) {
        const data = CHUNK.subarray(0, Math.min(sent === 0 ? OPENING_BYTES : CHUNK.length, ATTACK_BYTES - sent));
        sent += data.length;
        const piece = withLength ? data : Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n')]);
        const flowing = socket.write(piece);
        // After the opening piece (past every small JSON limit) the attacker gives the server a moment to answer
        // before streaming the rest: writing on into a connection the server closed makes it reset, and the reset
        // can drop the answer before it is read (over TLS, bytes not yet decrypted are lost with it). A server that
        // keeps reading (the old one) gets the whole 100 MB.
        if (sent === OPENING_BYTES) return void setTimeout(pump, 2000);
        if (!flowing) return void socket.once('drain', pump);
      }
      if (sent >= ATTACK_BYTES && answeredAt === undefined && !socket.destroyed) socket.end(withLength ? '' : '0\r\n\r\n');
    };
    // Over TLS, only once the handshake is done: the opening piece must not queue behind it.
    socket.once(protocol === 'https:' ? 'secureConnect' : 'connect', pump);
  });
}

describe('bounded inputs: the unauthenticated denial of service of issue 13', () => {
  let fleet: Fleet;

  before(async () => {
    fleet = await startFleet();
  });

  after(async () => {
    await fleet.stop();
  });

  it('refuses 100 MB bodies to enroll with 413 at once while /health keeps answering and RSS stays flat', async (t) => {
    const pid = fleet.server.pid;
    assert.ok(pid !== undefined);
    // Warm the routes up so that the first parse and log line are not counted as growth.
    for (let i = 0; i < 3; i++) await fleet.http('POST', '/api/v1/agent/enroll', { token: 'warm-up' });
    const rssBefore = await rssOf(pid);

    let attacking = true;
    const latencies: number[] = [];
    const healthFailures: string[] = [];
    const poller = (async () => {
      while (attacking) {
        const started = performance.now();
        try {
          const response = await fleet.fetch(`${fleet.url}/api/v1/health`);
          await response.text(); // an unread body would hold fetch's connection
          if (response.status === 200) latencies.push(performance.now() - started);
          else healthFailures.push(`status ${response.status}`);
        } catch (error) {
          healthFailures.push(String(error));
        }
      }
    })();

    const enroll = `${fleet.url}/api/v1/agent/enroll`;
    const outcomes = await Promise.all([postHuge(enroll, true, fleet.ca?.pem), postHuge(enroll, false, fleet.ca?.pem), postHuge(enroll, true, fleet.ca?.pem), postHuge(enroll, false, fleet.ca?.pem)]);
    attacking = false;
    await poller;
    const rssAfter = await rssOf(pid);

    for (const [index, outcome] of outcomes.entries()) {
      const withLength = index % 2 === 0;
      assert.equal(outcome.status, 413, outcome.body);
      const error = (JSON.parse(outcome.body) as { error: { kind: string; message: string } }).error;
      assert.equal(error.kind, 'bad-input');
      assert.equal(
        error.message,
        withLength ? `request body is ${ATTACK_BYTES} bytes; this route takes at most 65536` : 'request body is more than 65536 bytes, the most this route takes',
      );
      // Refused from the header: the server answered before a tenth of the body went out (sockets buffer some).
      assert.ok(outcome.sentBeforeAnswer < ATTACK_BYTES / 10, `the server answered after ${outcome.sentBeforeAnswer} bytes`);
    }
    assert.deepEqual(healthFailures, []);
    assert.ok(latencies.length > 0, '/health answered during the attack');
    const growth = rssAfter - rssBefore;
    t.diagnostic(
      `health answered ${latencies.length} times during the attack, slowest ${Math.max(...latencies).toFixed(1)} ms; RSS ${(rssBefore / 2 ** 20).toFixed(1)} MB before, ${(rssAfter / 2 ** 20).toFixed(1)} MB after`,
    );
    assert.ok(growth < 50 * 1024 * 1024, `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MB`);
  });
});
