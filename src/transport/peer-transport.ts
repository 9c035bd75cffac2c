// Anchor-to-anchor Raft traffic over gRPC (aq.v1.Consensus) on the peer port, TLS authenticated to anchor
// keys both ways (peer-credentials.ts).
//
// Sending: messages are queued per addressee and flushed once per event-loop turn as one StepRequest on
// a long-lived client stream, so every message the groups produce in one pass travels in one write
// (batching across scopes). Delivery is best effort, as Raft allows: when a stream fails, its queued
// messages are dropped, the groups are told the peer is unreachable, and the next send reconnects (at
// most once per reconnectMs). Snapshot messages go through InstallSnapshot as a header then chunks,
// streamed from and into files (SnapshotFiles): a scope's state may be far larger than memory allows.
//
// Receiving (consensusHandlers): every envelope must come from the authenticated caller (message.from is
// the caller's peer id) and the caller must be a member of the addressed scope; anything else is dropped,
// logged and counted. Bad envelopes never end the stream: a peer's bug must not cut the group off.

import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  type ChannelOptions,
  type ClientWritableStream,
  type handleClientStreamingCall,
  type handleUnaryCall,
  Metadata,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServiceClientConstructor,
  status,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Envelope, Message, NodeId, Snapshot } from '../consensus/index.ts';
import { envelopeFromWire, envelopeToWire, WireDecodeError, type WireEnvelope } from './consensus-codec.ts';
import { callerPeerId, type PeerTlsIdentity, peerChannel } from './peer-credentials.ts';

/** Where a peer's Consensus endpoint is (from the mesh's announcements). */
export interface PeerDirectory {
  peerAddress(peer: NodeId): string | undefined;
}

/** Where snapshot bytes come from and go to (the registry's dump files, src/storage/registry-snapshots.ts). */
export interface SnapshotFiles {
  /** A file holding the data of an outgoing snapshot; call release() once it is sent. */
  outgoing(scope: string, snapshot: Snapshot): Promise<{ path: string; bytes: number; release(): void }>;
  /** Where to write an incoming snapshot of `scope`, and the data the delivered message carries instead. */
  incoming(scope: string): { path: string; data: Uint8Array };
}

/** The receiving side: what the anchor does with authenticated traffic. */
export interface ConsensusReceiver {
  /** Is `peer` a member (voter or learner) of `scope` here? Unknown scope: false. */
  isMember(scope: string, peer: NodeId): boolean;
  deliver(envelope: Envelope): void;
  /** A peer asks to join `scope`; resolves with the index of the change. */
  join(scope: string, peer: NodeId, signal: AbortSignal): Promise<number>;
}

export interface PeerTransportOptions {
  readonly reconnectMs?: number;
  readonly snapshotChunkBytes?: number;
  /** A peer whose stream buffers more than this is treated as unreachable (its messages are dropped). */
  readonly maxBufferedBytes?: number;
}

export interface PeerTransportComponents {
  readonly identity: PeerTlsIdentity;
  readonly directory: PeerDirectory;
  readonly client: ServiceClientConstructor;
  readonly logger: Logger;
  /** The transport gave up on messages to `peer` for `scope`. */
  readonly onUnreachable: (scope: string, peer: NodeId) => void;
  readonly onSnapshotSent: (scope: string, peer: NodeId, ok: boolean) => void;
  readonly snapshots: SnapshotFiles;
}

interface StepClient {
  Step(callback: (error: Error | null) => void): ClientWritableStream<{ envelopes: WireEnvelope[] }>;
  InstallSnapshot(
    callback: (error: Error | null, response?: { receivedBytes: number }) => void,
  ): ClientWritableStream<unknown>;
  Join(
    request: { scope: string },
    metadata: Metadata,
    options: { deadline: number },
    callback: (
      error: (Error & { code?: number; metadata?: Metadata }) | null,
      response?: { index: number },
    ) => void,
  ): void;
  close(): void;
}

interface PeerLink {
  readonly peer: NodeId;
  address: string;
  client: StepClient;
  stream: ClientWritableStream<{ envelopes: WireEnvelope[] }> | null;
  lastConnect: number;
  queue: Envelope[];
}

const DEFAULTS = { reconnectMs: 500, snapshotChunkBytes: 256 << 10, maxBufferedBytes: 64 << 20 };

