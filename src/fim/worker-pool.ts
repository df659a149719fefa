/**
 * A pool of scanner worker threads, kept alive between scans (starting a
 * thread costs tens of milliseconds). Requests queue and go to the least busy
 * worker; a worker that dies fails its requests (the scanner turns that into
 * per-entry problems) and is replaced on the next request.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { HashRequest, HashResult, ListResult, WorkerReply, WorkerRequest } from './worker-protocol.js';

/** Request without its id (the pool assigns ids). */
type Outgoing = Omit<ListRequest, 'id'> | Omit<HashRequest, 'id'>;
type ListRequest = Extract<WorkerRequest, { type: 'list' }>;

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
}

/** Worker threads that list directories and hash files for the scanner. */
export class FimWorkerPool {
  readonly size: number;
  readonly #slots: (Slot | undefined)[];
  readonly #queue: Pending[] = [];
  #nextId = 1;
  #closed = false;

  /** `size` defaults to the number of CPUs (at least 1, at most 8). */
  constructor(size: number = Math.min(8, Math.max(1, availableParallelism()))) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError('worker pool size must be a positive integer');
    this.size = size;
    this.#slots = new Array<Slot | undefined>(size).fill(undefined);
  }

  /** Lists one directory (absolute path). */
  list(dir: string, signal?: AbortSignal): Promise<ListResult> {
    return this.#submit({ type: 'list', dir }, signal) as Promise<ListResult>;
  }

  /** Hashes a batch of files; results in the order given. */
  async hash(files: HashRequest['files'], signal?: AbortSignal): Promise<readonly HashResult[]> {
    const reply = (await this.#submit({ type: 'hash', files }, signal)) as { results: readonly HashResult[] };
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
      slot.inFlight.set(pending.request.id, pending);
      slot.worker.ref();
      slot.worker.postMessage(pending.request);
    }
  }

  #start(index: number): Slot {
    // A worker inherits the process's execArgv; --input-type (node -e) makes a file-backed worker fail to start.
    const execArgv = process.execArgv.filter((arg) => !arg.startsWith('--input-type'));
    const worker = new Worker(new URL('./fim-worker.js', import.meta.url), { execArgv });
    const slot: Slot = { worker, inFlight: new Map() };
    this.#slots[index] = slot;
    worker.on('message', (reply: WorkerReply) => {
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
