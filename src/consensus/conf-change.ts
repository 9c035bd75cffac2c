import { ConfChangeDecodeError } from './errors.ts';
import type { ConfChange, ConfState, NodeId } from './types.ts';

// A conf-change entry's data: one byte for the type, then the node id in UTF-8. Rare and tiny, so plain.
const TYPE_CODES = ['add-learner', 'add-voter', 'remove'] as const;

export function encodeConfChange(cc: ConfChange): Uint8Array {
  const id = new TextEncoder().encode(cc.node);
  const out = new Uint8Array(1 + id.length);
  out[0] = TYPE_CODES.indexOf(cc.type);
  out.set(id, 1);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const type = TYPE_CODES[data[0] ?? -1];
  if (type === undefined) throw new ConfChangeDecodeError(`conf change: unknown type byte ${data[0]}`);
  if (data.length < 2) throw new ConfChangeDecodeError('conf change: empty node id');
  try {
    return { type, node: new TextDecoder('utf-8', { fatal: true }).decode(data.subarray(1)) };
  } catch {
    throw new ConfChangeDecodeError('conf change: node id is not valid UTF-8');
  }
}

/** The membership after applying `cc`. One change moves the voter set by at most one member. */
export function applyConfChange(conf: ConfState, cc: ConfChange): ConfState {
  const voters = conf.voters.filter((n) => n !== cc.node);
  const learners = conf.learners.filter((n) => n !== cc.node);
  if (cc.type === 'add-voter') voters.push(cc.node);
  else if (cc.type === 'add-learner') {
    // Demoting a voter to learner is refused: it would change the voter set without the caller saying so.
    if (conf.voters.includes(cc.node)) return conf;
    learners.push(cc.node);
  }
  return { voters: voters.sort(), learners: learners.sort() };
}

export function isVoter(conf: ConfState, id: NodeId): boolean {
  return conf.voters.includes(id);
}

export function quorum(conf: ConfState): number {
  return Math.floor(conf.voters.length / 2) + 1;
}
