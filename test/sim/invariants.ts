// Safety checkers that live outside the nodes (TigerBeetle's habit): they see what the drivers see — Readys,
// messages on the wire, applied entries, in-memory logs — and never trust a node's own claims about others.
//
//   election-safety       at most one leader per term per group, over the whole run (Raft §5.2)
//   log-matching          two logs holding an entry with the same index and term hold identical entries up to
//                         it (Raft §5.3) — checked at intervals over the overlapping ranges of all live logs
//   leader-completeness   a leader of term T holds every entry committed in terms before T (Raft §5.4),
//                         unless its snapshot covers it — checked when the leader is first seen
//   state-machine-safety  no two members of a group apply different entries at the same index (Raft §5.4.3);
//                         a snapshot installed at index i agrees with the entry applied at i
//   snapshot-agreement    two members that snapshot their state machine at the same index produce the same bytes
//   lineage-agreement     two members at the same applied index have the same lineage: the same size after every
//                         apply, and the same Merkle root (LineageLog.root()) where it is compared — at every
//                         snapshot taken or installed and at every log-matching round
//   apply-order           a member applies entries once each, in index order, without gaps
//   ack-durability        a message that promises durable state is backed by the disk when it is sent: an
//                         accepted append-resp for index i means the disk holds the entry at i (of the term
//                         the node's log has there), a granted vote means the disk holds that term and vote
//                         (the Ready contract: such messages come in messagesAfterPersist)
//   ack-consistency       an accepted append-resp for index i is true: if its addressee still leads that term,
//                         the leader's entry at i has the term the follower's has (Log Matching then gives the
//                         whole prefix) — a false acknowledgement lets the leader count a replica it lacks
//                         Both judge only answers of the sender's current term: an answer of an earlier term is
//                         stale (the sender moved on, possibly replacing the entries in the same write), like an
//                         answer still in the network when its sender moves on.

import { hash } from 'node:crypto';
import type { Entry, NodeId, ScopeId, SnapshotMeta } from '../../src/consensus/index.ts';

export interface Violation {
  readonly property: string;
  readonly message: string;
  /** Simulated milliseconds. */
  readonly time: number;
}

