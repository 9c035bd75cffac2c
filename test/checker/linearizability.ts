/**
 * Linearizability checker for concurrent histories (test-only).
 *
 * Why hand-written: this is the project's correctness core. Every Raft / registry simulation ends by asking
 * "was what the clients observed linearizable?", so the checker has to be small enough to audit line by line,
 * have no dependency whose semantics we would have to trust, and speak our own model vocabulary.
 *
 * The algorithm is the one made practical by Porcupine (A. Athalye, https://github.com/anishathalye/porcupine):
 *  - Wing & Gong, "Testing and Verifying Concurrent Objects", JPDC 17(1), 1993: depth-first search for a
 *    sequential order of the operations, consistent with real-time order, that the sequential model accepts.
 *  - G. Lowe, "Testing for linearizability", Concurrency and Computation: Practice and Experience 29(4), 2017:
 *    "just-in-time linearization" over a doubly linked list of call/return entries (an operation is lifted out
 *    of the list when linearized and unlifted on backtrack), plus memoization of every visited configuration
 *    (set of linearized operations, model state) so no configuration is explored twice.
 *  - Herlihy & Wing's locality / Porcupine's P-compositionality: when the model can partition the history
 *    (e.g. per key), each partition is checked independently, which turns one exponential search into many
 *    small ones.
 *
 * Entry list. Each completed operation contributes a call entry and a return entry; an indeterminate operation
 * (return = +Infinity) contributes only a call entry. Entries are sorted by time. At equal timestamps, CALLS
 * COME BEFORE RETURNS: an operation returning at t and another invoked at t are treated as concurrent. This is
 * the conservative choice: it can only admit more histories (it never rejects a linearizable history because
 * two clocks happened to tick together), at the cost of not detecting a violation that would need a strict
 * "returned before invoked" at the same instant. Producers of histories who want strict precedence must use
 * distinct times (the simulator's clock is fine-grained enough).
 *
 * Search (per partition). Walk the list from its head. At a call entry, try to linearize that operation now:
 * if the model accepts it and the configuration (linearized set + 1, new state) has not been seen, push it,
 * lift it, and restart from the head. At a return entry, the operation it closes must already have been
 * linearized (it is not, since it is still in the list), so backtrack: pop the last linearized operation,
 * unlift it and continue after it. The search succeeds as soon as every *completed* operation is linearized:
 * indeterminate operations may remain (they "never" took effect). They can be linearized at any point after
 * their call, because they have no return entry to force them earlier and nothing after their call forbids them.
 */

export interface Operation<I, O> {
  /** Client that issued the operation (for error reports). */
  readonly clientId: number;
  readonly input: I;
  /** Invocation time: any monotonic number (simulated tick, ns). Must be finite. */
  readonly call: number;
  /** Completion time (>= call); Number.POSITIVE_INFINITY if the outcome is unknown (timed out, crashed). */
  readonly return: number;
  /** Observed output; undefined when indeterminate. */
  readonly output: O | undefined;
}

export interface StepResult<S> {
  readonly ok: boolean;
  readonly state: S;
}

export interface Model<S, I, O> {
  /** Initial state of one partition. */
  readonly init: () => S;
  /**
   * Apply `input` to `state` and say whether `output` is what the sequential object would return. States must be
   * treated as immutable (the checker keeps old states for backtracking). `output` undefined means indeterminate:
   * accept any output and apply the effect; the checker separately allows the operation never to take effect.
   */
  readonly step: (state: S, input: I, output: O | undefined) => StepResult<S>;
  /** P-compositionality: split the history into independently checkable sub-histories (e.g. per key). */
  readonly partition?: (ops: readonly Operation<I, O>[]) => Operation<I, O>[][];
  /** Canonical key of a state: equal states must have equal hashes, different states different hashes. */
  readonly hash: (state: S) => string;
  /** One-line description of an operation for error reports (the checker appends the [call, return] interval). */
  readonly describe?: (op: Operation<I, O>) => string;
}

export type CheckResult =
  | { readonly ok: true; readonly partitions: number; readonly operations: number }
  | {
      readonly ok: false;
      /** Index (in the model's partition order) of the first partition found not linearizable. */
      readonly partition: number;
      /** The failing partition's operations with their intervals and the longest linearizable prefix found. */
      readonly reason: string;
    };

export interface UnknownResult {
  readonly ok: 'unknown';
  readonly reason: string;
}

export interface CheckOptions {
  /** Budget of model steps (state expansions) per partition before giving up with `ok: 'unknown'`. */
  readonly maxSteps?: number;
}

export const DEFAULT_MAX_STEPS = 5_000_000;

/** Cap on the number of lines of each list in a failure report. */
const REPORT_LINES = 40;

