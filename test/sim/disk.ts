// A simulated disk for one Raft group on one host, implementing the core's RaftStorage interface.
//
// It separates durable state from writes in flight. The driver starts a write with `begin()`; the write
// becomes durable only when the simulated fsync completes (`complete()`). A crash (`crash()`) drops every
// write not yet completed, and may tear the oldest one: a prefix of it survives in the order the Ready
// contract writes it (snapshot, then entries, then hard state) — so the hard state never survives a tear.
//
// Entries in a write replace the stored entries at and after their first index. A storage that finds a
// leading run of the written entries already stored with the same index and term leaves them alone (they
// are the same entries, by Log Matching), so a torn write never erases entries that were durable before.

import type { Entry, HardState, PersistedState, Snapshot } from '../../src/consensus/types.ts';
import type { Rng } from './rng.ts';

export interface WriteBatch {
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | null;
}

export interface PendingWrite {
  readonly id: number;
  readonly batch: WriteBatch;
}

/** The core asked the storage for something no correct core asks (a gap in the log, a compaction past it). */
export class StorageContractError extends Error {
  override readonly name = 'StorageContractError';
}

export interface CrashOutcome {
  /** Writes in flight that were dropped (wholly or partly). */
  readonly lost: number;
  /** Whether a prefix of the oldest write in flight survived. */
  readonly torn: boolean;
  /** What of the torn write survived, for the trace. */
  readonly detail: string;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: '', commit: 0 };

export class SimDisk {
  private hardState: HardState = EMPTY_HARD_STATE;
  private snapshot: Snapshot | null = null;
  /** Durable entries after the snapshot, contiguous. */
  private log: Entry[] = [];
  private pending: PendingWrite[] = [];
  private nextWriteId = 1;
  /** Completed writes, for the report. */
  writes = 0;

  static from(state: PersistedState): SimDisk {
    const d = new SimDisk();
    d.hardState = state.hardState;
    d.snapshot = state.snapshot;
    d.log = state.entries.slice();
    return d;
  }

  // --- RaftStorage ---------------------------------------------------------------------------------------

  load(): PersistedState {
    return { hardState: this.hardState, snapshot: this.snapshot, entries: this.log.slice() };
  }

  /** A synchronous durable write (the RaftStorage interface); the driver uses begin()/complete() instead. */
  save(u: WriteBatch): void {
    this.apply(u, u.entries.length, true, true);
    this.writes++;
  }

  /** The application compacted its log into `s`: durable at once (a snapshot file, then a log truncation). */
  compact(s: Snapshot): void {
    const snapIndex = this.snapshotIndex();
    const idx = s.meta.index;
    if (idx <= snapIndex) return;
    const last = this.lastIndex();
    if (idx > last) {
      throw new StorageContractError(
        `compact to ${idx} beyond the durable log (last durable index ${last}, snapshot ${snapIndex})`,
      );
    }
    const at = this.log[idx - snapIndex - 1];
    if (at !== undefined && at.term !== s.meta.term) {
      throw new StorageContractError(
        `compact to ${idx}@${s.meta.term} but the stored entry is ${idx}@${at.term}`,
      );
    }
    this.log = this.log.slice(idx - snapIndex);
    this.snapshot = s;
  }

  // --- the simulated write path ----------------------------------------------------------------------------

  begin(batch: WriteBatch): PendingWrite {
    const w: PendingWrite = { id: this.nextWriteId++, batch };
    this.pending.push(w);
    return w;
  }

  /** The fsync of `w` completed: it is durable. Returns false if `w` was lost to a crash meanwhile. */
  complete(w: PendingWrite): boolean {
    const i = this.pending.indexOf(w);
    if (i < 0) return false;
    // Writes complete in order: an fsync makes everything before it durable too.
    const done = this.pending.splice(0, i + 1);
    for (const d of done) {
      this.apply(d.batch, d.batch.entries.length, true, true);
      this.writes++;
    }
    return true;
  }

  get inFlight(): number {
    return this.pending.length;
  }

  /** Power loss: writes in flight are lost; with probability `tearProbability` a prefix of the oldest survives. */
  crash(rng: Rng, tearProbability: number): CrashOutcome {
    const lost = this.pending.length;
    const oldest = this.pending[0];
    this.pending = [];
    if (oldest === undefined || !rng.chance(tearProbability)) return { lost, torn: false, detail: '' };
    const b = oldest.batch;
    const keepSnapshot = b.snapshot !== null && rng.chance(0.5);
    // Entries follow the snapshot on disk: if the batch had a snapshot and it did not survive, nothing did.
    // Any prefix of the entries, up to all of them (then only the hard state is missing).
    const count = b.snapshot !== null && !keepSnapshot ? 0 : rng.int(b.entries.length + 1);
    if (!keepSnapshot && count === 0) return { lost, torn: false, detail: '' };
    this.apply(b, count, keepSnapshot, false);
    const first = b.entries[0];
    const entries =
      count > 0 && first !== undefined ? `entries ${first.index}..${first.index + count - 1}` : '';
    return {
      lost,
      torn: true,
      detail: [keepSnapshot ? `snapshot@${b.snapshot?.meta.index}` : '', entries]
        .filter((x) => x)
        .join(' + '),
    };
  }

  // --- inspection ------------------------------------------------------------------------------------------

  snapshotIndex(): number {
    return this.snapshot?.meta.index ?? 0;
  }

  lastIndex(): number {
    return this.snapshotIndex() + this.log.length;
  }

  durableHardState(): HardState {
    return this.hardState;
  }

  /** The term of the durable entry at `index` (the snapshot's at its index), or undefined if none. */
  durableTerm(index: number): number | undefined {
    const snap = this.snapshot?.meta;
    if (snap !== undefined && index === snap.index) return snap.term;
    const snapIndex = this.snapshotIndex();
    if (index <= snapIndex) return undefined;
    return this.log[index - snapIndex - 1]?.term;
  }

  /** Apply the snapshot (if `withSnapshot`), the first `count` entries, and the hard state (if `withHardState`). */
  private apply(b: WriteBatch, count: number, withSnapshot: boolean, withHardState: boolean): void {
    if (withSnapshot && b.snapshot !== null && b.snapshot.meta.index > this.snapshotIndex()) {
      // As etcd's storage does: a snapshot from the leader replaces the whole log.
      this.snapshot = b.snapshot;
      this.log = [];
    }
    this.appendPrefix(b.entries, count);
    if (withHardState && b.hardState !== null) this.hardState = b.hardState;
  }

  private appendPrefix(entries: readonly Entry[], count: number): void {
    const snapIndex = this.snapshotIndex();
    let start = 0;
    // Entries at or below the snapshot are committed and compacted away: nothing to write.
    while (start < count && (entries[start] as Entry).index <= snapIndex) start++;
    // A leading run already stored (same index and term) is left as it is.
    while (start < count) {
      const e = entries[start] as Entry;
      const stored = this.log[e.index - snapIndex - 1];
      if (stored === undefined || stored.term !== e.term) break;
      start++;
    }
    if (start >= count) return;
    const first = (entries[start] as Entry).index;
    const last = this.lastIndex();
    if (first > last + 1) {
      throw new StorageContractError(`entries start at ${first} but the durable log ends at ${last} (a gap)`);
    }
    this.log.length = first - snapIndex - 1;
    for (let i = start; i < count; i++) {
      const e = entries[i] as Entry;
      if (e.index !== snapIndex + this.log.length + 1) {
        throw new StorageContractError(
          `entries are not contiguous: ${e.index} after ${snapIndex + this.log.length}`,
        );
      }
      this.log.push(e);
    }
  }
}
