import { RaftInvariantError } from './errors.ts';
import type { Entry, Snapshot } from './types.ts';

/**
 * The replicated log as one node holds it: a snapshot (the compacted prefix) followed by the entries after
 * it. The core keeps the uncompacted log in memory — compaction bounds it — so it never reads storage after
 * boot and stays pure. Four indexes order everything:
 *
 *   applied <= committed, and  applied <= stable <= lastIndex
 *
 * `stable` is the last index known durable on this node's disk; `unstableFrom` is the first index not yet
 * handed to the driver for writing. Committed entries are handed out for applying only up to `stable`.
 */
export class RaftLog {
  /** Index and term of the last entry folded into the snapshot (0/0: none). */
  private offsetIndex = 0;
  private offsetTerm = 0;
  private entries: Entry[] = [];
  /** The latest snapshot, sent to followers that need entries we compacted. */
  snapshot: Snapshot | null = null;
  /** A snapshot received from the leader, not yet handed to the driver. */
  pendingSnapshot: Snapshot | null = null;
  committed = 0;
  applied = 0;
  /** Last index handed out for applying (applied once the driver calls advance). */
  applying = 0;
  stable = 0;
  unstableFrom = 1;

  static restore(
    snapshot: Snapshot | null,
    entries: readonly Entry[],
    commit: number,
    applied: number,
  ): RaftLog {
    const log = new RaftLog();
    if (snapshot) {
      log.offsetIndex = snapshot.meta.index;
      log.offsetTerm = snapshot.meta.term;
      log.snapshot = snapshot;
    }
    let expect = log.offsetIndex + 1;
    for (const e of entries) {
      if (e.index < expect) continue; // already inside the snapshot
      if (e.index !== expect) throw new RaftInvariantError(`log: gap at index ${expect}, found ${e.index}`);
      log.entries.push(e);
      expect++;
    }
    log.stable = log.lastIndex();
    log.unstableFrom = log.stable + 1;
    // Whatever the state machine applied was committed, even if the stored commit index is older (it is
    // written without fsync, and the state machine may be stored elsewhere).
    log.committed = Math.min(Math.max(commit, applied, log.offsetIndex), log.lastIndex());
    log.applied = Math.min(Math.max(applied, log.offsetIndex), log.committed);
    log.applying = log.applied;
    return log;
  }

  firstIndex(): number {
    return this.offsetIndex + 1;
  }

