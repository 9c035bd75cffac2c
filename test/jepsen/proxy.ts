// A TCP proxy for one ordered pair of anchors (i dials j's consensus port through it), so the nemesis can
// partition real processes without root (no iptables): cutting the pair destroys its live connections and
// refuses new ones until healed.
//
// It forwards raw bytes: the anchors' mutual TLS passes through untouched (identity is pinned to keys, not
// addresses). The target is looked up per connection, because j listens on a new port after each restart
// (port 0) while i keeps dialling the proxy's fixed port (AQ_TEST_PEER_DIAL).
//
// Raft traffic flows as one-way streams from sender to addressee (answers travel on the addressee's own
// stream back), so a symmetric partition of i and j cuts both proxies, i→j and j→i.

import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class PairProxy {
  readonly from: number;
  readonly to: number;
  readonly #target: () => string | undefined;
  readonly #server: Server;
  readonly #live = new Set<Socket>();
  #cut = false;
  #address = '';
  /** Connections forwarded / refused (cut, or the target down). */
  forwarded = 0;
  refused = 0;

  constructor(from: number, to: number, target: () => string | undefined) {
    this.from = from;
    this.to = to;
    this.#target = target;
    this.#server = createServer((socket) => this.#accept(socket));
  }

  /** Listens on a loopback port picked by the kernel; resolves with "127.0.0.1:port". */
  listen(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => {
        const a = this.#server.address();
        if (a === null || typeof a === 'string') return reject(new Error('proxy: no TCP address'));
        this.#address = `127.0.0.1:${a.port}`;
        resolve(this.#address);
      });
    });
  }

  get address(): string {
    return this.#address;
  }

  get isCut(): boolean {
    return this.#cut;
  }

  /** Drops every connection of the pair now and refuses new ones until heal(). */
  cut(): void {
    this.#cut = true;
    for (const s of this.#live) s.destroy();
    this.#live.clear();
  }

  heal(): void {
    this.#cut = false;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #accept(inbound: Socket): void {
    const target = this.#cut ? undefined : this.#target();
    if (target === undefined) {
      // Refused rather than held open: the dialler sees the failure at once, as with a dead peer.
      this.refused++;
      inbound.destroy();
      return;
    }
    const at = target.lastIndexOf(':');
    const outbound = createConnection({ host: target.slice(0, at), port: Number(target.slice(at + 1)) });
    this.forwarded++;
    inbound.setNoDelay(true);
    outbound.setNoDelay(true);
    this.#live.add(inbound);
    this.#live.add(outbound);
    // Either side failing or closing ends both: a half-open pair would look like a silent partition.
    const end = (): void => {
      inbound.destroy();
      outbound.destroy();
      this.#live.delete(inbound);
      this.#live.delete(outbound);
    };
    for (const s of [inbound, outbound]) {
      s.on('error', end);
      s.on('close', end);
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  }
}
