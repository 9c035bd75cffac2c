// The anchor's discovery layer: a libp2p node (TCP + noise + yamux, bootstrap, identify, gossipsub) whose
// identity is the anchor's ed25519 key, spreading signed announcements so every anchor holds a verified
// view of the others (endpoints, region, scopes).
//
// How announcements spread, and why each path exists:
// - Exchange (/aq/announce/1.0.0): when we open a connection to an anchor (after identify says it speaks
//   the protocol) both sides send everything they hold. This converges a new anchor in one round trip,
//   without waiting for gossipsub's mesh to form over heartbeats.
// - Push (/aq/announce-push/1.0.0, one-way): what we learn in an exchange, and our own updates, is pushed
//   at once to every connected anchor. Needed because exchanges race: when B and C join through A at the
//   same moment, A's exchange with each runs before A knows the other, and gossip subscriptions may not
//   have arrived yet either. Pushed announcements are not pushed on again, so a change costs O(N²) small
//   streams at most, never a cascade.
// - Gossipsub topic aq/announce/1: changes and the periodic re-announce reach every subscribed anchor
//   (own messages are flood-published); the validator verifies each message, so forged or stale ones are
//   neither delivered nor forwarded.
// - Anti-entropy: every announceIntervalMs we also run a full exchange with one random connected anchor,
//   so views converge even if every faster path raced or lost a message.
// - Dialing: every verified announcement's p2p addresses are dialed and redialed with bounded backoff, so
//   anchors end up directly connected to each other and losing the bootstrap peers changes nothing.
// - knownPeersFile: the verified view survives restarts, so an anchor can rejoin without its bootstrap peers.

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { bootstrap } from '@libp2p/bootstrap';
import { type GossipSub, gossipsub, type Message, TopicValidatorResult } from '@libp2p/gossipsub';
import { type Identify, identify } from '@libp2p/identify';
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { tcp } from '@libp2p/tcp';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { createLibp2p, type Libp2p } from 'libp2p';
import type { Logger } from 'pino';
import { libp2pKeyFromSeed, peerIdOfPublicKey } from '../identity/peer-id.ts';
import { NodeSigner } from '../identity/signer.ts';
import {
  type Announcement,
  AnnouncementTable,
  encodeSignedAnnouncement,
  MAX_ANNOUNCEMENT_BYTES,
  type OfferResult,
  type SelfDescription,
  type SignedAnnouncement,
  signAnnouncement,
} from './announcement.ts';
import { MeshError } from './errors.ts';
import { encodeFrame, FrameDecoder } from './frames.ts';

export const ANNOUNCE_TOPIC = 'aq/announce/1';
export const ANNOUNCE_PROTOCOL = '/aq/announce/1.0.0';
export const ANNOUNCE_PUSH_PROTOCOL = '/aq/announce-push/1.0.0';

const DEFAULT_ANNOUNCE_INTERVAL_MS = 5000;
const EXCHANGE_TIMEOUT_MS = 5000;
const DIAL_TIMEOUT_MS = 5000;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30_000;
// Two anchors usually learn of each other at the same moment and would both dial, doubling handshakes in
// a joining mesh. The one with the lower peer id dials at once; the other waits this long (plus jitter)
// and dials only if no connection has appeared by then.
const DIAL_GRACE_MS = 1500;
const PERSIST_DEBOUNCE_MS = 100;
// Frames up to 4x the announcement limit are read and then refused with a logged reason; a larger length
// prefix ends the exchange at once (nothing legitimate is that big).
const MAX_FRAME_BYTES = 4 * MAX_ANNOUNCEMENT_BYTES;
// Enough for a 50-anchor mesh many times over; bounds the work one exchange can cause.
const MAX_FRAMES_PER_EXCHANGE = 4096;
const KNOWN_PEERS_VERSION = 1;
const INBOUND_CONNECTIONS_PER_HOST_PER_SECOND = 100;

