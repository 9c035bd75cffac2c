// The client commands' flags and arguments into aq.v1 request objects (the proto-loader shape: camelCase
// fields, enums as strings). Pure, and run before anything touches the network, so that every mistake the
// CLI can see itself is a usage error (exit 2) with the rule that was broken.

import type { WireInstance as ApiWireInstance } from '../api/registry-service.ts';
import { type Instance, validateInstance, validateInstanceId } from '../registry/instance.ts';
import { quote, validateName } from '../registry/names.ts';
import { usageError } from './errors.ts';
import { describe, parseDuration, parseHostPort, parseInteger, parseKeyValues, parsePort } from './parse.ts';

/** Where and how long to ask: --anchor (or AQ_ANCHOR) and --timeout. */
export interface Target {
  readonly address: string;
  /** How the address was given, for messages that tell the user what to change. */
  readonly from: 'flag' | 'env' | 'default';
  readonly timeoutMs: number;
}

export interface TargetFlags {
  readonly anchor: string;
  readonly timeout: string;
}

export const DEFAULT_ANCHOR = '127.0.0.1:7400';
export const DEFAULT_TIMEOUT = '10s';
/** A --timeout longer than a day is a typo, not a deadline. */
const MAX_TIMEOUT_MS = 86_400_000;

export function parseTarget(flags: TargetFlags, from: Target['from']): Target {
  const what = from === 'env' ? 'AQ_ANCHOR' : '--anchor';
  const address = parseHostPort(flags.anchor, what, { allowZero: false });
  const timeoutMs = parseDuration(flags.timeout, '--timeout', { maxMs: MAX_TIMEOUT_MS });
  return { address, from, timeoutMs };
}

export function checkName(name: string): string {
  const error = validateName(name);
  if (error !== null) throw usageError('invalid name', error.message);
  return name;
}

function checkInstanceId(id: string): string {
  const error = validateInstanceId(id);
  if (error !== null) throw usageError('invalid --id', error.message);
  return id;
}

// ---- registry ----

export interface RegisterFlags {
  readonly id: string;
  readonly address: string;
  readonly port: string;
  readonly tag?: readonly string[] | undefined;
  readonly meta?: readonly string[] | undefined;
  readonly ttl?: string | undefined;
}

/** The instance fields a client sends (health is the anchor's to set). */
export type WireInstance = Omit<ApiWireInstance, 'health'>;

export interface RegisterRequest {
  name: string;
  instance: WireInstance;
  clientId: string;
  seq: number;
}

/** A registration, with the exactly-once pair (clientId, seq) that retries of it must repeat. */
export function buildRegisterRequest(name: string, flags: RegisterFlags, clientId: string): RegisterRequest {
  checkName(name);
  const port = parsePort(flags.port, '--port', { allowZero: true });
  const meta = parseKeyValues(flags.meta ?? [], '--meta');
  const ttlMs = flags.ttl === undefined ? 0 : parseDuration(flags.ttl, '--ttl', { allowZero: true });
  const instance: Instance = {
    id: flags.id,
    address: flags.address,
    port,
    tags: [...(flags.tag ?? [])],
    meta,
    health: 'passing',
    ttlMs,
  };
  // The anchor runs the same check; running it here turns a round trip into a usage error with the rule.
  const error = validateInstance(instance);
  if (error !== null) {
    throw usageError(
      error.code === 'bad-ttl' ? describe('--ttl', flags.ttl ?? '') : 'invalid instance',
      error.message,
    );
  }
  return {
    name,
    instance: { id: instance.id, address: instance.address, port, tags: [...instance.tags], meta, ttlMs },
    clientId,
    seq: 1,
  };
}

export interface DeregisterRequest {
  name: string;
  id: string;
  clientId: string;
  seq: number;
}

export function buildDeregisterRequest(name: string, id: string, clientId: string): DeregisterRequest {
  return { name: checkName(name), id: checkInstanceId(id), clientId, seq: 1 };
}

export interface HeartbeatRequest {
  name: string;
  id: string;
}

export function buildHeartbeatRequest(name: string, id: string): HeartbeatRequest {
  return { name: checkName(name), id: checkInstanceId(id) };
}

export type Consistency = 'CONSISTENCY_LINEARIZABLE' | 'CONSISTENCY_STALE';

export interface ResolveRequest {
  name: string;
  consistency: Consistency;
  health: 'HEALTH_UNSPECIFIED' | 'HEALTH_PASSING';
}

export function buildResolveRequest(
  name: string,
  flags: { stale?: boolean; passing?: boolean },
): ResolveRequest {
  return {
    name: checkName(name),
    consistency: flags.stale === true ? 'CONSISTENCY_STALE' : 'CONSISTENCY_LINEARIZABLE',
    health: flags.passing === true ? 'HEALTH_PASSING' : 'HEALTH_UNSPECIFIED',
  };
}

/** The anchor refuses a page larger than this. */
export const MAX_LIST_PAGE = 10_000;

export interface ListRequest {
  prefix: string;
  consistency: Consistency;
  limit: number;
  after: string;
}

export interface ListPlan {
  readonly request: ListRequest;
  /** The most names to print over all pages; null: every name (page until the anchor says no more). */
  readonly total: number | null;
}

export function buildListRequest(
  prefix: string | undefined,
  flags: { stale?: boolean; limit?: string },
): ListPlan {
  const p = prefix ?? '';
  if (p.length > 0) {
    const error = validateName(p);
    if (error !== null) throw usageError('invalid prefix', error.message);
  }
  const total =
    flags.limit === undefined ? null : parseInteger(flags.limit, '--limit', 1, Number.MAX_SAFE_INTEGER);
  return {
    request: {
      prefix: p,
      consistency: flags.stale === true ? 'CONSISTENCY_STALE' : 'CONSISTENCY_LINEARIZABLE',
      limit: total === null ? 1000 : Math.min(total, MAX_LIST_PAGE),
      after: '',
    },
    total,
  };
}

export interface WatchRequest {
  name: string;
  prefix: boolean;
  afterIndex: number;
}

export function buildWatchRequest(name: string, flags: { prefix?: boolean; index?: string }): WatchRequest {
  const prefix = flags.prefix === true;
  if (!(prefix && name.length === 0)) {
    const error = validateName(name);
    if (error !== null) throw usageError(prefix ? 'invalid prefix' : 'invalid name', error.message);
  }
  const afterIndex =
    flags.index === undefined ? 0 : parseInteger(flags.index, '--index', 0, Number.MAX_SAFE_INTEGER);
  return { name, prefix, afterIndex };
}

// ---- membership ----

export function buildMembersRequest(scope: string): { scope: string } {
  const error = validateName(scope);
  if (error !== null) throw usageError('invalid scope', error.message);
  return { scope };
}

export function buildRemoveRequest(scope: string, id: string): { scope: string; id: string } {
  buildMembersRequest(scope);
  if (!/^[1-9A-HJ-NP-Za-km-z]{1,128}$/.test(id)) {
    // Peer ids are base58btc (12D3KooW...): anything else cannot name a member.
    throw usageError(
      `invalid anchor id ${quote(id)}`,
      'an anchor id is its libp2p peer id, such as 12D3KooW...',
    );
  }
  return { scope, id };
}
