// The client API's gRPC edges: aq.v1.Registry and aq.v1.Membership. Thin, as in Consul: a handler
// validates, finds the scope group that owns the name, proposes a typed command (the group forwards it
// to the leader) or reads, and maps typed errors to gRPC status codes here and only here.

import { randomBytes } from 'node:crypto';
import {
  credentials,
  type handleServerStreamingCall,
  type handleUnaryCall,
  Metadata,
  type ServerWritableStream,
  type ServiceClientConstructor,
  status,
} from '@grpc/grpc-js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { Logger } from 'pino';
import { peerIdOfPublicKey } from '../identity/peer-id.ts';
import type { Signer } from '../identity/signer.ts';
import { decodeEntry } from '../lineage/entry.ts';
import {
  type DeregisterCommand,
  encodeCommand,
  type Health,
  type Instance,
  type RegisterCommand,
  type ResolveAnswer,
  validateInstance,
  validateName,
  validateSession,
} from '../registry/index.ts';
import type { HostedScope, ScopeHost } from '../scope/scope-host.ts';
import type { NameChange, WatchEvent, WatchFilter } from '../scope/watch-hub.ts';
import { type Admission, channelKey, refusalOf, type WireAuth } from './admission.ts';
import { ApiError, toServiceError } from './api-error.ts';

/**
 * Edge refusals that depend on the scope's state, so that a member lagging the group could make them
 * wrongly, or for another reason than the group would (a credential revoked since, a policy changed): they
 * are checked again once caught up. Refusals of the request itself (signature, skew, replay) are not.
 */
export const LAG_SENSITIVE: ReadonlySet<string> = new Set([
  'unknown-credential',
  'revoked',
  'expired',
  'not-yet-valid',
  'wrong-prefix',
  'policy-refused',
  'policy-deferred',
]);

/** Limits of the client API (documented in README.md). */
export const LIMITS = {
  /** Largest request message the client port accepts. */
  maxRequestBytes: 64 * 1024,
  /** Names in one List answer at most, and by default. */
  maxListLimit: 10_000,
  defaultListLimit: 1_000,
  /** Deadline of a write or linearizable read when the caller gives none. */
  defaultDeadlineMs: 10_000,
  /** A watcher further behind than this many buffered bytes is cut off (it reconnects with its index). */
  maxWatchBufferBytes: 8 << 20,
} as const;

export interface WireInstance {
  id: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  health: string;
  ttlMs: number;
}

/** Where other anchors' client ports are (from the mesh), to forward what cannot be proposed locally. */
export interface ClientDirectory {
  grpcAddress(peer: string): string | undefined;
}

export interface RegistryServiceComponents {
  readonly host: ScopeHost;
  /** The scopes this anchor claims: one not hosted yet is starting (UNAVAILABLE), not foreign (NOT_FOUND). */
  readonly claimed?: readonly string[];
  readonly signer: Signer;
  /** Checks signed requests and signs what this anchor admits. */
  readonly admission: Admission;
  readonly self: string;
  readonly directory: ClientDirectory;
  readonly registryClient: ServiceClientConstructor;
  readonly membershipClient: ServiceClientConstructor;
  readonly logger: Logger;
  /** Observes each call's duration, for the per-method latency histogram. */
  readonly observe?: (method: string, code: status, seconds: number) => void;
}

const HEALTH_TO_WIRE: Record<Health, string> = {
  passing: 'HEALTH_PASSING',
  warning: 'HEALTH_WARNING',
  critical: 'HEALTH_CRITICAL',
};

function healthFromWire(value: unknown, fallback: Health | null): Health | null {
  switch (value) {
    case 'HEALTH_PASSING':
      return 'passing';
    case 'HEALTH_WARNING':
      return 'warning';
    case 'HEALTH_CRITICAL':
      return 'critical';
    default:
      return fallback;
  }
}

export function instanceToWire(i: Instance): WireInstance {
  return {
    id: i.id,
    address: i.address,
    port: i.port,
    tags: [...i.tags],
    meta: { ...i.meta },
    health: HEALTH_TO_WIRE[i.health],
    ttlMs: i.ttlMs,
  };
}

