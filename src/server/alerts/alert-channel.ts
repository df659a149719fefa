/** Alerts: what Lockstep tells people about, and the interface every channel implements. */

/** One alert, as every channel receives it. */
export interface Alert {
  /** What happened, e.g. `deployment.failed`, `host.unhealthy`. */
  readonly kind: string;
  readonly env: string;
  /** One line for people. */
  readonly summary: string;
  readonly at: string;
  readonly details: Readonly<Record<string, unknown>>;
}

/** A way to deliver alerts (webhook, email…). `send` may throw; the dispatcher retries. */
export interface AlertChannel {
  /** For logs: `webhook https://…`. */
  readonly name: string;
  send(alert: Alert): Promise<void>;
}