export class PeerTransport {
  readonly #c: PeerTransportComponents;
  readonly #opts: Required<PeerTransportOptions>;
  readonly #links = new Map<NodeId, PeerLink>();
  #flushScheduled = false;
  #closed = false;

  constructor(components: PeerTransportComponents, options: PeerTransportOptions = {}) {
    this.#c = components;
    this.#opts = { ...DEFAULTS, ...options };
  }

  send(scope: string, messages: readonly Message[]): void {
    if (this.#closed) return;
    for (const m of messages) {
      if (m.type === 'snapshot') {
        this.#sendSnapshot(scope, m);
        continue;
      }
      const link = this.#link(m.to);
      if (link === null) {
        this.#c.onUnreachable(scope, m.to);
        continue;
      }
      link.queue.push({ scope, message: m });
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  /** Asks `peer` to add this anchor to `scope` (the peer forwards to its leader). */
  join(scope: string, peer: NodeId, deadlineMs: number): Promise<number> {
    const link = this.#link(peer);
    if (link === null) return Promise.reject(new Error(`no address known for anchor ${peer}`));
    return new Promise((resolve, reject) => {
      link.client.Join(
        { scope },
        new Metadata(),
        { deadline: Date.now() + deadlineMs },
        (error, response) => {
          if (error) reject(error);
          else resolve(response?.index ?? 0);
        },
      );
    });
  }

  close(): void {
    this.#closed = true;
    for (const link of this.#links.values()) {
      link.stream?.end();
      link.client.close();
    }
    this.#links.clear();
  }

  #link(peer: NodeId): PeerLink | null {
    const address = this.#c.directory.peerAddress(peer);
    let link = this.#links.get(peer);
    if (link !== undefined && address !== undefined && link.address !== address) {
      // The peer restarted on another port: start over.
      link.stream?.end();
      link.client.close();
      this.#links.delete(peer);
      link = undefined;
    }
    if (link !== undefined) return link;
    if (address === undefined) return null;
    const { credentials, options } = peerChannel(this.#c.identity, peer);
    const channelOptions: ChannelOptions = { ...options, 'grpc.max_receive_message_length': 64 << 20 };
    const client = new this.#c.client(address, credentials, channelOptions) as unknown as StepClient;
    link = { peer, address, client, stream: null, lastConnect: 0, queue: [] };
    this.#links.set(peer, link);
    return link;
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#closed) return;
    const now = Date.now();
    for (const link of this.#links.values()) {
      if (link.queue.length === 0) continue;
      const batch = link.queue;
      link.queue = [];
      if (link.stream === null) {
        if (now - link.lastConnect < this.#opts.reconnectMs) {
          this.#dropped(link.peer, batch);
          continue;
        }
        link.lastConnect = now;
        link.stream = this.#openStream(link);
      }
      const stream = link.stream;
      if (stream.writableLength > this.#opts.maxBufferedBytes) {
        this.#dropped(link.peer, batch);
        continue;
      }
      stream.write({ envelopes: batch.map(envelopeToWire) });
    }
  }

  #openStream(link: PeerLink): ClientWritableStream<{ envelopes: WireEnvelope[] }> {
    const stream = link.client.Step((error) => {
      if (link.stream === stream) link.stream = null;
      if (error && !this.#closed) {
        this.#c.logger.debug({ peer: link.peer, err: error.message }, 'consensus stream ended');
      }
    });
    stream.on('error', () => {
      if (link.stream === stream) link.stream = null;
    });
    return stream;
  }

  #dropped(peer: NodeId, batch: readonly Envelope[]): void {
    const scopes = new Set(batch.map((e) => e.scope));
    for (const scope of scopes) this.#c.onUnreachable(scope, peer);
  }

  #sendSnapshot(scope: string, m: Message): void {
    const link = this.#link(m.to);
    const snapshot = m.snapshot;
    if (link === null || snapshot === null) {
      this.#c.onSnapshotSent(scope, m.to, false);
      return;
    }
    let settled = false;
    let release = (): void => {};
    const started = performance.now();
    let ready = started;
    let bytes = 0;
    const done = (ok: boolean, why?: string): void => {
      if (settled) return;
      settled = true;
      release();
      if (!ok) this.#c.logger.warn({ scope, peer: m.to, why }, 'snapshot not delivered');
      else {
        const fileMs = Math.round(ready - started);
        const sendMs = Math.round(performance.now() - ready);
        const index = snapshot.meta.index;
        this.#c.logger.info({ scope, peer: m.to, index, bytes, fileMs, sendMs }, 'snapshot delivered');
      }
      this.#c.onSnapshotSent(scope, m.to, ok);
    };
    this.#c.snapshots.outgoing(scope, snapshot).then(
      (file) => {
        release = file.release;
        ready = performance.now();
        bytes = file.bytes;
        if (this.#closed) return done(false, 'transport closed');
        const call = link.client.InstallSnapshot((error, response) => {
          if (error) done(false, error.message);
          else done(response?.receivedBytes === file.bytes, 'short');
        });
        call.on('error', (e: Error) => done(false, e.message));
        call.write({
          header: { scope, message: envelopeToWire({ scope, message: m }).message, totalBytes: file.bytes },
        });
        // One chunk at a time, read into one reused buffer and written only once the previous one has
        // been handed to HTTP/2: memory stays at a chunk whatever the snapshot's size (a stream that
        // buffered ahead, or a buffer per chunk left to the GC, cost ~1.7x the snapshot on the leader).
        void streamFile(
          file.path,
          file.bytes,
          this.#opts.snapshotChunkBytes,
          (chunk) =>
            new Promise<void>((resolve, reject) => {
              call.write({ chunk }, (error?: Error | null) => (error ? reject(error) : resolve()));
            }),
        ).then(
          () => call.end(),
          (error: Error) => {
            call.cancel();
            done(false, error.message);
          },
        );
      },
      (error: Error) => done(false, `could not write the snapshot file: ${error.message}`),
    );
  }
}

