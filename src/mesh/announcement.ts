// Signed anchor announcements: what an anchor tells the mesh about itself (its endpoints, region and
// scopes). Pure: no I/O, no clock. Anything arriving from the network or from a file goes through
// `verifyAnnouncement`, which checks shape, size, the ed25519 peer id and the signature and never throws;
// `AnnouncementTable` keeps the newest verified announcement per anchor (seq must strictly increase).

import { publicKeyOfPeerId } from '../identity/peer-id.ts';
import { NodeVerifier, type Signer, type Verifier } from '../identity/signer.ts';
import { MeshError } from './errors.ts';

export interface Announcement {
  /** The announcing anchor (its libp2p peer id, derived from its ed25519 key). */
  peerId: string;
  /** Client gRPC HOST:PORT. */
  grpc: string;
  /** Anchor-to-anchor gRPC HOST:PORT. */
  peer: string;
  /** Metrics / HTTP HOST:PORT. */
  http: string;
  /** Its libp2p multiaddrs (with /p2p/<peerId>) so others can dial it directly. */
  p2p: string[];
  region: string;
  /** Scope names it claims. */
  scopes: string[];
  /**
   * Claimed scopes whose group this anchor has already formed or joined (used by the anchor's group
   * formation). Optional: absent and [] sign the same bytes and mean the same thing.
   */
  formed?: string[];
  /** Strictly increases with every new announcement from this anchor. */
  seq: number;
}

/** The announcement fields an anchor chooses itself; the mesh fills in peerId, seq and p2p. */
export type SelfDescription = Omit<Announcement, 'peerId' | 'seq' | 'p2p'>;

/** Wire and file form: the announcement plus the base64 ed25519 signature over its canonical bytes. */
export interface SignedAnnouncement {
  announcement: Announcement;
  signature: string;
}

/** Upper bound on one signed announcement on the wire (and on its canonical bytes). */
export const MAX_ANNOUNCEMENT_BYTES = 16 * 1024;

// Per-field bounds: generous for real values, small enough that garbage is cut off before any crypto.
const MAX_PEER_ID_CHARS = 128;
const MAX_ENDPOINT_CHARS = 255;
const MAX_REGION_CHARS = 63;
const MAX_P2P_ADDRS = 32;
const MAX_MULTIADDR_CHARS = 512;
const MAX_SCOPES = 512;
const MAX_SCOPE_CHARS = 255;
const SIGNATURE_BASE64_CHARS = 88; // 64 bytes

/** Domain separation: these bytes can never be mistaken for another signed record of the project. */
export const ANNOUNCEMENT_DOMAIN = 'aq/announcement/1';

const defaultVerifier: Verifier = new NodeVerifier();
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Canonical bytes that are signed: the UTF-8 of the JSON array
 * `["aq/announcement/1", peerId, seq, grpc, peer, http, region, p2p[], scopes[], formed[]]`.
 * An array (not an object) so the order is fixed by position, not by key insertion order; JSON of
 * strings, a safe integer and arrays of strings is deterministic. Array order is part of what is signed.
 */
export function encodeAnnouncement(a: Announcement): Uint8Array {
  return utf8.encode(
    JSON.stringify([
      ANNOUNCEMENT_DOMAIN,
      a.peerId,
      a.seq,
      a.grpc,
      a.peer,
      a.http,
      a.region,
      a.p2p,
      a.scopes,
      a.formed ?? [],
    ]),
  );
}

/** Signs an announcement with the anchor key; throws MeshError if it would not verify anywhere. */
export function signAnnouncement(a: Announcement, signer: Signer): SignedAnnouncement {
  const shape = checkShape(a);
  if (typeof shape === 'string') throw new MeshError(`cannot sign announcement: ${shape}`);
  const signed: SignedAnnouncement = {
    announcement: shape,
    signature: Buffer.from(signer.sign(encodeAnnouncement(shape))).toString('base64'),
  };
  const size = encodeSignedAnnouncement(signed).length;
  if (size > MAX_ANNOUNCEMENT_BYTES)
    throw new MeshError(
      `cannot sign announcement: ${size} bytes exceeds the ${MAX_ANNOUNCEMENT_BYTES} limit`,
    );
  return signed;
}

