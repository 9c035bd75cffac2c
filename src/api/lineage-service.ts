// aq.v1.Lineage: a scope's verifiable log over gRPC (proto/aq/v1/lineage.proto). Thin: reads the member's
// applied lineage (src/lineage/log.ts through the registry state machine) and its signed tree heads.

import {
  type handleServerStreamingCall,
  type handleUnaryCall,
  type ServerWritableStream,
  status,
} from '@grpc/grpc-js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { Logger } from 'pino';
import type { TreeHead } from '../lineage/tree-head.ts';
import type { ScopeHost } from '../scope/scope-host.ts';
import { type Admission, channelKey, type WireAuth } from './admission.ts';
import { ApiError, toServiceError } from './api-error.ts';
import { hostedScope } from './scope-lookup.ts';

export interface LineageServiceComponents {
  readonly host: ScopeHost;
  readonly admission: Admission;
  readonly logger: Logger;
}

/** Entries per GetEntries answer at most, and by default. */
export const MAX_ENTRIES = 10_000;
const DEFAULT_ENTRIES = 1_000;
/** How often a Watch stream looks for new entries. */
const WATCH_POLL_MS = 50;

export function treeHeadToWire(h: TreeHead) {
  return {
    scopeId: bytesToHex(h.scopeId),
    size: h.size,
    root: h.root,
    timestampMs: h.timestampMs,
    signer: h.signer,
    signature: h.signature,
  };
}

export function lineageHandlers(c: LineageServiceComponents) {
  const streams = new Set<() => void>();
  const unary =
    <Res>(
      method: string,
      body: (req: Record<string, unknown>, channel: Uint8Array | null) => Res,
    ): handleUnaryCall<Record<string, unknown>, Res> =>
    (call, callback) => {
      try {
        callback(null, body(call.request, channelKey(call)));
      } catch (error) {
        callback(toServiceError(error, c.logger, method));
      }
    };
  /** The scope's machine, once the caller may read its lineage. */
  /**
   * The scope's machine, once the caller may read its lineage (action read-lineage). Tree heads and proofs
   * (`proofs`) need only a valid credential of the scope: a registrar upgrades its own receipt with them.
   */
  const readable = (req: Record<string, unknown>, proofs = false, channel: Uint8Array | null = null) => {
    const s = hostedScope(c.host, req.scope);
    const machine = s.group.registry;
    const body = () => new TextEncoder().encode(s.name);
    c.admission.check(machine, req.auth as WireAuth, 'read-lineage', '', body, {
      authenticatedOnly: proofs,
      channel,
    });
    return machine;
  };
  const integer = (v: unknown, what: string): number => {
    const n = Number(v ?? 0);
    if (!Number.isSafeInteger(n) || n < 0)
      throw new ApiError(status.INVALID_ARGUMENT, `${what} ${String(v)} is not a valid index`);
    return n;
  };

  const handlers = {
    GetEntries: unary('GetEntries', (req, channel) => {
      const machine = readable(req, false, channel);
      const from = integer(req.from, 'from');
      const limit = Number(req.limit ?? 0) === 0 ? DEFAULT_ENTRIES : Number(req.limit);
      if (limit > MAX_ENTRIES)
        throw new ApiError(status.INVALID_ARGUMENT, `limit ${limit} is over the maximum ${MAX_ENTRIES}`);
      const size = machine.lineage.size;
      const entries = [];
      for (let i = from; i < size && entries.length < limit; i++)
        entries.push({ index: i, entry: machine.lineage.entry(i) });
      return { entries, size, scopeId: bytesToHex(machine.authority.scopeId ?? new Uint8Array(0)) };
    }),

    GetTreeHead: unary('GetTreeHead', (req, channel) => {
      const machine = readable(req, true, channel);
      const size = integer(req.size, 'size');
      const head = size === 0 ? machine.treeHead : machine.treeHeadOfSize(size);
      if (head === undefined)
        throw new ApiError(
          status.NOT_FOUND,
          size === 0
            ? 'no signed tree head yet (the leader publishes one within a second of a change)'
            : `no signed tree head of size ${size}`,
        );
      return {
        treeHead: treeHeadToWire(head),
        genesis: machine.store.getAux('g/genesis') ?? new Uint8Array(0),
        size: machine.lineage.size,
      };
    }),

    GetInclusionProof: unary('GetInclusionProof', (req, channel) => {
      const machine = readable(req, true, channel);
      const index = integer(req.index, 'index');
      const treeSize = integer(req.treeSize, 'tree_size');
      if (treeSize > machine.lineage.size || index >= treeSize)
        throw new ApiError(
          status.OUT_OF_RANGE,
          `index ${index} is not in a tree of size ${treeSize} (the log has ${machine.lineage.size} entries)`,
        );
      return { hashes: machine.lineage.inclusionProof(index, treeSize) };
    }),

    GetConsistencyProof: unary('GetConsistencyProof', (req, channel) => {
      const machine = readable(req, true, channel);
      const from = integer(req.fromSize, 'from_size');
      const to = integer(req.toSize, 'to_size');
      if (to > machine.lineage.size || from > to || from === 0)
        throw new ApiError(
          status.OUT_OF_RANGE,
          `sizes ${from}..${to} are not within 1..${machine.lineage.size}`,
        );
      return { hashes: machine.lineage.consistencyProof(from, to) };
    }),

    Watch: ((call: ServerWritableStream<Record<string, unknown>, unknown>) => {
      let next: number;
      let scope: string;
      try {
        readable(call.request, false, channelKey(call));
        scope = String(call.request.scope);
        next = integer(call.request.from, 'from');
      } catch (error) {
        call.emit('error', toServiceError(error, c.logger, 'Watch'));
        return;
      }
      const pump = (): void => {
        const s = c.host.get(scope);
        if (s === undefined) {
          stop();
          call.emit('error', {
            code: status.UNAVAILABLE,
            details: `scope ${scope} is no longer served here`,
          });
          return;
        }
        const log = s.group.registry.lineage;
        while (next < log.size && call.writableLength < 1 << 20) {
          call.write({ entry: { index: next, entry: log.entry(next) } });
          next++;
        }
      };
      const timer = setInterval(pump, WATCH_POLL_MS);
      const stop = (): void => {
        clearInterval(timer);
        streams.delete(stop);
      };
      streams.add(stop);
      call.on('cancelled', stop);
      call.on('close', stop);
      pump();
    }) as handleServerStreamingCall<Record<string, unknown>, unknown>,
  };
  return {
    handlers,
    close: () => {
      for (const stop of [...streams]) stop();
    },
  };
}