/** Counters of refused inbound traffic (exported as metrics). */
export interface ConsensusRefusals {
  unauthenticated: number;
  notMember: number;
  spoofed: number;
  malformed: number;
}

interface InstallSnapshotPart {
  header?: { scope: string; message: WireEnvelope['message']; totalBytes: number } | null;
  chunk?: Uint8Array | null;
}

/** The server side of aq.v1.Consensus. */
export function consensusHandlers(
  receiver: ConsensusReceiver,
  logger: Logger,
  refusals: ConsensusRefusals,
  snapshots: Pick<SnapshotFiles, 'incoming'>,
  maxSnapshotBytes = 2 ** 40,
): {
  Step: handleClientStreamingCall<{ envelopes: WireEnvelope[] }, object>;
  InstallSnapshot: handleClientStreamingCall<InstallSnapshotPart, { receivedBytes: number }>;
  Join: handleUnaryCall<{ scope: string }, { index: number }>;
} {
  const authenticate = (call: ServerReadableStream<unknown, unknown> | ServerUnaryCall<unknown, unknown>) => {
    const peer = callerPeerId(call);
    if (peer === null) refusals.unauthenticated++;
    return peer;
  };
  const accept = (caller: NodeId, wire: WireEnvelope, data?: Uint8Array): Envelope | null => {
    let env: Envelope;
    try {
      env = envelopeFromWire(wire, data);
    } catch (error) {
      refusals.malformed++;
      if (error instanceof WireDecodeError)
        logger.debug({ peer: caller, why: error.message }, 'refused a message');
      else throw error;
      return null;
    }
    if (env.message.from !== caller) {
      refusals.spoofed++;
      logger.warn(
        { peer: caller, claimed: env.message.from },
        "refused a message sent in another anchor's name",
      );
      return null;
    }
    if (!receiver.isMember(env.scope, caller)) {
      refusals.notMember++;
      logger.debug({ peer: caller, scope: env.scope }, 'refused a message from a non-member');
      return null;
    }
    return env;
  };
  return {
    Step(call, callback) {
      const caller = authenticate(call);
      if (caller === null) {
        callback({ code: status.UNAUTHENTICATED, details: 'consensus traffic needs an anchor certificate' });
        return;
      }
      call.on('data', (req: { envelopes?: WireEnvelope[] }) => {
        for (const wire of req.envelopes ?? []) {
          const env = accept(caller, wire);
          if (env !== null) receiver.deliver(env);
        }
      });
      call.on('end', () => callback(null, {}));
      call.on('error', () => {});
    },
    InstallSnapshot(call, callback) {
      const caller = authenticate(call);
      if (caller === null) {
        callback({ code: status.UNAUTHENTICATED, details: 'consensus traffic needs an anchor certificate' });
        return;
      }
      let header: InstallSnapshotPart['header'] = null;
      let target: { path: string; data: Uint8Array } | null = null;
      let sink: ReturnType<typeof createWriteStream> | null = null;
      let received = 0;
      let failed = false;
      const fail = (code: status, details: string, refused = true): void => {
        if (failed) return;
        failed = true;
        if (refused) refusals.malformed++;
        sink?.destroy();
        callback({ code, details });
      };
      call.on('data', (part: InstallSnapshotPart) => {
        if (failed) return;
        if (part.header) {
          if (header) return fail(status.INVALID_ARGUMENT, 'snapshot: a second header');
          if (part.header.totalBytes > maxSnapshotBytes)
            return fail(
              status.RESOURCE_EXHAUSTED,
              `snapshot: ${part.header.totalBytes} bytes is over the limit`,
            );
          // The sender must be a member before anything is written to disk.
          if (accept(caller, { scope: part.header.scope, message: part.header.message }, EMPTY) === null)
            return fail(status.PERMISSION_DENIED, 'snapshot refused', false);
          header = part.header;
          target = snapshots.incoming(header.scope);
          sink = createWriteStream(target.path, { mode: 0o600 });
          sink.on('error', (e) => fail(status.INTERNAL, `snapshot: cannot write: ${e.message}`, false));
        } else if (part.chunk) {
          if (!header || !sink) return fail(status.INVALID_ARGUMENT, 'snapshot: data before the header');
          received += part.chunk.length;
          if (received > header.totalBytes)
            return fail(status.INVALID_ARGUMENT, 'snapshot: more data than announced');
          if (!sink.write(part.chunk)) {
            call.pause();
            sink.once('drain', () => call.resume());
          }
        }
      });
      call.on('end', () => {
        if (failed) return;
        if (!header || !sink || !target || received !== header.totalBytes) {
          fail(
            status.INVALID_ARGUMENT,
            `snapshot: received ${received} bytes, announced ${header?.totalBytes ?? 0}`,
          );
          return;
        }
        const { path, data } = target;
        const wire = { scope: header.scope, message: header.message };
        sink.end(() => {
          // Durable before the core may record a snapshot that names the file.
          void syncFile(path).then(
            () => {
              if (failed) return;
              const env = accept(caller, wire, data);
              if (env === null) return fail(status.PERMISSION_DENIED, 'snapshot refused', false);
              receiver.deliver(env);
              callback(null, { receivedBytes: received });
            },
            (e: Error) => fail(status.INTERNAL, `snapshot: cannot sync: ${e.message}`, false),
          );
        });
      });
      call.on('error', () => sink?.destroy());
    },
    Join(call, callback) {
      const caller = authenticate(call);
      if (caller === null) {
        callback({ code: status.UNAUTHENTICATED, details: 'joining needs an anchor certificate' });
        return;
      }
      const scope = String(call.request.scope ?? '');
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), 10_000);
      call.on('cancelled', () => abort.abort());
      receiver.join(scope, caller, abort.signal).then(
        (index) => {
          clearTimeout(timer);
          callback(null, { index });
        },
        (error: Error & { grpcCode?: status; metadata?: Metadata }) => {
          clearTimeout(timer);
          callback({
            code: error.grpcCode ?? status.UNAVAILABLE,
            details: error.message,
            ...(error.metadata ? { metadata: error.metadata } : {}),
          });
        },
      );
    },
  };
}

const EMPTY = new Uint8Array(0);

/** Reads `bytes` of a file in order into one reused buffer, awaiting `write` for each chunk. */
async function streamFile(
  path: string,
  bytes: number,
  chunkBytes: number,
  write: (chunk: Buffer) => Promise<void>,
): Promise<void> {
  const file = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(chunkBytes);
    for (let at = 0; at < bytes; ) {
      const { bytesRead } = await file.read(buf, 0, Math.min(chunkBytes, bytes - at), at);
      if (bytesRead === 0) throw new Error(`snapshot file ${path} ended at byte ${at} of ${bytes}`);
      await write(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
  } finally {
    await file.close();
  }
}

/** fsyncs a new file and its directory (so that the file's name survives a power loss too). */
async function syncFile(path: string): Promise<void> {
  for (const [target, flags] of [
    [path, 'r+'],
    [dirname(path), 'r'],
  ] as const) {
    const handle = await open(target, flags);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}