export type VerifyResult = { ok: true; signed: SignedAnnouncement } | { ok: false; reason: string };

/**
 * Checks an untrusted value (parsed JSON) as a SignedAnnouncement: shape and bounds, size, that peerId is
 * an ed25519 peer id, and the signature against the key inside peerId. Never throws. On success the
 * returned copy holds only the known fields and is frozen, so callers may share it.
 */
export function verifyAnnouncement(input: unknown, verifier: Verifier = defaultVerifier): VerifyResult {
  if (!isRecord(input)) return { ok: false, reason: 'not an object' };
  const shape = checkShape(input.announcement);
  if (typeof shape === 'string') return { ok: false, reason: shape };
  const sig = input.signature;
  if (typeof sig !== 'string' || sig.length !== SIGNATURE_BASE64_CHARS)
    return { ok: false, reason: 'signature is not a base64 ed25519 signature' };
  const signature = new Uint8Array(Buffer.from(sig, 'base64'));
  if (signature.length !== 64 || Buffer.from(signature).toString('base64') !== sig)
    return { ok: false, reason: 'signature is not a base64 ed25519 signature' };
  let publicKey: Uint8Array;
  try {
    publicKey = publicKeyOfPeerId(shape.peerId);
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  const message = encodeAnnouncement(shape);
  if (message.length > MAX_ANNOUNCEMENT_BYTES)
    return { ok: false, reason: `announcement of ${message.length} bytes exceeds ${MAX_ANNOUNCEMENT_BYTES}` };
  if (!verifier.verify(publicKey, message, signature))
    return { ok: false, reason: `bad signature for ${shape.peerId} seq ${shape.seq}` };
  const announcement: Announcement = Object.freeze({
    ...shape,
    p2p: Object.freeze([...shape.p2p]) as string[],
    scopes: Object.freeze([...shape.scopes]) as string[],
    ...(shape.formed ? { formed: Object.freeze([...shape.formed]) as string[] } : {}),
  });
  return { ok: true, signed: Object.freeze({ announcement, signature: sig }) };
}

/** The bytes sent on the wire (gossip payload, one frame of the direct exchange): JSON of the signed form. */
export function encodeSignedAnnouncement(s: SignedAnnouncement): Uint8Array {
  return utf8.encode(JSON.stringify({ announcement: s.announcement, signature: s.signature }));
}

/** Decodes and verifies wire bytes; oversized, non-UTF-8 or non-JSON input is a reason, not an exception. */
export function decodeSignedAnnouncement(
  bytes: Uint8Array,
  verifier: Verifier = defaultVerifier,
): VerifyResult {
  if (bytes.length > MAX_ANNOUNCEMENT_BYTES)
    return { ok: false, reason: `${bytes.length} bytes exceeds the ${MAX_ANNOUNCEMENT_BYTES} limit` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8Decoder.decode(bytes));
  } catch {
    return { ok: false, reason: 'not UTF-8 JSON' };
  }
  return verifyAnnouncement(parsed, verifier);
}

export type OfferResult =
  | { status: 'accepted'; announcement: Announcement; previous: Announcement | undefined }
  | { status: 'stale'; reason: string }
  | { status: 'rejected'; reason: string };

/**
 * The verified view: the newest announcement per anchor. Accepts only verified announcements whose seq is
 * strictly greater than the one held, so a replayed or reordered old announcement never wins.
 */
export class AnnouncementTable {
  private readonly byPeer = new Map<string, SignedAnnouncement>();
  private readonly verifier: Verifier;

  constructor(verifier: Verifier = defaultVerifier) {
    this.verifier = verifier;
  }

  /** Verifies an untrusted value and keeps it if it is newer than what is held. Never throws. */
  offer(input: unknown): OfferResult {
    const held = this.heldSeqOf(input);
    // Cheap pre-check before the signature: an equal-or-lower seq is dropped without crypto.
    if (held !== undefined) return { status: 'stale', reason: held };
    const result = verifyAnnouncement(input, this.verifier);
    if (!result.ok) return { status: 'rejected', reason: result.reason };
    return this.accept(result.signed);
  }