export interface MeshOptions {
  /** The anchor's 32-byte ed25519 seed: it is both the signing key and the libp2p identity. */
  seed: Uint8Array;
  /** Multiaddr to listen on, e.g. /ip4/127.0.0.1/tcp/0 (port 0 picks one). */
  listen: string;
  /** Multiaddrs of bootstrap anchors, each ending in /p2p/<peerId>. */
  bootstrap: readonly string[];
  self: SelfDescription;
  logger?: Logger;
  /** How often our current announcement is re-published on gossip (same seq). Default 5000. */
  announceIntervalMs?: number;
  /** Where the verified view is persisted (JSON) and reloaded from at start. */
  knownPeersFile?: string;
  /** Cancels start-up; once the mesh is running, aborting it stops the mesh. */
  signal?: AbortSignal;
}

type MeshNode = Libp2p<{ identify: Identify; pubsub: GossipSub }>;

/** A peer we keep (re)dialing: a known anchor or a bootstrap peer. */
interface DialTarget {
  peer: PeerId;
  addrs: Multiaddr[];
  attempt: number;
  timer: NodeJS.Timeout | undefined;
  dialing: boolean;
  /** True when the other side is expected to dial us (see DIAL_GRACE_MS); false for bootstrap peers. */
  yields: boolean;
}

/** Where an offered announcement came from: decides whether it is pushed on, and goes into debug logs. */
type Source = { kind: 'self' | 'exchange' | 'push' | 'gossip'; peer?: string };

interface KnownPeersFile {
  version: number;
  anchors: unknown[];
}

export class Mesh {
  readonly peerId: string;

  private readonly node: MeshNode;
  private readonly signer: NodeSigner;
  private readonly table: AnnouncementTable;
  private readonly log: Logger | undefined;
  private readonly knownPeersFile: string | undefined;
  private readonly announceIntervalMs: number;
  private readonly listeners = new Set<(a: Announcement) => void>();
  private readonly targets = new Map<string, DialTarget>();
  private readonly exchanged = new Set<string>();
  // Announcements waiting to be pushed, by announcing anchor; `except` is the anchor we learned it from.
  private readonly outbox = new Map<string, { signed: SignedAnnouncement; except: string | undefined }>();
  private outboxScheduled = false;
  // Aborted by stop(): cancels dials, exchanges and timers that are in flight.
  private readonly lifetime = new AbortController();
  private selfDescription: SelfDescription;
  private lastSeq = 0;
  private announceTimer: NodeJS.Timeout | undefined;
  private persistTimer: NodeJS.Timeout | undefined;
  private persistChain: Promise<void> = Promise.resolve();
  private stopping: Promise<void> | undefined;
  // Set once our first announcement is out; address changes before that are part of start-up.
  private running = false;
  private externalSignal: AbortSignal | undefined;
  private readonly onExternalAbort = (): void => void this.stop();

  private constructor(init: {
    node: MeshNode;
    signer: NodeSigner;
    table: AnnouncementTable;
    peerId: string;
    self: SelfDescription;
    log: Logger | undefined;
    knownPeersFile: string | undefined;
    announceIntervalMs: number;
  }) {
    this.node = init.node;
    this.signer = init.signer;
    this.table = init.table;
    this.peerId = init.peerId;
    this.selfDescription = {
      ...init.self,
      scopes: [...init.self.scopes],
      ...(init.self.formed ? { formed: [...init.self.formed] } : {}),
    };
    this.log = init.log;
    this.knownPeersFile = init.knownPeersFile;
    this.announceIntervalMs = init.announceIntervalMs;
  }

