// Concurrent clients of the registry, and the history they record for the linearizability checker.
//
// Each client issues one operation at a time on a small key space (2–4 names, 3 instance ids), so that
// operations conflict often: register (a random address:port), deregister, resolve (a linearizable read
// through ReadIndex). A request goes to a random host of the group or to the last leader a reply named;
// it travels a client link that can delay and lose it (clients are not behind the hosts' partitions).
//
// Writes carry a session {client, seq}; a retry reuses the seq, so the registry applies the command at most
// once however many attempts reach a log. Outcomes:
//   ok            a reply arrived: recorded with its output and its [call, return] interval;
//   indeterminate no reply before the deadline, and some attempt may have been proposed: black-box, it is
//                 recorded with return = +Infinity (it may take effect at any later time, or never); by
//                 default the simulator resolves it from what the members applied (resolveIndeterminate);
//   failed        every attempt was refused before being proposed (ProposalDroppedError, or a host that
//                 does not serve the scope). Such an operation is left out of the history, which is sound:
//                 propose()/readIndex() threw synchronously, so no log holds the command and nothing can
//                 ever apply it — the history is the same as if the client had never invoked it.
// Reads that time out are left out too: a read has no effect, so an unanswered read constrains nothing.

import { type CommandResult, encodeCommand } from '../../src/registry/index.ts';
import type { RegistryInput, RegistryOperation, RegistryOutput } from '../checker/registry-model.ts';
import type { ClientReply, ClientRequest, Cluster } from './cluster.ts';
import type { Rng } from './rng.ts';

const INSTANCE_IDS = ['i1', 'i2', 'i3'];

interface Op {
  readonly id: number;
  readonly input: RegistryInput;
  readonly kind: 'write' | 'read';
  readonly data: Uint8Array;
  readonly sessionKey: string;
  readonly call: number;
  readonly deadline: number;
  readonly final: boolean;
  attempt: number;
  /** Attempts sent and not definitely refused: any of them may have reached a log. */
  readonly open: Set<number>;
  done: boolean;
}

export interface ClientStats {
  ok: number;
  failed: number;
  indeterminate: number;
  /** Of the indeterminate writes: applied by some member during the run / never applied anywhere. */
  indeterminateApplied: number;
  indeterminateNeverApplied: number;
  readsTimedOut: number;
  attempts: number;
}

export function emptyClientStats(): ClientStats {
  return {
    ok: 0,
    failed: 0,
    indeterminate: 0,
    indeterminateApplied: 0,
    indeterminateNeverApplied: 0,
    readsTimedOut: 0,
    attempts: 0,
  };
}

export interface ClientTimeouts {
  /** Give up on one host and try another after this long (ms). */
  readonly attemptMs: number;
  /** An operation ends (indeterminate or failed) this long after its call (ms). */
  readonly operationMs: number;
}

class SimClient {
  readonly id: number;
  readonly session: string;
  readonly scope: string;
  readonly names: readonly string[];
  seq = 0;
  op: Op | null = null;
  lastLeader = '';
  /** After the fault phase: the next operation is the client's last, and must succeed. */
  finalPhase = false;
  finalDeadline = 0;
  finalOutcome: 'none' | 'pending' | 'ok' | 'failed' = 'none';

  constructor(id: number, scope: string, names: readonly string[]) {
    this.id = id;
    this.session = `c${id}`;
    this.scope = scope;
    this.names = names;
  }
}

export class Clients {
  private readonly cluster: Cluster;
  private readonly rng: Rng;
  private readonly timeouts: ClientTimeouts;
  private readonly clients: SimClient[] = [];
  private nextOpId = 1;
  readonly history: RegistryOperation[] = [];
  readonly stats: ClientStats = emptyClientStats();
  /** Writes that ended without an answer, resolved at the end of the run (see `resolveIndeterminate`). */
  private readonly indeterminate: {
    clientId: number;
    input: RegistryInput;
    call: number;
    sessionKey: string;
  }[] = [];
  private finalPending = 0;

  constructor(cluster: Cluster, rng: Rng, timeouts: ClientTimeouts) {
    this.cluster = cluster;
    this.rng = rng;
    this.timeouts = timeouts;
    for (const g of cluster.scenario.groups) {
      for (let i = 0; i < g.clients; i++)
        this.clients.push(new SimClient(this.clients.length, g.scope, g.names));
    }
    cluster.onReply = (req, reply, hint) => this.onReply(req, reply, hint);
  }

  get count(): number {
    return this.clients.length;
  }

