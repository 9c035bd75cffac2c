// The simulated clock and its event queue: a binary min-heap keyed by (time, sequence number), so that
// events scheduled for the same instant run in the order they were scheduled — deterministically.

export type Action = () => void;

interface Event {
  readonly time: number;
  readonly seq: number;
  readonly action: Action;
}

function before(x: Event, y: Event): boolean {
  return x.time < y.time || (x.time === y.time && x.seq < y.seq);
}

export class EventQueue {
  private readonly heap: Event[] = [];
  private seq = 0;
  /** Simulated time in milliseconds. Only `runUntil` moves it, never backwards. */
  now = 0;
  /** Events run so far. */
  executed = 0;

  get size(): number {
    return this.heap.length;
  }

  /** Run `action` at `now + delay` (delay >= 0). */
  after(delay: number, action: Action): void {
    this.at(this.now + Math.max(delay, 0), action);
  }

  at(time: number, action: Action): void {
    const ev: Event = { time: Math.max(time, this.now), seq: this.seq++, action };
    const h = this.heap;
    let i = h.length;
    h.push(ev);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as Event;
      if (!before(ev, parent)) break;
      h[i] = parent;
      i = p;
    }
    h[i] = ev;
  }

  private pop(): Event | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && before(h[r] as Event, h[l] as Event)) c = r;
      if (!before(h[c] as Event, last)) break;
      h[i] = h[c] as Event;
      i = c;
    }
    h[i] = last;
    return top;
  }

  /** Run events in order until the next one is later than `time` or `stop()` returns true. */
  runUntil(time: number, stop: () => boolean = () => false): void {
    for (;;) {
      if (stop()) return;
      const top = this.heap[0];
      if (top === undefined || top.time > time) break;
      this.pop();
      this.now = top.time;
      this.executed++;
      top.action();
    }
    if (time > this.now) this.now = time;
  }
}
