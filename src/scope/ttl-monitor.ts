// TTL health checks (like Consul's TTL checks). Heartbeats are kept in memory on the leader and cost no
// log write; only a change of health is proposed, by the leader: critical when an instance's TTL passes
// without a heartbeat, passing when a heartbeat arrives for a critical instance. A new leader gives every
// instance one full TTL from the moment it took over (it cannot know when the last heartbeat reached the
// old leader), so a leadership change never marks a healthy instance critical.
//
// Every member tracks which instances have TTLs (from the applied changes), so any member can lead.

import type { Health, Instance } from '../registry/index.ts';
import type { NameChange } from './watch-hub.ts';

interface Tracked {
  readonly name: string;
  readonly id: string;
  ttlMs: number;
  health: Health;
  deadline: number;
  /** The health last proposed for this instance and when, so a sweep does not propose it again at once. */
  proposed: Health | null;
  proposedAt: number;
}

export interface TtlMonitorComponents {
  readonly now: () => number;
  /** Proposes a health change (leader only); the monitor learns the outcome from the applied change. */
  readonly proposeHealth: (name: string, id: string, health: Health) => void;
  /**
   * The name's current instances, read from the registry: a heartbeat for an instance not tracked yet
   * (the rebuild after a restart has not reached its name) is checked against it.
   */
  readonly lookup?: (name: string) => NameChange;
}

const REPROPOSE_MS = 2_000;

export class TtlMonitor {
  readonly #c: TtlMonitorComponents;
  /** By name, then by instance id: an applied change touches only its own name's entries. */
  readonly #tracked = new Map<string, Map<string, Tracked>>();
  #size = 0;
  #leading = false;

  constructor(components: TtlMonitorComponents) {
    this.#c = components;
  }

  get size(): number {
    return this.#size;
  }

  *#all(): Iterable<Tracked> {
    for (const byId of this.#tracked.values()) yield* byId.values();
  }

  /** An applied change of a name: start, update or stop tracking its instances' TTLs. */
  observe(change: NameChange): void {
    const now = this.#c.now();
    const before = this.#tracked.get(change.name);
    const after = new Map<string, Tracked>();
    for (const instance of change.instances) {
      if (instance.ttlMs <= 0) continue;
      const t = before?.get(instance.id);
      if (t === undefined) {
        after.set(instance.id, newTracked(change.name, instance, now));
        continue;
      }
      if (t.health !== instance.health) t.proposed = null;
      // A (re-)registration or a change to passing counts as a sign of life.
      if (instance.health !== 'critical' && t.health === 'critical') t.deadline = now + instance.ttlMs;
      t.ttlMs = instance.ttlMs;
      t.health = instance.health;
      after.set(instance.id, t);
    }
    this.#size += after.size - (before?.size ?? 0);
    if (after.size > 0) this.#tracked.set(change.name, after);
    else this.#tracked.delete(change.name);
  }

  clear(): void {
    this.#tracked.clear();
    this.#size = 0;
  }

  /** This member became leader (true) or stopped leading (false). */
  setLeading(leading: boolean): void {
    if (leading && !this.#leading) {
      const now = this.#c.now();
      for (const t of this.#all()) {
        t.deadline = now + t.ttlMs;
        t.proposed = null;
      }
    }
    this.#leading = leading;
  }

  /** A heartbeat reached the leader: 'unknown' when the instance has no TTL check here. */
  heartbeat(name: string, id: string): Health | 'unknown' {
    let t = this.#tracked.get(name)?.get(id);
    if (t === undefined && this.#c.lookup !== undefined) {
      this.observe(this.#c.lookup(name));
      t = this.#tracked.get(name)?.get(id);
    }
    if (t === undefined) return 'unknown';
    const now = this.#c.now();
    t.deadline = now + t.ttlMs;
    if (this.#leading && t.health === 'critical' && this.#mayPropose(t, 'passing', now)) {
      this.#c.proposeHealth(t.name, t.id, 'passing');
    }
    return t.health;
  }

  /** Leader only: proposes critical for every instance whose TTL has passed. */
  sweep(): number {
    if (!this.#leading) return 0;
    const now = this.#c.now();
    let proposed = 0;
    for (const t of this.#all()) {
      if (t.health === 'critical' || now < t.deadline || !this.#mayPropose(t, 'critical', now)) continue;
      this.#c.proposeHealth(t.name, t.id, 'critical');
      proposed++;
    }
    return proposed;
  }

  #mayPropose(t: Tracked, health: Health, now: number): boolean {
    if (t.proposed === health && now - t.proposedAt < REPROPOSE_MS) return false;
    t.proposed = health;
    t.proposedAt = now;
    return true;
  }
}

function newTracked(name: string, instance: Instance, now: number): Tracked {
  return {
    name,
    id: instance.id,
    ttlMs: instance.ttlMs,
    health: instance.health,
    deadline: now + instance.ttlMs,
    proposed: null,
    proposedAt: 0,
  };
}
