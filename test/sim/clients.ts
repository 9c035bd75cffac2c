// Concurrent clients of the governed registry, and the history they record for the linearizability checker.
//
// Registrars. Each group has 2–6 registrar clients. A registrar holds one registrar credential at a time
// (governance.ts: slot k covers the prefix `<scope>/c<k>/` and owns the names `<scope>/c<k>/web`, ...), shared
// with other registrars of the group so that operations conflict often, and issues one operation at a time
// on its credential's names (3 instance ids): register (a random address:port), deregister, resolve (a
// linearizable read through ReadIndex, authorized by the serving member at the read's index). Now and then
// it tries a name outside its prefix (refused 'wrong-prefix'). Every operation is signed: an auth block with
// the credential id, the simulated time as timestamp, a nonce from the seed's stream and the holder's
// signature (src/governance/request.ts). A registrar keeps using its credential after it is revoked (it
// does not know), and starts using a new one as soon as the admin starts issuing it (before the issue
// commits), so the history holds refusals ('unknown-credential', 'revoked') whose correctness depends on
// the order of the issue or the revocation and the registration in the log.
//
// The admin. Each group has one admin client (the genesis' admin key, a scope-admin credential): it issues
// slots 1 and 2 at the start, then during the fault phase issues new credentials (handing each, a moment
// before proposing the issue, to the registrars whose credential it revoked and, half the time, to one
// more), revokes existing ones, issues again an issue that got no answer, and now and then repeats an issue
// or a revocation or revokes a credential not issued yet (refused 'invalid-governance' /
// 'unknown-credential'). In the liveness phase it issues one last credential; every registrar switches to
// it once it is acknowledged, and its final write must then be admitted.
//
// A request goes to a random host of the group or to the last leader a reply named; it travels a client
// link that can delay and lose it (clients are not behind the hosts' partitions). Writes carry a session
// {client, seq}; a retry reuses the seq (signed afresh: a new timestamp and nonce, as src/cli does), so the
// registry applies the command at most once however many attempts reach a log. Outcomes:
//   ok            a reply arrived (an admission or a refusal of authorization): recorded with its output and
//                 its [call, return] interval;
//   indeterminate no reply before the deadline, and some attempt may have been proposed: black-box, it is
//                 recorded with return = +Infinity (it may take effect at any later time, or never); by
//                 default the simulator resolves it from what the members applied (resolveIndeterminate);
//   failed        every attempt was refused before being proposed (ProposalDroppedError, a host that does not
//                 serve the scope, or one that has not applied the genesis yet). Such an operation is left out
//                 of the history, which is sound: nothing was proposed, so nothing can ever apply it.
// Reads that time out are left out too: a read has no effect, so an unanswered read constrains nothing.

import type { Action } from '../../src/governance/request.ts';
import {
  type Command,
  type CommandAuth,
  commandSignedBody,
  encodeCommand,
} from '../../src/registry/commands.ts';
import type { CommandResult } from '../../src/registry/index.ts';
import {
  AUTHORIZATION_CODES,
  describeGovernedInput,
  describeGovernedOutput,
  type GovernedInput,
  type GovernedOperation,
  type GovernedOutput,
} from '../checker/governed-registry-model.ts';
import type { ClientReply, ClientRequest, Cluster } from './cluster.ts';
import { CREDENTIAL_SLOTS, type CredentialSlot, EPOCH_MS, type GroupGovernance } from './governance.ts';
import type { Rng } from './rng.ts';

const INSTANCE_IDS = ['i1', 'i2', 'i3'];
/** Probability that a registrar's operation names something outside its credential's prefix. */
const FOREIGN_NAME = 0.04;
/** Time the admin waits between two operations during the fault phase, ms. */
const ADMIN_THINK: readonly [number, number] = [300, 2000];
const utf8 = new TextEncoder();
const NO_DATA = new Uint8Array(0);

