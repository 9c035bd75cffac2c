// The anchor's Raft storage on a worker thread. @nxtedition/rocksdb performs a synced batch synchronously
// on the calling thread, so on the main thread every Raft fsync stalled the anchor's event loop (gRPC,
// peer traffic, applies) for its duration; profiles of a 3-anchor group under load showed it as the
// largest single cost. Here a worker owns the Raft database (RocksRaftStore, unchanged) and the main
// thread only posts requests: fsyncs overlap with the network, as etcd's WAL goroutine does.
//
// The registry's state lives in a second database on the main thread (its reads must be synchronous).
// Its commits happen after the entries they reflect were synced here, so it can lag the Raft log after a
// crash but never lead it; a lagging registry is replayed from the log, or restored from the log's
// snapshot when the log was compacted past it.

import { Worker } from 'node:worker_threads';
import type { RaftStorage, StorageUpdate } from '../consensus/storage.ts';
import type { PersistedState, ScopeId, Snapshot } from '../consensus/types.ts';
import type { WorkerReply, WorkerRequest } from './raft-store-worker.ts';
import { StorageCorruptionError } from './rocksdb-raft-storage.ts';

export interface ThreadedRaftStoreOptions {
  readonly logger?: (line: string) => void;
  readonly cacheBytes?: number;
  readonly memtableBytes?: number;
  readonly compression?: boolean;
  readonly signal?: AbortSignal;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class ThreadedRaftStore {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  readonly #scopes = new Map<ScopeId, RaftStorage>();
  #nextId = 1;
  #dead: Error | null = null;
  #closing: Promise<void> | null = null;

  private constructor(worker: Worker, logger: (line: string) => void) {
    this.#worker = worker;
    worker.on('message', (m: WorkerReply) => {
      if (m.type === 'log') {
        logger(m.line);
        return;
      }
      const p = this.#pending.get(m.id);
      if (p === undefined) return;
      this.#pending.delete(m.id);
      if ('error' in m) {
        const e = m.error;
        p.reject(
          e.name === 'StorageCorruptionError' && e.scope !== undefined && e.key !== undefined
            ? Object.assign(new StorageCorruptionError(e.scope, e.key, ''), { message: e.message })
            : Object.assign(new Error(e.message), { name: e.name }),
        );
      } else p.resolve(m.result);
    });
    const fail = (error: Error) => {
      this.#dead = error;
      for (const p of this.#pending.values()) p.reject(error);
      this.#pending.clear();
    };
    worker.on('error', (e) => fail(new Error(`raft storage thread failed: ${e.message}`)));
    worker.on('exit', (code) => fail(new Error(`raft storage thread exited (code ${code})`)));
  }

  /** Starts the worker and opens (creating if missing) the database at `path` in it. */
  static async open(path: string, options: ThreadedRaftStoreOptions = {}): Promise<ThreadedRaftStore> {
    options.signal?.throwIfAborted();
    const { cacheBytes, memtableBytes, compression } = options;
    const worker = new Worker(new URL('./raft-store-worker.ts', import.meta.url), {
      workerData: { path, options: { cacheBytes, memtableBytes, compression } },
      // The thread holds only writes in flight: a small young generation keeps its heap small.
      resourceLimits: { maxYoungGenerationSizeMb: 8 },
    });
    const store = new ThreadedRaftStore(worker, options.logger ?? (() => {}));
    // Surface an open failure (a locked or unreadable database) now, not at the first save.
    try {
      await store.#call('load', '-probe-');
    } catch (error) {
      await worker.terminate();
      throw new Error(`cannot open the Raft database at ${path}: ${(error as Error).message}`);
    }
    return store;
  }

  forScope(scope: ScopeId): RaftStorage {
    let s = this.#scopes.get(scope);
    if (s === undefined) {
      s = {
        load: () => this.#call('load', scope) as Promise<PersistedState>,
        save: (update: StorageUpdate) => this.#call('save', scope, update) as Promise<void>,
        compact: (snapshot: Snapshot) => this.#call('compact', scope, snapshot) as Promise<void>,
      };
      this.#scopes.set(scope, s);
    }
    return s;
  }

  /** Waits for the queued operations, closes the database and ends the thread; idempotent. */
  /** The storage thread's V8 heap (it is not in the main thread's process metrics). */
  async heapStatistics(): Promise<{ used: number; total: number }> {
    const h = await this.#worker.getHeapStatistics();
    return { used: h.used_heap_size, total: h.total_heap_size };
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#dead === null) {
        try {
          await this.#call('close', '');
        } finally {
          await this.#worker.terminate();
        }
      }
    })();
    return this.#closing;
  }

  #call(op: WorkerRequest['op'], scope: string, arg?: unknown): Promise<unknown> {
    if (this.#dead !== null) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, op, scope, arg } satisfies WorkerRequest);
    });
  }
}
