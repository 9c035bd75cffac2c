import type { Genesis } from '../governance/genesis.ts';

// The configuration of one anchor process: what `aq anchor start` builds from its flags and config file
// (src/cli/), and what startAnchor() (src/anchor/anchor.ts) runs. Port 0 means "pick one"; the defaults
// are fixed ports on loopback (7400-7403) so that a lone anchor and the CLI find each other.

export interface AnchorConfig {
  /** Where the anchor keeps its key (anchor.key) and its RocksDB store. Created when missing. */
  readonly dataDir: string;
  /** Client API (aq.v1.Registry, aq.v1.Membership, reflection): HOST:PORT, plaintext gRPC. */
  readonly grpc: string;
  /**
   * The client API over TLS with client certificates (HOST:PORT), or null (not served): a client whose
   * certificate is over a credential's key reads without signing each request.
   */
  readonly grpcTls: string | null;
  /** Anchor-to-anchor API (aq.v1.Consensus): HOST:PORT, TLS authenticated to anchor keys both ways. */
  readonly peer: string;
  /** Metrics (/metrics) and health (/health): HOST:PORT. */
  readonly http: string;
  /** libp2p listen address (multiaddr), e.g. /ip4/127.0.0.1/tcp/0. */
  readonly p2p: string;
  /** libp2p multiaddrs of any anchors to meet first (each with its /p2p/<peer id>). */
  readonly bootstrap: readonly string[];
  readonly region: string;
  /** Scope names this anchor claims (it founds, rejoins or joins each one's group). */
  readonly scopes: readonly string[];
  /**
   * Geneses of scopes this anchor founds (--genesis FILE, each also claimed). A claimed scope without one
   * is *open*: founded from the open genesis of its name, it admits unauthenticated changes.
   */
  readonly geneses: readonly Genesis[];
  /** Form a new scope group once this many anchors claiming the scope have met (1: alone). */
  readonly bootstrapExpect: number;
  /** pino level: fatal, error, warn, info, debug, trace. */
  readonly logLevel: string;
  /** Memory for caches, in MiB: half for RocksDB's block cache, half for decoded name records. */
  readonly cacheMb: number;
  /**
   * Applied entries between compactions of a scope's Raft log (etcd's --snapshot-count). A compaction is
   * a synced registry commit; a follower that falls behind the compacted log is sent the registry.
   */
  readonly snapshotCount: number;
}

export const DEFAULT_ANCHOR_CONFIG: Omit<AnchorConfig, 'dataDir'> = {
  grpc: '127.0.0.1:7400',
  grpcTls: null,
  peer: '127.0.0.1:7401',
  http: '127.0.0.1:7402',
  p2p: '/ip4/127.0.0.1/tcp/7403',
  bootstrap: [],
  region: 'local',
  scopes: [],
  geneses: [],
  bootstrapExpect: 1,
  logLevel: 'info',
  cacheMb: 64,
  snapshotCount: 50_000,
};
