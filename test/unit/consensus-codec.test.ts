import { join } from 'node:path';
import { loadSync } from '@grpc/proto-loader';
import { expect } from 'chai';
import fc from 'fast-check';
import type { Entry, Envelope, Message, MessageType } from '../../src/consensus/index.ts';
import { MESSAGE_TYPES, makeMessage } from '../../src/consensus/index.ts';
import {
  envelopeFromWire,
  envelopeToWire,
  PROTO_LOADER_OPTIONS,
  WireDecodeError,
  type WireEnvelope,
} from '../../src/transport/consensus-codec.ts';

// The exact serializer grpc-js will use for Consensus.Step, built from the checked-in proto.
const root = join(import.meta.dirname, '../../proto');
const definition = loadSync('aq/v1/consensus.proto', { ...PROTO_LOADER_OPTIONS, includeDirs: [root] });
const step = (
  definition['aq.v1.Consensus'] as Record<
    string,
    { requestSerialize: (v: unknown) => Buffer; requestDeserialize: (b: Buffer) => unknown }
  >
).Step!;

function overTheWire(envelopes: Envelope[], snapshotData?: Uint8Array): Envelope[] {
  const bytes = step.requestSerialize({ envelopes: envelopes.map(envelopeToWire) });
  const decoded = step.requestDeserialize(bytes) as { envelopes: WireEnvelope[] };
  return decoded.envelopes.map((w) => envelopeFromWire(w, snapshotData));
}

// Snapshot messages need their streamed data: covered by their own test below.
const TYPES = MESSAGE_TYPES.filter((t): t is Exclude<MessageType, 'snapshot'> => t !== 'snapshot');
const idx = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const id = fc.stringMatching(/^[a-zA-Z0-9]{1,20}$/);
const entry: fc.Arbitrary<Entry> = fc.record({
  term: idx,
  index: idx,
  kind: fc.constantFrom('normal' as const, 'conf-change' as const),
  data: fc.uint8Array({ maxLength: 64 }),
});
const message: fc.Arbitrary<Message> = fc
  .record({
    type: fc.constantFrom(...TYPES),
    from: id,
    to: id,
    term: idx,
    logTerm: idx,
    index: idx,
    entries: fc.array(entry, { maxLength: 5 }),
    commit: idx,
    reject: fc.boolean(),
    rejectHint: idx,
    context: fc.option(fc.uint8Array({ minLength: 1, maxLength: 16 }), { nil: null }),
  })
  .map((f) => makeMessage(f.type, f.from, f.to, f.term, f));

/** Compare with byte arrays normalized to plain Uint8Array (protobuf hands back Buffers). */
const plain = (m: Message) => ({
  ...m,
  entries: m.entries.map((e) => ({ ...e, data: [...e.data] })),
  context: m.context ? [...m.context] : null,
  snapshot: m.snapshot ? { ...m.snapshot, data: [...m.snapshot.data] } : null,
});

describe('consensus wire codec (proto/aq/v1/consensus.proto)', () => {
  it('every core message survives Consensus.Step serialization unchanged', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(id, message), { minLength: 1, maxLength: 4 }), (pairs) => {
        const envs = pairs.map(([scope, m]) => ({ scope, message: m }));
        const back = overTheWire(envs);
        expect(back.map((e) => e.scope)).to.deep.equal(envs.map((e) => e.scope));
        expect(back.map((e) => plain(e.message))).to.deep.equal(envs.map((e) => plain(e.message)));
      }),
      { numRuns: 200 },
    );
  });

  it('a snapshot message carries its metadata and takes its data from the stream', () => {
    const data = new Uint8Array([1, 2, 3]);
    const m = makeMessage('snapshot', 'a', 'b', 7, {
      snapshot: { meta: { index: 42, term: 6, conf: { voters: ['a', 'b', 'c'], learners: ['d'] } }, data },
    });
    const [back] = overTheWire([{ scope: 's', message: m }], data);
    expect(plain(back!.message)).to.deep.equal(plain(m));
    expect(() => overTheWire([{ scope: 's', message: m }])).to.throw(WireDecodeError, /streamed data/);
  });

  it('refuses an unknown message type or a missing scope with a one-line WireDecodeError', () => {
    const wire = envelopeToWire({ scope: 's', message: makeMessage('append', 'a', 'b', 1) });
    expect(() =>
      envelopeFromWire({ ...wire, message: { ...wire.message!, type: 'MESSAGE_TYPE_UNSPECIFIED' } }),
    ).to.throw(WireDecodeError, 'raft message: unknown type MESSAGE_TYPE_UNSPECIFIED');
    expect(() => envelopeFromWire({ ...wire, scope: '' })).to.throw(
      WireDecodeError,
      'envelope: missing scope',
    );
  });
});
