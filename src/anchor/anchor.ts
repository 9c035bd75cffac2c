// The composition root of one anchor process: wires the key, the store, the mesh, the scope groups, the
// transports and the API edges, and owns their start/stop order. Nothing else constructs these parts.
//
// Start order: key → store → peer TLS identity → gRPC servers (ports known) → mesh (announces the ports)
// → scope groups (rejoin from disk, or found/join as the mesh says) → first log line with every address.
// Stop order is the reverse; stop() is idempotent.

import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Server, ServerCredentials, type ServiceDefinition, status } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { type Logger, pino } from 'pino';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { Admission } from '../api/admission.ts';
import { governanceHandlers } from '../api/governance-service.ts';
import { httpServer } from '../api/http.ts';
import { lineageHandlers } from '../api/lineage-service.ts';
import { loadProtos, reflectionDefinition, serviceClient } from '../api/proto.ts';
import { LIMITS, registryHandlers } from '../api/registry-service.ts';
import { isMutation, MUTATIONS, type Mutation } from '../consensus/index.ts';
import { openGenesis, scopeIdOf } from '../governance/genesis.ts';
import { loadOrCreateSeed } from '../identity/key-file.ts';
import { NodeSigner, NodeVerifier } from '../identity/signer.ts';
import { Mesh } from '../mesh/index.ts';
import { ScopeHost, storageScopeId } from '../scope/scope-host.ts';
import { fileSnapshotData, RocksRegistryHost, SnapshotDirectory } from '../storage/registry-snapshots.ts';
import { RocksRegistryStore } from '../storage/rocks-registry-store.ts';
import { RocksRaftStore } from '../storage/rocksdb-raft-storage.ts';
import { ThreadedRaftStore } from '../storage/threaded-raft-store.ts';
import { peerServerCredentials, peerTlsIdentity } from '../transport/peer-credentials.ts';
import {
  type ConsensusRefusals,
  consensusHandlers,
  PeerTransport,
  type SnapshotFiles,
} from '../transport/peer-transport.ts';
import type { AnchorConfig } from './config.ts';
import { formationStep } from './formation.ts';

export interface AnchorAddresses {
  readonly peerId: string;
  readonly grpc: string;
  /** The TLS client port (--grpc-tls), when served. */
  readonly grpcTls?: string;
  readonly peer: string;
  readonly http: string;
  readonly p2p: readonly string[];
  readonly region: string;
  readonly scopes: readonly string[];
}

export interface RunningAnchor {
  readonly addresses: AnchorAddresses;
  /** Stops serving, closes the store; idempotent. */
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly signal?: AbortSignal;
  /** Defaults to pino writing JSON lines to stdout at config.logLevel. */
  readonly logger?: Logger;
}

export class AnchorStartError extends Error {
  override readonly name = 'AnchorStartError';
}

export async function startAnchor(config: AnchorConfig, options: StartOptions = {}): Promise<RunningAnchor> {
  const { signal } = options;
  const logger = options.logger ?? pino({ level: config.logLevel, base: { region: config.region } });
  const stack: (() => Promise<void> | void)[] = [];
  const stopAll = async (): Promise<void> => {
    for (const undo of stack.splice(0).reverse()) {
      try {
        await undo();
      } catch (error) {
        logger.warn({ err: error }, 'error while stopping');
      }
    }
  };
  try {
    return await start(config, logger, stack, stopAll, signal);
  } catch (error) {
    await stopAll();
    throw error;
  }
}