interface Op {
  readonly id: number;
  readonly input: GovernedInput;
  readonly kind: 'write' | 'read';
  /**
   * Signs one attempt: a write's encoded command with a fresh auth block, or a read's auth block. Every
   * attempt is signed afresh (a new timestamp and nonce), as src/cli/signing.ts does: an anchor refuses a
   * repeated nonce as a replay, and the session keeps the write exactly-once.
   */
  readonly sign: () => { readonly data: Uint8Array; readonly auth?: CommandAuth };
  readonly sessionKey: string;
  readonly call: number;
  readonly deadline: number;
  readonly final: boolean;
  attempt: number;
  /** Attempts sent and not definitely refused: any of them may have reached a log. */
  readonly open: Set<number>;
  done: boolean;
  /** The host whose answer ended the operation (for the trace). */
  answeredBy: string;
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
  /** In the history checked (indeterminate writes resolved): credentials issued, credentials revoked. */
  issues: number;
  revokes: number;
  /** In the history checked: operations refused, by reason. */
  refusedUnknownCredential: number;
  refusedRevoked: number;
  refusedWrongPrefix: number;
  refusedInvalidGovernance: number;
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
    issues: 0,
    revokes: 0,
    refusedUnknownCredential: 0,
    refusedRevoked: 0,
    refusedWrongPrefix: 0,
    refusedInvalidGovernance: 0,
  };
}

export interface ClientTimeouts {
  /** Give up on one host and try another after this long (ms). */
  readonly attemptMs: number;
  /** An operation ends (indeterminate or failed) this long after its call (ms). */
  readonly operationMs: number;
}

/** What the admin of a group knows of its credential slots. */
interface AdminBook {
  readonly issueStarted: boolean[];
  /** An issue was answered (issued, or refused as already issued). */
  readonly issueAcked: boolean[];
  readonly revokeStarted: boolean[];
}

class SimClient {
  readonly id: number;
  readonly session: string;
  readonly scope: string;
  readonly gov: GroupGovernance;
  readonly admin: AdminBook | null;
  /** A registrar's current credential. */
  slot: CredentialSlot | null = null;
  seq = 0;
  op: Op | null = null;
  lastLeader = '';
  /** After the fault phase: the next operation is the client's last, and must succeed. */
  finalPhase = false;
  finalDeadline = 0;
  finalOutcome: 'none' | 'pending' | 'ok' | 'failed' = 'none';
  /** A registrar in the liveness phase waiting for the admin's last credential. */
  parked = false;
  /** The admin's operation in flight: which slot, and whether it is the first issue (or revocation) of it. */
  adminPending: { readonly k: number; readonly fresh: boolean } | null = null;

  constructor(id: number, scope: string, gov: GroupGovernance, admin: boolean) {
    this.id = id;
    this.session = admin ? `adm-${scope}` : `c${id}`;
    this.scope = scope;
    this.gov = gov;
    this.admin = admin
      ? {
          issueStarted: new Array(CREDENTIAL_SLOTS + 1).fill(false),
          issueAcked: new Array(CREDENTIAL_SLOTS + 1).fill(false),
          revokeStarted: new Array(CREDENTIAL_SLOTS + 1).fill(false),
        }
      : null;
  }
}

export class Clients {
  private readonly cluster: Cluster;
  private readonly rng: Rng;
  private readonly timeouts: ClientTimeouts;
  private readonly clients: SimClient[] = [];
  private nextOpId = 1;
  readonly history: GovernedOperation[] = [];
  readonly stats: ClientStats = emptyClientStats();
  /** Writes that ended without an answer, resolved at the end of the run (see `resolveIndeterminate`). */
  private readonly indeterminate: {
    clientId: number;
    input: GovernedInput;
    call: number;
    sessionKey: string;
  }[] = [];
  private finalPending = 0;

  constructor(cluster: Cluster, rng: Rng, timeouts: ClientTimeouts) {
    this.cluster = cluster;
    this.rng = rng;
    this.timeouts = timeouts;
    for (const g of cluster.scenario.groups) {
      const gov = cluster.gov.group(g.scope);
      this.clients.push(new SimClient(this.clients.length, g.scope, gov, true));
      for (let i = 0; i < g.clients; i++) {
        const c = new SimClient(this.clients.length, g.scope, gov, false);
        c.slot = gov.slots[1 + (i % 2)] as CredentialSlot;
        this.clients.push(c);
      }
    }
    cluster.onReply = (req, reply, hint) => this.onReply(req, reply, hint);
  }

