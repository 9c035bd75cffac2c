// The simulated network between hosts: every message gets its own delay drawn from the run's distribution
// (so messages reorder), may be lost or duplicated, and never crosses a cut link. Links are cut one way at a
// time; a symmetric partition is two sets of one-way cuts. A cut applies both when a message is sent and
// when it would arrive (a message in flight when a partition starts is lost with it).

import type { EventQueue } from './events.ts';
import type { Rng } from './rng.ts';

export interface NetworkConfig {
  /** Delay of a message in simulated milliseconds: uniform in [delayMin, delayMax]... */
  readonly delayMin: number;
  readonly delayMax: number;
  /** ...except with this probability, when it is multiplied by up to `spikeFactor` (a slow path). */
  readonly spikeProbability: number;
  readonly spikeFactor: number;
  readonly lossProbability: number;
  readonly dupProbability: number;
}

export interface NetworkStats {
  sent: number;
  delivered: number;
  lost: number;
  duplicated: number;
  /** Dropped because a link was cut (at send or at arrival). */
  cut: number;
}

/** A set of one-way cuts made together, healed together. */
export interface CutHandle {
  readonly links: readonly (readonly [string, string])[];
}

export class SimNetwork<P> {
  private readonly queue: EventQueue;
  private readonly rng: Rng;
  private readonly deliver: (from: string, to: string, payload: P) => void;
  config: NetworkConfig;
  /** `from>to` -> how many active cuts hold that link down. */
  private readonly cuts = new Map<string, number>();
  readonly stats: NetworkStats = { sent: 0, delivered: 0, lost: 0, duplicated: 0, cut: 0 };

  constructor(
    queue: EventQueue,
    rng: Rng,
    config: NetworkConfig,
    deliver: (from: string, to: string, payload: P) => void,
  ) {
    this.queue = queue;
    this.rng = rng;
    this.config = config;
    this.deliver = deliver;
  }

  /** One message delay drawn from the current distribution. */
  sampleDelay(): number {
    const c = this.config;
    let d = this.rng.uniform(c.delayMin, c.delayMax);
    if (this.rng.chance(c.spikeProbability)) d *= this.rng.uniform(1, c.spikeFactor);
    return d;
  }

  blocked(from: string, to: string): boolean {
    return this.cuts.size > 0 && (this.cuts.get(`${from}>${to}`) ?? 0) > 0;
  }

  send(from: string, to: string, payload: P): void {
    this.stats.sent++;
    if (this.blocked(from, to)) {
      this.stats.cut++;
      return;
    }
    if (this.rng.chance(this.config.lossProbability)) {
      this.stats.lost++;
      return;
    }
    const copies = this.rng.chance(this.config.dupProbability) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let i = 0; i < copies; i++) {
      this.queue.after(this.sampleDelay(), () => {
        if (this.blocked(from, to)) {
          this.stats.cut++;
          return;
        }
        this.stats.delivered++;
        this.deliver(from, to, payload);
      });
    }
  }

  /** Cut the given one-way links until `heal(handle)`. */
  cut(links: readonly (readonly [string, string])[]): CutHandle {
    for (const [a, b] of links) {
      const k = `${a}>${b}`;
      this.cuts.set(k, (this.cuts.get(k) ?? 0) + 1);
    }
    return { links };
  }

  /** A symmetric partition: no message crosses between `left` and `right`, either way. */
  partition(left: readonly string[], right: readonly string[]): CutHandle {
    const links: [string, string][] = [];
    for (const a of left) {
      for (const b of right) {
        links.push([a, b], [b, a]);
      }
    }
    return this.cut(links);
  }

  heal(handle: CutHandle): void {
    for (const [a, b] of handle.links) {
      const k = `${a}>${b}`;
      const n = (this.cuts.get(k) ?? 0) - 1;
      if (n > 0) this.cuts.set(k, n);
      else this.cuts.delete(k);
    }
  }

  healAll(): void {
    this.cuts.clear();
  }

  /** The links currently cut, for the trace. */
  describeCuts(): string {
    return [...this.cuts.keys()].sort().join(' ');
  }
}
