// The genesis file: what `aq scope create` writes, `aq scope sign` adds signatures to, and `aq anchor
// start --genesis FILE` founds a scope from. JSON, readable, with hex keys; the canonical bytes (and so the
// scope id) are rebuilt from the fields, so the file cannot say one thing and certify another. Pure.
//
//   {
//     "format": "aq-genesis", "version": 1,
//     "scopeId": "<64 hex: SHA-256 of the body; checked on reading>",
//     "name": "eu/payments", "createdMs": 1764000000000,
//     "founders": ["<64 hex ed25519 public key>", ...],   // founding anchors
//     "admins": ["<64 hex>", ...],
//     "policy": { ...canonical policy document... } | null,
//     "quota": { ...canonical quota document... } | null,
//     "signatures": [{ "key": "<64 hex>", "signature": "<128 hex>" }, ...]
//   }

import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { type Genesis, GenesisError, scopeIdHex, sortKeys } from './genesis.ts';

export interface GenesisJson {
  readonly format: 'aq-genesis';
  readonly version: 1;
  readonly scopeId: string;
  readonly name: string;
  readonly createdMs: number;
  readonly founders: string[];
  readonly admins: string[];
  readonly policy: unknown;
  readonly quota: unknown;
  readonly signatures: { key: string; signature: string }[];
}

export function genesisToJson(g: Genesis): GenesisJson {
  return {
    format: 'aq-genesis',
    version: 1,
    scopeId: scopeIdHex(g),
    name: g.name,
    createdMs: g.createdMs,
    founders: g.founders.map(bytesToHex),
    admins: g.admins.map(bytesToHex),
    policy: g.policy === '' ? null : JSON.parse(g.policy),
    quota: g.quota === '' ? null : JSON.parse(g.quota),
    signatures: g.signatures.map((s) => ({ key: bytesToHex(s.key), signature: bytesToHex(s.signature) })),
  };
}

/** Parses a genesis file's text; throws GenesisError with one line naming `path` and what is wrong. */
export function genesisFromJson(
  text: string,
  path: string,
  canonical: { policy: (v: unknown) => string; quota: (v: unknown) => string },
): Genesis {
  const fail = (why: string): GenesisError => new GenesisError(`${path}: ${why}`);
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw fail(`not JSON (${(error as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || v.format !== 'aq-genesis' || v.version !== 1)
    throw fail('not an aq genesis file (format "aq-genesis", version 1 expected)');
  const hexList = (field: string, bytes: number): Uint8Array[] => {
    const list = v[field];
    if (!Array.isArray(list)) throw fail(`"${field}" must be a list of hex keys`);
    return list.map((x, i) => {
      if (typeof x !== 'string' || !new RegExp(`^[0-9a-f]{${bytes * 2}}$`).test(x))
        throw fail(`"${field}"[${i}] is not ${bytes * 2} lowercase hex digits`);
      return hexToBytes(x);
    });
  };
  if (typeof v.name !== 'string') throw fail('"name" must be a string');
  if (typeof v.createdMs !== 'number' || !Number.isSafeInteger(v.createdMs) || v.createdMs < 0)
    throw fail('"createdMs" must be a non-negative integer');
  const sigs = v.signatures;
  if (!Array.isArray(sigs)) throw fail('"signatures" must be a list');
  const signatures = sigs.map((s: unknown, i) => {
    const o = s as { key?: unknown; signature?: unknown };
    if (typeof o?.key !== 'string' || !/^[0-9a-f]{64}$/.test(o.key))
      throw fail(`signatures[${i}].key is not 64 hex digits`);
    if (typeof o.signature !== 'string' || !/^[0-9a-f]{128}$/.test(o.signature))
      throw fail(`signatures[${i}].signature is not 128 hex digits`);
    return { key: hexToBytes(o.key), signature: hexToBytes(o.signature) };
  });
  let policy = '';
  let quota = '';
  try {
    if (v.policy !== null && v.policy !== undefined) policy = canonical.policy(v.policy);
  } catch (error) {
    throw fail(`"policy": ${(error as Error).message}`);
  }
  try {
    if (v.quota !== null && v.quota !== undefined) quota = canonical.quota(v.quota);
  } catch (error) {
    throw fail(`"quota": ${(error as Error).message}`);
  }
  const g: Genesis = {
    name: v.name,
    createdMs: v.createdMs,
    founders: sortKeys(hexList('founders', 32)),
    admins: sortKeys(hexList('admins', 32)),
    policy,
    quota,
    signatures,
  };
  let id: string;
  try {
    id = scopeIdHex(g);
  } catch (error) {
    throw fail((error as Error).message);
  }
  if (typeof v.scopeId === 'string' && v.scopeId !== id)
    throw fail(
      `"scopeId" ${v.scopeId.slice(0, 16)}… does not match the body's hash ${id.slice(0, 16)}… (the file was edited)`,
    );
  return g;
}
