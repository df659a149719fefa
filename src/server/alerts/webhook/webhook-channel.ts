/** Alerts as a JSON POST to a URL; a non-2xx answer is a failure (and is retried by the dispatcher). */
import type { Alert, AlertChannel } from '../alert-channel.js';

/** Delivers alerts to one webhook URL. */
export class WebhookChannel implements AlertChannel {
  readonly name: string;

  constructor(private readonly url: string, private readonly timeoutMs = 10_000) {
    this.name = `webhook ${url}`;
  }

  async send(alert: Alert): Promise<void> {
    const response = await fetch(this.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'lockstep' },
      body: JSON.stringify({ source: 'lockstep', ...alert }),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`${this.url} answered ${response.status}`);
  }
}
