/**
 * In-process wake-ups for long polls: an agent waiting for work, a CLI
 * waiting for a deployment to change. With a database shared by several
 * servers, waiters also re-check the database on an interval, since a change
 * made by another server does not reach this process's listeners.
 */
import { EventEmitter } from 'node:events';

/** Wakes long polls waiting on a key. */
export class Notifier {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  /** Wakes every waiter on `key`. */
  notify(key: string): void {
    this.emitter.emit(key);
  }

  /**
   * Resolves when `key` is notified, `recheckMs` passes (to look at the
   * database again), `timeoutMs` passes, or `signal` aborts.
   */
  wait(key: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.emitter.off(key, done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.emitter.on(key, done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

/** Notifier keys. */
export const keys = {
  host: (name: string) => `host:${name}`,
  deployment: (id: number) => `deployment:${id}`,
  /** A host of the environment installed fire-call trust (close waits for it). */
  firecall: (env: string) => `firecall:${env}`,
  /** An agent command finished (a CLI waits for it). */
  command: (id: number) => `command:${id}`,
};