  get count(): number {
    return this.clients.length;
  }

  start(): void {
    for (const c of this.clients) {
      if (c.admin !== null) this.adminNext(c);
      else this.think(c);
    }
  }

  /** Every client finishes what it is doing, then issues one last write that must succeed by `deadline`. */
  enterFinalPhase(deadline: number): void {
    for (const c of this.clients) {
      c.finalPhase = true;
      c.finalDeadline = deadline;
      c.finalOutcome = 'pending';
      this.finalPending++;
    }
    for (const c of this.clients) if (c.op === null) this.startFinal(c);
  }

  /** Clients whose final operation has not succeeded (empty when all did). */
  finalFailures(): string[] {
    return this.clients
      .filter((c) => c.finalOutcome !== 'ok')
      .map(
        (c) =>
          `${c.session} (${c.scope}): final operation ${c.finalOutcome === 'pending' ? (c.parked ? 'never started (no acknowledged credential)' : 'still pending') : 'failed'}`,
      );
  }

  get allFinalDone(): boolean {
    return this.finalPending === 0;
  }

  private think(c: SimClient): void {
    const s = this.cluster.scenario;
    this.cluster.queue.after(this.rng.uniform(s.thinkMin, s.thinkMax), () => {
      if (c.op === null && c.finalOutcome === 'none') this.registrarOp(c);
    });
  }

  private startFinal(c: SimClient): void {
    if (c.admin !== null) {
      this.adminOp(c, 'issue', CREDENTIAL_SLOTS, true);
      return;
    }
    const last = this.adminOf(c.scope).admin as AdminBook;
    if (!last.issueAcked[CREDENTIAL_SLOTS]) {
      c.parked = true;
      return;
    }
    c.parked = false;
    c.slot = c.gov.slots[CREDENTIAL_SLOTS] as CredentialSlot;
    this.registrarOp(c);
  }

  private adminOf(scope: string): SimClient {
    return this.clients.find((x) => x.admin !== null && x.scope === scope) as SimClient;
  }

  // ---- the admin ----

  /** The admin's next step during the fault phase (see the header). */
  private adminNext(c: SimClient): void {
    const book = c.admin as AdminBook;
    const started = book.issueStarted.filter(Boolean).length;
    const delay = started < 2 ? this.rng.uniform(1, 10) : this.rng.uniform(ADMIN_THINK[0], ADMIN_THINK[1]);
    this.cluster.queue.after(delay, () => {
      if (c.op !== null || c.finalOutcome !== 'none') return;
      const r = this.rng;
      const slots: number[] = [];
      for (let k = 1; k < CREDENTIAL_SLOTS; k++) slots.push(k);
      const next = slots.find((k) => !book.issueStarted[k]);
      const live = slots.filter((k) => book.issueStarted[k] && !book.revokeStarted[k]);
      const handled = slots.filter((k) => book.issueStarted[k]);
      if (started < 2 && next !== undefined) return this.adminOp(c, 'issue', next, false);
      // An issue that got no answer is issued again (refused as already issued if the first one applied).
      const unanswered = handled.filter((k) => !book.issueAcked[k] && !book.revokeStarted[k]);
      if (unanswered.length > 0 && r.chance(0.8)) return this.adminOp(c, 'issue', r.pick(unanswered), false);
      const roll = r.float();
      if (roll < 0.05 && next !== undefined) return this.adminOp(c, 'revoke', next, false);
      if (roll < 0.12 && handled.length > 0) {
        const k = r.pick(handled);
        return this.adminOp(c, book.revokeStarted[k] ? 'revoke' : 'issue', k, false);
      }
      if (next !== undefined && (live.length < 2 || r.chance(0.5))) return this.handOut(c, next);
      if (live.length >= 2) return this.adminOp(c, 'revoke', r.pick(live), false);
      const k = r.pick(handled);
      return this.adminOp(c, book.revokeStarted[k] ? 'revoke' : 'issue', k, false);
    });
  }

