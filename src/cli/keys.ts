// Keys on the command line: a public key given as 64 hex digits, as a peer id (12D3KooW…, an anchor's
// name) or as a key file (aq keygen, an anchor's <data-dir>/anchor.key), and the signer of a key file.
// Every mistake is a usage error (exit 2) naming the flag and what was expected.

import { existsSync, statSync } from 'node:fs';
import { hexToBytes } from '@noble/hashes/utils.js';
import type { NodeSigner } from '../identity/signer.ts';
import { quote } from '../registry/names.ts';
import { usageError } from './errors.ts';
import { readKeyFile } from './governance-files.ts';
import { describe } from './parse.ts';

const HEX_KEY = /^[0-9a-fA-F]{64}$/;
// base58btc, as libp2p prints ed25519 peer ids (identity multihash: 12D3KooW…).
const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{40,60}$/;
const KEY_RULE = 'give a public key as 64 hex digits, a peer id (12D3KooW…) or a key file (aq keygen)';

/** The signer of a key file; a missing or malformed file is a usage error naming `what` (e.g. --key). */
export function signerOfKeyFile(path: string, what: string): NodeSigner {
  try {
    return readKeyFile(path);
  } catch (error) {
    throw usageError(`${what} ${quote(path)}`, (error as Error).message.replace(`${path}: `, ''));
  }
}

/**
 * The raw 32-byte ed25519 public key a KEY argument names: 64 hex digits, an existing key file, or a
 * peer id. Checked in that order (a file that happens to be called like a peer id is read as a file).
 */
export async function parsePublicKey(text: string, what: string): Promise<Uint8Array> {
  if (HEX_KEY.test(text)) return hexToBytes(text.toLowerCase());
  if (existsSync(text) && statSync(text).isFile()) return signerOfKeyFile(text, what).publicKey;
  if (PEER_ID.test(text)) {
    const { publicKeyOfPeerId } = await import('../identity/peer-id.ts');
    try {
      return publicKeyOfPeerId(text);
    } catch (error) {
      throw usageError(describe(what, text), `${(error as Error).message}: ${KEY_RULE}`);
    }
  }
  throw usageError(describe(what, text), `not a public key and no such file: ${KEY_RULE}`);
}

/** The peer id of a public key (how anchors are named), or null if it cannot be one. */
export async function peerIdOf(publicKey: Uint8Array): Promise<string | null> {
  const { peerIdOfPublicKey } = await import('../identity/peer-id.ts');
  try {
    return peerIdOfPublicKey(publicKey);
  } catch {
    return null;
  }
}

/** `12D3KooWAbCd…XyZ123`: a peer id short enough for a table column. */
export function shortPeerId(peerId: string): string {
  return peerId.length <= 20 ? peerId : `${peerId.slice(0, 12)}…${peerId.slice(-6)}`;
}

/** `1a2b3c4d5e6f7a8b…`: the first 16 hex digits of an id or key, for tables and messages. */
export function shortHex(hex: string, digits = 16): string {
  return hex.length <= digits ? hex : `${hex.slice(0, digits)}…`;
}
