// Credentials: signed statements in the published authority taxonomy (DESIGN.md §2). A credential binds
// an ed25519 public key (the subject) to a role and a name prefix for a validity window, in one scope.
// It is issued through the scope's log — an admin's signed request, admitted by the group and recorded as a
// lineage entry — so the group issues it, not one process, and the statement is signed twice over: by the
// admin's request signature and by the admitting anchor (and covered by the leader's signed tree heads).
// Revocation is a lineage record too and takes effect at its log index on every member. Pure.
//
//   credential := "AQCR" version:u8 (=1) scopeId:32 role:u8 subject:32 prefix:str notBeforeMs:varint notAfterMs:varint
//   role       := 1 scope-admin | 2 anchor | 3 registrar | 4 resolver | 5 auditor
//
// The credential id is SHA-256 of those bytes. The genesis' admins and founding anchors hold implicit
// credentials (role scope-admin / anchor, prefix "", valid from 0 to 2^53-1) with ids computed the same
// way, so they can be revoked like any other (key rotation: issue for the new key, then revoke the old).

import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { ByteReader, ByteWriter } from '../registry/commands.ts';
import { quote } from '../registry/names.ts';

export const CREDENTIAL_FORMAT_VERSION = 1;
const MAGIC = [0x41, 0x51, 0x43, 0x52] as const; // "AQCR"

/** The authority taxonomy (DESIGN.md §2), in wire order. */
export const ROLES = ['scope-admin', 'anchor', 'registrar', 'resolver', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

/** What each role is for (printed by `aq credential issue --help`). */
export const ROLE_DESCRIPTIONS: Readonly<Record<Role, string>> = {
  'scope-admin': 'administers the scope: credentials, policy, quota (within its prefix)',
  anchor: 'an anchor of the scope: admits changes and signs lineage and tree heads',
  registrar: 'registers and deregisters instances under its prefix (e.g. a Nomad client)',
  resolver: 'resolves names under its prefix',
  auditor: 'reads the lineage log',
};

/** Largest validity bound (ms): "never expires". */
export const FOREVER_MS = Number.MAX_SAFE_INTEGER;
export const MAX_PREFIX_BYTES = 256;

export interface Credential {
  readonly scopeId: Uint8Array;
  readonly role: Role;
  readonly subject: Uint8Array;
  /** Names this credential may act on start with it ("" = every name of the scope). */
  readonly prefix: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

export class CredentialError extends Error {
  override readonly name = 'CredentialError';
}

const encodeFail = (m: string): Error => new CredentialError(`cannot encode credential: ${m}`);
const decodeFail = (m: string, offset: number): Error =>
  new CredentialError(`cannot decode credential at byte ${offset}: ${m}`);

export function isRole(s: string): s is Role {
  return (ROLES as readonly string[]).includes(s);
}

/** One line saying why the credential's fields are not acceptable, or null. */
export function validateCredential(c: Credential): string | null {
  if (!isRole(c.role)) return `role ${quote(String(c.role))} is not one of ${ROLES.join(', ')}`;
  if (c.scopeId.length !== 32) return 'the scope id must be 32 bytes';
  if (c.subject.length !== 32) return 'the subject must be a 32-byte ed25519 public key';
  if (typeof c.prefix !== 'string' || new TextEncoder().encode(c.prefix).length > MAX_PREFIX_BYTES)
    return `the prefix is longer than ${MAX_PREFIX_BYTES} bytes`;
  for (const v of [c.notBeforeMs, c.notAfterMs])
    if (!Number.isSafeInteger(v) || v < 0) return `validity bound ${String(v)} is not an integer 0..2^53-1`;
  if (c.notAfterMs <= c.notBeforeMs) return 'the credential expires before it becomes valid';
  return null;
}

export function encodeCredential(c: Credential): Uint8Array {
  const error = validateCredential(c);
  if (error !== null) throw encodeFail(error);
  const w = new ByteWriter(128, encodeFail);
  for (const b of MAGIC) w.u8(b);
  w.u8(CREDENTIAL_FORMAT_VERSION);
  w.bytes(c.scopeId);
  w.u8(ROLES.indexOf(c.role) + 1);
  w.bytes(c.subject);
  w.str(c.prefix, 'prefix');
  w.varint(c.notBeforeMs, 'notBeforeMs');
  w.varint(c.notAfterMs, 'notAfterMs');
  return w.finish();
}

export function decodeCredential(bytes: Uint8Array): Credential {
  const r = new ByteReader(bytes, decodeFail);
  for (const b of MAGIC) if (r.u8('magic') !== b) throw r.fail('not a credential (bad magic)', 0);
  const version = r.u8('format version');
  if (version !== CREDENTIAL_FORMAT_VERSION)
    throw r.fail(`unsupported credential format version ${version}`, 4);
  const scopeId = r.bytes(32, 'scope id').slice();
  const at = r.offset;
  const code = r.u8('role');
  const role = ROLES[code - 1];
  if (role === undefined) throw r.fail(`unknown role code ${code}`, at);
  const subject = r.bytes(32, 'subject').slice();
  const prefix = r.str('prefix');
  const notBeforeMs = r.varint('notBeforeMs');
  const notAfterMs = r.varint('notAfterMs');
  r.end('the credential');
  const c: Credential = { scopeId, role, subject, prefix, notBeforeMs, notAfterMs };
  const error = validateCredential(c);
  if (error !== null) throw new CredentialError(`invalid credential: ${error}`);
  return c;
}

/** The credential id: SHA-256 of its canonical bytes. */
export function credentialId(c: Credential): Uint8Array {
  return sha256(encodeCredential(c));
}

export function credentialIdHex(c: Credential): string {
  return bytesToHex(credentialId(c));
}

/** The implicit credentials the genesis grants its admins and founding anchors. */
export function genesisCredentials(
  scopeId: Uint8Array,
  founders: readonly Uint8Array[],
  admins: readonly Uint8Array[],
): Credential[] {
  const make = (role: Role, subject: Uint8Array): Credential => ({
    scopeId,
    role,
    subject,
    prefix: '',
    notBeforeMs: 0,
    notAfterMs: FOREVER_MS,
  });
  return [...admins.map((k) => make('scope-admin', k)), ...founders.map((k) => make('anchor', k))];
}

/** Whether `name` lies under `prefix` (plain string prefix, as Consul's *_prefix rules). */
export function underPrefix(name: string, prefix: string): boolean {
  return name.startsWith(prefix);
}