  lastIndex(): number {
    return this.offsetIndex + this.entries.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  /** The term of entry `i`, or undefined when compacted away or beyond the end. */
  term(i: number): number | undefined {
    if (i === this.offsetIndex) return this.offsetTerm;
    if (i < this.offsetIndex || i > this.lastIndex()) return undefined;
    return this.entries[i - this.offsetIndex - 1]!.term;
  }

  matchTerm(i: number, term: number): boolean {
    return this.term(i) === term;
  }

  /** Raft §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * The last index at or below `index` whose term is at most `term` (etcd's findConflictByTerm). A probe
   * that failed at `index` can skip back a whole term at a time instead of one entry per round trip.
   * Below the snapshot everything is committed, hence matching: answer the snapshot index with term 0.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = Math.min(index, this.lastIndex()); i > this.offsetIndex; i--) {
      const t = this.term(i)!;
      if (t <= term) return { index: i, term: t };
    }
    return { index: this.offsetIndex, term: 0 };
  }

  /** Entries in [lo, hi), at most `maxEntries` and about `maxBytes` (at least one entry when any). */
  slice(
    lo: number,
    hi: number,
    maxEntries = Number.POSITIVE_INFINITY,
    maxBytes = Number.POSITIVE_INFINITY,
  ): Entry[] {
    if (lo < this.firstIndex())
      throw new RaftInvariantError(`log: slice from ${lo} below first index ${this.firstIndex()}`);
    const end = Math.min(hi, this.lastIndex() + 1, lo + maxEntries);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < end; i++) {
      const e = this.entries[i - this.offsetIndex - 1]!;
      bytes += e.data.length;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** Leader append of new entries at the end. */
  append(entries: readonly Entry[]): void {
    for (const e of entries) this.entries.push(e);
  }

  /**
   * Follower append (Raft Figure 2, AppendEntries receiver rules 2–5). Returns the index of the last new
   * entry, or undefined when `prevIndex/prevTerm` does not match (the caller rejects).
   */
  maybeAppend(
    prevIndex: number,
    prevTerm: number,
    leaderCommit: number,
    entries: readonly Entry[],
  ): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + entries.length;
    // Find the first entry that is not already in the log; entries inside the snapshot are committed.
    let k = 0;
    while (k < entries.length) {
      const e = entries[k]!;
      if (e.index > this.offsetIndex) {
        const t = this.term(e.index);
        if (t !== e.term) break;
      }
      k++;
    }
    if (k < entries.length) {
      const first = entries[k]!;
      if (first.index <= this.committed) {
        throw new RaftInvariantError(
          `log: entry ${first.index} (term ${first.term}) conflicts with committed entry (commit ${this.committed})`,
        );
      }
      this.truncateFrom(first.index);
      for (let j = k; j < entries.length; j++) this.entries.push(entries[j]!);
    }
    this.commitTo(Math.min(leaderCommit, lastNew));
    return lastNew;
  }

  private truncateFrom(index: number): void {
    this.entries.length = index - this.offsetIndex - 1;
    if (this.unstableFrom > index) this.unstableFrom = index;
    if (this.stable >= index) this.stable = index - 1;
  }

  commitTo(index: number): boolean {
    if (index <= this.committed) return false;
    if (index > this.lastIndex()) {
      throw new RaftInvariantError(`log: commit ${index} beyond last index ${this.lastIndex()}`);
    }
    this.committed = index;
    return true;
  }

  /** Replace the whole log by a snapshot received from the leader (InstallSnapshot). */
  restoreSnapshot(s: Snapshot): void {
    this.offsetIndex = s.meta.index;
    this.offsetTerm = s.meta.term;
    this.entries = [];
    this.snapshot = s;
    this.pendingSnapshot = s;
    this.committed = s.meta.index;
    this.stable = Math.min(this.stable, s.meta.index - 1);
    this.unstableFrom = s.meta.index + 1;
  }

  /** Fold entries up to `s.meta.index` (applied) into the snapshot `s`. */
  compact(s: Snapshot): void {
    const i = s.meta.index;
    if (i <= this.offsetIndex) return;
    if (i > this.applied) throw new RaftInvariantError(`log: compact ${i} beyond applied ${this.applied}`);
    const term = this.term(i)!;
    this.entries = this.entries.slice(i - this.offsetIndex);
    this.offsetIndex = i;
    this.offsetTerm = term;
    this.snapshot = s;
  }

  unstableEntries(): Entry[] {
    if (this.unstableFrom > this.lastIndex()) return [];
    return this.slice(Math.max(this.unstableFrom, this.firstIndex()), this.lastIndex() + 1);
  }

  /** The driver made `entries` (ending at index/term) and the pending snapshot durable. */
  stableTo(index: number, term: number): void {
    // If the tail was replaced meanwhile, the term no longer matches and the new tail is not durable yet.
    if (this.matchTerm(index, term) && index > this.stable) {
      this.stable = index;
      if (this.unstableFrom <= index) this.unstableFrom = index + 1;
    }
  }

  stableSnapTo(s: Snapshot): void {
    if (this.pendingSnapshot === s) this.pendingSnapshot = null;
    if (this.stable < s.meta.index) this.stable = s.meta.index;
  }

  /** Committed entries ready to apply: durable here and not yet handed out. */
  nextCommitted(maxEntries: number): Entry[] {
    const hi = Math.min(this.committed, this.stable);
    const lo = Math.max(this.applying + 1, this.firstIndex());
    if (lo > hi) return [];
    return this.slice(lo, hi + 1, maxEntries);
  }

  hasNextCommitted(): boolean {
    return Math.min(this.committed, this.stable) > this.applying && this.pendingSnapshot === null;
  }
}
