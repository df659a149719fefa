/** The channels an environment's `alerts:` configuration names. */
import type { EnvironmentConfig } from '../../core/config.js';
import type { AlertChannel } from './alert-channel.js';
import { EmailChannel } from './email/email-channel.js';
import { WebhookChannel } from './webhook/webhook-channel.js';

/** An environment's `alerts:` block of lockstep.yaml: where its alerts go. */
export type AlertSettings = EnvironmentConfig['alerts'];

/** Builds the channels `alerts:` names: each webhook, and email when configured. */
export function alertChannelsOf(settings: AlertSettings): AlertChannel[] {
  const channels: AlertChannel[] = settings.webhooks.map((url) => new WebhookChannel(url));
  if (settings.email) channels.push(new EmailChannel(settings.email));
  return channels;
}