  start(): void {
    for (const c of this.clients) this.think(c);
  }

  /** Every client finishes what it is doing, then issues one last write that must succeed by `deadline`. */
  enterFinalPhase(deadline: number): void {
    for (const c of this.clients) {
      c.finalPhase = true;
      c.finalDeadline = deadline;
      c.finalOutcome = 'pending';
      this.finalPending++;
      if (c.op === null) this.startOp(c);
    }
  }

  /** Clients whose final operation has not succeeded (empty when all did). */
  finalFailures(): string[] {
    return this.clients
      .filter((c) => c.finalOutcome !== 'ok')
      .map(
        (c) =>
          `${c.session} (${c.scope}): final operation ${c.finalOutcome === 'pending' ? 'still pending' : 'failed'}`,
      );
  }

  get allFinalDone(): boolean {
    return this.finalPending === 0;
  }

  private think(c: SimClient): void {
    const s = this.cluster.scenario;
    this.cluster.queue.after(this.rng.uniform(s.thinkMin, s.thinkMax), () => {
      if (c.op === null && c.finalOutcome === 'none') this.startOp(c);
    });
  }

  private startOp(c: SimClient): void {
    const q = this.cluster.queue;
    const r = this.rng;
    const name = r.pick(c.names);
    const id = r.pick(INSTANCE_IDS);
    const final = c.finalPhase;
    const roll = final ? 0 : r.float();
    let input: RegistryInput;
    let data: Uint8Array = new Uint8Array(0);
    let sessionKey = '';
    if (roll < 0.45) {
      const address = `10.${r.int(4)}.${r.int(256)}.${1 + r.int(254)}`;
      const port = 1 + r.int(65535);
      input = { kind: 'register', name, id, value: `${address}:${port}` };
      c.seq++;
      data = encodeCommand({
        type: 'register',
        name,
        instance: { id, address, port, tags: [], meta: {}, health: 'passing', ttlMs: 0 },
        session: { client: c.session, seq: c.seq },
      });
      sessionKey = `${c.session}#${c.seq}`;
    } else if (roll < 0.65) {
      input = { kind: 'deregister', name, id };
      c.seq++;
      data = encodeCommand({ type: 'deregister', name, id, session: { client: c.session, seq: c.seq } });
      sessionKey = `${c.session}#${c.seq}`;
    } else {
      input = { kind: 'resolve', name };
    }
    const op: Op = {
      id: this.nextOpId++,
      input,
      kind: input.kind === 'resolve' ? 'read' : 'write',
      data,
      sessionKey,
      call: q.now,
      deadline: final ? c.finalDeadline : q.now + this.timeouts.operationMs,
      final,
      attempt: 0,
      open: new Set(),
      done: false,
    };
    c.op = op;
    this.cluster.trace.add(
      q.now,
      `client ${c.session} op#${op.id} ${describeInput(input)}${final ? ' (final)' : ''}`,
    );
    q.at(op.deadline, () => {
      if (!op.done) this.finish(c, op, undefined);
    });
    this.attempt(c, op);
  }

  private attempt(c: SimClient, op: Op): void {
    const q = this.cluster.queue;
    if (op.done || q.now >= op.deadline) return;
    const hosts = this.cluster.groupHosts(c.scope);
    const host = c.lastLeader !== '' && this.rng.chance(0.6) ? c.lastLeader : this.rng.pick(hosts);
    op.attempt++;
    this.stats.attempts++;
    const attempt = op.attempt;
    op.open.add(attempt);
    const req: ClientRequest = {
      client: c.id,
      opId: op.id,
      attempt,
      scope: c.scope,
      host,
      kind: op.kind,
      data: op.data,
      sessionKey: op.sessionKey,
      name: op.input.name,
    };
    const s = this.cluster.scenario;
    if (!this.rng.chance(this.cluster.clientLoss)) {
      q.after(this.rng.uniform(s.clientDelayMin, s.clientDelayMax), () => this.cluster.submit(req));
    }
    q.after(this.timeouts.attemptMs, () => {
      if (op.done || op.attempt !== attempt) return;
      // No answer: the request or its reply may have been lost, or it sits in some log. We cannot tell.
      c.lastLeader = '';
      this.attempt(c, op);
    });
  }

