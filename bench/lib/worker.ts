// One client process of the benchmark (forked by bench/registry-vs-etcd.ts): it connects to one system
// (aqmesh over grpc-js with the project's aq.v1.Registry client, or etcd through the `etcd3` package,
// which also runs on grpc-js) and, for each phase it is sent, runs a closed loop with a fixed number of
// operations in flight between two wall-clock instants shared by every worker, recording the latency of
// every operation that completes inside the measured window and every error. Results go back over IPC.

import { performance } from 'node:perf_hooks';
import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { hexToBytes } from '@noble/hashes/utils.js';
import { Etcd3 } from 'etcd3';
import { serviceClient } from '../../src/api/proto.ts';
import { type PeerTlsIdentity, peerChannel, peerTlsIdentity } from '../../src/transport/peer-credentials.ts';
import { BenchSigner, GOVERNED_SCOPE } from './authority.ts';
import { encodeInstance, etcdKeyOf, etcdPrefixOf, instanceOf, nameOf } from './data.ts';
import type { ParentMessage, PhaseKind, PhaseResult, WorkerInit } from './protocol.ts';

type Callback = (error: ServiceError | null, response: unknown) => void;
type Unary = (
  request: unknown,
  metadata: Metadata,
  options: { deadline: number },
  callback: Callback,
) => void;
interface RawClient {
  Register: Unary;
  Resolve: Unary;
  close(): void;
}

/** Deadline of every call, as the anchor's default for writes and linearizable reads. */
const CALL_DEADLINE_MS = 10_000;
/** After a failed call, a slot waits this long before its next call (no hot error loop). */
const ERROR_BACKOFF_MS = 5;

type Op = (k: number, rev: number) => Promise<void>;

let init: WorkerInit | null = null;
let tlsIdentity: PeerTlsIdentity | null = null;
let closeAll: () => void = () => {};
let ops: Record<PhaseKind, Op> | null = null;

function send(message: unknown): void {
  process.send?.(message);
}

function unary(client: RawClient, method: 'Register' | 'Resolve', request: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    client[method](request, new Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (error) => {
      if (error) reject(error);
      else resolve();
    });
  });
}

function setupAqmesh(w: WorkerInit): Record<PhaseKind, Op> {
  const Registry = serviceClient('Registry');
  const clients = w.anchors.map(
    (address) => new Registry(address, credentials.createInsecure()) as unknown as RawClient,
  );
  const writers =
    w.writes === 'leader'
      ? [new Registry(w.leader, credentials.createInsecure()) as unknown as RawClient]
      : clients;
  closeAll = () => {
    for (const c of new Set([...clients, ...writers, ...tlsClients])) c.close();
  };
  // Round robin, each worker starting at a different anchor.
  let nextRead = w.index;
  let nextWrite = w.index;
  const reader = () => clients[nextRead++ % clients.length]!;
  const writer = () => writers[nextWrite++ % writers.length]!;
  // The governed scope's requests are signed per call (fresh timestamp and nonce), as a real client must.
  const signer = w.signing === undefined ? null : new BenchSigner(w.signing, w.index);
  // The TLS client ports, with the resolver's key in the client certificate (the *-tls phases).
  const tlsClients = (w.anchorsTls ?? []).map(({ address, peerId }) => {
    if (tlsIdentity === null) throw new Error('no TLS identity: the governed scope is not set up');
    const { credentials: creds, options } = peerChannel(tlsIdentity, peerId);
    return new Registry(address, creds, options) as unknown as RawClient;
  });
  let nextTls = w.index;
  const tlsReader = () => {
    if (tlsClients.length === 0) throw new Error('no TLS client ports (start the anchors with --grpc-tls)');
    return tlsClients[nextTls++ % tlsClients.length]!;
  };
  const signed = (): BenchSigner => {
    if (signer === null) throw new Error('no signing identity: the governed scope is not set up');
    return signer;
  };
  return {
    register: (k, rev) => unary(writer(), 'Register', { name: nameOf(k), instance: instanceOf(k, rev) }),
    'resolve-linearizable': (k) =>
      unary(reader(), 'Resolve', { name: nameOf(k), consistency: 'CONSISTENCY_LINEARIZABLE' }),
    'resolve-stale': (k) => unary(reader(), 'Resolve', { name: nameOf(k), consistency: 'CONSISTENCY_STALE' }),
    'register-signed': (k, rev) =>
      unary(writer(), 'Register', signed().register(nameOf(k, GOVERNED_SCOPE), instanceOf(k, rev))),
    'resolve-linearizable-signed': (k) =>
      unary(reader(), 'Resolve', signed().resolve(nameOf(k, GOVERNED_SCOPE), 'CONSISTENCY_LINEARIZABLE')),
    'resolve-stale-signed': (k) =>
      unary(reader(), 'Resolve', signed().resolve(nameOf(k, GOVERNED_SCOPE), 'CONSISTENCY_STALE')),
    'resolve-linearizable-tls': (k) =>
      unary(
        tlsReader(),
        'Resolve',
        signed().resolveOverTls(nameOf(k, GOVERNED_SCOPE), 'CONSISTENCY_LINEARIZABLE'),
      ),
    'resolve-stale-tls': (k) =>
      unary(tlsReader(), 'Resolve', signed().resolveOverTls(nameOf(k, GOVERNED_SCOPE), 'CONSISTENCY_STALE')),
  };
}

