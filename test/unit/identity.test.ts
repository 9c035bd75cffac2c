import * as ed from '@noble/ed25519';
import { expect } from 'chai';
import fc from 'fast-check';
import { NobleVerifier, NodeSigner, NodeVerifier, newSeed } from '../../src/identity/signer.ts';

const node = new NodeVerifier();
const noble = new NobleVerifier();
const seed = fc.uint8Array({ minLength: 32, maxLength: 32 });
const bytes = fc.uint8Array({ maxLength: 300 });

describe('identity: ed25519 signer and verifiers', () => {
  it('node:crypto and @noble/ed25519 derive the same public key and the same signature', () => {
    fc.assert(
      fc.property(seed, bytes, (s, msg) => {
        const signer = new NodeSigner(s);
        expect([...signer.publicKey]).to.deep.equal([...ed.getPublicKey(s)]);
        expect([...signer.sign(msg)]).to.deep.equal([...ed.sign(msg, s)]);
      }),
      { numRuns: 50 },
    );
  });

  it('both verifiers accept a genuine signature and reject any altered message, signature or key', () => {
    fc.assert(
      fc.property(seed, bytes, fc.nat(), (s, msg, flip) => {
        const signer = new NodeSigner(s);
        const sig = signer.sign(msg);
        for (const v of [node, noble]) expect(v.verify(signer.publicKey, msg, sig)).to.equal(true);
        const badSig = sig.slice();
        badSig[flip % 64]! ^= 1 << (flip % 8);
        const badMsg = new Uint8Array([...msg, 0]);
        const other = new NodeSigner(newSeed()).publicKey;
        for (const v of [node, noble]) {
          expect(v.verify(signer.publicKey, msg, badSig)).to.equal(false);
          expect(v.verify(signer.publicKey, badMsg, sig)).to.equal(false);
          expect(v.verify(other, msg, sig)).to.equal(false);
        }
      }),
      { numRuns: 30 },
    );
  });

  it('malformed keys and signatures are a false verdict, never an exception', () => {
    for (const v of [node, noble]) {
      expect(v.verify(new Uint8Array(31), new Uint8Array(1), new Uint8Array(64))).to.equal(false);
      expect(v.verify(new Uint8Array(32).fill(255), new Uint8Array(1), new Uint8Array(64))).to.equal(false);
      expect(v.verify(new Uint8Array(32), new Uint8Array(1), new Uint8Array(10))).to.equal(false);
    }
    expect(() => new NodeSigner(new Uint8Array(31))).to.throw('ed25519 seed must be 32 bytes, got 31');
  });
});
