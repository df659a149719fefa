/** What every server service needs; built once by the composition root. */
import type { Logger } from 'pino';
import type { BlobStore } from '../content/blob-store.js';
import type { Store } from '../store/store.js';
import type { AlertDispatcher } from './alerts/alert-dispatcher.js';
import type { RolloutViews } from './deployments/rollout-views.js';
import type { Notifier } from './notifier.js';
import type { SecretKeyFile } from './secrets/secret-key.js';

export interface ServerContext {
  readonly store: Store;
  readonly blobs: BlobStore;
  readonly notifier: Notifier;
  readonly alerts: AlertDispatcher;
  readonly logger: Logger;
  /** The clock; injected so tests and policies never read time themselves. */
  readonly now: () => Date;
  /** How long a host counts as online after it was last seen. */
  readonly onlineWindowMs: number;
  /** The in-flight deployments as this server last committed them (deployments/rollout-views.ts). */
  readonly rollouts: RolloutViews;
  /** Aborted when the server shuts down, so long polls end before the store closes. */
  readonly shutdown: AbortSignal;
  /** The key that seals secrets (undefined: this server was built without one and refuses to set secrets). */
  readonly secretKey: SecretKeyFile | undefined;
  /** The CA of the server's TLS certificate, which agents pin (undefined: plain HTTP). */
  readonly serverCa?: ServerCa | undefined;
}

/** The CA an HTTPS server's certificate chains to: its PEM and `sha256:` fingerprint. */
export interface ServerCa {
  readonly pem: string;
  readonly fingerprint: string;
}

/** Who is calling: a person or script with a user token, or one host's agent. */
export type Principal =
  | { readonly kind: 'user'; readonly name: string; readonly role: string; readonly envs: readonly string[] | null }
  | { readonly kind: 'agent'; readonly name: string; readonly host: string; readonly env: string };