  /**
   * A new credential: handed at once to the registrars whose credential the admin revoked (they get a
   * replacement) and, half the time, to one more; the admin issues it a moment later, so their first
   * operations may reach the log before the issue does ('unknown-credential').
   */
  private handOut(c: SimClient, k: number): void {
    const book = c.admin as AdminBook;
    const slot = c.gov.slots[k] as CredentialSlot;
    const mine = this.clients.filter((x) => x.admin === null && x.scope === c.scope);
    const stale = mine.filter((x) => x.slot !== null && book.revokeStarted[x.slot.k]);
    const others = mine.filter((x) => !stale.includes(x));
    const extra = stale.length === 0 || this.rng.chance(0.5) ? 1 : 0;
    for (const x of [...stale, ...this.rng.shuffle(others).slice(0, extra)]) x.slot = slot;
    book.issueStarted[k] = true; // not handed out twice
    this.cluster.queue.after(this.rng.uniform(0, 60), () => {
      if (c.op === null && c.finalOutcome === 'none') this.adminOp(c, 'issue', k, false, true);
      else if (c.op === null) book.issueStarted[k] = false;
    });
  }

  private adminOp(
    c: SimClient,
    what: 'issue' | 'revoke',
    k: number,
    final: boolean,
    handedOut = false,
  ): void {
    const book = c.admin as AdminBook;
    const slot = c.gov.slots[k] as CredentialSlot;
    c.seq++;
    const session = { client: c.session, seq: c.seq };
    const bare: Command =
      what === 'issue'
        ? { type: 'issue-credential', name: '', credential: slot.credential, session }
        : {
            type: 'revoke-credential',
            name: '',
            credentialId: slot.id,
            reason: `revoked by ${c.session}#${c.seq}`,
            session,
          };
    const body = commandSignedBody(bare);
    const sign = (): { data: Uint8Array } => {
      const auth = this.sign(c, c.gov.admin, c.gov.adminCredentialId, 'administer', body);
      return { data: encodeCommand({ ...bare, auth } as Command) };
    };
    const fresh = handedOut || (what === 'issue' ? !book.issueStarted[k] : !book.revokeStarted[k]);
    if (what === 'issue') book.issueStarted[k] = true;
    else if (book.issueStarted[k]) book.revokeStarted[k] = true;
    c.adminPending = { k, fresh };
    this.launch(c, { kind: what, cred: slot.prefix }, 'write', sign, `${c.session}#${c.seq}`, final);
  }

  /** The admin learns the outcome of its operation. */
  private adminLearns(
    c: SimClient,
    input: GovernedInput,
    output: GovernedOutput | undefined,
    proposed: boolean,
  ): void {
    const book = c.admin as AdminBook;
    const pending = c.adminPending;
    c.adminPending = null;
    if (pending === null) return;
    const { k, fresh } = pending;
    if (input.kind === 'issue') {
      if (output?.kind === 'issue' || (output?.kind === 'refused' && output.code === 'invalid-governance'))
        book.issueAcked[k] = true;
      else if (!proposed && fresh) book.issueStarted[k] = false; // never proposed: still to issue
      if (book.issueAcked[CREDENTIAL_SLOTS]) {
        for (const x of this.clients) if (x.parked && x.scope === c.scope) this.startFinal(x);
      }
    } else if (!proposed && fresh) book.revokeStarted[k] = false;
  }

  // ---- registrars ----

  private registrarOp(c: SimClient): void {
    const r = this.rng;
    const slot = c.slot as CredentialSlot;
    const final = c.finalPhase;
    const name = !final && r.chance(FOREIGN_NAME) ? `${c.scope}/shared/probe` : r.pick(slot.names);
    const id = r.pick(INSTANCE_IDS);
    const roll = final ? 0 : r.float();
    const cred = slot.prefix;
    if (roll < 0.65) {
      c.seq++;
      const session = { client: c.session, seq: c.seq };
      let input: GovernedInput;
      let bare: Command;
      let action: Action;
      if (roll < 0.45) {
        const address = `10.${r.int(4)}.${r.int(256)}.${1 + r.int(254)}`;
        const port = 1 + r.int(65535);
        input = { kind: 'register', cred, name, id, value: `${address}:${port}` };
        bare = {
          type: 'register',
          name,
          instance: { id, address, port, tags: [], meta: {}, health: 'passing', ttlMs: 0 },
          session,
        };
        action = 'register';
      } else {
        input = { kind: 'deregister', cred, name, id };
        bare = { type: 'deregister', name, id, session };
        action = 'deregister';
      }
      const body = commandSignedBody(bare);
      const sign = (): { data: Uint8Array } => {
        const auth = this.sign(c, slot.signer, slot.id, action, body);
        return { data: encodeCommand({ ...bare, auth } as Command) };
      };
      this.launch(c, input, 'write', sign, `${c.session}#${c.seq}`, final);
      return;
    }
    const body = utf8.encode(name);
    const sign = (): { data: Uint8Array; auth: CommandAuth } => ({
      data: NO_DATA,
      auth: this.sign(c, slot.signer, slot.id, 'resolve', body),
    });
    this.launch(c, { kind: 'resolve', cred, name }, 'read', sign, '', final);
  }

