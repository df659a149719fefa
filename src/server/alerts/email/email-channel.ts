/**
 * Alerts as email over SMTP (nodemailer). smtp:// upgrades with STARTTLS when
 * the server offers it; smtps:// is TLS from the first byte. A refused or
 * failed delivery throws, and the dispatcher retries it.
 */
import { createTransport } from 'nodemailer';
import type { Alert, AlertChannel } from '../alert-channel.js';

/** An environment's `alerts.email` block. */
export interface EmailSettings {
  readonly smtp: string;
  readonly from: string;
  readonly to: readonly string[];
}

/** Delivers alerts to a list of recipients through one SMTP server. */
export class EmailChannel implements AlertChannel {
  readonly name: string;
  private readonly host: string;
  private readonly port: number;
  private readonly secure: boolean;

  constructor(private readonly settings: EmailSettings, private readonly timeoutMs = 10_000) {
    const url = new URL(settings.smtp);
    this.secure = url.protocol === 'smtps:';
    this.host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.port = url.port ? Number(url.port) : this.secure ? 465 : 25;
    this.name = `email ${settings.to.join(', ')} via ${settings.smtp}`;
  }

  async send(alert: Alert): Promise<void> {
    const transport = createTransport({
      host: this.host,
      port: this.port,
      secure: this.secure,
      connectionTimeout: this.timeoutMs,
      greetingTimeout: this.timeoutMs,
      socketTimeout: this.timeoutMs,
    });
    try {
      await transport.sendMail({
        from: this.settings.from,
        to: [...this.settings.to],
        subject: `[lockstep] ${alert.summary}`,
        text: emailText(alert),
        headers: { 'X-Lockstep-Alert': alert.kind },
      });
    } finally {
      transport.close();
    }
  }
}

/** The plain-text body: what happened, where, when, and the details as JSON. */
export function emailText(alert: Alert): string {
  return [alert.summary, '', `alert:       ${alert.kind}`, `environment: ${alert.env}`, `at:          ${alert.at}`, '', JSON.stringify(alert.details, null, 2), ''].join('\n');
}