async function start(
  config: AnchorConfig,
  logger: Logger,
  stack: (() => Promise<void> | void)[],
  stopAll: () => Promise<void>,
  signal: AbortSignal | undefined,
): Promise<RunningAnchor> {
  const testHooks = readTestHooks(process.env);
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const seed = await loadOrCreateSeed(config.dataDir, signal ? { signal } : {});
  const signer = new NodeSigner(seed);
  const verifier = new NodeVerifier();
  const identity = await peerTlsIdentity(seed);
  const self = identity.peerId;

  // Two RocksDB databases: the Raft log on a worker thread (its fsyncs must not stall the event loop,
  // see threaded-raft-store.ts) and the registry's state on this thread (apply reads it synchronously).
  // --cache-mb: a quarter for each block cache, half for decoded name records (by estimated heap bytes).
  const cacheBytes = config.cacheMb * 1024 * 1024;
  const storageLog = (line: string) => logger.warn({ module: 'storage' }, line);
  // Memtables: 16 MiB for the Raft log (entries live seconds before compaction deletes them; not
  // compressed), 32 MiB for the registry (RocksDB's untuned default is 2 x 64 MiB per database); each
  // may hold up to 1.5x that while flushes catch up.
  const raftStore = await ThreadedRaftStore.open(join(config.dataDir, 'raft'), {
    cacheBytes: Math.floor(cacheBytes / 4),
    memtableBytes: 16 << 20,
    compression: false,
    ...(signal ? { signal } : {}),
    logger: storageLog,
  });
  stack.push(() => raftStore.close());
  const registryDb = await RocksRaftStore.open(join(config.dataDir, 'registry'), {
    cacheBytes: Math.floor(cacheBytes / 4),
    memtableBytes: 32 << 20,
    ...(signal ? { signal } : {}),
    logger: storageLog,
  });
  stack.push(() => registryDb.close());

  // ---- metrics ----
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics, prefix: 'aq_process_' });
  const fsync = new Histogram({
    name: 'aq_fsync_seconds',
    help: 'Duration of each synced Raft write (one per Ready: group commit)',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [metrics],
  });
  const requests = new Histogram({
    name: 'aq_grpc_request_seconds',
    help: 'Client API request latency by method and status code',
    labelNames: ['method', 'code'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [metrics],
  });
  const refusals: ConsensusRefusals = { unauthenticated: 0, notMember: 0, spoofed: 0, malformed: 0 };

  // ---- scope groups, transport, mesh ----
  // Snapshots travel as files (registry-snapshots.ts): dumps for followers, and received ones until installed.
  const snapshotFiles = new SnapshotDirectory(join(config.dataDir, 'snapshots'));
  await snapshotFiles.init();
  const registries = new Map<string, RocksRegistryHost>();
  const snapshots: SnapshotFiles = {
    outgoing: (scope, snapshot) => {
      const registry = registries.get(scope);
      if (registry === undefined) return Promise.reject(new Error(`scope ${scope} is not served here`));
      return registry.outgoing(snapshot.meta.index);
    },
    incoming: (scope) => {
      const file = snapshotFiles.fileName(storageScopeId(scope), 'in');
      return { path: snapshotFiles.path(file), data: fileSnapshotData(file) };
    },
  };
  let mesh: Mesh | null = null;
  const transport = new PeerTransport({
    identity,
    directory: { peerAddress: (peer) => testHooks.peerDial.get(peer) ?? mesh?.lookup(peer)?.peer },
    client: serviceClient('Consensus'),
    logger: logger.child({ module: 'transport' }),
    onUnreachable: (scope, peer) => host.get(scope)?.group.reportUnreachable(peer),
    onSnapshotSent: (scope, peer, ok) => host.get(scope)?.group.reportSnapshot(peer, ok),
    snapshots,
  });
  stack.push(() => transport.close());
  const host: ScopeHost = new ScopeHost(
    {
      self,
      transport,
      logger: logger.child({ module: 'scope' }),
      storageFor: (scope) => raftStore.forScope(storageScopeId(scope)),
      signer,
      // A scope founded here starts from its --genesis file, else from the open genesis of its name.
      genesisFor: (scope) => config.geneses.find((g) => g.name === scope) ?? openGenesis(scope),
      registryFor: async (scope, onChange) => {
        const genesis = config.geneses.find((g) => g.name === scope);
        const registry = await RocksRegistryHost.open(
          // The registry database is opened as a RocksRaftStore only to share its open/close code; it
          // holds no Raft keys.
          RocksRegistryStore.forScope(registryDb, storageScopeId(scope), {
            cacheSize: Number.MAX_SAFE_INTEGER,
            cacheBytes: Math.floor(cacheBytes / 2),
          }),
          onChange,
          snapshotFiles,
          // Only an explicit genesis pins the scope id: a joiner learns its group's genesis from the log.
          genesis === undefined ? { verifier } : { verifier, expectedScopeId: scopeIdOf(genesis) },
        );
        registries.set(scope, registry);
        return registry;
      },
      onPersist: (seconds) => fsync.observe(seconds),
    },
    { group: { snapshotEvery: config.snapshotCount }, mutations: testHooks.mutations },
  );
  stack.push(() => host.stop());
  registerScopeMetrics(metrics, host, refusals);
  // RocksDB's own memory, outside the V8 heap (the registry's database; the Raft log's runs on its thread).
  const rocksMemory = {
    memtables: 'rocksdb.cur-size-all-mem-tables',
    table_readers: 'rocksdb.estimate-table-readers-mem',
    block_cache: 'rocksdb.block-cache-usage',
    pinned: 'rocksdb.block-cache-pinned-usage',
  };
  new Gauge({
    name: 'aq_raft_thread_heap_bytes',
    help: "The Raft storage thread's V8 heap (used, total)",
    labelNames: ['kind'],
    registers: [metrics],
    async collect() {
      const h = await raftStore.heapStatistics().catch(() => null);
      if (h === null) return;
      this.set({ kind: 'used' }, h.used);
      this.set({ kind: 'total' }, h.total);
    },
  });
  new Gauge({
    name: 'aq_rocksdb_memory_bytes',
    help: "Memory RocksDB reports for the registry's database, by kind",
    labelNames: ['kind'],
    registers: [metrics],
    collect() {
      const db = registryDb.database as unknown as { status: string; getProperty(p: string): string };
      if (db.status !== 'open') return;
      for (const [kind, property] of Object.entries(rocksMemory)) {
        const value = Number(db.getProperty(property));
        if (Number.isFinite(value)) this.set({ kind }, value);
      }
    },
  });

  // ---- gRPC: client port and peer port ----
  const { grpc } = loadProtos();
  const descriptors = reflectionDefinition();
  const v1 = (grpc.aq as Record<string, unknown>).v1 as Record<string, { service: ServiceDefinition }>;
  const admission = new Admission({ signer, verifier });
  const api = registryHandlers({
    host,
    claimed: config.scopes,
    signer,
    admission,
    self,
    directory: { grpcAddress: (peer) => mesh?.lookup(peer)?.grpc },
    registryClient: serviceClient('Registry'),
    membershipClient: serviceClient('Membership'),
    logger: logger.child({ module: 'api' }),
    observe: (method, code, seconds) =>
      requests.observe({ method, code: status[code] ?? String(code) }, seconds),
  });
  stack.push(() => api.close());
  const clientServer = new Server({
    'grpc.max_receive_message_length': LIMITS.maxRequestBytes,
    'grpc.max_send_message_length': 64 << 20,
  });
  const lineageApi = lineageHandlers({ host, admission, logger: logger.child({ module: 'lineage' }) });
  stack.push(() => lineageApi.close());
  const governanceApi = governanceHandlers({
    host,
    admission,
    logger: logger.child({ module: 'governance' }),
  });
  const clientServices = ['aq.v1.Registry', 'aq.v1.Membership', 'aq.v1.Lineage', 'aq.v1.Governance'];
  /** The client API: the same handlers on the plaintext port and, with --grpc-tls, on the TLS one. */
  const addClientApi = (server: Server): void => {
    server.addService((v1.Registry as { service: ServiceDefinition }).service, api.registry);
    server.addService((v1.Membership as { service: ServiceDefinition }).service, api.membership);
    server.addService((v1.Lineage as { service: ServiceDefinition }).service, lineageApi.handlers);
    server.addService((v1.Governance as { service: ServiceDefinition }).service, governanceApi);
    // Reflection lists what each port serves: the client API here, Consensus on the peer port.
    new ReflectionService(descriptors, { services: clientServices }).addToServer(server);
  };
  const clientServerOptions = {
    'grpc.max_receive_message_length': LIMITS.maxRequestBytes,
    'grpc.max_send_message_length': 64 << 20,
  };
  addClientApi(clientServer);
  const grpcPort = await bind(clientServer, config.grpc, ServerCredentials.createInsecure(), 'grpc');
  stack.push(() => shutdown(clientServer));
  // The TLS client port: the anchor's certificate, and a client certificate required (over any ed25519
  // key, issued by the public issuer, as on the peer port): the key it proves authenticates reads.
  let grpcTlsAddress: string | undefined;
  if (config.grpcTls !== null) {
    const tlsServer = new Server(clientServerOptions);
    addClientApi(tlsServer);
    const port = await bind(tlsServer, config.grpcTls, peerServerCredentials(identity), 'grpc-tls');
    stack.push(() => shutdown(tlsServer));
    grpcTlsAddress = `${hostOf(config.grpcTls)}:${port}`;
  }

  const peerServer = new Server({ 'grpc.max_receive_message_length': 64 << 20 });
  peerServer.addService(
    (v1.Consensus as { service: ServiceDefinition }).service,
    consensusHandlers(host, logger.child({ module: 'consensus' }), refusals, snapshots),
  );
  new ReflectionService(descriptors, { services: ['aq.v1.Consensus'] }).addToServer(peerServer);
  const peerPort = await bind(peerServer, config.peer, peerServerCredentials(identity), 'peer');
  stack.push(() => shutdown(peerServer));

  const http = httpServer(metrics, () => ({
    serving: host.scopes().every((s) => s.group.failure === null),
    scopes: host.scopes().map((s) => ({
      scope: s.name,
      leader: s.group.leader,
      role: s.group.isLeader ? 'leader' : 'follower',
      applied: s.group.appliedIndex,
      failure: s.group.failure?.message ?? null,
    })),
  }));
  const httpAddress = await listenHttp(http, config.http);
  stack.push(() => new Promise<void>((r) => http.close(() => r())));

  const grpcAddress = `${hostOf(config.grpc)}:${grpcPort}`;
  const peerAddress = `${hostOf(config.peer)}:${peerPort}`;
  const formed = new Set<string>();
  const describe = () => ({
    grpc: grpcAddress,
    peer: peerAddress,
    http: httpAddress,
    region: config.region,
    scopes: [...config.scopes],
    formed: [...formed].sort(),
  });
  // The first log line must be the address line (DESIGN §5): the mesh logs its start-up at debug.
  mesh = await Mesh.create({
    seed,
    listen: config.p2p,
    bootstrap: config.bootstrap,
    self: describe(),
    logger,
    knownPeersFile: join(config.dataDir, 'peers.json'),
    ...(signal ? { signal } : {}),
  });
  const theMesh = mesh;
  stack.push(() => theMesh.stop());

  const addresses: AnchorAddresses = {
    peerId: self,
    grpc: grpcAddress,
    ...(grpcTlsAddress === undefined ? {} : { grpcTls: grpcTlsAddress }),
    peer: peerAddress,
    http: httpAddress,
    p2p: mesh.multiaddrs(),
    region: config.region,
    scopes: [...config.scopes],
  };
  logger.info({ anchor: addresses }, 'anchor serving');
  if (testHooks.mutations.size > 0 || testHooks.peerDial.size > 0) {
    logger.warn(
      { mutations: [...testHooks.mutations], peerDial: Object.fromEntries(testHooks.peerDial) },
      'TEST-ONLY hooks set (AQ_TEST_MUTATIONS: deliberately broken Raft; AQ_TEST_PEER_DIAL: peers dialled through the given addresses): never in production',
    );
  }

  // ---- enter each claimed scope's group ----
  const formation = new AbortController();
  stack.push(() => formation.abort());
  const markFormed = (scope: string) => {
    formed.add(scope);
    theMesh.update(describe());
  };
  for (const scope of config.scopes) {
    if (await host.hasState(scope)) {
      await host.open(scope, null);
      logger.info({ scope }, 'rejoined the scope group from the data dir');
      markFormed(scope);
      continue;
    }
    void enterScope(
      scope,
      config.bootstrapExpect,
      self,
      host,
      theMesh,
      transport,
      logger,
      formation.signal,
    ).then(
      () => markFormed(scope),
      (error: Error) => {
        if (!formation.signal.aborted)
          logger.error({ scope, err: error.message }, 'could not enter the scope group');
      },
    );
  }

  let stopping: Promise<void> | null = null;
  return {
    addresses,
    stop: () => {
      stopping ??= stopAll();
      return stopping;
    },
  };
}

