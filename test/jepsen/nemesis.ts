// The nemesis of a fault run: a schedule of faults on the real processes, drawn from the run's seeded PRNG
// (the schedule's choices replay; the processes' timing does not, they are real).
//
// Faults, each healed by the nemesis itself after a drawn duration, at most one of each kind at a time:
//   kill       kill -9 of one anchor, restarted from its data dir 1–5 s later;
//   pause      SIGSTOP of one anchor, SIGCONT 1–6 s later;
//   partition  cut a set of anchor pairs in both directions (one anchor isolated, or the group split in
//              two), healed 2–8 s later;
//   stale-leader (uses the pause and partition slots together) the leader is isolated and paused; once
//              the others have had time to elect a new leader and commit, it is resumed still isolated,
//              so for a moment it believes it leads a group that moved on: the case where a read served
//              without a quorum check goes stale (read-without-quorum). Then healed.
// Targets lean to the leader half of the time (faults there are the ones that exercise elections). Every
// fault is logged with its time on the run's clock; at the end of the run every fault is healed.

import type { Rng } from '../sim/rng.ts';
import { sleep } from './clients.ts';
import type { Cluster } from './cluster.ts';

export type FaultKind = 'kill' | 'pause' | 'partition';
export const FAULT_KINDS: readonly FaultKind[] = ['kill', 'pause', 'partition'];

/** `mixed`: every enabled kind (and stale-leader when pause and partition are both on); `stale-leader` only. */
export type NemesisMode = 'mixed' | 'stale-leader';

export interface FaultEvent {
  /** ms since the run's start (the history's clock). */
  readonly t: number;
  readonly event: 'kill' | 'restart' | 'pause' | 'resume' | 'partition' | 'heal' | 'error';
  readonly anchors: readonly string[];
  readonly detail?: string;
}

export interface NemesisOptions {
  readonly kinds: ReadonlySet<FaultKind>;
  readonly mode: NemesisMode;
  /** Pause between the start of two faults, drawn in [min, max) ms. */
  readonly gapMs: readonly [number, number];
}

export class Nemesis {
  readonly events: FaultEvent[] = [];
  /** Faults injected, per kind (stale-leader counts one pause and one partition, and itself). */
  readonly injected = { kill: 0, pause: 0, partition: 0, staleLeader: 0 };
  readonly #cluster: Cluster;
  readonly #o: NemesisOptions;
  readonly #rng: Rng;
  readonly #now: () => number;
  readonly #log: (line: string) => void;
  readonly #active = new Map<FaultKind, Promise<void>>();
  readonly #end = new AbortController();

  constructor(
    cluster: Cluster,
    options: NemesisOptions,
    rng: Rng,
    now: () => number,
    log: (line: string) => void,
  ) {
    this.#cluster = cluster;
    this.#o = options;
    this.#rng = rng;
    this.#now = now;
    this.#log = log;
  }

