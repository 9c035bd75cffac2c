// The worker thread that owns the anchor's Raft database (see threaded-raft-store.ts): it runs the
// RocksRaftStore on requests from the main thread, so that each save's fsync blocks this thread, never
// the anchor's event loop.

import { parentPort, workerData } from 'node:worker_threads';
import {
  RocksRaftStore,
  type RocksRaftStoreOptions,
  StorageCorruptionError,
} from './rocksdb-raft-storage.ts';

export interface WorkerRequest {
  readonly id: number;
  readonly op: 'load' | 'save' | 'compact' | 'close';
  readonly scope: string;
  readonly arg?: unknown;
}

export type WorkerReply =
  | { readonly type: 'reply'; readonly id: number; readonly result: unknown }
  | {
      readonly type: 'reply';
      readonly id: number;
      readonly error: { name: string; message: string; scope?: string; key?: string };
    }
  | { readonly type: 'log'; readonly line: string };

const port = parentPort;
if (port === null) throw new Error('raft-store-worker.ts runs as a worker thread');
const { path, options } = workerData as {
  path: string;
  options: Pick<RocksRaftStoreOptions, 'cacheBytes' | 'memtableBytes' | 'compression'>;
};
const reply = (m: WorkerReply) => port.postMessage(m);

const opened = RocksRaftStore.open(path, { ...options, logger: (line) => reply({ type: 'log', line }) });

port.on('message', async (req: WorkerRequest) => {
  try {
    const store = await opened;
    let result: unknown;
    if (req.op === 'close') result = await store.close();
    else {
      const s = store.forScope(req.scope);
      if (req.op === 'load') result = await s.load();
      else if (req.op === 'save') result = await s.save(req.arg as Parameters<typeof s.save>[0]);
      else result = await s.compact(req.arg as Parameters<typeof s.compact>[0]);
    }
    reply({ type: 'reply', id: req.id, result });
  } catch (error) {
    const e = error as Error;
    reply({
      type: 'reply',
      id: req.id,
      error: {
        name: e.name,
        // abstract-level wraps the reason (a held LOCK, an unreadable file) in `cause`.
        message: e.cause instanceof Error ? `${e.message}: ${e.cause.message}` : e.message,
        ...(e instanceof StorageCorruptionError ? { scope: e.scope, key: e.key } : {}),
      },
    });
  }
});
