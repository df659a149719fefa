/**
 * Sends alerts to an environment's channels without ever blocking the
 * caller: each delivery runs in the background and is retried with
 * exponential backoff (1 s, 2 s, 4 s … up to `attempts`).
 */
import type { Logger } from 'pino';
import { retry, type RetryPolicy } from '../../core/retry.js';
import type { Alert, AlertChannel } from './alert-channel.js';
import { alertChannelsOf, type AlertSettings } from './alert-channels.js';

/** Six attempts, pausing 1 s, 2 s, 4 s, 8 s and 16 s between them (docs/deployments.md). */
export const ALERT_RETRY: RetryPolicy = { attempts: 6, firstDelayMs: 1000 };

/** Where an alert goes: one environment's `alerts:` settings, several (each channel once), or nowhere. */
export type AlertTarget = AlertSettings | readonly (AlertSettings | undefined)[] | undefined;

/**
 * Fire-and-forget delivery with retries. The one place alert channels are
 * built: once per distinct `alerts:` settings, by `channelsOf`.
 */
export class AlertDispatcher {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly built = new Map<string, readonly AlertChannel[]>();

  constructor(
    private readonly logger: Logger,
    private readonly policy: RetryPolicy = ALERT_RETRY,
    private readonly channelsOf: (settings: AlertSettings) => AlertChannel[] = alertChannelsOf,
  ) {}

  /** Queues `alert` for every channel of `to` and returns at once. */
  dispatch(alert: Alert, to: AlertTarget): void {
    for (const channel of this.channels(to)) {
      const delivery = this.deliver(alert, channel).finally(() => this.inFlight.delete(delivery));
      this.inFlight.add(delivery);
    }
  }

  /** Waits for deliveries under way (used at shutdown and by tests). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  /** The channels of `to`, each once (by name), built on first use of their settings. */
  private channels(to: AlertTarget): AlertChannel[] {
    const list: readonly (AlertSettings | undefined)[] = to === undefined ? [] : Array.isArray(to) ? (to as readonly (AlertSettings | undefined)[]) : [to as AlertSettings];
    const byName = new Map<string, AlertChannel>();
    for (const settings of list) {
      if (settings === undefined) continue;
      const key = JSON.stringify(settings);
      let channels = this.built.get(key);
      if (channels === undefined) {
        // Settings change only when a config is applied: a bound keeps years of applies from piling up.
        if (this.built.size >= 100) this.built.clear();
        channels = this.channelsOf(settings);
        this.built.set(key, channels);
      }
      for (const channel of channels) byName.set(channel.name, channel);
    }
    return [...byName.values()];
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
