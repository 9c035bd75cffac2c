// An anchor's peer id is its libp2p peer id, derived from its ed25519 public key (the same key that
// signs receipts). These helpers convert between the 32-byte seed kept in the data dir, the libp2p key
// objects and the peer id string, so that every module names anchors the same way.

import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys';
import type { Ed25519PrivateKey } from '@libp2p/interface';
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id';

export class PeerIdError extends Error {
  override readonly name = 'PeerIdError';
}

/** The libp2p private key for an anchor seed (32 bytes, as kept in anchor.key). */
export async function libp2pKeyFromSeed(seed: Uint8Array): Promise<Ed25519PrivateKey> {
  return generateKeyPairFromSeed('Ed25519', seed);
}

/** The peer id string (12D3KooW…) of a raw 32-byte ed25519 public key. */
export function peerIdOfPublicKey(publicKey: Uint8Array): string {
  return peerIdFromPublicKey(publicKeyFromRaw(publicKey)).toString();
}

/** The raw 32-byte ed25519 public key inside a peer id string; throws PeerIdError for anything else. */
export function publicKeyOfPeerId(peerId: string): Uint8Array {
  let parsed: ReturnType<typeof peerIdFromString>;
  try {
    parsed = peerIdFromString(peerId);
  } catch {
    throw new PeerIdError(`not a peer id: ${JSON.stringify(peerId.slice(0, 80))}`);
  }
  if (parsed.type !== 'Ed25519') {
    throw new PeerIdError(`peer id ${peerId} is not an ed25519 key (anchors use ed25519)`);
  }
  return parsed.publicKey.raw;
}
