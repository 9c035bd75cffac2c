import { expect } from 'chai';
import fc from 'fast-check';
import {
  applyConfChange,
  type ConfChange,
  ConfChangeDecodeError,
  type ConfState,
  decodeConfChange,
  encodeConfChange,
} from '../../src/consensus/index.ts';

const nodeId = fc.stringMatching(/^[a-z0-9]{1,12}$/);
const change: fc.Arbitrary<ConfChange> = fc.record({
  type: fc.constantFrom('add-learner', 'add-voter', 'remove' as const),
  node: nodeId,
});

describe('membership changes', () => {
  it('encode/decode round-trips every change', () => {
    fc.assert(
      fc.property(change, (cc) => {
        expect(decodeConfChange(encodeConfChange(cc))).to.deep.equal(cc);
      }),
    );
  });

  it('decoding arbitrary bytes either yields a change or throws ConfChangeDecodeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 16 }), (b) => {
        try {
          decodeConfChange(b);
        } catch (err) {
          expect(err).to.be.instanceOf(ConfChangeDecodeError);
        }
      }),
    );
  });

  it('any sequence of changes keeps voters and learners disjoint and moves the voter set by at most one', () => {
    fc.assert(
      fc.property(fc.array(change, { maxLength: 30 }), (changes) => {
        let conf: ConfState = { voters: ['a', 'b', 'c'], learners: [] };
        for (const cc of changes) {
          const next = applyConfChange(conf, cc);
          const overlap = next.voters.filter((v) => next.learners.includes(v));
          expect(overlap).to.deep.equal([]);
          const added = next.voters.filter((v) => !conf.voters.includes(v));
          const removed = conf.voters.filter((v) => !next.voters.includes(v));
          expect(added.length + removed.length).to.be.at.most(1);
          conf = next;
        }
      }),
    );
  });
});
