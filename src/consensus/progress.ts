import type { ProgressStatus } from './types.ts';

/**
 * The leader's view of one follower (Raft thesis §3.5; the states are etcd's):
 * - probe: we do not know where the follower's log matches; one append at a time until it answers.
 * - replicate: appends are pipelined optimistically, bounded by `maxInflight` messages in flight.
 * - snapshot: the follower needs a snapshot; nothing else is sent until it acknowledges or times out.
 */
export class Progress {
  match = 0;
  next: number;
  state: 'probe' | 'replicate' | 'snapshot' = 'probe';
  /** In probe: an append is outstanding; released by its answer or the next heartbeat answer. */
  probeSent = false;
  pendingSnapshot = 0;
  /** Ticks spent in the snapshot state, to retry a snapshot the network lost. */
  snapshotTicks = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  learner: boolean;
  /** Last index of each append in flight, oldest first: flow control for the pipeline. */
  private inflights: number[] = [];
  private readonly maxInflight: number;

  constructor(next: number, maxInflight: number, learner: boolean) {
    this.next = next;
    this.maxInflight = maxInflight;
    this.learner = learner;
  }

  becomeProbe(): void {
    // After a snapshot, continue from it; otherwise from just past the known match.
    this.next =
      this.state === 'snapshot' ? Math.max(this.match + 1, this.pendingSnapshot + 1) : this.match + 1;
    this.state = 'probe';
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights = [];
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.next = this.match + 1;
    this.pendingSnapshot = 0;
    this.inflights = [];
  }

  becomeSnapshot(index: number): void {
    this.state = 'snapshot';
    this.pendingSnapshot = index;
    this.snapshotTicks = 0;
    this.inflights = [];
  }

  /** An accepted append up to `n`. Returns false when the answer is stale. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    if (this.next < n + 1) this.next = n + 1;
    while (this.inflights.length > 0 && this.inflights[0]! <= n) this.inflights.shift();
    return updated;
  }

  /** A rejected append at `rejected`; `hint` is the follower's last index. Returns false when stale. */
  maybeDecrTo(rejected: number, hint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.becomeProbe();
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /** Optimistically account an append that ends at `last`. */
  sent(last: number, entries: number): void {
    if (this.state === 'replicate') {
      if (entries > 0) {
        this.next = last + 1;
        this.inflights.push(last);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  isPaused(): boolean {
    if (this.state === 'probe') return this.probeSent;
    if (this.state === 'snapshot') return true;
    return this.inflights.length >= this.maxInflight;
  }

  /** A heartbeat answer: the follower is alive, so let a stuck probe or a full pipeline move again. */
  onHeartbeatResponse(): void {
    this.probeSent = false;
    if (this.state === 'replicate' && this.inflights.length >= this.maxInflight) this.inflights.shift();
  }

  status(): ProgressStatus {
    return {
      match: this.match,
      next: this.next,
      state: this.state,
      inflight: this.inflights.length,
      recentActive: this.recentActive,
      learner: this.learner,
    };
  }
}
