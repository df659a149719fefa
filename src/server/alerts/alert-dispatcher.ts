/**
 * Sends alerts to an environment's channels without ever blocking the
 * caller: each delivery runs in the background and is retried with
 * exponential backoff (1 s, 2 s, 4 s … up to `attempts`).
 */
import type { Logger } from 'pino';
import type { Alert, AlertChannel } from './alert-channel.js';

/** Fire-and-forget delivery with retries. */
export class AlertDispatcher {
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly logger: Logger,
    private readonly options: { attempts: number; firstDelayMs: number } = { attempts: 6, firstDelayMs: 1000 },
  ) {}

  /** Queues `alert` for every channel and returns at once. */
  dispatch(alert: Alert, channels: readonly AlertChannel[]): void {
    for (const channel of channels) {
      const delivery = this.deliver(alert, channel).finally(() => this.inFlight.delete(delivery));
      this.inFlight.add(delivery);
    }
  }

  /** Waits for deliveries under way (used at shutdown and by tests). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  private async deliver(alert: Alert, channel: AlertChannel): Promise<void> {
    let delay = this.options.firstDelayMs;
    for (let attempt = 1; attempt <= this.options.attempts; attempt++) {
      try {
        await channel.send(alert);
        this.logger.info({ channel: channel.name, alert: alert.kind, env: alert.env }, 'alert delivered');
        return;
      } catch (error) {
        this.logger.warn({ err: error, channel: channel.name, alert: alert.kind, attempt }, 'alert delivery failed');
        if (attempt === this.options.attempts) return;
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
        delay *= 2;
      }
    }
  }
}
