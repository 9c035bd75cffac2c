// Admission at the client API's edge: what an anchor checks before it proposes (or serves) anything for
// a governed scope, and how it signs what it admits. The authoritative decision is the state machine's, at
// apply (src/governance/authority.ts); the edge refuses early what would be refused anyway, and checks what
// only it can: the caller's signature, its clock and its nonce.

import { status } from '@grpc/grpc-js';
import type { AuthorityDecision } from '../governance/authority.ts';
import {
  type Action,
  checkSkew,
  DEFAULT_SKEW_WINDOW_MS,
  ReplayGuard,
  type RequestAuth,
  validateAuthShape,
  verifyRequestSignature,
} from '../governance/request.ts';
import type { Signer, Verifier } from '../identity/signer.ts';
import { entrySignedBytes } from '../lineage/entry.ts';
import type { CommandAuth, RejectCode } from '../registry/commands.ts';
import { admittedEntry, type RegistryStateMachine } from '../registry/state-machine.ts';
import { ApiError, refusal } from './api-error.ts';

export interface AdmissionComponents {
  readonly signer: Signer;
  readonly verifier: Verifier;
  readonly now?: () => number;
  /** Allowed distance of a request's timestamp from this anchor's clock. Default 30 s. */
  readonly skewMs?: number;
}

/** The gRPC status of each refusal reason (trailer "aq-reason" carries the reason itself). */
export function statusOfReason(code: RejectCode | 'bad-signature' | 'clock-skew' | 'replayed'): status {
  switch (code) {
    case 'unauthenticated':
    case 'unknown-credential':
    case 'bad-signature':
      return status.UNAUTHENTICATED;
    case 'quota-exceeded':
      return status.RESOURCE_EXHAUSTED;
    case 'no-genesis':
      return status.UNAVAILABLE;
    case 'revoked':
    case 'expired':
    case 'not-yet-valid':
    case 'wrong-prefix':
    case 'wrong-scope':
    case 'policy-refused':
    case 'policy-deferred':
    case 'clock-skew':
    case 'replayed':
      return status.PERMISSION_DENIED;
    default:
      return status.INVALID_ARGUMENT;
  }
}

/** The API error for a command the state machine (or the edge's pre-check) refused. */
export function refusalOf(code: RejectCode, message: string): ApiError {
  const s = statusOfReason(code);
  if (s === status.INVALID_ARGUMENT) return new ApiError(s, message);
  return refusal(s, code, message, code === 'policy-deferred' ? 'defer' : 'refuse');
}

/** The proto `Auth` message as proto-loader hands it over (bytes as Buffers, uint64 as numbers). */
export interface WireAuth {
  credentialId?: Uint8Array;
  timestampMs?: number | string;
  nonce?: Uint8Array;
  signature?: Uint8Array;
  scopeId?: Uint8Array;
}

export class Admission {
  readonly #c: AdmissionComponents;
  readonly #replay: ReplayGuard;
  readonly #skewMs: number;

  constructor(components: AdmissionComponents) {
    this.#c = components;
    this.#skewMs = components.skewMs ?? DEFAULT_SKEW_WINDOW_MS;
    this.#replay = new ReplayGuard(this.#skewMs);
  }

  /**
   * Authenticates a request to `machine`'s scope and pre-authorizes `action` on `name`. Returns the auth
   * block to put in the command (undefined for an open scope, which ignores auth). Throws the refusal.
   */
  check(
    machine: RegistryStateMachine,
    wire: WireAuth | null | undefined,
    action: Action,
    name: string,
    body: () => Uint8Array,
    tags: readonly string[] = [],
    authenticatedOnly = false,
  ): CommandAuth | undefined {
    const authority = machine.authority;
    const scopeId = authority.scopeId;
    if (scopeId === undefined)
      throw refusalOf('no-genesis', 'the scope has no genesis yet (its group is starting); retry shortly');
    if (authority.open) return undefined;
    if (wire === null || wire === undefined || wire.signature === undefined || wire.signature.length === 0)
      throw refusalOf(
        'unauthenticated',
        `scope ${authority.genesis?.name} is governed: sign the request with a credential's key (--key or AQ_KEY)`,
      );
    const auth: RequestAuth = {
      credentialId: new Uint8Array(wire.credentialId ?? []),
      timestampMs: Number(wire.timestampMs ?? 0),
      nonce: new Uint8Array(wire.nonce ?? []),
      signature: new Uint8Array(wire.signature),
    };
    const shape = validateAuthShape(auth);
    if (shape !== null) throw new ApiError(status.INVALID_ARGUMENT, shape);
    if (wire.scopeId !== undefined && wire.scopeId.length > 0 && hex(wire.scopeId) !== hex(scopeId))
      throw refusalOf(
        'wrong-scope',
        `the request was signed for scope ${hex(wire.scopeId).slice(0, 16)}…, this is scope ${authority.genesis?.name} (${hex(scopeId).slice(0, 16)}…)`,
      );
    const record = authority.credential(auth.credentialId);
    if (record === undefined) {
      throw refusalOf(
        'unknown-credential',
        `credential ${hex(auth.credentialId).slice(0, 16)}… is not known to scope ${authority.genesis?.name} (another scope's, or never issued)`,
      );
    }
    if (!verifyRequestSignature(this.#c.verifier, record.credential.subject, scopeId, auth, action, body())) {
      throw refusal(
        status.UNAUTHENTICATED,
        'bad-signature',
        `the request's signature does not verify under credential ${hex(auth.credentialId).slice(0, 16)}… (altered request, wrong key, or signed for another scope)`,
      );
    }
    const now = (this.#c.now ?? Date.now)();
    const skew = checkSkew(auth.timestampMs, now, this.#skewMs);
    if (skew !== null) throw refusal(status.PERMISSION_DENIED, 'clock-skew', skew);
    const decision: AuthorityDecision = authority.authorizeAuth(auth, action, name, tags);
    // authenticatedOnly: a valid credential suffices (its validity refusals still apply).
    const policyOnly =
      decision.ok === false &&
      (decision.rejection.code === 'policy-refused' || decision.rejection.code === 'wrong-prefix');
    if (!decision.ok && !(authenticatedOnly && policyOnly))
      throw refusalOf(decision.rejection.code, decision.rejection.message);
    // Last, so that a refused request does not use up its nonce.
    if (!this.#replay.admit(record.credential.subject, auth.nonce, auth.timestampMs, now))
      throw refusal(
        status.PERMISSION_DENIED,
        'replayed',
        'this request (its nonce) was already received: a replay; sign a new request',
      );
    return auth;
  }

  /**
   * Waits (at most `maxMs`, or until `signal`) for the scope's genesis to be applied on this member: a group
   * that has just formed proposes it first, and a request arriving in that window waits rather than fails.
   */
  async ready(machineOf: () => RegistryStateMachine, signal: AbortSignal, maxMs = 3000): Promise<void> {
    const until = Date.now() + maxMs;
    while (machineOf().authority.scopeId === undefined && Date.now() < until && !signal.aborted) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The entry to propose: the command wrapped with this anchor's admitting signature. */
  admit(machine: RegistryStateMachine, command: Uint8Array): Uint8Array {
    const scopeId = machine.authority.scopeId;
    if (scopeId === undefined) throw refusalOf('no-genesis', 'the scope has no genesis yet; retry shortly');
    const { signer } = this.#c;
    return admittedEntry(
      signer.publicKey,
      signer.sign(entrySignedBytes(scopeId, 'command', command)),
      command,
    );
  }
}

function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}
