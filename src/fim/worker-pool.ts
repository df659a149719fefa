/**
 * A pool of scanner worker threads, kept alive between scans (starting a
 * thread costs tens of milliseconds). Requests queue and go to the least busy
 * worker; a worker that dies fails its requests (the scanner turns that into
 * per-entry problems) and is replaced on the next request. With a `priority`,
 * every thread is made polite (nice, I/O class, read cap) before its next
 * request whenever the priority changes.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ScanPriority } from '../core/drift.js';
import type { ConfigureReply, HashRequest, HashResult, ListResult, WorkerReply, WorkerRequest } from './worker-protocol.js';

/** Request without its id (the pool assigns ids). */
type Outgoing = Omit<ListRequest, 'id'> | Omit<HashRequest, 'id'>;
type ListRequest = Extract<WorkerRequest, { type: 'list' }>;

/** How a pool's threads run. */
export interface WorkerPoolOptions {
  /** Read before each request; threads are re-configured when it changed. Absent: threads run as the process does. */
  readonly priority?: () => ScanPriority;
  /** Told what a thread could not apply of the priority (one line), once per change. */
  readonly onPriorityProblem?: (problem: string) => void;
  /** Told each thread's id once it applied a priority (tests, logs). */
  readonly onConfigured?: (reply: ConfigureReply) => void;
}

interface Pending {
  readonly request: WorkerRequest;
  readonly resolve: (reply: WorkerReply) => void;
  readonly reject: (error: Error) => void;
  /** A request still queued when this aborts is dropped (rejected) instead of being sent to a worker. */
  readonly signal: AbortSignal | undefined;
}

interface Slot {
  worker: Worker;
  readonly inFlight: Map<number, Pending>;
  /** The priority last sent to this thread (its JSON), '' for none. */
  priorityKey: string;
}

/** Worker threads that list directories and hash files for the scanner. */
export class FimWorkerPool {
  readonly size: number;
  readonly #slots: (Slot | undefined)[];
  readonly #queue: Pending[] = [];
  readonly #options: WorkerPoolOptions;
  /** Problems already told for the current priority (each thread reports the same ones). */
  readonly #told = new Set<string>();
  #nextId = 1;
  #closed = false;

  /** `size` defaults to the number of CPUs (at least 1, at most 8). */
  constructor(size: number = Math.min(8, Math.max(1, availableParallelism())), options: WorkerPoolOptions = {}) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError('worker pool size must be a positive integer');
    this.size = size;
    this.#slots = new Array<Slot | undefined>(size).fill(undefined);
    this.#options = options;
  }

  /** Lists one directory (absolute path). */
  list(dir: string, signal?: AbortSignal): Promise<ListResult> {
    return this.#submit({ type: 'list', dir }, signal) as Promise<ListResult>;
  }

  /** Hashes a batch of files (see HashRequest); results in the order given. */
  async hash(files: Pick<HashRequest, 'paths' | 'signatures' | 'racySinceNs'>, signal?: AbortSignal): Promise<readonly HashResult[]> {
    const reply = (await this.#submit({ type: 'hash', ...files }, signal)) as { results: readonly HashResult[] };
    return reply.results;
  }

  /** Stops every worker; pending requests fail. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const pending of this.#queue.splice(0)) pending.reject(new Error('worker pool closed'));
    await Promise.all(
      this.#slots.map(async (slot, index) => {
        if (!slot) return;
        this.#slots[index] = undefined;
        for (const pending of slot.inFlight.values()) pending.reject(new Error('worker pool closed'));
        await slot.worker.terminate();
      }),
    );
  }

  #submit(outgoing: Outgoing, signal: AbortSignal | undefined): Promise<WorkerReply> {
    if (this.#closed) return Promise.reject(new Error('worker pool closed'));
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const request = { ...outgoing, id: this.#nextId++ } as WorkerRequest;
    return new Promise((resolve, reject) => {
      this.#queue.push({ request, resolve, reject, signal });
      this.#pump();
    });
  }

  /** Keeps two requests in flight per worker: one running, one ready, so a worker never waits on us. */
  #pump(): void {
    while (this.#queue.length > 0) {
      let best = -1;
      let bestLoad = 2;
      for (let index = 0; index < this.size; index++) {
        const load = this.#slots[index]?.inFlight.size ?? 0;
        if (load < bestLoad) {
          best = index;
          bestLoad = load;
        }
      }
      if (best < 0) return;
      const pending = this.#queue.shift() as Pending;
      if (pending.signal?.aborted) {
        pending.reject(abortError(pending.signal));
        continue;
      }
      const slot = this.#slots[best] ?? this.#start(best);
      this.#configure(slot);
      slot.inFlight.set(pending.request.id, pending);
      slot.worker.ref();
      slot.worker.postMessage(pending.request);
    }
  }

  /** Sends the current priority to a thread that does not have it yet (it is applied before the request that follows). */
  #configure(slot: Slot): void {
    const priority = this.#options.priority?.();
    if (priority === undefined) return;
    const key = JSON.stringify(priority);
    if (slot.priorityKey === key) return;
    if (!this.#slots.some((other) => other?.priorityKey === key)) this.#told.clear();
    slot.priorityKey = key;
    // The read cap is the pool's: each thread gets an even share.
    const share = priority.maxReadBytesPerSecond === null ? null : Math.max(1, Math.floor(priority.maxReadBytesPerSecond / this.size));
    slot.worker.postMessage({ type: 'configure', id: this.#nextId++, nice: priority.nice, ionice: priority.ionice, maxReadBytesPerSecond: share } satisfies WorkerRequest);
  }

  #configured(reply: ConfigureReply): void {
    this.#options.onConfigured?.(reply);
    for (const problem of reply.problems) {
      if (this.#told.has(problem)) continue;
      this.#told.add(problem);
      this.#options.onPriorityProblem?.(problem);
    }
  }

  #start(index: number): Slot {
    // A worker inherits the process's execArgv; --input-type (node -e) makes a file-backed worker fail to start.
    const execArgv = process.execArgv.filter((arg) => !arg.startsWith('--input-type'));
    const worker = new Worker(new URL('./fim-worker.js', import.meta.url), { execArgv });
    const slot: Slot = { worker, inFlight: new Map(), priorityKey: '' };
    this.#slots[index] = slot;
    worker.on('message', (reply: WorkerReply) => {
      if ('configured' in reply) return this.#configured(reply);
      const pending = slot.inFlight.get(reply.id);
      slot.inFlight.delete(reply.id);
      pending?.resolve(reply);
      // An idle pool must not keep the process alive; a busy one must (a promise alone does not).
      if (slot.inFlight.size === 0) worker.unref();
      this.#pump();
    });
    const fail = (error: Error): void => {
      if (this.#slots[index] === slot) this.#slots[index] = undefined;
      for (const pending of slot.inFlight.values()) pending.reject(error);
      slot.inFlight.clear();
      if (!this.#closed) this.#pump();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`scanner worker exited with code ${code}`)));
    return slot;
  }
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException('the scan was aborted', 'AbortError');
}
