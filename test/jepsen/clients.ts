// The workload of a fault run: N concurrent clients, each one operation at a time, registering,
// deregistering and resolving (linearizable, ReadIndex) a few instance ids on a few names, against random
// anchors of the group, and recording every operation's invocation and completion for the checker.
//
// Names rotate: every `generationMs` the clients move to fresh names ("independent keys", as Jepsen
// does), so each name's history stays short enough for the checker while the run can last for hours;
// every name is read once more at the end, which is how old names' registrations are checked to survive.
//
// An operation is one history entry however many attempts it takes. A write carries a session
// {client, seq}; a retry (after a timeout or an error on one anchor, on another random anchor) reuses the
// seq, so the group applies it at most once and answers a retry with the first application's result.
// Outcomes:
//   ok            an answer arrived: [call, return] with the output;
//   failed        no attempt can have taken effect: each one was either refused before reaching an anchor
//                 (grpc-js "No connection established": the channel had no connection, so the call was
//                 never sent), or answered NOT_FOUND (the anchor does not serve the scope, so it proposed
//                 nothing: a restarted anchor does so until it has reopened its scope) or INVALID_ARGUMENT
//                 (refused, or applied as rejected, which the session then repeats to any retry). Left
//                 out of the history: the same history as if it had never been invoked;
//   indeterminate otherwise (a deadline passed, a connection dropped mid-call, UNAVAILABLE from the
//                 anchor, anything unexpected): return = +Infinity, output unknown; it may take effect
//                 at any time after its call, or never. A read without an answer constrains nothing.

import { status } from '@grpc/grpc-js';
import type { RegistryInput, RegistryInstance, RegistryOutput } from '../checker/registry-model.ts';
import { client as registryClient } from '../integration/anchor-harness.ts';
import type { Rng } from '../sim/rng.ts';
import type { Cluster } from './cluster.ts';

export const INSTANCE_IDS = ['i1', 'i2', 'i3'];

export type OpStatus = 'ok' | 'failed' | 'indeterminate';

/** One operation as recorded (times in ms since the run's start, monotonic clock). */
export interface RecordedOp {
  readonly client: number;
  readonly input: RegistryInput;
  readonly call: number;
  /** +Infinity when indeterminate. */
  return: number;
  output: RegistryOutput | undefined;
  status: OpStatus;
  /** Attempts as "anchor:outcome" (e.g. "a2:OK", "a0:DEADLINE_EXCEEDED", "a1:down"), for study. */
  readonly attempts: string[];
  /** The client session of a write ("client#seq"). */
  readonly session?: string;
}

export interface ClientOptions {
  readonly clients: number;
  readonly namesPerGeneration: number;
  readonly generationMs: number;
  /** Deadline of one attempt (short, so a paused anchor gives a timeout rather than a stall). */
  readonly attemptMs: number;
  /** An operation gives up (failed or indeterminate) this long after its call. */
  readonly opMs: number;
  /** Pause between two operations of one client, drawn in [0, thinkMs). */
  readonly thinkMs: number;
}

type Reg = ReturnType<typeof registryClient>;

interface GrpcError {
  code?: number;
  details?: string;
}

