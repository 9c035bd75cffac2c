// Signed requests: a caller proves it holds the key of the credential it presents by signing the request,
// a timestamp and a nonce. Pure (the clock is a parameter).
//
//   signed := "AQRQ" version:u8 (=1) scopeId:32 credentialId:32 timestampMs:varint nonce:16 action:u8 body:bytes
//   action := 1 register | 2 deregister | 3 resolve | 4 read-lineage | 5 administer | 6 heartbeat
//
// `body` is what the request asks for, canonically: for a write, the registry command the client builds
// (src/registry/commands.ts, with its session, without auth), so the signature covers the exact entry the
// log will hold and an auditor can re-check it from the lineage alone; for a read, the name (or scope).
//
// What each check defends against (the reason codes are stable and mapped to gRPC at the edge):
// - `bad-signature`: the signature does not verify under the credential's subject key (forged/altered).
// - `clock-skew`: the timestamp is further than the allowed window (default 30 s) from the anchor's
//   clock, in either direction; this bounds how long a captured request stays replayable.
// - `replayed`: this (key, nonce) was already seen inside the window by this anchor (ReplayGuard). A
//   replay sent to another anchor of the group inside the window carries the same client session as the
//   original, so the state machine applies it at most once (a duplicate, with no effect).

import { bytesToHex } from '@noble/hashes/utils.js';
import type { Signer, Verifier } from '../identity/signer.ts';
import { ByteWriter } from '../registry/commands.ts';

export const REQUEST_FORMAT_VERSION = 1;
const MAGIC = [0x41, 0x51, 0x52, 0x51] as const; // "AQRQ"
export const NONCE_BYTES = 16;
/** How far a request's timestamp may be from the anchor's clock. */
export const DEFAULT_SKEW_WINDOW_MS = 30_000;

export const ACTIONS = [
  'register',
  'deregister',
  'resolve',
  'read-lineage',
  'administer',
  'heartbeat',
] as const;
export type Action = (typeof ACTIONS)[number];

/** What a request carries to authenticate itself (the proto `Auth` message). */
export interface RequestAuth {
  readonly credentialId: Uint8Array;
  readonly timestampMs: number;
  readonly nonce: Uint8Array;
  readonly signature: Uint8Array;
}

export class RequestAuthError extends Error {
  override readonly name = 'RequestAuthError';
}

/** The bytes a caller signs. */
export function requestSignedBytes(
  scopeId: Uint8Array,
  credentialId: Uint8Array,
  timestampMs: number,
  nonce: Uint8Array,
  action: Action,
  body: Uint8Array,
): Uint8Array {
  const w = new ByteWriter(96 + body.length, (m) => new RequestAuthError(`cannot encode request: ${m}`));
  for (const b of MAGIC) w.u8(b);
  w.u8(REQUEST_FORMAT_VERSION);
  if (scopeId.length !== 32 || credentialId.length !== 32)
    throw w.fail('scope and credential ids are 32 bytes');
  w.bytes(scopeId);
  w.bytes(credentialId);
  w.varint(timestampMs, 'timestamp');
  if (nonce.length !== NONCE_BYTES) throw w.fail(`the nonce must be ${NONCE_BYTES} bytes`);
  w.bytes(nonce);
  w.u8(ACTIONS.indexOf(action) + 1);
  w.varint(body.length, 'body length');
  w.bytes(body);
  return w.finish();
}

/** The auth block of one request: `signer`'s signature over the request's canonical bytes. */
export function signRequest(
  signer: Signer,
  scopeId: Uint8Array,
  credentialId: Uint8Array,
  action: Action,
  body: Uint8Array,
  timestampMs: number,
  nonce: Uint8Array,
): RequestAuth {
  const signature = signer.sign(requestSignedBytes(scopeId, credentialId, timestampMs, nonce, action, body));
  return { credentialId, timestampMs, nonce, signature };
}

/** One line saying why the auth block is malformed, or null. */
export function validateAuthShape(auth: RequestAuth): string | null {
  if (auth.credentialId.length !== 32) return 'auth.credential_id must be 32 bytes';
  if (auth.nonce.length !== NONCE_BYTES) return `auth.nonce must be ${NONCE_BYTES} bytes`;
  if (auth.signature.length !== 64) return 'auth.signature must be 64 bytes';
  if (!Number.isSafeInteger(auth.timestampMs) || auth.timestampMs <= 0)
    return 'auth.timestamp_ms must be a positive integer (ms since the epoch)';
  return null;
}

export function verifyRequestSignature(
  verifier: Verifier,
  subject: Uint8Array,
  scopeId: Uint8Array,
  auth: RequestAuth,
  action: Action,
  body: Uint8Array,
): boolean {
  return verifier.verify(
    subject,
    requestSignedBytes(scopeId, auth.credentialId, auth.timestampMs, auth.nonce, action, body),
    auth.signature,
  );
}

/** Null when `timestampMs` is within `windowMs` of `nowMs`, else the one-line reason. */
export function checkSkew(
  timestampMs: number,
  nowMs: number,
  windowMs = DEFAULT_SKEW_WINDOW_MS,
): string | null {
  const skew = timestampMs - nowMs;
  if (Math.abs(skew) <= windowMs) return null;
  return skew > 0
    ? `the request is dated ${Math.round(skew / 1000)} s in the future (allowed skew ${windowMs / 1000} s): check the caller's clock`
    : `the request is ${Math.round(-skew / 1000)} s old (allowed skew ${windowMs / 1000} s): sign it again, or check the caller's clock`;
}

/**
 * Remembers the nonces seen in the skew window, per anchor. Bounded: entries older than the window are
 * forgotten (a request that old is refused by checkSkew anyway), and at most `max` are kept — past that,
 * the oldest go first, and the window in which a replay is detected shrinks rather than memory growing.
 */
export class ReplayGuard {
  readonly #seen = new Map<string, number>();
  readonly #windowMs: number;
  readonly #max: number;

  constructor(windowMs = DEFAULT_SKEW_WINDOW_MS, max = 1 << 20) {
    this.#windowMs = windowMs;
    this.#max = max;
  }

  /** Records the nonce; false when it was already seen inside the window (a replay). */
  admit(key: Uint8Array, nonce: Uint8Array, timestampMs: number, nowMs: number): boolean {
    this.#expire(nowMs);
    const id = `${bytesToHex(key)}:${bytesToHex(nonce)}`;
    if (this.#seen.has(id)) return false;
    this.#seen.set(id, timestampMs);
    if (this.#seen.size > this.#max) {
      const oldest = this.#seen.keys().next().value;
      if (oldest !== undefined) this.#seen.delete(oldest);
    }
    return true;
  }

  get size(): number {
    return this.#seen.size;
  }

  #expire(nowMs: number): void {
    // Insertion order is close to timestamp order; stop at the first entry still inside the window.
    const horizon = nowMs - 2 * this.#windowMs;
    for (const [id, ts] of this.#seen) {
      if (ts >= horizon) break;
      this.#seen.delete(id);
    }
  }
}