  /** Injects faults until `until` (run clock), then heals everything and resolves. */
  async run(until: number): Promise<void> {
    const r = this.#rng;
    // The first round takes every enabled kind once, in a drawn order, so a short run has each of them.
    const firstRound: string[] = r.shuffle(this.#choices());
    while (this.#now() < until && !this.#end.signal.aborted) {
      await sleep(
        Math.min(r.uniform(this.#o.gapMs[0], this.#o.gapMs[1]), until - this.#now()),
        this.#end.signal,
      );
      if (this.#now() >= until || this.#end.signal.aborted) break;
      const free = this.#choices().filter((c) => this.#slotsOf(c).every((k) => !this.#active.has(k)));
      if (free.length === 0) continue;
      const pending = firstRound.filter((c) => free.includes(c));
      const choice = pending.length > 0 ? pending[0]! : r.pick(free);
      if (firstRound.includes(choice)) firstRound.splice(firstRound.indexOf(choice), 1);
      const slots = this.#slotsOf(choice);
      const fault = this.#inject(choice, r.fork()).catch((error: Error) =>
        this.#record('error', [], `${choice}: ${error.message}`),
      );
      const done = fault.finally(() => {
        for (const k of slots) this.#active.delete(k);
      });
      for (const k of slots) this.#active.set(k, done);
    }
    this.#end.abort(); // every fault in progress cuts its wait short and heals now
    await Promise.all([...new Set(this.#active.values())]);
    await this.healAll();
  }

  /** Ends the schedule early: faults in progress heal at once, and run() resolves once all are healed. */
  stop(): void {
    this.#end.abort();
  }

  /** Belt and braces after the faults' own heals: every link healed, every anchor running and resumed. */
  async healAll(): Promise<void> {
    this.#cluster.healAllLinks();
    for (const s of this.#cluster.slots) {
      if (s.state === 'paused') {
        this.#cluster.resume(s.index);
        this.#record('resume', [s.name], 'final heal');
      }
    }
    for (const s of this.#cluster.slots) {
      if (s.state === 'down') {
        await this.#restart(s.index, 'final heal');
      }
    }
  }

  #choices(): string[] {
    const k = this.#o.kinds;
    if (this.#o.mode === 'stale-leader') return ['stale-leader'];
    const out: string[] = FAULT_KINDS.filter((x) => k.has(x));
    if (k.has('pause') && k.has('partition')) out.push('stale-leader');
    return out;
  }

  #slotsOf(choice: string): FaultKind[] {
    return choice === 'stale-leader' ? ['pause', 'partition'] : [choice as FaultKind];
  }

  async #inject(choice: string, r: Rng): Promise<void> {
    const c = this.#cluster;
    const wait = (lo: number, hi: number) => sleep(r.uniform(lo, hi), this.#end.signal);
    switch (choice) {
      case 'kill': {
        const i = await this.#target(r);
        if (i === undefined) return;
        await c.kill(i);
        this.injected.kill++;
        this.#record('kill', [c.slots[i]!.name]);
        await wait(1_000, 5_000);
        await this.#restart(i);
        return;
      }
      case 'pause': {
        const i = await this.#target(r);
        if (i === undefined) return;
        c.pause(i);
        this.injected.pause++;
        this.#record('pause', [c.slots[i]!.name]);
        await wait(1_000, 6_000);
        c.resume(i);
        this.#record('resume', [c.slots[i]!.name]);
        return;
      }
      case 'partition': {
        const sides = await this.#split(r);
        this.#cut(sides, true);
        this.injected.partition++;
        this.#record(
          'partition',
          sides[0].map(this.#name),
          `${this.#side(sides[0])} | ${this.#side(sides[1])}`,
        );
        await wait(2_000, 8_000);
        this.#cut(sides, false);
        this.#record('heal', sides[0].map(this.#name), 'partition healed');
        return;
      }
      case 'stale-leader': {
        const leader = await c.leader();
        if (leader === undefined || c.slots[leader]!.state !== 'up') return;
        const others = c.slots.map((s) => s.index).filter((x) => x !== leader);
        const sides: [number[], number[]] = [[leader], others];
        const name = c.slots[leader]!.name;
        // Isolated first, then stopped: its last heartbeats do not reach anyone after the cut.
        this.#cut(sides, true);
        c.pause(leader);
        this.injected.partition++;
        this.injected.pause++;
        this.injected.staleLeader++;
        this.#record('partition', [name], `stale leader: ${name} | ${this.#side(others)}`);
        this.#record('pause', [name], 'stale leader');
        // Long enough for an election (1–2 s timeout) and some commits on the other side.
        await wait(3_000, 4_500);
        c.resume(leader);
        this.#record('resume', [name], 'stale leader, still isolated');
        // It steps down once CheckQuorum notices (about an election timeout of its own ticks).
        await wait(1_500, 2_500);
        this.#cut(sides, false);
        this.#record('heal', [name], 'stale leader healed');
        return;
      }
    }
  }

  /** The leader half of the time (when known and running), else a random running anchor. */
  async #target(r: Rng): Promise<number | undefined> {
    const c = this.#cluster;
    const up = c.slots.filter((s) => s.state === 'up').map((s) => s.index);
    if (up.length === 0) return undefined;
    if (r.chance(0.5)) {
      const leader = await c.leader();
      if (leader !== undefined && c.slots[leader]!.state === 'up') return leader;
    }
    return r.pick(up);
  }

  /** Two sides: one anchor (the leader half of the time) against the rest, or a random minority/majority. */
  async #split(r: Rng): Promise<[number[], number[]]> {
    const c = this.#cluster;
    const all = c.slots.map((s) => s.index);
    let alone: number[];
    if (c.size > 3 && r.chance(0.5)) {
      alone = r.shuffle(all).slice(0, Math.floor(c.size / 2));
    } else {
      const leader = r.chance(0.5) ? await c.leader() : undefined;
      alone = [leader ?? r.pick(all)];
    }
    return [alone, all.filter((i) => !alone.includes(i))];
  }

  #cut(sides: [number[], number[]], cut: boolean): void {
    for (const a of sides[0]) for (const b of sides[1]) this.#cluster.setLink(a, b, cut);
  }

  async #restart(i: number, detail?: string): Promise<void> {
    const name = this.#cluster.slots[i]!.name;
    // A restart can fail transiently (a port taken between bind and use): a few tries, then give up loudly.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#cluster.startAnchor(i);
        this.#record('restart', [name], detail);
        return;
      } catch (error) {
        if (attempt >= 3) throw error;
        this.#record(
          'error',
          [name],
          `restart failed (${(error as Error).message.split('\n')[0]}); retrying`,
        );
        await sleep(500);
      }
    }
  }

  #name = (i: number): string => this.#cluster.slots[i]!.name;

  #side(side: readonly number[]): string {
    return side.map(this.#name).join(',');
  }

  #record(event: FaultEvent['event'], anchors: string[], detail?: string): void {
    const e: FaultEvent = { t: Math.round(this.#now()), event, anchors, ...(detail ? { detail } : {}) };
    this.events.push(e);
    this.#log(`t=${(e.t / 1000).toFixed(1)}s ${event} ${anchors.join(',')}${detail ? ` (${detail})` : ''}`);
  }
}
