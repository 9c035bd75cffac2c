// Finding the hosted scope a scope-addressed request (Lineage, Governance, Membership) names.

import { status } from '@grpc/grpc-js';
import type { HostedScope, ScopeHost } from '../scope/scope-host.ts';
import { ApiError } from './api-error.ts';

export function hostedScope(host: ScopeHost, scope: unknown): HostedScope {
  const name = String(scope ?? '');
  const s = host.get(name);
  if (s !== undefined) return s;
  const served = host
    .scopes()
    .map((x) => x.name)
    .join(', ');
  throw new ApiError(
    status.NOT_FOUND,
    `this anchor does not serve scope ${name || '(empty)'}; it serves ${served || 'none'}`,
  );
}

/** A deadline signal from a call's deadline (at most 60 s; 10 s when the caller set none). */
export function callSignal(call: { getDeadline(): Date | number }): AbortSignal {
  const d = call.getDeadline();
  const at = d instanceof Date ? d.getTime() : d;
  const ms = Number.isFinite(at) ? Math.max(0, at - Date.now()) : 10_000;
  return AbortSignal.timeout(Math.min(ms, 60_000));
}