/**
 * Check that `history` is linearizable with respect to `model`. Partitions are checked in the model's order; the
 * first non-linearizable one is reported. If none fails but one exhausted its budget, the answer is 'unknown'.
 * Throws RangeError on a malformed operation (non-finite call, return before call).
 */
export function checkLinearizability<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
  options?: CheckOptions,
): CheckResult | UnknownResult {
  const maxSteps = options?.maxSteps ?? DEFAULT_MAX_STEPS;
  if (!(maxSteps > 0)) throw new RangeError(`maxSteps must be positive, got ${maxSteps}`);
  history.forEach(validate);
  const partitions = model.partition ? model.partition(history) : [history.slice()];
  let unknown: UnknownResult | undefined;
  for (let p = 0; p < partitions.length; p++) {
    const ops = partitions[p]!;
    const outcome = searchPartition(model, ops, maxSteps);
    if (outcome.kind === 'fail') {
      return { ok: false, partition: p, reason: failureReport(model, ops, p, outcome) };
    }
    if (outcome.kind === 'unknown' && unknown === undefined) {
      unknown = {
        ok: 'unknown',
        reason:
          `partition ${p} (${ops.length} operations): search budget of ${maxSteps} steps exhausted ` +
          `after linearizing at most ${outcome.deepest} operations`,
      };
    }
  }
  return unknown ?? { ok: true, partitions: partitions.length, operations: history.length };
}

function validate<I, O>(op: Operation<I, O>, index: number): void {
  if (!Number.isFinite(op.call))
    throw new RangeError(`operation ${index}: call time must be finite, got ${op.call}`);
  if (Number.isNaN(op.return) || op.return < op.call) {
    throw new RangeError(`operation ${index}: return ${op.return} precedes call ${op.call}`);
  }
}

type PartitionOutcome<S> =
  | { readonly kind: 'ok' }
  | { readonly kind: 'unknown'; readonly deepest: number }
  | { readonly kind: 'fail'; readonly prefix: readonly number[]; readonly stateAfterPrefix: S };

const NIL = -1;
const HEAD = 0;

function searchPartition<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  maxSteps: number,
): PartitionOutcome<S> {
  const n = ops.length;
  let remaining = 0; // completed operations not yet linearized
  for (const op of ops) if (op.return !== Number.POSITIVE_INFINITY) remaining++;
  if (remaining === 0) return { kind: 'ok' }; // indeterminate operations alone may all "never" happen

  // --- Entry list: index 0 is the head sentinel, then entries in time order. ---
  const events: { time: number; isCall: boolean; op: number }[] = [];
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    events.push({ time: op.call, isCall: true, op: i });
    if (op.return !== Number.POSITIVE_INFINITY) events.push({ time: op.return, isCall: false, op: i });
  }
  // Calls before returns at equal times (see the header); then by operation index, for determinism.
  events.sort((a, b) => a.time - b.time || Number(b.isCall) - Number(a.isCall) || a.op - b.op);
  const size = events.length + 1;
  const isCall = new Uint8Array(size);
  const opOf = new Int32Array(size);
  const match = new Int32Array(size).fill(NIL); // call entry -> its return entry (NIL if indeterminate)
  const next = new Int32Array(size);
  const prev = new Int32Array(size);
  const callEntryOf = new Int32Array(n);
  for (let e = 1; e < size; e++) {
    const ev = events[e - 1]!;
    opOf[e] = ev.op;
    if (ev.isCall) {
      isCall[e] = 1;
      callEntryOf[ev.op] = e;
    } else {
      match[callEntryOf[ev.op]!] = e;
    }
  }
  for (let e = 0; e < size; e++) {
    next[e] = e + 1 < size ? e + 1 : NIL;
    prev[e] = e - 1;
  }
  const remove = (e: number): void => {
    const nx = next[e]!;
    next[prev[e]!] = nx;
    if (nx !== NIL) prev[nx] = prev[e]!;
  };
  const restore = (e: number): void => {
    const nx = next[e]!;
    next[prev[e]!] = e;
    if (nx !== NIL) prev[nx] = e;
  };

  // --- Linearized set: a bitset with an incremental Zobrist hash (two 32-bit halves). ---
  const bits = new Uint32Array(Math.ceil(n / 32));
  const zobrist = zobristKeys(n);
  let h1 = 0;
  let h2 = 0;
  const toggle = (i: number): void => {
    bits[i >>> 5]! ^= 1 << (i & 31);
    h1 ^= zobrist[2 * i]!;
    h2 ^= zobrist[2 * i + 1]!;
  };
  // Memo of visited configurations: key = set hash + state hash; bucket holds the exact sets (collision-safe).
  const seen = new Map<string, Uint32Array[]>();
  const visit = (stateHash: string): boolean => {
    const key = `${h1}.${h2}.${stateHash}`;
    const bucket = seen.get(key);
    if (bucket === undefined) {
      seen.set(key, [bits.slice()]);
      return true;
    }
    for (const b of bucket) if (sameBits(b, bits)) return false;
    bucket.push(bits.slice());
    return true;
  };

  // --- Depth-first search. ---
  const stackEntry: number[] = [];
  const stackState: S[] = [];
  let state = model.init();
  let best: number[] = [];
  let bestState = state;
  let steps = 0;
  let entry = next[HEAD]!;
  for (;;) {
    if (remaining === 0) return { kind: 'ok' };
    if (entry !== NIL && isCall[entry] === 1) {
      if (++steps > maxSteps) return { kind: 'unknown', deepest: best.length };
      const i = opOf[entry]!;
      const op = ops[i]!;
      const result = model.step(state, op.input, op.output);
      if (result.ok) {
        toggle(i);
        if (visit(model.hash(result.state))) {
          stackEntry.push(entry);
          stackState.push(state);
          state = result.state;
          remove(entry);
          const ret = match[entry]!;
          if (ret !== NIL) {
            remove(ret);
            remaining--;
          }
          if (stackEntry.length > best.length) {
            best = stackEntry.map((e) => opOf[e]!);
            bestState = state;
          }
          entry = next[HEAD]!;
          continue;
        }
        toggle(i); // configuration already explored: undo and try the next candidate
      }
      entry = next[entry]!;
    } else {
      // A return entry of a non-linearized operation (or, defensively, the end of the list): dead end.
      const top = stackEntry.pop();
      if (top === undefined) return { kind: 'fail', prefix: best, stateAfterPrefix: bestState };
      state = stackState.pop()!;
      toggle(opOf[top]!);
      const ret = match[top]!;
      if (ret !== NIL) {
        restore(ret);
        remaining++;
      }
      restore(top);
      entry = next[top]!;
    }
  }
}

function sameBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}

/** Deterministic pseudo-random keys (splitmix32), two per operation. */
function zobristKeys(n: number): Uint32Array {
  const keys = new Uint32Array(2 * n);
  let x = 0x9e3779b9;
  for (let k = 0; k < keys.length; k++) {
    x = (x + 0x9e3779b9) | 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    keys[k] = (z ^ (z >>> 16)) >>> 0;
  }
  return keys;
}

// --- Failure report. ---

function failureReport<S, I, O>(
  model: Model<S, I, O>,
  ops: readonly Operation<I, O>[],
  partition: number,
  outcome: { readonly prefix: readonly number[]; readonly stateAfterPrefix: S },
): string {
  const line = (i: number): string => {
    const op = ops[i]!;
    const text = model.describe ? model.describe(op) : defaultDescribe(op);
    const end = op.return === Number.POSITIVE_INFINITY ? '∞)' : `${op.return}]`;
    return `#${i} ${text} @[${op.call}, ${end}`;
  };
  const byCall = ops.map((_, i) => i).sort((a, b) => ops[a]!.call - ops[b]!.call || a - b);
  const completed = ops.filter((op) => op.return !== Number.POSITIVE_INFINITY).length;
  const out: string[] = [`partition ${partition} is not linearizable (${ops.length} operations)`];
  out.push('operations, by invocation time:');
  out.push(...capped(byCall.map((i) => `  ${line(i)}`)));
  out.push(
    `longest linearizable prefix: ${outcome.prefix.length} operations ` +
      `(${completed} completed operations in the partition)`,
  );
  out.push(...cappedTail(outcome.prefix.map((i, k) => `  ${k + 1}. ${line(i)}`)));
  out.push(`state after that prefix: ${model.hash(outcome.stateAfterPrefix)}`);
  // The operations that could have come next: not linearized, invoked before the earliest pending return.
  const done = new Set(outcome.prefix);
  let frontier = Number.POSITIVE_INFINITY;
  for (let i = 0; i < ops.length; i++) {
    if (!done.has(i)) frontier = Math.min(frontier, ops[i]!.return);
  }
  const candidates = byCall.filter((i) => !done.has(i) && ops[i]!.call <= frontier);
  out.push('none of these can be linearized next:');
  out.push(...capped(candidates.map((i) => `  ${line(i)}`)));
  return out.join('\n');
}

function defaultDescribe<I, O>(op: Operation<I, O>): string {
  const output = op.output === undefined ? '?' : JSON.stringify(op.output);
  return `c${op.clientId} ${JSON.stringify(op.input)} -> ${output}`;
}

function capped(lines: string[]): string[] {
  if (lines.length <= REPORT_LINES) return lines;
  return [...lines.slice(0, REPORT_LINES), `  … ${lines.length - REPORT_LINES} more`];
}

function cappedTail(lines: string[]): string[] {
  if (lines.length <= REPORT_LINES) return lines;
  return [`  … ${lines.length - REPORT_LINES} earlier`, ...lines.slice(-REPORT_LINES)];
}