  private nonce(): Uint8Array {
    const n = new Uint8Array(16);
    for (let i = 0; i < 16; i += 4) {
      const x = this.rng.u32();
      n[i] = x & 0xff;
      n[i + 1] = (x >>> 8) & 0xff;
      n[i + 2] = (x >>> 16) & 0xff;
      n[i + 3] = x >>> 24;
    }
    return n;
  }

  private timestamp(): number {
    return EPOCH_MS + Math.floor(this.cluster.queue.now);
  }

  /** An auth block over `body` (a write's command without auth, or a resolve's name), signed now. */
  private sign(
    c: SimClient,
    signer: CredentialSlot['signer'],
    credential: Uint8Array,
    action: Action,
    body: Uint8Array,
  ): CommandAuth {
    return this.cluster.gov.signBody(
      c.scope,
      signer,
      credential,
      this.timestamp(),
      this.nonce(),
      action,
      body,
    );
  }

  // ---- operations ----

  private launch(
    c: SimClient,
    input: GovernedInput,
    kind: 'write' | 'read',
    sign: Op['sign'],
    sessionKey: string,
    final: boolean,
  ): void {
    const q = this.cluster.queue;
    const op: Op = {
      id: this.nextOpId++,
      input,
      kind,
      sign,
      sessionKey,
      call: q.now,
      deadline: final ? c.finalDeadline : q.now + this.timeouts.operationMs,
      final,
      attempt: 0,
      open: new Set(),
      done: false,
      answeredBy: '',
    };
    c.op = op;
    this.cluster.trace.add(
      q.now,
      `client ${c.session} op#${op.id} ${describeGovernedInput(input)}${final ? ' (final)' : ''}`,
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
    const { data, auth } = op.sign();
    const req: ClientRequest = {
      client: c.id,
      opId: op.id,
      attempt,
      scope: c.scope,
      host,
      kind: op.kind,
      data,
      sessionKey: op.sessionKey,
      name: op.input.kind === 'issue' || op.input.kind === 'revoke' ? '' : op.input.name,
      ...(auth ? { auth } : {}),
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
    op.answeredBy = req.host;
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
        const output = outputOf(reply.result);
        if (typeof output === 'string' || !AUTHORIZED_OUTPUTS[op.input.kind].includes(output.kind)) {
          this.cluster.checks.fail(
            'registry-rejection',
            `${c.session} op#${op.id} ${describeGovernedInput(op.input)} got an answer no correct scope gives: ${typeof output === 'string' ? output : describeGovernedOutput(output)}`,
          );
          return;
        }
        this.finish(c, op, output);
        return;
      }
      case 'read':
        this.finish(c, op, { kind: 'resolve', instances: reply.instances });
        return;
      case 'read-refused':
        if (!(AUTHORIZATION_CODES as readonly string[]).includes(reply.code)) {
          this.cluster.checks.fail(
            'registry-rejection',
            `${c.session} op#${op.id} ${describeGovernedInput(op.input)} was refused: ${reply.code}: ${reply.message}`,
          );
          return;
        }
        this.finish(c, op, { kind: 'refused', code: reply.code });
        return;
    }
  }

