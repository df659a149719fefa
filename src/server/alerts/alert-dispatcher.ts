/**
 * Sends alerts to an environment's channels without ever blocking the
 * caller: each delivery runs in the background and is retried with
 * exponential backoff (1 s, 2 s, 4 s … up to `attempts`).
 */
import type { Logger } from 'pino';
import { retry, type RetryPolicy } from '../../core/retry.js';
import type { Alert, AlertChannel } from './alert-channel.js';

/** Six attempts, pausing 1 s, 2 s, 4 s, 8 s and 16 s between them (docs/deployments.md). */
export const ALERT_RETRY: RetryPolicy = { attempts: 6, firstDelayMs: 1000 };

/** Fire-and-forget delivery with retries. */
export class AlertDispatcher {
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly logger: Logger,
    private readonly policy: RetryPolicy = ALERT_RETRY,
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
    const where = { channel: channel.name, alert: alert.kind };
    try {
      // Pauses do not keep the process alive: a stopping server does not wait out a failing channel's schedule.
      await retry(() => channel.send(alert), {
        policy: this.policy,
        keepAlive: false,
        onRetry: (error, attempt) => this.logger.warn({ err: error, ...where, attempt }, 'alert delivery failed'),
      });
      this.logger.info({ ...where, env: alert.env }, 'alert delivered');
    } catch (error) {
      this.logger.warn({ err: error, ...where, attempt: this.policy.attempts }, 'alert delivery failed; giving up');
    }
  }
}
