export { applyConfChange, decodeConfChange, encodeConfChange, isVoter, quorum } from './conf-change.ts';
export { ConfChangeDecodeError, ProposalDroppedError, RaftInvariantError } from './errors.ts';
export { makeMessage, malformed } from './message.ts';
export { MultiRaft } from './multi-raft.ts';
export { isMutation, MUTATIONS, type Mutation } from './mutations.ts';
export { bootstrapState, emptyState, type RaftConfig, RaftNode } from './raft.ts';
export { MemoryStorage, type RaftStorage, type StorageUpdate } from './storage.ts';
export * from './types.ts';