  private onReply(req: ClientRequest, reply: ClientReply, hint: string): void {
    const c = this.clients[req.client];
    if (c === undefined) return;
    const op = c.op;
    if (op === null || op.done || op.id !== req.opId) return;
    if (hint !== '') c.lastLeader = hint;
    switch (reply.kind) {
      case 'dropped':
        // Definitely not proposed by this attempt. Only the current attempt's refusal moves us on.
        op.open.delete(req.attempt);
        if (req.attempt !== op.attempt) return;
        if (hint === '' || hint === req.host) c.lastLeader = '';
        this.cluster.queue.after(this.rng.uniform(2, 15), () => {
          if (!op.done && op.attempt === req.attempt) this.attempt(c, op);
        });
        return;
      case 'write': {
        const r = reply.result;
        let output: RegistryOutput;
        if (r.type === 'register') output = { kind: 'register' };
        else if (r.type === 'deregister') output = { kind: 'deregister', removed: r.removed };
        else {
          const why = r.type === 'rejected' ? `${r.code}: ${r.message}` : `unexpected ${r.type} result`;
          this.cluster.checks.fail(
            'registry-rejection',
            `${c.session} op#${op.id} ${describeInput(op.input)} was rejected: ${why}`,
          );
          return;
        }
        this.finish(c, op, output);
        return;
      }
      case 'read':
        this.finish(c, op, { kind: 'resolve', instances: reply.instances });
        return;
    }
  }

  /**
   * Add the indeterminate writes to the history. Black-box (`effects` null): each with return = +Infinity, as
   * a client alone would have to. Otherwise the simulator uses what it knows about the servers: a write some
   * member applied with an effect gets that result, and as return time the moment it was first applied (its
   * commit, hence its linearization point, came before: a correct group applies entries in one order
   * everywhere and only once committed); a write no member ever applied is left out — no read could have
   * observed it, since reads are served from applied state, and the history ends with the run. This makes the
   * check stricter than black-box (an applied-then-lost write is a violation even if no client saw it) and
   * keeps the linearizability search free of open-ended operations.
   */
  resolveIndeterminate(effects: ReadonlyMap<string, { time: number; result: CommandResult }> | null): void {
    for (const op of this.indeterminate) {
      if (effects === null) {
        this.history.push({ ...op, return: Number.POSITIVE_INFINITY, output: undefined });
        continue;
      }
      const e = effects.get(op.sessionKey);
      if (e === undefined) {
        this.stats.indeterminateNeverApplied++;
        continue;
      }
      this.stats.indeterminateApplied++;
      const output: RegistryOutput =
        e.result.type === 'deregister'
          ? { kind: 'deregister', removed: e.result.removed }
          : { kind: 'register' };
      this.history.push({
        clientId: op.clientId,
        input: op.input,
        call: op.call,
        return: Math.max(op.call, e.time),
        output,
      });
    }
    this.indeterminate.length = 0;
  }

  /** `output` undefined: the deadline passed without an answer. */
  private finish(c: SimClient, op: Op, output: RegistryOutput | undefined): void {
    const q = this.cluster.queue;
    op.done = true;
    c.op = null;
    let outcome: string;
    if (output !== undefined) {
      this.stats.ok++;
      this.history.push({ clientId: c.id, input: op.input, call: op.call, return: q.now, output });
      outcome = `ok ${describeOutput(output)}`;
    } else if (op.kind === 'read') {
      this.stats.readsTimedOut++;
      outcome = 'timed out (read: left out of the history)';
    } else if (op.open.size > 0) {
      this.stats.indeterminate++;
      this.indeterminate.push({ clientId: c.id, input: op.input, call: op.call, sessionKey: op.sessionKey });
      outcome = 'indeterminate';
    } else {
      this.stats.failed++;
      outcome = 'failed (never proposed)';
    }
    this.cluster.trace.add(q.now, `client ${c.session} op#${op.id} ${outcome}`);
    if (op.final) {
      c.finalOutcome = output !== undefined ? 'ok' : 'failed';
      this.finalPending--;
      return;
    }
    if (c.finalPhase) {
      this.startOp(c);
      return;
    }
    this.think(c);
  }
}

function describeInput(i: RegistryInput): string {
  switch (i.kind) {
    case 'register':
      return `register(${i.name}, ${i.id}=${i.value})`;
    case 'deregister':
      return `deregister(${i.name}, ${i.id})`;
    case 'resolve':
      return `resolve(${i.name})`;
  }
}

function describeOutput(o: RegistryOutput): string {
  switch (o.kind) {
    case 'register':
      return 'registered';
    case 'deregister':
      return o.removed ? 'removed' : 'absent';
    case 'resolve':
      return `{${o.instances.map(([id, v]) => `${id}=${v}`).join(', ')}}`;
  }
}
