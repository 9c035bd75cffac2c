// The run's event trace: a ring buffer of the last `capacity` lines normally, every line when replaying.
// `verbose` lines (every message, every Ready) are recorded only in full mode: they are too many to format
// on every run, and the ring buffer keeps the lines that explain a failure (faults, roles, client ops).

export class Trace {
  private readonly lines: string[] = [];
  private start = 0;
  /** Lines recorded over the run, including those the ring buffer has forgotten. */
  total = 0;

  readonly capacity: number;
  readonly full: boolean;

  constructor(capacity: number, full: boolean) {
    this.capacity = capacity;
    this.full = full;
  }

  add(time: number, text: string): void {
    const line = `${formatTime(time)} ${text}`;
    this.total++;
    if (this.full || this.lines.length < this.capacity) {
      this.lines.push(line);
      return;
    }
    this.lines[this.start] = line;
    this.start = (this.start + 1) % this.capacity;
  }

  /** The recorded lines, oldest first. */
  toArray(): string[] {
    if (this.full || this.start === 0) return this.lines.slice();
    return [...this.lines.slice(this.start), ...this.lines.slice(0, this.start)];
  }
}

/** Simulated milliseconds as seconds with microsecond resolution: `12.345678s`. */
export function formatTime(ms: number): string {
  return `${(ms / 1000).toFixed(6)}s`;
}
