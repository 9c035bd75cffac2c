// The vocabulary of the Raft core. Plain data: the core never touches the wire; the transport maps these
// to and from proto/aq/v1/consensus.proto at the edge.

/** A member of a scope group: the anchor's peer id. */
export type NodeId = string;

/** The scope a consensus group replicates (the hash of its genesis). */
export type ScopeId = string;

/** No node: the empty vote, the unknown leader. */
export const NO_NODE: NodeId = '';

export type EntryKind = 'normal' | 'conf-change';

/** One log entry. A `normal` entry with empty data is the no-op a new leader appends (Raft §5.4.2). */
export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly kind: EntryKind;
  readonly data: Uint8Array;
}

/** What must survive a crash besides the log (Raft Figure 2, plus the commit index as etcd keeps it). */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

/** The group's membership. Learners receive the log but neither vote nor count for commit. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/**
 * Membership changes are one server at a time (Raft thesis §4.1): every change moves the voter set by at
 * most one member, so any two consecutive majorities overlap. A change takes effect when its entry is
 * applied; the leader admits the next only after the previous one is applied and after it has committed
 * an entry of its own term (the fix for the single-server change bug Ongaro described in 2015).
 */
export type ConfChangeType = 'add-learner' | 'add-voter' | 'remove';

export interface ConfChange {
  readonly type: ConfChangeType;
  readonly node: NodeId;
}

export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly conf: ConfState;
}

/** A state-machine snapshot at `meta.index`; `data` is opaque to the core. */
export interface Snapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

export const MESSAGE_TYPES = [
  'prevote',
  'prevote-resp',
  'vote',
  'vote-resp',
  'append',
  'append-resp',
  'heartbeat',
  'heartbeat-resp',
  'snapshot',
  'timeout-now',
  'propose',
  'read-index',
  'read-index-resp',
] as const;

export type MessageType = (typeof MESSAGE_TYPES)[number];

/**
 * One Raft message. Field meaning by type:
 * - prevote/vote: `index`/`logTerm` are the candidate's last log index/term; `context` is 'transfer' for a
 *   campaign started by leadership transfer (it may break a leader lease).
 * - append: `index`/`logTerm` locate the entry preceding `entries`; `commit` is the leader's commit.
 * - append-resp: accepted: `index` is the follower's last matching index. Rejected: `index` is the rejected
 *   probe index; `rejectHint`/`logTerm` are the follower's last index at or below it whose term is at most
 *   the probe's term, so the leader can skip back a whole term at a time.
 * - heartbeat: `commit` is min(leader commit, follower match); `context` tags a ReadIndex round.
 * - read-index/read-index-resp: `context` identifies the request; the response's `index` is the read index.
 * - propose: a follower forwarding client entries to the leader.
 */
export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  readonly logTerm: number;
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly reject: boolean;
  readonly rejectHint: number;
  readonly snapshot: Snapshot | null;
  readonly context: Uint8Array | null;
}

/** A message addressed to one group of a multi-raft host. */
export interface Envelope {
  readonly scope: ScopeId;
  readonly message: Message;
}

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

export interface SoftState {
  readonly leader: NodeId;
  readonly role: Role;
}

/** A linearizable read may be served once the state machine has applied `index` (Raft thesis §6.4). */
export interface ReadState {
  readonly index: number;
  readonly context: Uint8Array;
}

/**
 * What the core asks its driver to do. The driver acts in this order, then calls `advance(ready)`:
 *   1. send `messages` (they do not depend on this Ready's writes: a leader's appends may go out before
 *      its own disk write, Raft thesis §10.2.1);
 *   2. durably write `snapshot`, then `entries` (which replace any stored entries at and after
 *      `entries[0].index`), then `hardState` — one fsync for the batch when `mustSync`;
 *   3. send `messagesAfterPersist` (votes and append acknowledgements: promises about durable state);
 *   4. restore the state machine from `snapshot`, then apply `committedEntries` in order;
 *   5. serve the reads in `readStates` once the state machine has applied their index.
 * Committed entries are always entries the local log already holds durably, so applying them never runs
 * ahead of the disk.
 */
export interface Ready {
  readonly softState: SoftState;
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | null;
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly messagesAfterPersist: readonly Message[];
  readonly readStates: readonly ReadState[];
  readonly mustSync: boolean;
}

/** What the driver loads from its storage to (re)start a node. */
export interface PersistedState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | null;
  /** Entries after the snapshot, in index order, contiguous. */
  readonly entries: readonly Entry[];
}

/** Per-follower replication progress as the leader sees it (Raft thesis §3.5, etcd's Progress). */
export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: 'probe' | 'replicate' | 'snapshot';
  readonly inflight: number;
  readonly recentActive: boolean;
  readonly learner: boolean;
}

export interface Status {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly role: Role;
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly conf: ConfState;
  readonly transferee: NodeId;
  /** Malformed messages from peers refused since this node started. */
  readonly droppedMessages: number;
  readonly progress: ReadonlyMap<NodeId, ProgressStatus>;
}