export function sameEntry(a: Entry, b: Entry): boolean {
  if (a.term !== b.term || a.index !== b.index || a.kind !== b.kind || a.data.length !== b.data.length)
    return false;
  if (a.data === b.data) return true; // replicated entries share their bytes (the network passes references)
  const x = a.data;
  const y = b.data;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

export function describeEntry(e: Entry): string {
  const what = e.kind === 'conf-change' ? 'conf' : e.data.length === 0 ? 'noop' : `${e.data.length}B`;
  return `${e.index}@${e.term}(${what}#${fnv1a(e.data).toString(16)})`;
}

/** FNV-1a over bytes: a cheap fingerprint for trace lines and snapshot comparison. */
export function fnv1a(b: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) {
    h ^= b[i] as number;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A live member's log as the checker reads it. */
export interface LogView {
  readonly node: NodeId;
  /** Entries from firstIndex to lastIndex, contiguous. */
  readonly entries: readonly Entry[];
}

interface GroupRecord {
  /** term -> the leader seen for it. */
  readonly leaders: Map<number, NodeId>;
  /** (node, term) pairs already checked for leader completeness. */
  readonly completenessChecked: Set<string>;
  /** term -> highest commit index a leader of that term announced. */
  readonly commitByTerm: Map<number, number>;
  /** index -> the entry applied there (by whichever member applied it first). */
  readonly applied: (Entry | undefined)[];
  /** index -> fingerprint of the state-machine snapshot taken there. */
  readonly snapshots: Map<number, { node: NodeId; hash: string; size: number }>;
  /** index -> the lineage size after applying it (by whichever member applied it first), +1 (0: unknown). */
  readonly lineageSizes: number[];
  /** index -> the lineage root (hex) a member had at that applied index. */
  readonly lineageRoots: Map<number, { node: NodeId; size: number; root: string }>;
}

export class Invariants {
  readonly violations: Violation[] = [];
  private readonly groups = new Map<ScopeId, GroupRecord>();
  private readonly now: () => number;
  /** Called on the first violation (the run stops there). */
  onViolation: (v: Violation) => void = () => {};
  /** Counters for the report. */
  readonly counts = {
    leaderClaims: 0,
    logChecks: 0,
    completenessChecks: 0,
    applied: 0,
    lineageRoots: 0,
    /** Lineage entries the end-of-run audit verified. */
    audited: 0,
  };

  constructor(now: () => number) {
    this.now = now;
  }

  private group(scope: ScopeId): GroupRecord {
    let g = this.groups.get(scope);
    if (g === undefined) {
      g = {
        leaders: new Map(),
        completenessChecked: new Set(),
        commitByTerm: new Map(),
        applied: [],
        snapshots: new Map(),
        lineageSizes: [],
        lineageRoots: new Map(),
      };
      this.groups.set(scope, g);
    }
    return g;
  }

  fail(property: string, message: string): void {
    const v: Violation = { property, message, time: this.now() };
    this.violations.push(v);
    this.onViolation(v);
  }

  /** Evidence that `node` is leader of `term` (it said so in a Ready, or sent a leader-only message). */
  leaderClaim(scope: ScopeId, term: number, node: NodeId, evidence: string): void {
    this.counts.leaderClaims++;
    const g = this.group(scope);
    const seen = g.leaders.get(term);
    if (seen === undefined) g.leaders.set(term, node);
    else if (seen !== node) {
      this.fail(
        'election-safety',
        `group ${scope} term ${term}: two leaders, ${seen} and ${node} (${evidence})`,
      );
    }
  }

  /** A leader of `term` announced commit index `commit` (its Ready's hard state). */
  commitMark(scope: ScopeId, term: number, commit: number): void {
    const m = this.group(scope).commitByTerm;
    if ((m.get(term) ?? 0) < commit) m.set(term, commit);
  }

  /**
   * `node` is leader of `term`; its log is `view` (entries from its first index, or empty when everything is
   * in its snapshot) and it has compacted everything up to `snapshotIndex`. Every entry committed by a leader
   * of an earlier term must be in it (or in its snapshot).
   */
  leaderCompleteness(scope: ScopeId, term: number, node: NodeId, snapshotIndex: number, view: LogView): void {
    const g = this.group(scope);
    const key = `${node}@${term}`;
    if (g.completenessChecked.has(key)) return;
    g.completenessChecked.add(key);
    this.counts.completenessChecks++;
    let required = 0;
    for (const [t, c] of g.commitByTerm) if (t < term && c > required) required = c;
    if (required <= snapshotIndex) return;
    const last = snapshotIndex + view.entries.length;
    if (last < required) {
      this.fail(
        'leader-completeness',
        `group ${scope}: leader ${node} of term ${term} has log up to ${last} but entries up to ${required} were committed in earlier terms`,
      );
      return;
    }
    for (let i = snapshotIndex + 1; i <= required; i++) {
      const committed = g.applied[i];
      if (committed === undefined) continue; // committed but not applied anywhere yet: SM safety will judge
      const mine = view.entries[i - snapshotIndex - 1];
      if (mine === undefined || !sameEntry(mine, committed)) {
        this.fail(
          'leader-completeness',
          `group ${scope}: leader ${node} of term ${term} holds ${mine ? describeEntry(mine) : 'nothing'} at ${i}, but ${describeEntry(committed)} was committed there before term ${term}`,
        );
        return;
      }
    }
  }

  /** `node` applied `e` (its state machine or its membership). */
  applied(scope: ScopeId, node: NodeId, e: Entry): void {
    this.counts.applied++;
    const g = this.group(scope);
    const seen = g.applied[e.index];
    if (seen === undefined) g.applied[e.index] = e;
    else if (seen !== e && !sameEntry(seen, e)) {
      this.fail(
        'state-machine-safety',
        `group ${scope}: ${node} applied ${describeEntry(e)} at index ${e.index} where another member applied ${describeEntry(seen)}`,
      );
    }
  }

  /** `node` installed a snapshot from its leader. */
  snapshotInstalled(scope: ScopeId, node: NodeId, meta: SnapshotMeta, data: Uint8Array): void {
    const g = this.group(scope);
    const at = g.applied[meta.index];
    if (at !== undefined && at.term !== meta.term) {
      this.fail(
        'state-machine-safety',
        `group ${scope}: ${node} installed a snapshot at ${meta.index}@${meta.term} where ${describeEntry(at)} was applied`,
      );
      return;
    }
    this.snapshotTaken(scope, node, meta.index, data);
  }

  /** `node`'s state machine at `index` serialized to `data`. */
  snapshotTaken(scope: ScopeId, node: NodeId, index: number, data: Uint8Array): void {
    const g = this.group(scope);
    // SHA-1 (native) rather than FNV-1a: a governed scope's snapshot carries its lineage (tens of KB).
    const fingerprint = hash('sha1', data, 'base64');
    const seen = g.snapshots.get(index);
    if (seen === undefined) g.snapshots.set(index, { node, hash: fingerprint, size: data.length });
    else if (seen.hash !== fingerprint || seen.size !== data.length) {
      this.fail(
        'snapshot-agreement',
        `group ${scope}: state at index ${index} differs between ${seen.node} (${seen.size}B #${seen.hash}) and ${node} (${data.length}B #${fingerprint})`,
      );
    }
  }

  /** `node` applied the entry at `index` (a command) and its lineage now holds `size` entries. */
  lineageSize(scope: ScopeId, node: NodeId, index: number, size: number): void {
    const g = this.group(scope);
    const seen = g.lineageSizes[index];
    if (seen === undefined || seen === 0) g.lineageSizes[index] = size + 1;
    else if (seen !== size + 1) {
      this.fail(
        'lineage-agreement',
        `group ${scope}: ${node} has ${size} lineage entries after applying index ${index}, another member had ${seen - 1}`,
      );
    }
  }

  /** `node`, at applied index `index`, has a lineage of `size` entries with Merkle root `root` (hex). */
  lineageRoot(scope: ScopeId, node: NodeId, index: number, size: number, root: string): void {
    this.counts.lineageRoots++;
    const g = this.group(scope);
    const seen = g.lineageRoots.get(index);
    if (seen === undefined) g.lineageRoots.set(index, { node, size, root });
    else if (seen.size !== size || seen.root !== root) {
      this.fail(
        'lineage-agreement',
        `group ${scope}: at applied index ${index}, ${seen.node} has lineage size ${seen.size} root ${seen.root.slice(0, 16)}…, ${node} has size ${size} root ${root.slice(0, 16)}…`,
      );
    }
  }

  /**
   * Log Matching over the live logs of one group: for every pair, find the highest index in their overlap at
   * which both hold an entry of the same term; everything in the overlap up to there must be identical.
   */
  logMatching(scope: ScopeId, views: readonly LogView[]): void {
    this.counts.logChecks++;
    for (let a = 0; a < views.length; a++) {
      for (let b = a + 1; b < views.length; b++) {
        const x = views[a] as LogView;
        const y = views[b] as LogView;
        const xf = x.entries[0];
        const yf = y.entries[0];
        if (xf === undefined || yf === undefined) continue;
        const lo = Math.max(xf.index, yf.index);
        const hi = Math.min(xf.index + x.entries.length - 1, yf.index + y.entries.length - 1);
        let k = hi;
        while (k >= lo && (x.entries[k - xf.index] as Entry).term !== (y.entries[k - yf.index] as Entry).term)
          k--;
        for (let i = lo; i <= k; i++) {
          const ex = x.entries[i - xf.index] as Entry;
          const ey = y.entries[i - yf.index] as Entry;
          if (!sameEntry(ex, ey)) {
            this.fail(
              'log-matching',
              `group ${scope}: ${x.node} and ${y.node} agree on ${k}@${(x.entries[k - xf.index] as Entry).term} but differ at ${i}: ${describeEntry(ex)} vs ${describeEntry(ey)}`,
            );
            return;
          }
        }
      }
    }
  }
}
