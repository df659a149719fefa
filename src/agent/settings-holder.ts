/**
 * The host's settings (deploy_to, watch paths, scan intervals) as the server
 * last sent them. Fetched at start and again whenever a work response names
 * another revision; parts of the agent read them through `get` and hear of
 * changes through `onChange`.
 */
import type { Logger } from 'pino';
import type { HostSettings } from '../api/schemas.js';
import { isTransient, retry } from './retry.js';

/** Where settings come from (the server's GET /agent/settings). */
export interface SettingsSource {
  settings(signal: AbortSignal): Promise<HostSettings>;
}

/** Holds the latest settings; refreshes are coalesced so that one fetch runs at a time. */
export class SettingsHolder {
  #current: HostSettings | null = null;
  #inFlight: Promise<void> | null = null;
  readonly #listeners: ((settings: HostSettings) => void)[] = [];

  constructor(
    private readonly source: SettingsSource,
    private readonly logger: Logger,
  ) {}

  /** The latest settings, or null before the first successful fetch. */
  readonly get = (): HostSettings | null => this.#current;

  /** Calls `listener` with every new revision (not with the current one). */
  onChange(listener: (settings: HostSettings) => void): void {
    this.#listeners.push(listener);
  }

  /** Whether a work response's revision means the held settings are stale ('' : a server that does not send one). */
  isStale(revision: string): boolean {
    return revision !== '' && revision !== this.#current?.revision;
  }

  /**
   * Fetches the settings, retrying transient failures until the signal aborts.
   * Any other failure (an older server without the route) is logged and leaves the held settings as they are.
   */
  refresh(signal: AbortSignal): Promise<void> {
    this.#inFlight ??= this.#fetch(signal).finally(() => {
      this.#inFlight = null;
    });
    return this.#inFlight;
  }

  async #fetch(signal: AbortSignal): Promise<void> {
    let settings: HostSettings;
    try {
      settings = await retry(() => this.source.settings(signal), {
        signal,
        onRetry: (error, attempt, delayMs) => this.logger.warn({ err: error, attempt, delayMs }, 'cannot get the host settings yet; retrying'),
      });
    } catch (error) {
      if (signal.aborted) return;
      this.logger.error({ err: error, transient: isTransient(error) }, 'cannot get the host settings; drift watching waits for them');
      return;
    }
    if (settings.revision === this.#current?.revision) return;
    this.#current = settings;
    this.logger.info({ revision: settings.revision, deployTo: settings.deployTo, watch: settings.watch.map((spec) => spec.path) }, 'host settings received');
    for (const listener of this.#listeners) listener(settings);
  }
}
