// Admission at the client API's edge: what an anchor checks before it proposes (or serves) anything for
// a governed scope, and how it signs what it admits. The authoritative decision is the state machine's, at
// apply (src/governance/authority.ts); the edge refuses early what would be refused anyway, and checks what
// only it can: the caller's signature, its clock and its nonce.

import { status } from '@grpc/grpc-js';
import { bytesToHex } from '@noble/hashes/utils.js';
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
import { publicKeyOfPeerId } from '../identity/peer-id.ts';
import type { Signer, Verifier } from '../identity/signer.ts';
import { entrySignedBytes } from '../lineage/entry.ts';
import type { CommandAuth, RejectCode } from '../registry/commands.ts';
import { admittedEntry, type RegistryStateMachine } from '../registry/state-machine.ts';
import { callerPeerId, type PeerServerCall } from '../transport/peer-credentials.ts';
import { ApiError, refusal } from './api-error.ts';

export interface AdmissionComponents {
  readonly signer: Signer;
  readonly verifier: Verifier;
  readonly now?: () => number;
  /** Allowed distance of a request's timestamp from this anchor's clock. Default 30 s. */
  readonly skewMs?: number;
}

/** The client key a call's TLS connection proved (the TLS client port), or null (plaintext, no certificate). */
export function channelKey(call: PeerServerCall): Uint8Array | null {
  const peer = callerPeerId(call);
  return peer === null ? null : publicKeyOfPeerId(peer);
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

/** Actions a TLS-authenticated connection may perform without signing each request: reads. */
const READS: ReadonlySet<Action> = new Set(['resolve', 'read-lineage']);
const NO_NONCE = new Uint8Array(16);
const NO_SIGNATURE = new Uint8Array(64);

export interface CheckOptions {
  /** The instance's tags (policy rules can require them). */
  readonly tags?: readonly string[];
  /** A valid credential suffices: the policy's refusals (and prefix) do not apply (tree heads, proofs). */
  readonly authenticatedOnly?: boolean;
  /** The key this call's TLS connection proved (channelKey), if any: reads may then go unsigned. */
  readonly channel?: Uint8Array | null;
  /** A retry of a write already applied here: the request is checked, its authorization is not. */
  readonly retry?: boolean;
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
    options: CheckOptions = {},
  ): CommandAuth | undefined {
    const { tags = [], authenticatedOnly = false, channel = null, retry = false } = options;
    const authority = machine.authority;
    const scopeId = authority.scopeId;
    if (scopeId === undefined)
      throw refusalOf('no-genesis', 'the scope has no genesis yet (its group is starting); retry shortly');
    if (authority.open) return undefined;
    const unsigned = wire?.signature === undefined || wire.signature.length === 0;
    // A read over the TLS client port may present its credential without signing: the channel's client
    // certificate already proved the key (TLS signs the handshake with it), once per connection.
    if (unsigned && channel !== null && READS.has(action) && wire?.credentialId?.length === 32) {
      return this.#checkChannel(
        machine,
        new Uint8Array(wire.credentialId),
        channel,
        action,
        name,
        tags,
        authenticatedOnly,
      );
    }
    if (wire === null || wire === undefined || unsigned)
      throw refusalOf(
        'unauthenticated',
        `scope ${authority.genesis?.name} is governed: sign the request with a credential's key (--key or AQ_KEY)`,
      );
    const auth: RequestAuth = {
      credentialId: new Uint8Array(wire.credentialId ?? []),
      timestampMs: Number(wire.timestampMs ?? 0),
      nonce: new Uint8Array(wire.nonce ?? []),
      signature: new Uint8Array(wire.signature as Uint8Array),
    };
    const shape = validateAuthShape(auth);
    if (shape !== null) throw new ApiError(status.INVALID_ARGUMENT, shape);
    if (
      wire.scopeId !== undefined &&
      wire.scopeId.length > 0 &&
      bytesToHex(wire.scopeId) !== bytesToHex(scopeId)
    )
      throw refusalOf(
        'wrong-scope',
        `the request was signed for scope ${bytesToHex(wire.scopeId).slice(0, 16)}…, this is scope ${authority.genesis?.name} (${bytesToHex(scopeId).slice(0, 16)}…)`,
      );
    const record = authority.credential(auth.credentialId);
    if (record === undefined) {
      throw refusalOf(
        'unknown-credential',
        `credential ${bytesToHex(auth.credentialId).slice(0, 16)}… is not known to scope ${authority.genesis?.name} (another scope's, or never issued)`,
      );
    }
    if (!verifyRequestSignature(this.#c.verifier, record.credential.subject, scopeId, auth, action, body())) {
      throw refusal(
        status.UNAUTHENTICATED,
        'bad-signature',
        `the request's signature does not verify under credential ${bytesToHex(auth.credentialId).slice(0, 16)}… (altered request, wrong key, or signed for another scope)`,
      );
    }
    const now = (this.#c.now ?? Date.now)();
    const skew = checkSkew(auth.timestampMs, now, this.#skewMs);
    if (skew !== null) throw refusal(status.PERMISSION_DENIED, 'clock-skew', skew);
    // A retry of an applied write: the request itself is checked (signature, skew, nonce), not the scope's
    // state since, which the state machine does not consult for a duplicate either.
    const decision: AuthorityDecision = retry
      ? { ok: true, principal: null, attest: false }
      : authority.authorizeAuth(auth, action, name, tags);
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

  /** A read authenticated by the TLS channel: the credential must be the channel key's, valid now. */
  #checkChannel(
    machine: RegistryStateMachine,
    credentialId: Uint8Array,
    channel: Uint8Array,
    action: Action,
    name: string,
    tags: readonly string[],
    authenticatedOnly: boolean,
  ): undefined {
    const authority = machine.authority;
    const record = authority.credential(credentialId);
    if (record === undefined)
      throw refusalOf(
        'unknown-credential',
        `credential ${bytesToHex(credentialId).slice(0, 16)}… is not known to scope ${authority.genesis?.name}`,
      );
    if (bytesToHex(record.credential.subject) !== bytesToHex(channel))
      throw refusal(
        status.UNAUTHENTICATED,
        'bad-signature',
        `credential ${bytesToHex(credentialId).slice(0, 16)}… belongs to another key than this connection's client certificate`,
      );
    const auth = {
      credentialId,
      timestampMs: (this.#c.now ?? Date.now)(),
      nonce: NO_NONCE,
      signature: NO_SIGNATURE,
    };
    const decision = authority.authorizeAuth(auth, action, name, tags);
    const policyOnly =
      !decision.ok &&
      (decision.rejection.code === 'policy-refused' || decision.rejection.code === 'wrong-prefix');
    if (!decision.ok && !(authenticatedOnly && policyOnly))
      throw refusalOf(decision.rejection.code, decision.rejection.message);
    return undefined;
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