  /**
   * Add the indeterminate writes to the history. Black-box (`effects` null): each with return = +Infinity, as
   * a client alone would have to. Otherwise the simulator uses what it knows about the servers: a write some
   * member applied gets that result — admitted or refused — and as return time the moment it was first
   * applied (its commit, hence its linearization point, came before: a correct group applies entries in one
   * order everywhere and only once committed); a write no member ever applied, or one refused as a stale
   * session (its client had moved on: it had no effect), is left out — no read could have observed it, since
   * reads are served from applied state, and the history ends with the run. This makes the check stricter
   * than black-box (an applied-then-lost write is a violation even if no client saw it) and keeps the
   * linearizability search free of open-ended operations.
   */
  resolveIndeterminate(effects: ReadonlyMap<string, { time: number; result: CommandResult }> | null): void {
    for (const op of this.indeterminate) {
      if (effects === null) {
        this.history.push({ ...op, return: Number.POSITIVE_INFINITY, output: undefined });
        continue;
      }
      const e = effects.get(op.sessionKey);
      if (e === undefined || (e.result.type === 'rejected' && e.result.code === 'stale-session')) {
        this.stats.indeterminateNeverApplied++;
        continue;
      }
      this.stats.indeterminateApplied++;
      const output = outputOf(e.result);
      this.history.push({
        clientId: op.clientId,
        input: op.input,
        call: op.call,
        return: Math.max(op.call, e.time),
        // An answer no correct scope gives is left for the checker to refuse.
        output: typeof output === 'string' ? { kind: 'refused', code: `(${output})` } : output,
      });
    }
    this.indeterminate.length = 0;
    this.tally();
  }

  /** Counts the credentials' operations and the refusals in the history. */
  private tally(): void {
    const s = this.stats;
    for (const op of this.history) {
      const o = op.output;
      if (o === undefined) continue;
      if (o.kind === 'issue') s.issues++;
      else if (o.kind === 'revoke') s.revokes++;
      else if (o.kind === 'refused') {
        if (o.code === 'unknown-credential') s.refusedUnknownCredential++;
        else if (o.code === 'revoked') s.refusedRevoked++;
        else if (o.code === 'wrong-prefix') s.refusedWrongPrefix++;
        else if (o.code === 'invalid-governance') s.refusedInvalidGovernance++;
      }
    }
  }

  /** `output` undefined: the deadline passed without an answer. */
  private finish(c: SimClient, op: Op, output: GovernedOutput | undefined): void {
    const q = this.cluster.queue;
    op.done = true;
    c.op = null;
    let outcome: string;
    if (output !== undefined) {
      this.stats.ok++;
      this.history.push({ clientId: c.id, input: op.input, call: op.call, return: q.now, output });
      outcome = `ok (${op.answeredBy}) ${describeGovernedOutput(output)}`;
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
    if (c.admin !== null) this.adminLearns(c, op.input, output, output !== undefined || op.open.size > 0);
    if (op.final) {
      c.finalOutcome = output !== undefined ? 'ok' : 'failed';
      this.finalPending--;
      return;
    }
    if (c.finalPhase) {
      this.startFinal(c);
      return;
    }
    if (c.admin !== null) this.adminNext(c);
    else this.think(c);
  }
}

/** The outputs a correct scope may give to each kind of operation (refusals are judged by the model). */
const AUTHORIZED_OUTPUTS: Readonly<Record<GovernedInput['kind'], readonly GovernedOutput['kind'][]>> = {
  register: ['register', 'refused'],
  deregister: ['deregister', 'refused'],
  resolve: ['resolve', 'refused'],
  issue: ['issue', 'refused'],
  revoke: ['revoke', 'refused'],
};

/** A command's result as the model's output, or why no correct scope gives it. */
function outputOf(r: CommandResult): GovernedOutput | string {
  switch (r.type) {
    case 'register':
      return { kind: 'register' };
    case 'deregister':
      return { kind: 'deregister', removed: r.removed };
    case 'govern':
      if (r.command === 'issue-credential') return { kind: 'issue' };
      if (r.command === 'revoke-credential') return { kind: 'revoke' };
      return `unexpected ${r.command} result`;
    case 'rejected':
      if ((AUTHORIZATION_CODES as readonly string[]).includes(r.code))
        return { kind: 'refused', code: r.code };
      return `rejected ${r.code}: ${r.message}`;
    default:
      return `unexpected ${r.type} result`;
  }
}
