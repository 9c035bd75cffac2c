// Deliberately broken variants of the core, to prove that the simulator and the checker catch real bugs.
// Only tests switch them on, through RaftConfig.mutations: the simulator (test/sim) and the real-process
// fault run (test/jepsen, through the anchor's test-only AQ_TEST_MUTATIONS). Every switch is a single,
// named deviation from the correct protocol.

export const MUTATIONS = [
  /** Followers acknowledge appends and grant votes before the write is durable. */
  'ack-before-persist',
  /** The leader commits an entry of an earlier term once a majority holds it (Raft Figure 8). */
  'commit-prior-term-by-count',
  /** The leader answers ReadIndex at once, without confirming it is still leader (stale reads when deposed). */
  'read-without-quorum',
  /** Voters grant votes without the candidate's-log-is-up-to-date check (Raft §5.4.1). */
  'vote-without-log-check',
] as const;

export type Mutation = (typeof MUTATIONS)[number];

export function isMutation(name: string): name is Mutation {
  return (MUTATIONS as readonly string[]).includes(name);
}