function instanceFromWire(w: Partial<WireInstance> | null | undefined): Instance {
  if (w === null || w === undefined) throw new ApiError(status.INVALID_ARGUMENT, 'instance is missing');
  const health = healthFromWire(w.health, 'passing') as Health;
  return {
    id: String(w.id ?? ''),
    address: String(w.address ?? ''),
    port: Number(w.port ?? 0),
    tags: [...(w.tags ?? [])].map(String),
    meta: Object.fromEntries(Object.entries(w.meta ?? {}).map(([k, v]) => [k, String(v)])),
    health,
    ttlMs: Number(w.ttlMs ?? 0),
  };
}

function answerToWire(owner: HostedScope, a: ResolveAnswer, only: Health | null) {
  const instances = only === null ? a.instances : a.instances.filter((i) => i.health === only);
  return {
    name: a.name,
    scope: owner.name,
    instances: instances.map(instanceToWire),
    index: a.modifyIndex,
    appliedIndex: owner.group.appliedIndex,
    // Lineage re-enters the index: the answer reflects the lineage up to this size.
    lineageSize: owner.group.registry.lineage.size,
  };
}

export function registryHandlers(c: RegistryServiceComponents) {
  const { host } = c;
  const forwarders = new Map<string, Record<string, (...args: unknown[]) => void>>();

  const checkName = (name: unknown, what = 'name'): string => {
    const n = String(name ?? '');
    const error = validateName(n);
    if (error !== null) throw new ApiError(status.INVALID_ARGUMENT, `${what}: ${error.message}`);
    return n;
  };

  /**
   * The receipt of an applied registration: the lineage entry the log holds for it (read back from this
   * member's log, so a retried request gets the first application's entry) and its admitting signature.
   */
  const receiptOf = (
    owner: HostedScope,
    index: number,
    lineageIndex: number | undefined,
    name: string,
    instance: Instance,
  ) => {
    const machine = owner.group.registry;
    const base = { scope: owner.name, name, instance: instanceToWire(instance), index, anchor: c.self };
    if (lineageIndex === undefined || lineageIndex >= machine.lineage.size)
      return { ...base, signature: new Uint8Array(0) };
    const entry = machine.lineage.entry(lineageIndex);
    const decoded = decodeEntry(entry);
    return {
      ...base,
      anchor: peerIdOf(decoded.signer),
      signature: decoded.signature,
      scopeId: bytesToHex(decoded.scopeId),
      lineageIndex,
      entry,
    };
  };

  /** Peer ids of admitting keys, memoized: deriving one (multihash, base58) per receipt is wasted work. */
  const peerIds = new Map<string, string>();
  const peerIdOf = (key: Uint8Array): string => {
    const hex = bytesToHex(key);
    let id = peerIds.get(hex);
    if (id === undefined) {
      id = peerIdOfPublicKey(key);
      if (peerIds.size >= 1024) peerIds.clear();
      peerIds.set(hex, id);
    }
    return id;
  };

  /**
   * The edge check runs against this member's applied state, which may lag what the group has already
   * acknowledged (a credential just issued, a policy just changed, on the leader). A refusal that a newer
   * state could lift is checked again after catching up with the leader (a read index), so a member never
   * refuses what the group admits. Admissions need no second look: the state machine decides again at apply.
   * (Found by the simulator: test/sim, --edge-admission.)
   */
  const checkCurrent = async <T>(owner: HostedScope, signal: AbortSignal, check: () => T): Promise<T> => {
    try {
      return check();
    } catch (error) {
      if (
        !(error instanceof ApiError) ||
        !LAG_SENSITIVE.has(String(error.metadata?.get('aq-reason')[0] ?? ''))
      )
        throw error;
    }
    await owner.group.linearizableRead(signal);
    return check();
  };

  /**
   * A retry (same client and seq) of a write this member has already applied: the request itself is still
   * checked (signature, skew, nonce: a replay is refused), but not its authorization against today's state;
   * the state machine answers it with the first application's result (a duplicate). Authorizing it again
   * could refuse it (say, the credential revoked since) although it took effect: the caller, whose first
   * answer was lost, would then believe it failed. (Found by the simulator.)
   */
  const retryOfApplied = (owner: HostedScope, s: { client: string; seq: number }): boolean => {
    const applied = owner.group.registry.store.getSession(s.client);
    return applied !== undefined && applied.seq >= s.seq;
  };

  /** A claimed scope owning `name` that is not in its group yet (the anchor is starting or joining). */
  const startingScopeOf = (name: string): string | undefined =>
    (c.claimed ?? [])
      .filter((s) => host.get(s) === undefined && (name === s || name.startsWith(`${s}/`)))
      .sort((a, b) => b.length - a.length)[0];

  const ownerOf = (name: string): HostedScope => {
    const owner = host.owner(name);
    const starting = startingScopeOf(name);
    if (starting !== undefined && (owner === undefined || starting.length > owner.name.length)) {
      throw new ApiError(
        status.UNAVAILABLE,
        `scope ${starting} is starting on this anchor (not in its group yet); retry shortly`,
      );
    }
    if (owner === undefined) {
      const served = host.scopes().map((s) => s.name);
      throw new ApiError(
        status.NOT_FOUND,
        `no scope served by this anchor owns ${name} (it serves ${served.length > 0 ? served.join(', ') : 'no scope'}); ask an anchor of the owning scope`,
      );
    }
    return owner;
  };

  const leaderMetadata = (s: HostedScope): Metadata => {
    const md = new Metadata();
    const leader = s.group.leader;
    if (leader !== '') {
      md.set('aq-leader-id', leader);
      const address = c.directory.grpcAddress(leader);
      if (address !== undefined) md.set('aq-leader', address);
    }
    return md;
  };

  const notLeader = (s: HostedScope): ApiError => {
    const md = leaderMetadata(s);
    const address = md.get('aq-leader')[0];
    return new ApiError(
      status.FAILED_PRECONDITION,
      `this anchor is not the leader of scope ${s.name}${address ? `; the leader is at ${String(address)}` : ''}`,
      md,
    );
  };

  const deadlineSignal = (call: { getDeadline(): Date | number }): AbortSignal => {
    const d = call.getDeadline();
    const at = d instanceof Date ? d.getTime() : d;
    const ms = Number.isFinite(at) ? Math.max(0, at - Date.now()) : LIMITS.defaultDeadlineMs;
    return AbortSignal.timeout(Math.min(ms, 60_000));
  };

  // Requests without a client id get a session of their own: unique per anchor process (boot id +
  // counter), cheaper than drawing random bytes per request (measured: ~7 µs of the leader's CPU each).
  const bootId = randomBytes(6).toString('hex');
  let requestCounter = 0;
  const session = (clientId: unknown, seq: unknown): { client: string; seq: number } => {
    const client = String(clientId ?? '');
    if (client === '') return { client: `~${bootId}.${(++requestCounter).toString(36)}`, seq: 1 };
    const s = { client, seq: Number(seq ?? 0) };
    const error = validateSession(s);
    if (error !== null) throw new ApiError(status.INVALID_ARGUMENT, error.message);
    return s;
  };

  /** Runs a handler body, mapping typed errors to one status each. */
  const unary =
    <Req, Res>(
      method: string,
      body: (call: Parameters<handleUnaryCall<Req, Res>>[0]) => Promise<Res>,
    ): handleUnaryCall<Req, Res> =>
    (call, callback) => {
      const started = performance.now();
      body(call).then(
        (response) => {
          c.observe?.(method, status.OK, (performance.now() - started) / 1000);
          callback(null, response);
        },
        (error: unknown) => {
          const e = toServiceError(error, c.logger, method);
          c.observe?.(method, e.code ?? status.UNKNOWN, (performance.now() - started) / 1000);
          callback(e);
        },
      );
    };

  const forward = async (
    peer: string,
    service: 'Registry' | 'Membership',
    method: string,
    request: unknown,
    signal: AbortSignal,
  ): Promise<unknown> => {
    const address = c.directory.grpcAddress(peer);
    if (address === undefined)
      throw new ApiError(status.UNAVAILABLE, `the leader ${peer} has not announced its address yet; retry`);
    const key = `${service}@${address}`;
    let client = forwarders.get(key);
    if (client === undefined) {
      const ctor = service === 'Registry' ? c.registryClient : c.membershipClient;
      client = new ctor(address, credentials.createInsecure()) as unknown as Record<
        string,
        (...args: unknown[]) => void
      >;
      forwarders.set(key, client);
    }
    const fn = client[method] as (...args: unknown[]) => void;
    return new Promise((resolve, reject) => {
      const deadline = Date.now() + LIMITS.defaultDeadlineMs;
      const onAbort = () =>
        reject(new ApiError(status.DEADLINE_EXCEEDED, 'forwarding to the leader timed out'));
      signal.addEventListener('abort', onAbort, { once: true });
      fn.call(
        client,
        request,
        new Metadata(),
        { deadline },
        (error: (Error & { code?: status; details?: string }) | null, response: unknown) => {
          signal.removeEventListener('abort', onAbort);
          if (error) reject(new ApiError(error.code ?? status.UNAVAILABLE, error.details ?? error.message));
          else resolve(response);
        },
      );
    });
  };

  /**
   * The write path of Register and Deregister: find the owner, check the caller at the edge (on this
   * member's state, caught up when a refusal depends on it; a retry of an applied session by its request
   * only), wrap the command with this anchor's admitting signature, propose it, and map a refusal.
   */
  const write = async (
    call: { request: Record<string, unknown>; getDeadline(): Date | number },
    name: string,
    build: (s: { client: string; seq: number }) => RegisterCommand | DeregisterCommand,
    tags: readonly string[] = [],
  ) => {
    const req = call.request;
    const owner = ownerOf(name);
    if (req.noForward === true && !owner.group.isLeader) throw notLeader(owner);
    const signal = deadlineSignal(call);
    await c.admission.ready(() => owner.group.registry, signal);
    if (req.auth !== null && req.auth !== undefined && String(req.clientId ?? '') === '')
      throw new ApiError(
        status.INVALID_ARGUMENT,
        'a signed request needs client_id and seq (they are part of what is signed)',
      );
    const s = session(req.clientId, req.seq);
    const bare = build(s);
    const retry = retryOfApplied(owner, s);
    const auth = await checkCurrent(owner, signal, () =>
      c.admission.check(
        owner.group.registry,
        req.auth as WireAuth,
        bare.type,
        name,
        () => encodeCommand(bare),
        {
          tags,
          retry,
        },
      ),
    );
    const command = encodeCommand(auth === undefined ? bare : { ...bare, auth });
    const result = await owner.group.propose(
      c.admission.admit(owner.group.registry, command),
      `${s.client}#${s.seq}`,
      signal,
    );
    if (result.type === 'rejected') throw refusalOf(result.code, result.message);
    return { owner, result };
  };

  /**
   * Authorizes a read (Resolve, List) of `name` in `owner`'s scope, and for a linearizable read reaches its
   * read index: a linearizable read is authorized on the state at its read index (a revocation acknowledged
   * before the call refuses it); a stale read on this member's state, caught up if that refuses.
   */
  const authorizeRead = async (
    owner: HostedScope,
    call: { request: Record<string, unknown> } & Parameters<typeof channelKey>[0],
    name: string,
    signal: AbortSignal,
  ): Promise<void> => {
    const req = call.request;
    await c.admission.ready(() => owner.group.registry, signal);
    const check = () =>
      c.admission.check(
        owner.group.registry,
        req.auth as WireAuth,
        'resolve',
        name,
        () => new TextEncoder().encode(name),
        {
          channel: channelKey(call),
        },
      );
    if (req.consistency !== 'CONSISTENCY_STALE') {
      await owner.group.linearizableRead(signal);
      check();
    } else await checkCurrent(owner, signal, check);
  };

  const registry = {
    Register: unary<Record<string, unknown>, unknown>('Register', async (call) => {
      const req = call.request;
      const name = checkName(req.name);
      const instance = instanceFromWire(req.instance as Partial<WireInstance>);
      const invalid = validateInstance(instance);
      if (invalid !== null) throw new ApiError(status.INVALID_ARGUMENT, invalid.message);
      const { owner, result } = await write(
        call,
        name,
        (s) => ({ type: 'register', name, instance, session: s }),
        instance.tags,
      );
      if (result.type !== 'register') throw new ApiError(status.INTERNAL, `unexpected result ${result.type}`);
      return {
        receipt: receiptOf(owner, result.index, result.lineageIndex, name, instance),
        index: result.modifyIndex,
      };
    }),

    Deregister: unary<Record<string, unknown>, unknown>('Deregister', async (call) => {
      const name = checkName(call.request.name);
      const id = String(call.request.id ?? '');
      if (id === '') throw new ApiError(status.INVALID_ARGUMENT, 'id is missing');
      const { result } = await write(call, name, (s) => ({ type: 'deregister', name, id, session: s }));
      if (result.type !== 'deregister')
        throw new ApiError(status.INTERNAL, `unexpected result ${result.type}`);
      return { removed: result.removed, index: result.modifyIndex, lineageIndex: result.lineageIndex ?? 0 };
    }),

    Heartbeat: unary<Record<string, unknown>, unknown>('Heartbeat', async (call) => {
      const name = checkName(call.request.name);
      const id = String(call.request.id ?? '');
      if (id === '') throw new ApiError(status.INVALID_ARGUMENT, 'id is missing');
      const owner = ownerOf(name);
      await c.admission.ready(() => owner.group.registry, deadlineSignal(call));
      await checkCurrent(owner, deadlineSignal(call), () =>
        c.admission.check(owner.group.registry, call.request.auth as WireAuth, 'heartbeat', name, () =>
          new TextEncoder().encode(`${name}/${id}`),
        ),
      );
      if (!owner.group.isLeader) {
        const leader = owner.group.leader;
        if (leader === '')
          throw new ApiError(status.UNAVAILABLE, `scope ${owner.name} has no leader right now; retry`);
        return forward(
          leader,
          'Registry',
          'Heartbeat',
          { name, id, auth: call.request.auth },
          deadlineSignal(call),
        );
      }
      const health = owner.ttl.heartbeat(name, id);
      if (health === 'unknown') {
        throw new ApiError(
          status.NOT_FOUND,
          `${name} has no instance ${id} with a TTL check (register it with a ttl)`,
        );
      }
      return { health: HEALTH_TO_WIRE[health] };
    }),

    Resolve: unary<Record<string, unknown>, unknown>('Resolve', async (call) => {
      const req = call.request;
      const name = checkName(req.name);
      const owner = ownerOf(name);
      const signal = deadlineSignal(call);
      await authorizeRead(owner, call, name, signal);
      const answer = owner.group.resolveLocal(name);
      return answerToWire(owner, answer, healthFromWire(req.health, null));
    }),

    List: unary<Record<string, unknown>, unknown>('List', async (call) => {
      const req = call.request;
      const prefix = String(req.prefix ?? '');
      if (prefix !== '') checkName(prefix, 'prefix');
      const limit = Number(req.limit ?? 0) === 0 ? LIMITS.defaultListLimit : Number(req.limit);
      if (limit > LIMITS.maxListLimit) {
        throw new ApiError(
          status.INVALID_ARGUMENT,
          `limit ${limit} is over the maximum ${LIMITS.maxListLimit}`,
        );
      }
      const after = String(req.after ?? '');
      const groups = prefix === '' ? host.scopes() : [ownerOf(prefix)];
      const signal = deadlineSignal(call);
      for (const g of groups) await authorizeRead(g, call, prefix, signal);
      const names: ReturnType<typeof answerToWire>[] = [];
      for (const g of groups) {
        for (const a of g.group.registry.list(prefix, after, limit + 1)) {
          names.push(answerToWire(g, a, null));
        }
      }
      names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const page = names.slice(0, limit);
      return { names: page, next: names.length > limit ? (page.at(-1)?.name ?? '') : '' };
    }),

    Watch: ((call: ServerWritableStream<Record<string, unknown>, unknown>) => {
      const req = call.request;
      let filter: WatchFilter;
      let owner: HostedScope;
      try {
        const prefix = req.prefix === true;
        const name = String(req.name ?? '');
        if (!(prefix && name === '')) checkName(name);
        if (prefix && name === '') {
          // Everything: one watch follows one scope's history, so this needs an anchor of one scope.
          const served = host.scopes();
          if (served.length !== 1) {
            throw new ApiError(
              status.INVALID_ARGUMENT,
              `an empty prefix watches every name, but this anchor serves ${served.length} scopes (${served.map((x) => x.name).join(', ')}): watch one scope's prefix`,
            );
          }
          owner = served[0] as HostedScope;
        } else owner = ownerOf(name);
        c.admission.check(
          owner.group.registry,
          req.auth as WireAuth,
          'resolve',
          name,
          () => new TextEncoder().encode(name),
          { channel: channelKey(call) },
        );
        filter = { name, prefix };
      } catch (error) {
        call.emit('error', toServiceError(error, c.logger, 'Watch'));
        return;
      }
      let ended = false;
      const end = (code: status, details: string): void => {
        if (ended) return;
        ended = true;
        unsubscribe();
        call.emit('error', { code, details });
      };
      const send = (event: WatchEvent): void => {
        if (ended) return;
        if (call.writableLength > LIMITS.maxWatchBufferBytes) {
          end(status.RESOURCE_EXHAUSTED, 'the watcher is too slow; reconnect with the last index seen');
          return;
        }
        call.write({
          kind:
            event.kind === 'change' ? 'KIND_CHANGE' : event.kind === 'state' ? 'KIND_STATE' : 'KIND_SYNCED',
          name: event.name,
          instances: event.instances.map(instanceToWire),
          index: event.modifyIndex,
        });
      };
      const readState = function* (f: WatchFilter): Iterable<NameChange> {
        if (!f.prefix) {
          const a = owner.group.resolveLocal(f.name);
          if (a.instances.length > 0) yield a;
          return;
        }
        let after = '';
        for (;;) {
          const page = owner.group.registry.list(f.name, after, 1000);
          yield* page;
          if (page.length < 1000) return;
          after = (page.at(-1) as ResolveAnswer).name;
        }
      };
      const unsubscribe = owner.watches.subscribe(
        filter,
        Number(req.afterIndex ?? 0),
        { send, close: (why) => end(status.UNAVAILABLE, why) },
        readState,
      );
      call.on('cancelled', () => {
        ended = true;
        unsubscribe();
      });
    }) as handleServerStreamingCall<Record<string, unknown>, unknown>,
  };

  const membership = {
    Members: unary<Record<string, unknown>, unknown>('Members', async (call) => {
      const scope = String(call.request.scope ?? '');
      const s = host.get(scope);
      if (s === undefined && (c.claimed ?? []).includes(scope)) {
        throw new ApiError(status.UNAVAILABLE, `scope ${scope} is starting on this anchor; retry shortly`);
      }
      if (s === undefined) {
        throw new ApiError(
          status.NOT_FOUND,
          `this anchor does not serve scope ${scope || '(empty)'}; it serves ${
            host
              .scopes()
              .map((x) => x.name)
              .join(', ') || 'none'
          }`,
        );
      }
      const st = s.group.node.status();
      const members = [
        ...st.conf.voters.map((id) => ({ id, role: 'voter' })),
        ...st.conf.learners.map((id) => ({ id, role: 'learner' })),
      ].map((m) => ({
        ...m,
        leader: m.id === st.leader,
        grpc: c.directory.grpcAddress(m.id) ?? '',
        matchIndex: st.progress.get(m.id)?.match ?? 0,
      }));
      return { scope, members, term: st.term, commitIndex: st.commit, appliedIndex: s.group.appliedIndex };
    }),

    Remove: unary<Record<string, unknown>, unknown>('Remove', async (call) => {
      const scope = String(call.request.scope ?? '');
      const id = String(call.request.id ?? '');
      const s = host.get(scope);
      if (s === undefined) throw new ApiError(status.NOT_FOUND, `this anchor does not serve scope ${scope}`);
      const conf = s.group.conf();
      if (!conf.voters.includes(id) && !conf.learners.includes(id)) {
        throw new ApiError(status.NOT_FOUND, `${id} is not a member of scope ${scope}`);
      }
      const signal = deadlineSignal(call);
      if (!s.group.isLeader) {
        const leader = s.group.leader;
        if (leader === '')
          throw new ApiError(status.UNAVAILABLE, `scope ${scope} has no leader right now; retry`);
        return forward(leader, 'Membership', 'Remove', { scope, id }, signal);
      }
      return { index: await host.remove(scope, id, signal) };
    }),
  };

  return {
    registry,
    membership,
    close: () => {
      for (const f of forwarders.values()) (f as unknown as { close(): void }).close();
    },
  };
}
