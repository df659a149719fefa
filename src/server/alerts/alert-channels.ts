/** The channels an environment's `alerts:` configuration names. */
import type { EnvironmentConfig } from '../../core/config.js';
import type { AlertChannel } from './alert-channel.js';
import { WebhookChannel } from './webhook/webhook-channel.js';

/** Builds the alert channels of one environment. */
export function alertChannelsOf(env: EnvironmentConfig | undefined): AlertChannel[] {
  if (!env) return [];
  return env.alerts.webhooks.map((url) => new WebhookChannel(url));
}
