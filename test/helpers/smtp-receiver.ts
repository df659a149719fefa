/** A real SMTP server on loopback (the smtp-server package) that keeps every message it accepts. */
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail {
  readonly from: string;
  readonly to: readonly string[];
  /** The raw message (headers and body). */
  readonly raw: string;
  readonly subject: string;
}

export interface SmtpReceiver {
  /** smtp://127.0.0.1:PORT */
  readonly url: string;
  readonly mails: ReceivedMail[];
  /** How many sessions' messages were refused on purpose so far. */
  refused: number;
  close(): Promise<void>;
}

/** Starts the server; the first `refuseFirst` messages are answered with a temporary failure (451). */
export async function startSmtpReceiver(options: { refuseFirst?: number } = {}): Promise<SmtpReceiver> {
  const mails: ReceivedMail[] = [];
  const receiver = { url: '', mails, refused: 0, close: async () => {} } as SmtpReceiver;
  const server = new SMTPServer({
    // Plain SMTP on loopback: no STARTTLS to offer (a self-signed certificate would be refused), no AUTH.
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        if (receiver.refused < (options.refuseFirst ?? 0)) {
          receiver.refused += 1;
          const error = Object.assign(new Error('try again later'), { responseCode: 451 });
          return callback(error);
        }
        const raw = Buffer.concat(chunks).toString('utf8');
        const subject = /^Subject: (.*(?:\r\n[ \t].*)*)/m.exec(raw)?.[1]?.replace(/\r\n[ \t]/g, ' ') ?? '';
        mails.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((to) => to.address), raw, subject });
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.server.address();
  if (!address || typeof address !== 'object') throw new Error('smtp-server has no address');
  (receiver as { url: string }).url = `smtp://127.0.0.1:${address.port}`;
  receiver.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return receiver;
}