  /** Offers wire bytes (see decodeSignedAnnouncement). */
  offerBytes(bytes: Uint8Array): OfferResult {
    const result = decodeSignedAnnouncement(bytes, this.verifier);
    if (!result.ok) return { status: 'rejected', reason: result.reason };
    return this.accept(result.signed);
  }

  get(peerId: string): Announcement | undefined {
    return this.byPeer.get(peerId)?.announcement;
  }

  getSigned(peerId: string): SignedAnnouncement | undefined {
    return this.byPeer.get(peerId);
  }

  /** All held announcements, sorted by peerId. */
  all(): Announcement[] {
    return this.allSigned().map((s) => s.announcement);
  }

  /** All held signed announcements, sorted by peerId. */
  allSigned(): SignedAnnouncement[] {
    return [...this.byPeer.values()].sort((x, y) => compare(x.announcement.peerId, y.announcement.peerId));
  }

  get size(): number {
    return this.byPeer.size;
  }

  private accept(signed: SignedAnnouncement): OfferResult {
    const a = signed.announcement;
    const previous = this.byPeer.get(a.peerId)?.announcement;
    if (previous && a.seq <= previous.seq)
      return { status: 'stale', reason: `stale seq ${a.seq} for ${a.peerId} (holding ${previous.seq})` };
    this.byPeer.set(a.peerId, signed);
    return { status: 'accepted', announcement: a, previous };
  }

  /** A stale reason if input names a held anchor with a seq not above the held one. */
  private heldSeqOf(input: unknown): string | undefined {
    if (!isRecord(input) || !isRecord(input.announcement)) return undefined;
    const { peerId, seq } = input.announcement;
    if (typeof peerId !== 'string' || typeof seq !== 'number') return undefined;
    const previous = this.byPeer.get(peerId)?.announcement;
    if (previous && seq <= previous.seq) return `stale seq ${seq} for ${peerId} (holding ${previous.seq})`;
    return undefined;
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isBoundedString(v: unknown, max: number): v is string {
  return typeof v === 'string' && v.length <= max;
}

function isStringArray(v: unknown, maxItems: number, maxChars: number): v is string[] {
  return Array.isArray(v) && v.length <= maxItems && v.every((s) => isBoundedString(s, maxChars));
}

/** A fresh Announcement with only the known fields, or a one-line reason why the value is not one. */
function checkShape(v: unknown): Announcement | string {
  if (!isRecord(v)) return 'announcement is not an object';
  const { peerId, grpc, peer, http, p2p, region, scopes, formed, seq } = v;
  if (!isBoundedString(peerId, MAX_PEER_ID_CHARS) || peerId.length === 0) return 'peerId is not a peer id';
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0)
    return 'seq is not a non-negative safe integer';
  if (!isBoundedString(grpc, MAX_ENDPOINT_CHARS)) return 'grpc is not a string of at most 255 chars';
  if (!isBoundedString(peer, MAX_ENDPOINT_CHARS)) return 'peer is not a string of at most 255 chars';
  if (!isBoundedString(http, MAX_ENDPOINT_CHARS)) return 'http is not a string of at most 255 chars';
  if (!isBoundedString(region, MAX_REGION_CHARS)) return 'region is not a string of at most 63 chars';
  if (!isStringArray(p2p, MAX_P2P_ADDRS, MAX_MULTIADDR_CHARS))
    return `p2p is not a list of at most ${MAX_P2P_ADDRS} multiaddr strings`;
  if (!isStringArray(scopes, MAX_SCOPES, MAX_SCOPE_CHARS))
    return `scopes is not a list of at most ${MAX_SCOPES} scope names`;
  if (formed !== undefined && !isStringArray(formed, MAX_SCOPES, MAX_SCOPE_CHARS))
    return `formed is not a list of at most ${MAX_SCOPES} scope names`;
  const out: Announcement = { peerId, grpc, peer, http, p2p: [...p2p], region, scopes: [...scopes], seq };
  if (formed !== undefined) out.formed = [...formed];
  return out;
}