async function enterScope(
  scope: string,
  bootstrapExpect: number,
  self: string,
  host: ScopeHost,
  mesh: Mesh,
  transport: PeerTransport,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  let lastWait = -1;
  for (;;) {
    signal.throwIfAborted();
    const claims = mesh
      .anchors()
      .map((a) => ({ peerId: a.peerId, scopes: a.scopes, formed: a.formed ?? [] }));
    const step = formationStep(self, scope, bootstrapExpect, claims);
    if (step.kind === 'found') {
      await host.open(scope, step.founders);
      return;
    }
    if (step.kind === 'join') {
      await host.open(scope, null, step.members);
      for (const member of step.members) {
        try {
          await transport.join(scope, member, 5_000);
          logger.info({ scope, via: member }, 'joined the scope group as a learner');
          return;
        } catch (error) {
          // Refused by the group's authority (no anchor credential): worth an operator's attention.
          const refused = (error as { code?: number }).code === status.PERMISSION_DENIED;
          logger[refused ? 'warn' : 'debug'](
            { scope, via: member, err: (error as Error).message },
            refused ? 'join refused by the scope' : 'join attempt failed',
          );
        }
      }
    } else if (step.claimants !== lastWait) {
      lastWait = step.claimants;
      logger.info(
        { scope, claimants: step.claimants, expect: bootstrapExpect },
        'waiting for anchors to form the scope group',
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Test-only switches for the real-process fault runs (test/jepsen), read once from the environment and
 * inert unless set:
 * - AQ_TEST_MUTATIONS=name[,name]: deliberately broken Raft variants (src/consensus/mutations.ts), so a
 *   fault run can show it catches a planted bug in a real anchor;
 * - AQ_TEST_PEER_DIAL={"<peer id>":"host:port",...}: dial those peers' consensus port at the given
 *   address (a proxy the test cuts to make partitions) instead of the address they announce.
 */
function readTestHooks(env: NodeJS.ProcessEnv): {
  mutations: ReadonlySet<Mutation>;
  peerDial: ReadonlyMap<string, string>;
} {
  const mutations = new Set<Mutation>();
  for (const name of (env.AQ_TEST_MUTATIONS ?? '').split(',').map((n) => n.trim())) {
    if (name === '') continue;
    if (!isMutation(name))
      throw new AnchorStartError(
        `AQ_TEST_MUTATIONS: unknown mutation '${name}' (known: ${MUTATIONS.join(', ')})`,
      );
    mutations.add(name);
  }
  const peerDial = new Map<string, string>();
  const dial = env.AQ_TEST_PEER_DIAL ?? '';
  if (dial !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(dial);
    } catch {
      parsed = null;
    }
    const entries = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : null;
    if (entries === null || Object.values(entries).some((a) => typeof a !== 'string' || a === ''))
      throw new AnchorStartError('AQ_TEST_PEER_DIAL must be a JSON object {"<peer id>": "host:port", ...}');
    for (const [peer, address] of Object.entries(entries as Record<string, string>))
      peerDial.set(peer, address);
  }
  return { mutations, peerDial };
}

function registerScopeMetrics(metrics: Registry, host: ScopeHost, refusals: ConsensusRefusals): void {
  const perScope = (
    name: string,
    help: string,
    value: (s: ReturnType<ScopeHost['scopes']>[number]) => number,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['scope'],
      registers: [metrics],
      collect() {
        this.reset();
        for (const s of host.scopes()) this.set({ scope: s.name }, value(s));
      },
    });
  perScope('aq_raft_term', 'Current Raft term', (s) => s.group.node.status().term);
  perScope('aq_raft_commit_index', 'Raft commit index', (s) => s.group.node.status().commit);
  perScope('aq_raft_applied_index', 'Index applied to the registry', (s) => s.group.appliedIndex);
  perScope(
    'aq_raft_apply_lag',
    'Committed entries not yet applied',
    (s) => s.group.node.status().commit - s.group.appliedIndex,
  );
  new Counter({
    name: 'aq_proposals_total',
    help: 'Registry commands proposed by this anchor (retries of a lost forward included)',
    labelNames: ['scope'],
    registers: [metrics],
    collect() {
      this.reset();
      for (const s of host.scopes()) this.inc({ scope: s.name }, s.group.proposals);
    },
  });
  perScope('aq_raft_is_leader', '1 when this anchor leads the scope group', (s) =>
    s.group.isLeader ? 1 : 0,
  );
  perScope(
    'aq_registry_instances',
    'Instances registered in the scope',
    (s) => s.group.registry.stats().instances,
  );
  perScope('aq_watchers', 'Open watches', (s) => s.watches.watchers);
  perScope('aq_ttl_checks', 'Instances with a TTL check', (s) => s.ttl.size);
  new Counter({
    name: 'aq_consensus_refused_total',
    help: 'Inbound consensus messages refused, by reason',
    labelNames: ['reason'],
    registers: [metrics],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(refusals)) this.inc({ reason }, n);
    },
  });
  new Counter({
    name: 'aq_raft_dropped_messages_total',
    help: 'Malformed Raft messages refused by the core',
    labelNames: ['scope'],
    registers: [metrics],
    collect() {
      this.reset();
      for (const s of host.scopes()) this.inc({ scope: s.name }, s.group.node.status().droppedMessages);
    },
  });
}

function hostOf(address: string): string {
  const at = address.lastIndexOf(':');
  return at < 0 ? address : address.slice(0, at);
}

function bind(server: Server, address: string, creds: ServerCredentials, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, creds, (error, port) => {
      if (error) reject(new AnchorStartError(`cannot listen on ${address} (--${what}): ${error.message}`));
      else resolve(port);
    });
  });
}

function shutdown(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 2_000);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function listenHttp(server: ReturnType<typeof httpServer>, address: string): Promise<string> {
  const at = address.lastIndexOf(':');
  const hostname = address.slice(0, at);
  const port = Number(address.slice(at + 1));
  return new Promise((resolve, reject) => {
    server.once('error', (error) =>
      reject(new AnchorStartError(`cannot listen on ${address} (--http): ${error.message}`)),
    );
    server.listen(port, hostname, () => {
      const a = server.address() as AddressInfo;
      resolve(`${hostname}:${a.port}`);
    });
  });
}
