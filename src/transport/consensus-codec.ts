// The edge between the Raft core's plain messages and proto/aq/v1/consensus.proto, in the object shape
// @grpc/proto-loader produces with the options in PROTO_LOADER_OPTIONS (camelCase fields, enums as
// strings, 64-bit integers as numbers, defaults filled in). A snapshot's data does not travel in the
// message: InstallSnapshot streams it, and the receiver hands it to messageFromWire.

import {
  type Entry,
  type EntryKind,
  type Envelope,
  MESSAGE_TYPES,
  type Message,
  type Snapshot,
} from '../consensus/index.ts';

export const PROTO_LOADER_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

export interface WireEntry {
  term: number;
  index: number;
  kind: string;
  data: Uint8Array;
}

export interface WireSnapshotMeta {
  index: number;
  term: number;
  conf: { voters: string[]; learners: string[] } | null;
}

export interface WireRaftMessage {
  type: string;
  from: string;
  to: string;
  term: number;
  logTerm: number;
  index: number;
  entries: WireEntry[];
  commit: number;
  reject: boolean;
  rejectHint: number;
  snapshot: WireSnapshotMeta | null;
  context: Uint8Array;
}

export interface WireEnvelope {
  scope: string;
  message: WireRaftMessage | null;
}

/** Bytes from a peer that do not describe a Raft message. One line, naming the field. */
export class WireDecodeError extends Error {
  override readonly name = 'WireDecodeError';
}

const MESSAGE_PREFIX = 'MESSAGE_TYPE_';
const KIND_PREFIX = 'ENTRY_KIND_';

const toEnum = (prefix: string, value: string): string => prefix + value.toUpperCase().replaceAll('-', '_');

const MESSAGE_TYPE_OF = new Map(MESSAGE_TYPES.map((t) => [toEnum(MESSAGE_PREFIX, t), t]));
const ENTRY_KINDS: readonly EntryKind[] = ['normal', 'conf-change'];
const ENTRY_KIND_OF = new Map(ENTRY_KINDS.map((k) => [toEnum(KIND_PREFIX, k), k]));

function index(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new WireDecodeError(`raft message: ${field} is not an index (${String(value)})`);
  }
  return value;
}

export function entryToWire(e: Entry): WireEntry {
  return { term: e.term, index: e.index, kind: toEnum(KIND_PREFIX, e.kind), data: e.data };
}

/** The wire form of a core message; a snapshot's data is left for InstallSnapshot to stream. */
export function messageToWire(m: Message): WireRaftMessage {
  const s = m.snapshot;
  return {
    type: toEnum(MESSAGE_PREFIX, m.type),
    from: m.from,
    to: m.to,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    entries: m.entries.map(entryToWire),
    commit: m.commit,
    reject: m.reject,
    rejectHint: m.rejectHint,
    snapshot: s
      ? {
          index: s.meta.index,
          term: s.meta.term,
          conf: { voters: [...s.meta.conf.voters], learners: [...s.meta.conf.learners] },
        }
      : null,
    // proto3 bytes cannot tell empty from absent: contexts are never empty (ReadIndex ids, "transfer").
    context: m.context ?? new Uint8Array(0),
  };
}

/** A core message from its wire form. `snapshotData` is the streamed data of a snapshot message. */
export function messageFromWire(w: WireRaftMessage, snapshotData?: Uint8Array): Message {
  const type = MESSAGE_TYPE_OF.get(w.type);
  if (type === undefined) throw new WireDecodeError(`raft message: unknown type ${String(w.type)}`);
  const entries = (w.entries ?? []).map((e, i): Entry => {
    const kind = ENTRY_KIND_OF.get(e.kind);
    if (kind === undefined)
      throw new WireDecodeError(`raft message: entry ${i} has unknown kind ${String(e.kind)}`);
    return {
      term: index(e.term, `entry ${i} term`),
      index: index(e.index, `entry ${i} index`),
      kind,
      data: e.data,
    };
  });
  let snapshot: Snapshot | null = null;
  if (type === 'snapshot') {
    const meta = w.snapshot;
    if (!meta?.conf) throw new WireDecodeError('raft message: snapshot message without snapshot metadata');
    if (!snapshotData) throw new WireDecodeError('raft message: snapshot message without its streamed data');
    snapshot = {
      meta: {
        index: index(meta.index, 'snapshot index'),
        term: index(meta.term, 'snapshot term'),
        conf: { voters: [...meta.conf.voters], learners: [...meta.conf.learners] },
      },
      data: snapshotData,
    };
  }
  return {
    type,
    from: String(w.from),
    to: String(w.to),
    term: index(w.term, 'term'),
    logTerm: index(w.logTerm, 'logTerm'),
    index: index(w.index, 'index'),
    entries,
    commit: index(w.commit, 'commit'),
    reject: w.reject === true,
    rejectHint: index(w.rejectHint, 'rejectHint'),
    snapshot,
    context: w.context && w.context.length > 0 ? new Uint8Array(w.context) : null,
  };
}

export function envelopeToWire(env: Envelope): WireEnvelope {
  return { scope: env.scope, message: messageToWire(env.message) };
}

export function envelopeFromWire(w: WireEnvelope, snapshotData?: Uint8Array): Envelope {
  if (typeof w.scope !== 'string' || w.scope === '') throw new WireDecodeError('envelope: missing scope');
  if (!w.message) throw new WireDecodeError(`envelope for scope ${w.scope}: missing message`);
  return { scope: w.scope, message: messageFromWire(w.message, snapshotData) };
}
