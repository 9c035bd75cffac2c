// Watches of one scope: a bounded history of recent changes (by modify index) and the live subscribers.
// A watcher that asks for changes after index X gets the history after X when the history still reaches
// back to X, and otherwise (X = 0, or X older than the history) the current state of every matching name
// first, then a "synced" marker — like etcd's watch after compaction, but answered with the state instead
// of an error, so a reconnecting client never has to know which case it hit.

import type { Instance } from '../registry/index.ts';
import { isUnder } from '../registry/index.ts';

export interface NameChange {
  readonly name: string;
  readonly instances: readonly Instance[];
  readonly modifyIndex: number;
}

export interface WatchFilter {
  readonly name: string;
  readonly prefix: boolean;
}

export type WatchEventKind = 'change' | 'state' | 'synced';

export interface WatchEvent extends NameChange {
  readonly kind: WatchEventKind;
}

export interface WatchSink {
  send(event: WatchEvent): void;
  /** The hub can no longer serve this watch (the state was replaced): the client reconnects. */
  close(reason: string): void;
}

/** Reads the current state of the names a filter covers (from the scope's state machine). */
export type StateReader = (filter: WatchFilter) => Iterable<NameChange>;

export function matches(filter: WatchFilter, name: string): boolean {
  return filter.prefix ? filter.name === '' || isUnder(name, filter.name) : name === filter.name;
}

export class WatchHub {
  readonly #history: NameChange[] = [];
  readonly #capacity: number;
  /** Every change with a modify index above this is in the history. */
  #floor: number;
  readonly #subs = new Map<WatchSink, WatchFilter>();

  constructor(appliedIndex: number, capacity = 8192) {
    this.#floor = appliedIndex;
    this.#capacity = capacity;
  }

  get watchers(): number {
    return this.#subs.size;
  }

  publish(change: NameChange): void {
    this.#history.push(change);
    if (this.#history.length > this.#capacity) {
      const dropped = this.#history.splice(0, this.#history.length - this.#capacity);
      this.#floor = (dropped.at(-1) as NameChange).modifyIndex;
    }
    for (const [sink, filter] of this.#subs) {
      if (matches(filter, change.name)) sink.send({ kind: 'change', ...change });
    }
  }

  /** The state was replaced by a snapshot: history is void, every watcher must reconnect. */
  reset(appliedIndex: number): void {
    this.#history.length = 0;
    this.#floor = appliedIndex;
    for (const sink of [...this.#subs.keys()])
      sink.close('the scope state was replaced by a snapshot; reconnect');
    this.#subs.clear();
  }

  /** Starts a watch; returns the function that ends it. */
  subscribe(filter: WatchFilter, afterIndex: number, sink: WatchSink, readState: StateReader): () => void {
    if (afterIndex > 0 && afterIndex >= this.#floor) {
      for (const change of this.#history) {
        if (change.modifyIndex > afterIndex && matches(filter, change.name))
          sink.send({ kind: 'change', ...change });
      }
    } else {
      let last = 0;
      for (const state of readState(filter)) {
        last = Math.max(last, state.modifyIndex);
        sink.send({ kind: 'state', ...state });
      }
      sink.send({ kind: 'synced', name: filter.name, instances: [], modifyIndex: last });
    }
    this.#subs.set(sink, filter);
    return () => {
      this.#subs.delete(sink);
    };
  }

  closeAll(reason: string): void {
    for (const sink of [...this.#subs.keys()]) sink.close(reason);
    this.#subs.clear();
  }
}