  static async create(options: MeshOptions): Promise<Mesh> {
    const { signal } = options;
    signal?.throwIfAborted();
    const log = options.logger?.child({ module: 'mesh' });
    const announceIntervalMs = options.announceIntervalMs ?? DEFAULT_ANNOUNCE_INTERVAL_MS;
    if (!Number.isFinite(announceIntervalMs) || announceIntervalMs < 10)
      throw new MeshError(`announceIntervalMs must be at least 10, got ${announceIntervalMs}`);

    let signer: NodeSigner;
    try {
      signer = new NodeSigner(options.seed);
    } catch (err) {
      throw new MeshError(`bad anchor seed: ${(err as Error).message}`);
    }
    const peerId = peerIdOfPublicKey(signer.publicKey);
    const listen = parseMultiaddr(options.listen, 'listen address');
    const bootstrapList = options.bootstrap.map((s) => {
      const ma = parseMultiaddr(s, 'bootstrap address');
      if (peerIdOfMultiaddr(ma) === undefined)
        throw new MeshError(`bootstrap address ${s} has no /p2p/<peerId>; add the anchor's peer id`);
      return ma;
    });

    const table = new AnnouncementTable();
    if (options.knownPeersFile !== undefined) await loadKnownPeers(options.knownPeersFile, table, log);
    signal?.throwIfAborted();

    const privateKey = await libp2pKeyFromSeed(options.seed);
    // Our own address never belongs in the dial list (a shared bootstrap list usually names us too).
    const others = bootstrapList.filter((ma) => peerIdOfMultiaddr(ma) !== peerId);
    const node: MeshNode = await createLibp2p({
      privateKey,
      start: false,
      addresses: { listen: [listen.toString()] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionManager: {
        // libp2p refuses more than 5 inbound connections per second from one host. Anchors all dial each
        // other, so a dev mesh on loopback (or anchors behind one NAT) bursts past that at start.
        inboundConnectionThreshold: INBOUND_CONNECTIONS_PER_HOST_PER_SECOND,
        maxIncomingPendingConnections: INBOUND_CONNECTIONS_PER_HOST_PER_SECOND,
      },
      // timeout 0: dial bootstrap peers at start rather than after the module's default 1 s.
      peerDiscovery: others.length > 0 ? [bootstrap({ list: others.map(String), timeout: 0 })] : [],
      services: {
        identify: identify(),
        pubsub: gossipsub({
          // Our announcement must go out even before any peer has subscribed (it is also re-sent later).
          allowPublishToZeroTopicPeers: true,
          floodPublish: true,
          emitSelf: false,
          fallbackToFloodsub: false,
        }),
      },
    });

    const mesh = new Mesh({
      node,
      signer,
      table,
      peerId,
      self: options.self,
      log,
      knownPeersFile: options.knownPeersFile,
      announceIntervalMs,
    });
    try {
      await mesh.start(others, signal);
    } catch (err) {
      await mesh.stop().catch(() => undefined);
      if (signal?.aborted) throw signal.reason;
      if (err instanceof MeshError) throw err;
      throw new MeshError(`mesh start failed: ${(err as Error).message}`, { cause: err });
    }
    return mesh;
  }

  /** Listening addresses with /p2p/<peerId>. */
  multiaddrs(): string[] {
    return this.node.getMultiaddrs().map(String);
  }

  /** Changes our description and re-announces at once with a new seq; throws MeshError if stopped or invalid. */
  update(self: Partial<SelfDescription>): void {
    if (this.stopping) throw new MeshError('mesh is stopped');
    const next: SelfDescription = { ...this.selfDescription };
    if (self.grpc !== undefined) next.grpc = self.grpc;
    if (self.peer !== undefined) next.peer = self.peer;
    if (self.http !== undefined) next.http = self.http;
    if (self.region !== undefined) next.region = self.region;
    if (self.scopes !== undefined) next.scopes = [...self.scopes];
    if (self.formed !== undefined) next.formed = [...self.formed];
    this.announceSelf(next);
  }

  /** The current verified view, including ourselves, sorted by peerId. */
  anchors(): Announcement[] {
    return this.table.all();
  }

  lookup(peerId: string): Announcement | undefined {
    return this.table.get(peerId);
  }

  /** Peer ids of known anchors we have an open connection to. */
  connected(): string[] {
    return this.table
      .all()
      .map((a) => a.peerId)
      .filter((id) => id !== this.peerId && this.isConnected(peerIdFromString(id)));
  }

  /** Fires for each new or changed (higher seq) verified announcement, ours included. */
  onAnchor(listener: (a: Announcement) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Idempotent; flushes the known-peers file and closes libp2p. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async start(bootstrapList: Multiaddr[], signal: AbortSignal | undefined): Promise<void> {
    const node = this.node;
    // Handlers and listeners go in before start so the first (bootstrap) connection is not missed.
    await node.handle(ANNOUNCE_PROTOCOL, (stream, connection) => this.onInboundExchange(stream, connection), {
      maxInboundStreams: 8,
    });
    await node.handle(
      ANNOUNCE_PUSH_PROTOCOL,
      (stream, connection) => this.onInboundPush(stream, connection),
      {
        maxInboundStreams: 32,
      },
    );
    await node.register(ANNOUNCE_PROTOCOL, {
      onConnect: (peer, connection) => this.onAnchorConnected(peer, connection),
    });
    node.addEventListener('peer:connect', (evt) => {
      const target = this.targets.get(evt.detail.toString());
      if (target) target.attempt = 0;
    });
    node.addEventListener('peer:disconnect', (evt) => this.onDisconnect(evt.detail));
    node.addEventListener('connection:close', (evt) => this.exchanged.delete(evt.detail.id));
    node.addEventListener('self:peer:update', () => this.onSelfAddressesChanged());
    node.services.pubsub.topicValidators.set(ANNOUNCE_TOPIC, (from, msg) => this.validateGossip(from, msg));

    await node.start();
    signal?.throwIfAborted();
    node.services.pubsub.subscribe(ANNOUNCE_TOPIC);

    // A restarted anchor must announce above whatever seq it had before (possibly held by others).
    this.lastSeq = this.table.get(this.peerId)?.seq ?? 0;
    this.announceSelf(this.selfDescription);
    this.running = true;

    for (const ma of bootstrapList) this.addTarget(peerIdOfMultiaddr(ma), [ma], false);
    // Anchors from the known-peers file are dialed at once: if we restarted on a new port they cannot know
    // where we are, so waiting for them to dial (DIAL_GRACE_MS) would only delay the rejoin.
    for (const a of this.table.all()) this.addTargetFromAnnouncement(a, false);

    this.announceTimer = setInterval(() => this.reannounce(), this.announceIntervalMs);
    this.announceTimer.unref();
    if (signal) {
      this.externalSignal = signal;
      signal.addEventListener('abort', this.onExternalAbort, { once: true });
    }
    this.log?.debug({ peerId: this.peerId, p2p: this.multiaddrs(), known: this.table.size }, 'mesh started');
  }

  private async shutdown(): Promise<void> {
    this.lifetime.abort(new MeshError('mesh stopped'));
    this.externalSignal?.removeEventListener('abort', this.onExternalAbort);
    clearInterval(this.announceTimer);
    for (const t of this.targets.values()) clearTimeout(t.timer);
    this.targets.clear();
    this.listeners.clear();
    if (this.persistTimer !== undefined) {
      clearTimeout(this.persistTimer);
      this.persistTimer = undefined;
      this.persist();
    }
    await this.persistChain;
    try {
      await this.node.stop();
    } catch (err) {
      this.log?.warn({ err }, 'libp2p stop failed');
    }
    this.log?.debug({ peerId: this.peerId }, 'mesh stopped');
  }

  // ---- announcements ----

  /** Signs a description with a fresh, strictly larger seq, makes it ours and spreads it. */
  private announceSelf(description: SelfDescription): void {
    // Date.now()-based so a restart without a known-peers file still outranks what others hold.
    const seq = Math.max(Date.now(), this.lastSeq + 1);
    // Throws MeshError (e.g. oversized) before anything changes.
    const signed = signAnnouncement(
      { ...description, peerId: this.peerId, p2p: this.multiaddrs(), seq },
      this.signer,
    );
    this.lastSeq = seq;
    this.selfDescription = description;
    this.receive(signed, { kind: 'self' });
    void this.publish(signed);
  }

  /**
   * Periodic: re-publish the same announcement (no new seq, so nobody's onAnchor fires), run one
   * anti-entropy exchange with a random connected anchor, and redial anchors we lost.
   */
  private reannounce(): void {
    if (this.stopping) return;
    const own = this.table.getSigned(this.peerId);
    if (own) void this.publish(own);
    const connected = this.connected();
    const pick = connected[Math.floor(Math.random() * connected.length)];
    if (pick !== undefined) void this.startExchange(peerIdFromString(pick), undefined);
    for (const t of this.targets.values()) if (!this.isConnected(t.peer)) this.scheduleDial(t, this.grace(t));
  }

  private async publish(signed: SignedAnnouncement): Promise<void> {
    if (this.stopping) return;
    try {
      await this.node.services.pubsub.publish(ANNOUNCE_TOPIC, encodeSignedAnnouncement(signed));
    } catch (err) {
      this.log?.debug({ err: (err as Error).message }, 'gossip publish failed');
    }
  }

  /**
   * Offers an untrusted announcement (a parsed value or wire bytes); never throws. Drops are logged at
   * debug with their reason, except stale ones from a stream when `quietStale` is set: an exchange
   * repeats mostly what we hold, so those are counted and summarised once per stream instead.
   */
  private receive(input: unknown, source: Source, quietStale = false): OfferResult {
    const result = input instanceof Uint8Array ? this.table.offerBytes(input) : this.table.offer(input);
    const from = source.peer === undefined ? source.kind : `${source.kind}:${source.peer}`;
    if (result.status !== 'accepted') {
      if (!(quietStale && result.status === 'stale'))
        this.log?.debug({ from, reason: result.reason }, `announcement dropped: ${result.reason}`);
      return result;
    }
    const a = result.announcement;
    this.log?.debug({ from, peerId: a.peerId, seq: a.seq }, 'announcement accepted');
    this.addTargetFromAnnouncement(a);
    this.schedulePersist();
    if (source.kind === 'self' || source.kind === 'exchange') {
      const signed = this.table.getSigned(a.peerId);
      if (signed) this.queuePush(signed, source.peer);
    }
    for (const listener of [...this.listeners]) {
      try {
        listener(a);
      } catch (err) {
        this.log?.warn({ err }, 'onAnchor listener threw');
      }
    }
    return result;
  }

  private validateGossip(from: PeerId, msg: Message): TopicValidatorResult {
    const result = this.receive(msg.data, { kind: 'gossip', peer: from.toString() });
    if (result.status === 'accepted') return TopicValidatorResult.Accept;
    // Stale is normal (periodic re-announce): not forwarded, but the sender is not penalised for it.
    return result.status === 'stale' ? TopicValidatorResult.Ignore : TopicValidatorResult.Reject;
  }

  private onSelfAddressesChanged(): void {
    if (this.stopping || !this.running) return;
    const own = this.table.get(this.peerId);
    if (!own) return;
    const now = this.multiaddrs();
    if (now.length > 0 && JSON.stringify([...now].sort()) !== JSON.stringify([...own.p2p].sort()))
      this.announceSelf(this.selfDescription);
  }

  // ---- direct exchange ----

  private onAnchorConnected(peer: PeerId, connection: Connection): void {
    // One exchange per connection, started by the dialing side (both sides get everything either way).
    if (this.stopping || connection.direction !== 'outbound' || this.exchanged.has(connection.id)) return;
    this.exchanged.add(connection.id);
    void this.startExchange(peer, connection);
  }

  /** Opens an exchange stream (on the given connection, or any open one) and runs it; never throws. */
  private async startExchange(peer: PeerId, connection: Connection | undefined): Promise<void> {
    let stream: Stream;
    try {
      const signal = AbortSignal.any([this.lifetime.signal, AbortSignal.timeout(EXCHANGE_TIMEOUT_MS)]);
      stream = connection
        ? await connection.newStream(ANNOUNCE_PROTOCOL, { signal })
        : await this.node.dialProtocol(peer, ANNOUNCE_PROTOCOL, { signal });
    } catch (err) {
      this.log?.debug({ peer: peer.toString(), err: (err as Error).message }, 'announce stream failed');
      return;
    }
    await this.exchange(stream, peer.toString());
  }

  /**
   * The responder reads the dialer's whole view before sending its own. Sending at once would be faster,
   * but libp2p 3.3 loses data (and the close) that reaches the dialer while it is still in
   * multistream-select: the dialer's stream then ends with nothing read. Waiting for the dialer's frames
   * guarantees its negotiation has finished; it costs half a round trip.
   */
  private async onInboundExchange(stream: Stream, connection: Connection): Promise<void> {
    const remote = connection.remotePeer.toString();
    const signal = AbortSignal.any([this.lifetime.signal, AbortSignal.timeout(EXCHANGE_TIMEOUT_MS)]);
    await this.guarded(stream, remote, signal, async () => {
      await this.receiveFrames(stream, { kind: 'exchange', peer: remote });
      await this.sendFrames(stream, this.table.allSigned(), signal);
    });
  }

  private async onInboundPush(stream: Stream, connection: Connection): Promise<void> {
    const remote = connection.remotePeer.toString();
    const signal = AbortSignal.any([this.lifetime.signal, AbortSignal.timeout(EXCHANGE_TIMEOUT_MS)]);
    await this.guarded(stream, remote, signal, async () => {
      await this.receiveFrames(stream, { kind: 'push', peer: remote });
      await stream.close({ signal }); // nothing to send; closing after reading, as in the exchange
    });
  }

  /** Batches announcements to push: one stream per connected anchor carries everything queued so far. */
  private queuePush(signed: SignedAnnouncement, except: string | undefined): void {
    this.outbox.set(signed.announcement.peerId, { signed, except });
    if (this.outboxScheduled) return;
    this.outboxScheduled = true;
    setImmediate(() => {
      this.outboxScheduled = false;
      const batch = [...this.outbox.values()];
      this.outbox.clear();
      if (this.stopping) return;
      // Every open connection, not only anchors whose announcement we hold: a peer that joined a moment
      // ago may not have told us about itself yet, but must still hear what we just learned.
      const peers = new Set(this.node.getConnections().map((c) => c.remotePeer.toString()));
      for (const id of peers) {
        const frames = batch
          .filter((p) => p.except !== id && p.signed.announcement.peerId !== id)
          .map((p) => p.signed);
        if (frames.length > 0) void this.push(peerIdFromString(id), frames);
      }
    });
  }

  private async push(peer: PeerId, batch: SignedAnnouncement[]): Promise<void> {
    const remote = peer.toString();
    const signal = AbortSignal.any([this.lifetime.signal, AbortSignal.timeout(EXCHANGE_TIMEOUT_MS)]);
    let stream: Stream;
    try {
      stream = await this.node.dialProtocol(peer, ANNOUNCE_PUSH_PROTOCOL, { signal });
    } catch (err) {
      this.log?.debug({ peer: remote, err: (err as Error).message }, 'announce push stream failed');
      return;
    }
    await this.guarded(stream, remote, signal, () => this.sendFrames(stream, batch, signal));
  }

  /** Dialer side: send every signed announcement we hold and close our write side while reading theirs. */
  private async exchange(stream: Stream, remote: string): Promise<void> {
    const signal = AbortSignal.any([this.lifetime.signal, AbortSignal.timeout(EXCHANGE_TIMEOUT_MS)]);
    await this.guarded(stream, remote, signal, async () => {
      await Promise.all([
        this.sendFrames(stream, this.table.allSigned(), signal),
        this.receiveFrames(stream, { kind: 'exchange', peer: remote }),
      ]);
    });
  }

  /** Runs work on a stream, aborting the stream on timeout, stop or error; logs and never throws. */
  private async guarded(
    stream: Stream,
    remote: string,
    signal: AbortSignal,
    work: () => Promise<void>,
  ): Promise<void> {
    const onAbort = (): void => stream.abort(new MeshError(`announce stream with ${remote} aborted`));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await work();
    } catch (err) {
      this.log?.debug({ peer: remote, err: (err as Error).message }, 'announce stream failed');
      stream.abort(err as Error);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private async sendFrames(stream: Stream, batch: SignedAnnouncement[], signal: AbortSignal): Promise<void> {
    for (const signed of batch) {
      if (!stream.send(encodeFrame(encodeSignedAnnouncement(signed)))) await stream.onDrain({ signal });
    }
    await stream.close({ signal });
  }

  private async receiveFrames(stream: Stream, source: Source): Promise<void> {
    const remote = source.peer;
    const decoder = new FrameDecoder(MAX_FRAME_BYTES);
    const counts = { frames: 0, accepted: 0, stale: 0, rejected: 0 };
    let firstStale: string | undefined;
    for await (const chunk of stream) {
      // Uint8Array and Uint8ArrayList both give a Uint8Array from subarray().
      for (const payload of decoder.push(chunk.subarray())) {
        if (++counts.frames > MAX_FRAMES_PER_EXCHANGE)
          throw new MeshError(`more than ${MAX_FRAMES_PER_EXCHANGE} announcements in one stream`);
        const result = this.receive(payload, source, true);
        counts[result.status]++;
        if (result.status === 'stale') firstStale ??= result.reason;
      }
    }
    if (decoder.pending > 0) this.log?.debug({ peer: remote }, 'announce stream ended inside a frame');
    this.log?.debug(
      { from: `${source.kind}:${remote}`, ...counts },
      counts.stale > 0
        ? `announce stream read; ${counts.stale} stale dropped, e.g. ${firstStale}`
        : 'announce stream read',
    );
  }

  // ---- dialing ----

  private addTargetFromAnnouncement(a: Announcement, yields = a.peerId < this.peerId): void {
    if (a.peerId === this.peerId) return;
    const addrs: Multiaddr[] = [];
    for (const s of a.p2p) {
      try {
        const ma = multiaddr(s);
        // Only addresses that name the announcing anchor: an announcement must not steer dials elsewhere.
        if (peerIdOfMultiaddr(ma) === a.peerId) addrs.push(ma);
      } catch {
        this.log?.debug({ peerId: a.peerId, addr: s }, 'unparsable p2p address in announcement');
      }
    }
    this.addTarget(a.peerId, addrs, yields);
  }

  private addTarget(peerId: string | undefined, addrs: Multiaddr[], yields: boolean): void {
    if (peerId === undefined || peerId === this.peerId || this.stopping) return;
    let target = this.targets.get(peerId);
    if (!target) {
      let peer: PeerId;
      try {
        peer = peerIdFromString(peerId);
      } catch {
        return;
      }
      target = { peer, addrs: [], attempt: 0, timer: undefined, dialing: false, yields };
      this.targets.set(peerId, target);
    }
    if (addrs.length > 0) target.addrs = addrs;
    if (!this.isConnected(target.peer)) this.scheduleDial(target, this.grace(target));
  }

  private onDisconnect(peer: PeerId): void {
    const target = this.targets.get(peer.toString());
    if (!target || this.stopping) return;
    this.log?.debug({ peer: peer.toString() }, 'anchor disconnected, will redial');
    this.scheduleDial(target, backoff(target.attempt) + this.grace(target));
  }

  private grace(target: DialTarget): number {
    return target.yields ? DIAL_GRACE_MS + Math.round(Math.random() * 500) : 0;
  }

  private scheduleDial(target: DialTarget, delayMs: number): void {
    if (this.stopping || target.dialing || target.timer !== undefined) return;
    target.timer = setTimeout(() => {
      target.timer = undefined;
      void this.dial(target);
    }, delayMs);
    target.timer.unref();
  }

  private async dial(target: DialTarget): Promise<void> {
    if (this.stopping || this.isConnected(target.peer)) {
      target.attempt = 0;
      return;
    }
    target.dialing = true;
    let failed = false;
    try {
      const signal = AbortSignal.any([this.lifetime.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]);
      // Remember the announced addresses in the peer store too, then dial them (freshest first).
      if (target.addrs.length > 0) await this.node.peerStore.merge(target.peer, { multiaddrs: target.addrs });
      await this.node.dial(target.addrs.length > 0 ? target.addrs : target.peer, { signal });
      target.attempt = 0;
    } catch (err) {
      failed = true;
      target.attempt++;
      this.log?.debug(
        { peer: target.peer.toString(), attempt: target.attempt, err: (err as Error).message },
        'dial failed',
      );
    } finally {
      target.dialing = false;
    }
    if (failed) this.scheduleDial(target, backoff(target.attempt));
  }

  private isConnected(peer: PeerId): boolean {
    return this.node.getConnections(peer).length > 0;
  }

  // ---- known-peers file ----

  private schedulePersist(): void {
    if (this.knownPeersFile === undefined || this.stopping || this.persistTimer !== undefined) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = undefined;
      this.persist();
    }, PERSIST_DEBOUNCE_MS);
    this.persistTimer.unref();
  }

  /** Queues an atomic write (temp file + rename) of the current view; writes never overlap. */
  private persist(): void {
    const file = this.knownPeersFile;
    if (file === undefined) return;
    const body: KnownPeersFile = { version: KNOWN_PEERS_VERSION, anchors: this.table.allSigned() };
    const text = `${JSON.stringify(body, null, 2)}\n`;
    this.persistChain = this.persistChain.then(async () => {
      const tmp = `${file}.${process.pid}.tmp`;
      try {
        await mkdir(dirname(file), { recursive: true });
        await writeFile(tmp, text, { mode: 0o644 });
        await rename(tmp, file);
      } catch (err) {
        this.log?.warn({ file, err: (err as Error).message }, 'could not write known peers file');
      }
    });
  }
}

/** Loads a known-peers file into the table, re-verifying every entry; a missing or bad file is not fatal. */
async function loadKnownPeers(
  file: string,
  table: AnnouncementTable,
  log: Logger | undefined,
): Promise<void> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      log?.warn({ file, err: (err as Error).message }, 'could not read known peers file');
    return;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    log?.warn({ file }, 'known peers file is not JSON; ignoring it');
    return;
  }
  const anchors = (parsed as Partial<KnownPeersFile> | null)?.anchors;
  if (!Array.isArray(anchors)) {
    log?.warn({ file }, 'known peers file has no anchors list; ignoring it');
    return;
  }
  let accepted = 0;
  for (const entry of anchors) {
    const result = table.offer(entry);
    if (result.status === 'accepted') accepted++;
    else log?.debug({ file, reason: result.reason }, `known peer dropped: ${result.reason}`);
  }
  log?.debug({ file, accepted, total: anchors.length }, 'known peers loaded');
}

function parseMultiaddr(s: string, what: string): Multiaddr {
  try {
    return multiaddr(s);
  } catch (err) {
    throw new MeshError(`bad ${what} ${JSON.stringify(s)}: ${(err as Error).message}`);
  }
}

function peerIdOfMultiaddr(ma: Multiaddr): string | undefined {
  return ma.getComponents().findLast((c) => c.name === 'p2p')?.value;
}

/** Bounded exponential backoff with jitter: 250 ms doubling up to 30 s. */
function backoff(attempt: number): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}