const AQMESH_ONLY = async (): Promise<void> => {
  throw new Error('signed phases run on aqmesh only');
};

function setupEtcd(w: WorkerInit): Record<PhaseKind, Op> {
  const client = new Etcd3({
    hosts: w.etcd.map((h) => `http://${h}`),
    defaultCallOptions: () => ({ deadline: Date.now() + CALL_DEADLINE_MS }),
  });
  closeAll = () => client.close();
  return {
    register: async (k, rev) => {
      await client
        .put(etcdKeyOf(k))
        .value(encodeInstance(instanceOf(k, rev)))
        .exec();
    },
    'resolve-linearizable': async (k) => {
      const res = await client.getAll().prefix(etcdPrefixOf(k)).exec();
      if (res.kvs.length === 0) throw new Error(`etcd: nothing under ${etcdPrefixOf(k)}`);
    },
    'resolve-stale': async (k) => {
      const res = await client.getAll().prefix(etcdPrefixOf(k)).serializable(true).exec();
      if (res.kvs.length === 0) throw new Error(`etcd: nothing under ${etcdPrefixOf(k)}`);
    },
    'register-signed': AQMESH_ONLY,
    'resolve-linearizable-signed': AQMESH_ONLY,
    'resolve-stale-signed': AQMESH_ONLY,
    'resolve-linearizable-tls': AQMESH_ONLY,
    'resolve-stale-tls': AQMESH_ONLY,
  };
}

function errorKey(error: unknown): string {
  const e = error as Partial<ServiceError> & Error;
  if (typeof e.code === 'number') {
    const name = Object.entries(status).find(([, v]) => v === e.code)?.[0];
    return name ?? `code ${e.code}`;
  }
  return e?.constructor?.name ?? 'Error';
}

async function runPhase(m: Extract<ParentMessage, { type: 'run' }>): Promise<PhaseResult> {
  const op = ops![m.kind];
  const latenciesUs: number[] = [];
  const errors: Record<string, number> = {};
  const errorSamples: Record<string, string> = {};
  let ok = 0;
  let okTotal = 0;
  let errorsTotal = 0;
  let rev = m.revBase;
  const perfAt = (wall: number) => performance.now() + (wall - Date.now());
  await new Promise((r) => setTimeout(r, Math.max(0, m.startAt - Date.now())));
  const from = perfAt(m.measureFrom);
  const until = perfAt(m.measureUntil);
  const slot = async (): Promise<void> => {
    while (performance.now() < until) {
      const k = Math.floor(Math.random() * m.names);
      const t0 = performance.now();
      try {
        await op(k, rev++);
        const t1 = performance.now();
        okTotal++;
        if (t1 >= from && t1 <= until) {
          ok++;
          latenciesUs.push((t1 - t0) * 1000);
        }
      } catch (error) {
        const t1 = performance.now();
        errorsTotal++;
        if (t1 >= from && t1 <= until) {
          const key = errorKey(error);
          errors[key] = (errors[key] ?? 0) + 1;
          errorSamples[key] ??= String((error as Error)?.message ?? error).slice(0, 300);
        } else {
          const key = `${errorKey(error)} (outside window)`;
          errors[key] = (errors[key] ?? 0) + 1;
          errorSamples[key] ??= String((error as Error)?.message ?? error).slice(0, 300);
        }
        await new Promise((r) => setTimeout(r, ERROR_BACKOFF_MS));
      }
    }
  };
  await Promise.all(Array.from({ length: m.inFlight }, slot));
  return {
    type: 'result',
    index: init!.index,
    ok,
    okTotal,
    errorsTotal,
    errors,
    errorSamples,
    latenciesUs: Float64Array.from(latenciesUs),
    drainedAt: Date.now(),
  };
}

process.on('message', (message: ParentMessage) => {
  void (async () => {
    try {
      if (message.type === 'init') {
        init = message.init;
        if (init.signing !== undefined)
          tlsIdentity = await peerTlsIdentity(hexToBytes(init.signing.resolver.seed));
        ops = init.system === 'aqmesh' ? setupAqmesh(init) : setupEtcd(init);
        // Build every name's padded instance once, outside the measured windows.
        for (let k = 0; k < init.names; k++) instanceOf(k, 0);
        send({ type: 'ready', index: init.index });
      } else if (message.type === 'run') {
        send(await runPhase(message));
      } else if (message.type === 'stop') {
        closeAll();
        process.exit(0);
      }
    } catch (error) {
      send({ type: 'failed', index: init?.index ?? -1, message: String((error as Error)?.stack ?? error) });
    }
  })();
});

process.on('disconnect', () => process.exit(0));
