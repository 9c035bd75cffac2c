// Typed errors of the core. The edges (gRPC, HTTP) map them to status codes; the core only names them.

/** A proposal or read was not accepted: no leader is known, leadership is moving, or this node may not lead. */
export class ProposalDroppedError extends Error {
  override readonly name = 'ProposalDroppedError';
  readonly reason: 'no-leader' | 'transferring' | 'not-leader' | 'not-member' | 'change-pending';
  constructor(reason: ProposalDroppedError['reason'], message: string) {
    super(message);
    this.reason = reason;
  }
}

/** A broken Raft invariant (a peer violated the protocol or local state is corrupt). Never expected. */
export class RaftInvariantError extends Error {
  override readonly name = 'RaftInvariantError';
}

/** Bytes that do not decode as a membership change. */
export class ConfChangeDecodeError extends Error {
  override readonly name = 'ConfChangeDecodeError';
}
