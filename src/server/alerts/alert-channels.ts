/** The channels an environment's `alerts:` configuration names. */
import type { EnvironmentConfig } from '../../core/config.js';
import type { AlertChannel } from './alert-channel.js';
import { EmailChannel } from './email/email-channel.js';
import { WebhookChannel } from './webhook/webhook-channel.js';

/** Builds the alert channels of one environment: each webhook, and email when configured. */
export function alertChannelsOf(env: EnvironmentConfig | undefined): AlertChannel[] {
  if (!env) return [];
  const channels: AlertChannel[] = env.alerts.webhooks.map((url) => new WebhookChannel(url));
  if (env.alerts.email) channels.push(new EmailChannel(env.alerts.email));
  return channels;
}