/** The instance list of a Resolve answer as the model's (id, "address:port") pairs, sorted by id. */
export function instancesOf(answer: { instances?: { id: string; address: string; port: number }[] }) {
  const out: RegistryInstance[] = (answer.instances ?? []).map((i) => [i.id, `${i.address}:${i.port}`]);
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

export class Workload {
  readonly ops: RecordedOp[] = [];
  /** Every name used, in order of first use (each gets a final read). */
  readonly names: string[] = [];
  readonly #cluster: Cluster;
  readonly #o: ClientOptions;
  readonly #rng: Rng;
  readonly #now: () => number;
  readonly #runId: string;
  readonly #channels = new Map<string, Reg>();
  #stopping = false;

  constructor(cluster: Cluster, options: ClientOptions, rng: Rng, now: () => number, runId: string) {
    this.#cluster = cluster;
    this.#o = options;
    this.#rng = rng;
    this.#now = now;
    this.#runId = runId;
  }

  /** Runs every client until `until` (on the run's clock); resolves when the last operation has ended. */
  async run(until: number): Promise<void> {
    const clients = Array.from({ length: this.#o.clients }, (_, i) =>
      this.#client(i, this.#rng.fork(), until),
    );
    await Promise.all(clients);
  }

  stop(): void {
    this.#stopping = true;
  }

  close(): void {
    for (const c of this.#channels.values()) c.close();
    this.#channels.clear();
  }

  #nameAt(t: number, k: number): string {
    const generation = Math.floor(t / this.#o.generationMs);
    const name = `${this.#cluster.scope}/g${generation}/n${k}`;
    if (!this.names.includes(name)) this.names.push(name);
    return name;
  }

  async #client(id: number, rng: Rng, until: number): Promise<void> {
    const session = `jepsen-${this.#runId}-c${id}`;
    let seq = 0;
    while (!this.#stopping && this.#now() < until) {
      const name = this.#nameAt(this.#now(), rng.int(this.#o.namesPerGeneration));
      const iid = rng.pick(INSTANCE_IDS);
      const roll = rng.float();
      let input: RegistryInput;
      let request: Record<string, unknown>;
      let method: 'Register' | 'Deregister' | 'Resolve';
      let sessionKey: string | undefined;
      if (roll < 0.45) {
        const address = `10.${rng.int(4)}.${rng.int(256)}.${1 + rng.int(254)}`;
        const port = 1 + rng.int(65535);
        seq++;
        input = { kind: 'register', name, id: iid, value: `${address}:${port}` };
        request = { name, instance: { id: iid, address, port }, clientId: session, seq };
        method = 'Register';
        sessionKey = `${session}#${seq}`;
      } else if (roll < 0.65) {
        seq++;
        input = { kind: 'deregister', name, id: iid };
        request = { name, id: iid, clientId: session, seq };
        method = 'Deregister';
        sessionKey = `${session}#${seq}`;
      } else {
        input = { kind: 'resolve', name };
        request = { name, consistency: 'CONSISTENCY_LINEARIZABLE' };
        method = 'Resolve';
      }
      await this.perform(id, input, method, request, rng, sessionKey);
      if (this.#o.thinkMs > 0) await sleep(rng.float() * this.#o.thinkMs);
    }
  }

  /** One operation, attempts included, recorded in `ops`. Also used for the final reads. */
  async perform(
    clientId: number,
    input: RegistryInput,
    method: 'Register' | 'Deregister' | 'Resolve',
    request: Record<string, unknown>,
    rng: Rng,
    sessionKey?: string,
    opMs = this.#o.opMs,
  ): Promise<RecordedOp> {
    const op: RecordedOp = {
      client: clientId,
      input,
      call: this.#now(),
      return: Number.POSITIVE_INFINITY,
      output: undefined,
      status: 'indeterminate',
      attempts: [],
      ...(sessionKey !== undefined ? { session: sessionKey } : {}),
    };
    this.ops.push(op);
    const deadline = op.call + opMs;
    let maybeSent = false;
    let lastSlot = -1;
    for (;;) {
      const left = deadline - this.#now();
      if (left <= 0) break;
      // A random anchor, not the one that just failed (when there is a choice).
      const slots = this.#cluster.slots.filter((s) => s.index !== lastSlot || this.#cluster.size === 1);
      const slot = rng.pick(slots);
      lastSlot = slot.index;
      const address = slot.grpc;
      if (address === undefined) {
        op.attempts.push(`${slot.name}:down`);
        await sleep(20);
        continue;
      }
      try {
        const answer = await this.#channel(address).call<Record<string, unknown>>(
          method,
          request,
          Math.min(this.#o.attemptMs, left),
        );
        op.return = this.#now();
        op.status = 'ok';
        op.attempts.push(`${slot.name}:OK`);
        op.output = outputOf(input, answer);
        return op;
      } catch (error) {
        const e = error as GrpcError;
        const code = e.code ?? -1;
        const details = e.details ?? '';
        const why = code === status.DEADLINE_EXCEEDED ? '' : `(${details.slice(0, 80)})`;
        op.attempts.push(`${slot.name}:${status[code] ?? code}${why}`);
        if (code === status.INVALID_ARGUMENT) {
          // Refused, or applied as rejected (a retry of the same seq gets the same answer): no effect. An
          // earlier attempt lost in transit keeps it open all the same (the conservative reading).
          if (!maybeSent) {
            op.status = 'failed';
            op.return = this.#now();
          }
          return op;
        }
        // Not proposed by that anchor: the channel had no connection, so the call was never sent; or the
        // anchor does not serve the scope (yet: a restarted anchor answers so until it has reopened it).
        const neverSent =
          (code === status.UNAVAILABLE && details.startsWith('No connection established')) ||
          code === status.NOT_FOUND;
        if (!neverSent) maybeSent = true;
        // An error that comes back at once (connection refused) must not spin the loop.
        await sleep(neverSent ? 50 : 10);
      }
    }
    if (!maybeSent) {
      op.status = 'failed';
      op.return = this.#now();
    }
    return op;
  }

  #channel(address: string): Reg {
    let c = this.#channels.get(address);
    if (c === undefined) {
      // An anchor restarted on a new port: forget channels to addresses no anchor has any more.
      const current = new Set(this.#cluster.slots.map((s) => s.proc?.info.grpc));
      for (const [old, ch] of this.#channels) {
        if (!current.has(old)) {
          ch.close();
          this.#channels.delete(old);
        }
      }
      c = registryClient(address, 'Registry');
      this.#channels.set(address, c);
    }
    return c;
  }
}

function outputOf(input: RegistryInput, answer: Record<string, unknown>): RegistryOutput {
  switch (input.kind) {
    case 'register':
      return { kind: 'register' };
    case 'deregister':
      return { kind: 'deregister', removed: answer.removed === true };
    case 'resolve':
      return { kind: 'resolve', instances: instancesOf(answer as never) };
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
