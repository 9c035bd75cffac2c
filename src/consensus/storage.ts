import type { Entry, HardState, PersistedState, Snapshot } from './types.ts';

/** What one Ready asks to make durable, in this order: snapshot, entries, hard state. */
export interface StorageUpdate {
  readonly hardState: HardState | null;
  /** Replace stored entries at and after entries[0].index. */
  readonly entries: readonly Entry[];
  /** A snapshot received from the leader: it replaces the whole stored log. */
  readonly snapshot: Snapshot | null;
  /**
   * Ready.mustSync: false when only the commit index changed, which need not be fsynced (it is still
   * written, in order). Absent means true.
   */
  readonly sync?: boolean;
}

/**
 * The narrow storage interface of a Raft group. The core never calls it: the driver loads the state at
 * boot and writes what each Ready asks. Implementations: MemoryStorage (tests, simulator) and RocksDB
 * (src/storage). A save is durable when it returns (or its promise settles): one fsync per call.
 */
export interface RaftStorage {
  load(): PersistedState | Promise<PersistedState>;
  save(update: StorageUpdate): void | Promise<void>;
  /** The application took `snapshot` of its state: keep it and drop entries up to its index. */
  compact(snapshot: Snapshot): void | Promise<void>;
}

/** Everything in memory, "durable" at once. The reference for the interface's semantics. */
export class MemoryStorage implements RaftStorage {
  private hardState: HardState;
  private snapshot: Snapshot | null;
  private entries: Entry[];

  constructor(initial?: PersistedState) {
    this.hardState = initial?.hardState ?? { term: 0, vote: '', commit: 0 };
    this.snapshot = initial?.snapshot ?? null;
    this.entries = [...(initial?.entries ?? [])];
  }

  load(): PersistedState {
    return { hardState: this.hardState, snapshot: this.snapshot, entries: [...this.entries] };
  }

  save(update: StorageUpdate): void {
    if (update.snapshot) {
      this.snapshot = update.snapshot;
      this.entries = [];
    }
    const first = update.entries[0];
    if (first) {
      const offset = this.snapshot?.meta.index ?? 0;
      // Keep entries before the first new one, replace the rest (in place: this is the hot path).
      this.entries.length = Math.min(this.entries.length, Math.max(0, first.index - offset - 1));
      const last = this.entries.at(-1);
      const expected = (last?.index ?? offset) + 1;
      if (first.index !== expected) {
        throw new RangeError(`storage: append at ${first.index} leaves a gap (next is ${expected})`);
      }
      for (const e of update.entries) this.entries.push(e);
    }
    if (update.hardState) this.hardState = update.hardState;
  }

  compact(snapshot: Snapshot): void {
    if (this.snapshot && snapshot.meta.index <= this.snapshot.meta.index) return;
    this.entries = this.entries.filter((e) => e.index > snapshot.meta.index);
    this.snapshot = snapshot;
  }
}
