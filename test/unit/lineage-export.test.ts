// Lineage entries, signed tree heads, the export file and its offline verifier. A real log is built with a
// test authority (genesis payload = arbitrary bytes, scope id = SHA-256 of it; a fixed set of anchor keys),
// exported, and every tamper must be reported with the right failure code. Offline checks use the
// portable NobleVerifier; NodeVerifier must give identical reports.
import { createHash } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { NobleVerifier, NodeSigner, NodeVerifier, type Verifier } from '../../src/identity/signer.ts';
import {
  decodeEntry,
  encodeEntry,
  entrySignedBytes,
  LineageDecodeError,
  LineageEncodeError,
  type LineageEntry,
  signEntry,
  verifyEntrySignature,
} from '../../src/lineage/entry.ts';
import {
  decodeBase64,
  encodeBase64,
  exportLines,
  type FailureCode,
  type LineageAuthority,
  type VerifyOptions,
  type VerifyReport,
  verifyExport,
  verifyInclusionAgainstHead,
  writeExport,
} from '../../src/lineage/export.ts';
import { LineageLog, MemoryLineageKv } from '../../src/lineage/log.ts';
import {
  decodeTreeHead,
  encodeTreeHead,
  signTreeHead,
  type TreeHead,
  TreeHeadJsonError,
  treeHeadBytes,
  treeHeadFromJson,
  treeHeadToJson,
  verifyTreeHead,
} from '../../src/lineage/tree-head.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sha256 = (b: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(b).digest());
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

const noble = new NobleVerifier();
const nodeVerifier = new NodeVerifier();
const anchors = [1, 2, 3].map((i) => new NodeSigner(new Uint8Array(32).fill(i)));
const leader = anchors[0]!;
const outsider = new NodeSigner(new Uint8Array(32).fill(99));

/** Test governance: scope id = sha256(genesis payload); the three anchors may sign; records what it saw. */
class TestAuthority implements LineageAuthority {
  readonly observed: number[] = [];
  readonly #keys: readonly Uint8Array[];
  readonly #reject: ((e: LineageEntry) => string | null) | undefined;
  constructor(
    keys: readonly Uint8Array[] = anchors.map((a) => a.publicKey),
    reject?: (e: LineageEntry) => string | null,
  ) {
    this.#keys = keys;
    this.#reject = reject;
  }
  genesis(payload: Uint8Array): { scopeId: Uint8Array } | { error: string } {
    if (payload.length === 0) return { error: 'empty genesis record' };
    return { scopeId: sha256(payload) };
  }
  mayAnchorSign(key: Uint8Array): boolean {
    return this.#keys.some((k) => hex(k) === hex(key));
  }
  observe(entry: LineageEntry): string | null {
    this.observed.push(entry.index);
    return this.#reject ? this.#reject(entry) : null;
  }
}

interface Scope {
  scopeId: Uint8Array;
  log: LineageLog;
  entries: Uint8Array[];
  head: (size: number, signer?: NodeSigner) => TreeHead;
  heads: TreeHead[];
  text: string;
}

/**
 * A scope of n entries: the genesis then commands `cmd <i>` (or `fork <i>` from `forkAt` on), each
 * admitted by a rotating anchor, with signed tree heads at `headsAt`.
 */
const makeScope = (
  n: number,
  headsAt: readonly number[],
  opts: { genesis?: string; forkAt?: number; scopeId?: Uint8Array } = {},
): Scope => {
  const genesis = utf8(opts.genesis ?? 'genesis of eu-central');
  const scopeId = opts.scopeId ?? sha256(genesis);
  const log = new LineageLog(new MemoryLineageKv());
  const entries: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const kind = i === 0 ? 'genesis' : 'command';
    const payload =
      i === 0 ? genesis : utf8(`${opts.forkAt !== undefined && i >= opts.forkAt ? 'fork' : 'cmd'} ${i}`);
    const sig = signEntry(scopeId, kind, payload, anchors[i % anchors.length]!);
    const bytes = encodeEntry({ scopeId, index: i, logIndex: 10 + 3 * i, kind, payload, ...sig });
    log.append(bytes);
    entries.push(bytes);
  }
  const head = (size: number, signer: NodeSigner = leader): TreeHead =>
    signTreeHead({ scopeId, size, root: log.root(size), timestampMs: 1_760_000_000_000 + size }, signer);
  const heads = headsAt.map((s) => head(s));
  return { scopeId, log, entries, head, heads, text: writeExport(scopeId, entries, heads) };
};

const lines = (text: string): string[] => text.split('\n').slice(0, -1);
const join = (ls: readonly string[]): string => `${ls.map((l) => `${l}\n`).join('')}`;
/** The position in `ls` of the line holding entry `index`. */
const entryLine = (ls: readonly string[], index: number): number => {
  const at = ls.findIndex((l) => {
    const v = JSON.parse(l) as { entry?: string };
    return v.entry !== undefined && decodeEntry(decodeBase64(v.entry)!).index === index;
  });
  if (at < 0) throw new Error(`no entry ${index}`);
  return at;
};
const headLine = (ls: readonly string[], size: number): number =>
  ls.findIndex((l) => (JSON.parse(l) as { treeHead?: { size: number } }).treeHead?.size === size);
const entryJson = (bytes: Uint8Array): string => JSON.stringify({ entry: encodeBase64(bytes) });
const headJson = (h: TreeHead): string => JSON.stringify({ treeHead: treeHeadToJson(h) });
/** Flips one bit of the entry on line `at`, at byte `offset` (negative: from the end). */
const flipEntryByte = (ls: string[], at: number, offset: number, mask = 1): string[] => {
  const bytes = decodeBase64((JSON.parse(ls[at]!) as { entry: string }).entry)!;
  bytes[offset < 0 ? bytes.length + offset : offset]! ^= mask;
  const out = ls.slice();
  out[at] = entryJson(bytes);
  return out;
};

const verify = (
  text: string,
  options: Partial<VerifyOptions> = {},
  verifier: Verifier = noble,
): VerifyReport => {
  const report = verifyExport(text, { authority: new TestAuthority(), verifier, ...options });
  // NodeVerifier (OpenSSL) must reach exactly the same verdict as the portable verifier.
  if (verifier === noble) {
    const again = verifyExport(text, {
      authority: new TestAuthority(),
      ...options,
      verifier: nodeVerifier,
    });
    expect(again).to.deep.equal(report);
  }
  return report;
};
const codes = (r: VerifyReport): FailureCode[] => [...new Set(r.failures.map((f) => f.code))].sort();

// Entry field offsets for small indices (1-byte varints) and short payloads: magic 4, version 1, scope 32.
const INDEX_AT = 37;
const LOG_INDEX_AT = 38;
const PAYLOAD_AT = 41;

describe('lineage/entry: the entry format', () => {
  const scopeId = sha256(utf8('s'));
  const base = (): LineageEntry => {
    const payload = utf8('register eu-central/payments/checkout');
    return {
      scopeId,
      index: 300,
      logIndex: 7,
      kind: 'command',
      payload,
      ...signEntry(scopeId, 'command', payload, leader),
    };
  };

  it('encodes exactly the documented layout', () => {
    const e = base();
    const b = encodeEntry(e);
    const want = Buffer.concat([
      Buffer.from('AQLE'),
      Buffer.from([1]),
      scopeId,
      Buffer.from([0xac, 0x02]), // 300
      Buffer.from([7]),
      Buffer.from([2]),
      Buffer.from([e.payload.length]),
      e.payload,
      e.signer,
      e.signature,
    ]);
    expect(hex(b)).to.equal(want.toString('hex'));
    const signed = Buffer.concat([
      Buffer.from('AQLS'),
      Buffer.from([1]),
      scopeId,
      Buffer.from([2, e.payload.length]),
      e.payload,
    ]);
    expect(hex(entrySignedBytes(scopeId, 'command', e.payload))).to.equal(signed.toString('hex'));
  });

  it('round-trips any entry; the signature covers scope, kind and payload but not the position', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.nat({ max: Number.MAX_SAFE_INTEGER }),
        fc.nat({ max: Number.MAX_SAFE_INTEGER }),
        fc.boolean(),
        fc.uint8Array({ maxLength: 300 }),
        (sid, index, logIndex, genesis, payload) => {
          const kind = genesis ? 'genesis' : 'command';
          const e = {
            scopeId: sid,
            index,
            logIndex,
            kind,
            payload,
            ...signEntry(sid, kind, payload, leader),
          } as const;
          const b = encodeEntry(e);
          const d = decodeEntry(b);
          expect(hex(encodeEntry(d))).to.equal(hex(b));
          expect(d.index).to.equal(index);
          expect(d.logIndex).to.equal(logIndex);
          expect(d.kind).to.equal(kind);
          expect(verifyEntrySignature(d, noble)).to.equal(true);
          expect(verifyEntrySignature({ ...d, index: index + 1, logIndex: 0 }, noble)).to.equal(true);
          expect(verifyEntrySignature({ ...d, kind: genesis ? 'command' : 'genesis' }, noble)).to.equal(
            false,
          );
          expect(verifyEntrySignature({ ...d, scopeId: sha256(sid) }, noble)).to.equal(false);
          expect(verifyEntrySignature({ ...d, payload: Uint8Array.of(...payload, 0) }, noble)).to.equal(
            false,
          );
        },
      ),
      { numRuns: 40 },
    );
  });

  it('decodeEntry rejects every non-canonical or malformed input with LineageDecodeError and its offset', () => {
    const b = encodeEntry(base());
    const cases: [string, Uint8Array, RegExp, number][] = [
      ['bad magic', Uint8Array.of(0x42, ...b.subarray(1)), /does not start with "AQLE"/, 0],
      [
        'version 2',
        Uint8Array.of(...b.subarray(0, 4), 2, ...b.subarray(5)),
        /unsupported format version 2/,
        4,
      ],
      ['kind 4', Uint8Array.of(...b.subarray(0, 40), 4, ...b.subarray(41)), /unknown entry kind 4/, 40],
      [
        'non-minimal log index',
        Uint8Array.of(...b.subarray(0, 39), 0x87, 0x00, ...b.subarray(40)),
        /log index is not minimally encoded/,
        39,
      ],
      ['trailing byte', Uint8Array.of(...b, 0), /1 unexpected trailing bytes/, b.length],
    ];
    for (const [name, bytes, msg, offset] of cases) {
      try {
        decodeEntry(bytes);
        expect.fail(name);
      } catch (e) {
        expect(e, name).to.be.instanceOf(LineageDecodeError);
        expect((e as LineageDecodeError).message, name).to.match(msg);
        expect((e as LineageDecodeError).offset, name).to.equal(offset);
      }
    }
    for (let len = 0; len < b.length; len++) {
      expect(() => decodeEntry(b.subarray(0, len)), `truncated to ${len}`).to.throw(
        LineageDecodeError,
        /truncated|start/,
      );
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (junk) => {
        try {
          const d = decodeEntry(junk);
          expect(hex(encodeEntry(d))).to.equal(hex(junk)); // accepted only if canonical
        } catch (e) {
          expect(e).to.be.instanceOf(LineageDecodeError);
        }
      }),
    );
  });

  it('encodeEntry refuses unrepresentable values', () => {
    const e = base();
    expect(() => encodeEntry({ ...e, index: -1 })).to.throw(LineageEncodeError, /index -1/);
    expect(() => encodeEntry({ ...e, logIndex: 1.5 })).to.throw(LineageEncodeError, /log index/);
    expect(() => encodeEntry({ ...e, scopeId: new Uint8Array(31) })).to.throw(
      LineageEncodeError,
      /scope id must be 32/,
    );
    expect(() => encodeEntry({ ...e, signature: new Uint8Array(63) })).to.throw(
      LineageEncodeError,
      /signature/,
    );
    expect(() => encodeEntry({ ...e, kind: 'other' as 'command' })).to.throw(LineageEncodeError, /kind/);
  });
});

describe('lineage/tree-head: signed tree heads', () => {
  const scopeId = sha256(utf8('s'));
  const head = signTreeHead(
    { scopeId, size: 1000, root: sha256(utf8('r')), timestampMs: 1_760_000_000_123 },
    leader,
  );

  it('signed bytes, binary and JSON forms round-trip; the signature covers every field', () => {
    const signed = treeHeadBytes(head);
    expect(hex(signed.subarray(0, 5))).to.equal(hex(Uint8Array.of(0x41, 0x51, 0x54, 0x48, 1)));
    expect(verifyTreeHead(head, noble)).to.equal(true);
    expect(verifyTreeHead(head, nodeVerifier)).to.equal(true);
    const b = encodeTreeHead(head);
    expect(hex(b)).to.equal(hex(Uint8Array.of(...signed, ...head.signer, ...head.signature)));
    expect(hex(encodeTreeHead(decodeTreeHead(b)))).to.equal(hex(b));
    const json = JSON.parse(JSON.stringify(treeHeadToJson(head)));
    expect(json).to.deep.equal({
      scopeId: hex(scopeId),
      size: 1000,
      root: hex(head.root),
      timestampMs: 1_760_000_000_123,
      signer: hex(leader.publicKey),
      signature: hex(head.signature),
    });
    expect(hex(encodeTreeHead(treeHeadFromJson(json)))).to.equal(hex(b));
    for (const altered of [
      { ...head, size: 999 },
      { ...head, timestampMs: head.timestampMs + 1 },
      { ...head, root: sha256(head.root) },
      { ...head, scopeId: sha256(scopeId) },
      { ...head, signer: anchors[1]!.publicKey },
    ]) {
      expect(verifyTreeHead(altered, noble)).to.equal(false);
    }
  });

  it('decodeTreeHead is canonical; treeHeadFromJson is strict', () => {
    const b = encodeTreeHead(head);
    expect(() => decodeTreeHead(Uint8Array.of(...b, 1))).to.throw(LineageDecodeError, /trailing/);
    expect(() => decodeTreeHead(b.subarray(0, b.length - 1))).to.throw(LineageDecodeError, /truncated/);
    expect(() =>
      decodeTreeHead(
        encodeEntry({
          scopeId,
          index: 0,
          logIndex: 0,
          kind: 'genesis',
          payload: b,
          signer: head.signer,
          signature: head.signature,
        }),
      ),
    ).to.throw(LineageDecodeError, /"AQTH"/);
    const json = treeHeadToJson(head);
    const bad: [unknown, RegExp][] = [
      [null, /JSON object/],
      [{ ...json, extra: 1 }, /unknown tree head field "extra"/],
      [{ ...json, size: -1 }, /"size"/],
      [{ ...json, size: '5' }, /"size"/],
      [{ ...json, timestampMs: 1.5 }, /"timestampMs"/],
      [{ ...json, root: json.root.toUpperCase() }, /"root" must be 64 lowercase hex/],
      [{ ...json, signature: json.signature.slice(2) }, /"signature"/],
      [{ ...json, scopeId: undefined }, /"scopeId"/],
    ];
    for (const [v, msg] of bad) expect(() => treeHeadFromJson(v)).to.throw(TreeHeadJsonError, msg);
  });
});

describe('lineage/export: base64', () => {
  it('matches Buffer and rejects non-canonical text', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        const s = encodeBase64(b);
        expect(s).to.equal(Buffer.from(b).toString('base64'));
        expect(hex(decodeBase64(s)!)).to.equal(hex(b));
      }),
    );
    for (const bad of [
      'A',
      'AB',
      'ABC',
      'AB=C',
      'A===',
      'AB==CDEF',
      'QR==',
      'QUJ=',
      'QU J',
      'QUJD\n',
      'QUI-',
      'é===',
    ]) {
      expect(decodeBase64(bad), bad).to.equal(undefined);
    }
    expect(hex(decodeBase64('QQ==')!)).to.equal('41');
  });
});

describe('lineage/export: the export file and the offline verifier', () => {
  const N = 12;
  const A = makeScope(N, [4, 8, 12]);
  const ls = lines(A.text);

  it('writes the documented JSON Lines: header, entries in order, each head after its last entry', () => {
    expect(JSON.parse(ls[0]!)).to.deep.equal({ format: 'aq-lineage', version: 1, scopeId: hex(A.scopeId) });
    expect(ls).to.have.length(1 + N + 3);
    const kinds = ls.slice(1).map((l) => Object.keys(JSON.parse(l))[0]);
    expect(kinds.join(' ')).to.equal(
      'entry entry entry entry treeHead entry entry entry entry treeHead entry entry entry entry treeHead',
    );
    expect(entryLine(ls, 0)).to.equal(1);
    expect(A.text.endsWith('}\n')).to.equal(true);
    expect([...exportLines(A.scopeId, A.entries, A.heads)]).to.deep.equal(ls);
    expect(ls[entryLine(ls, 3)]).to.equal(`{"entry":"${Buffer.from(A.entries[3]!).toString('base64')}"}`);
    const other = makeScope(3, [], { genesis: 'other' });
    expect(() => writeExport(A.scopeId, other.entries, [])).to.throw(RangeError, /entry 0 belongs to scope/);
    expect(() => writeExport(A.scopeId, A.entries.slice(1), [])).to.throw(
      RangeError,
      /entry 0 says it is entry 1/,
    );
    expect(() => writeExport(A.scopeId, A.entries.slice(0, 5), A.heads)).to.throw(
      RangeError,
      /size 8 but only 5/,
    );
    expect(() => writeExport(A.scopeId, A.entries, other.heads.concat(other.head(1)))).to.throw(
      RangeError,
      /scope/,
    );
  });

  it('passes the untouched file, with both verifiers, seeing the entries in order', () => {
    const authority = new TestAuthority();
    const r = verifyExport(A.text, {
      authority,
      verifier: noble,
      scopeId: A.scopeId,
      known: A.heads.slice(0, 2),
    });
    expect(r.failures).to.deep.equal([]);
    expect(r.ok).to.equal(true);
    expect(r.entries).to.equal(N);
    expect(r.treeHeads).to.equal(3);
    expect(hex(encodeTreeHead(r.latest!))).to.equal(hex(encodeTreeHead(A.heads[2]!)));
    expect(authority.observed).to.deep.equal([...Array(N).keys()]);
    expect(verify(A.text).ok).to.equal(true);
    // also as an iterable of lines, and with the file's own heads as known heads
    expect(verifyExport(ls, { authority: new TestAuthority(), verifier: noble, known: A.heads }).ok).to.equal(
      true,
    );
    // a file with no heads verifies its entries, but nothing attests the log as a whole
    const bare = verify(writeExport(A.scopeId, A.entries, []));
    expect(bare.ok).to.equal(true);
    expect(bare.latest).to.equal(undefined);
  });

  describe('flipping a byte of an entry', () => {
    const at = entryLine(ls, 5);

    for (const [field, offset] of [
      ['payload', PAYLOAD_AT + 1],
      ['signature', -1],
      ['signer', -65],
    ] as const) {
      it(`${field}: bad-signature at entry 5, and the heads covering it no longer match`, () => {
        const r = verify(join(flipEntryByte(ls, at, offset)));
        expect(codes(r)).to.deep.equal(['bad-signature', 'tree-head-mismatch']);
        const bad = r.failures.find((f) => f.code === 'bad-signature')!;
        expect(bad).to.include({ index: 5, line: at + 1 });
        expect(bad.message).to.match(
          new RegExp(`^line ${at + 1}: entry 5: the signature by [0-9a-f]{16}… does not verify`),
        );
        const mism = r.failures.filter((f) => f.code === 'tree-head-mismatch');
        expect(mism.map((f) => f.line)).to.deep.equal([headLine(ls, 8) + 1, headLine(ls, 12) + 1]);
        expect(mism[0]!.message).to.match(
          /signed tree head of size 8 has root [0-9a-f]{64}, but entries 0\.\.7 of the file hash to/,
        );
      });
    }

    it('kind (command -> genesis): a second genesis, and the signature no longer verifies', () => {
      const r = verify(join(flipEntryByte(ls, at, PAYLOAD_AT - 2, 3)));
      expect(codes(r)).to.deep.equal(['bad-signature', 'malformed', 'tree-head-mismatch']);
      expect(r.failures[0]!.message).to.equal(
        `line ${at + 1}: entry 5 is a second genesis (only entry 0 may be)`,
      );
    });

    it("scope id: another scope's entry, skipped, leaving a gap", () => {
      expect(codes(verify(join(flipEntryByte(ls, at, 20))))).to.deep.equal(['gap', 'wrong-scope']);
    });

    it('index field (not signed): a second entry claims the index, and the real one is missing', () => {
      const r = verify(join(flipEntryByte(ls, at, INDEX_AT))); // 5 -> 4
      expect(codes(r)).to.deep.equal(['duplicate', 'gap']);
      expect(r.failures.find((f) => f.code === 'duplicate')!.message).to.equal(
        `line ${at + 1}: a second, different entry claims index 4 (the first is at line ${at})`,
      );
      expect(r.failures.find((f) => f.code === 'gap')).to.include({ index: 5 });
      const up = verify(join(flipEntryByte(ls, entryLine(ls, 6), INDEX_AT))); // 6 -> 7
      expect(codes(up)).to.deep.equal(['duplicate', 'gap']);
    });

    it('index field, continuation bit: undecodable (malformed), leaving a gap', () => {
      const r = verify(join(flipEntryByte(ls, at, INDEX_AT, 0x80)));
      expect(codes(r)).to.deep.equal(['gap', 'malformed']);
      expect(r.failures.find((f) => f.code === 'malformed')!.message).to.match(
        /^line 8: cannot decode lineage entry at byte \d+/,
      );
    });

    it('log index field (not signed): only the signed tree heads catch it', () => {
      const r = verify(join(flipEntryByte(ls, at, LOG_INDEX_AT)));
      expect(codes(r)).to.deep.equal(['tree-head-mismatch']);
      expect(r.failures).to.have.length(2);
    });
  });

  it('a dropped entry is a gap', () => {
    const at = entryLine(ls, 5);
    const r = verify(join(ls.toSpliced(at, 1)));
    expect(codes(r)).to.deep.equal(['gap']);
    expect(r.failures).to.deep.equal([
      {
        code: 'gap',
        index: 5,
        line: at + 1,
        message: `entry 5 is missing (entry 6 at line ${at + 1} follows entry 4)`,
      },
    ]);
    const genesis = verify(join(ls.toSpliced(1, 1)));
    expect(codes(genesis)).to.deep.equal(['gap']);
    expect(genesis.failures[0]!.message).to.match(/^entry 0 \(the genesis\) is missing/);
    const several = verify(join(ls.toSpliced(entryLine(ls, 2), 2)));
    expect(several.failures[0]!.message).to.match(/^entries 2\.\.3 are missing/);
    // a hostile index near 2^53 is a gap, found without counting up to it
    const e = decodeEntry(A.entries[11]!);
    const far = encodeEntry({ ...e, index: Number.MAX_SAFE_INTEGER });
    const r2 = verify(join(ls.concat(entryJson(far))));
    expect(r2.failures.map((f) => f.message)).to.deep.equal([
      `entries 12..9007199254740990 are missing (entry 9007199254740991 at line ${ls.length + 1} follows entry 11)`,
    ]);
  });

  it('two entries swapped are out-of-order (the log itself, placed by index, still matches its heads)', () => {
    const a = entryLine(ls, 5);
    const b = entryLine(ls, 6);
    const swapped = ls.slice();
    [swapped[a], swapped[b]] = [ls[b]!, ls[a]!];
    const authority = new TestAuthority();
    const r = verifyExport(join(swapped), { authority, verifier: noble });
    expect(codes(r)).to.deep.equal(['out-of-order']);
    expect(r.failures[0]).to.deep.equal({
      code: 'out-of-order',
      index: 5,
      line: b + 1,
      message: `line ${b + 1}: entry 5 comes after entry 6 (line ${a + 1})`,
    });
    expect(authority.observed).to.deep.equal([...Array(N).keys()]);
    expect(r.latest?.size).to.equal(12);
    // moving an entry far back
    const moved = ls.toSpliced(entryLine(ls, 2), 1);
    moved.push(ls[entryLine(ls, 2)]!);
    expect(codes(verify(join(moved)))).to.deep.equal(['out-of-order']);
  });

  it('a repeated entry is a duplicate', () => {
    const at = entryLine(ls, 5);
    const r = verify(join(ls.toSpliced(at + 1, 0, ls[at]!)));
    expect(codes(r)).to.deep.equal(['duplicate']);
    expect(r.failures[0]!.message).to.equal(`line ${at + 2}: entry 5 repeats line ${at + 1}`);
    expect(r.entries).to.equal(N);
  });

  describe('a forked log (same prefix, different suffix, validly signed heads by an authorized key)', () => {
    // B shares entries 0..6 with A and diverges from 7 on; the leader signed heads of both histories.
    const B = makeScope(14, [4, 8, 14], { forkAt: 7 });

    it('verifies on its own (a fork is only visible against heads of the other branch)', () => {
      expect(verify(B.text).ok).to.equal(true);
    });

    it('against A heads seen before: equivocation at size 8, and A head 12 is not a prefix of B', () => {
      const r = verify(B.text, { known: A.heads });
      expect(codes(r)).to.deep.equal(['equivocation', 'inconsistent']);
      const eq = r.failures.find((f) => f.code === 'equivocation')!;
      expect(eq.line).to.equal(headLine(lines(B.text), 8) + 1);
      expect(eq.message).to.match(
        /tree head of size 8 has root [0-9a-f]{64} \(signed by [0-9a-f]{16}…\), but known tree head #1 has root/,
      );
      const inc = r.failures.find((f) => f.code === 'inconsistent')!;
      expect(inc.message).to.match(
        /^known tree head #2 \(size 12, root [0-9a-f]{64}\) is not a prefix of this file's log/,
      );
    });

    it('a known head inside the common prefix is consistent', () => {
      expect(verify(B.text, { known: [A.heads[0]!] }).ok).to.equal(true);
      expect(codes(verify(B.text, { known: [A.heads[2]!] }))).to.deep.equal(['inconsistent']);
    });

    it('heads of both branches in one file: the stale head mismatches and the two heads are inconsistent', () => {
      const mixed = lines(B.text).concat(headJson(A.heads[2]!));
      const r = verify(join(mixed));
      expect(codes(r)).to.deep.equal(['inconsistent', 'tree-head-mismatch']);
      expect(r.failures.find((f) => f.code === 'inconsistent')!.message).to.match(
        /signed tree heads of size 12 \(line 19\) and size 14 \(line \d+\) describe different histories/,
      );
      const same = lines(B.text).concat(headJson(A.heads[1]!));
      expect(codes(verify(join(same)))).to.deep.equal(['equivocation', 'tree-head-mismatch']);
    });
  });

  it('rolled back: an older export after newer heads were seen', () => {
    const older = writeExport(A.scopeId, A.entries.slice(0, 8), A.heads.slice(0, 2));
    expect(verify(older).ok).to.equal(true);
    const r = verify(older, { known: A.heads });
    expect(codes(r)).to.deep.equal(['rollback']);
    expect(r.failures[0]!.message).to.match(
      /^the file's newest valid tree head \(line 11\) has size 8, older than the tree head of size 12 seen before \(known tree head #2\)/,
    );
    // the same as cutting the file right after a head line: a valid but older export
    const cut = join(ls.slice(0, headLine(ls, 8) + 1));
    expect(cut).to.equal(older);
    expect(codes(verify(cut, { known: [A.heads[2]!] }))).to.deep.equal(['rollback']);
  });

  it('truncated: entries removed from the end while their signed head stays', () => {
    const r = verify(join(ls.filter((_, i) => i < entryLine(ls, 9) || i === headLine(ls, 12))));
    expect(codes(r)).to.deep.equal(['truncated']);
    expect(r.failures[0]!.message).to.match(
      /^line 13: signed tree head claims 12 entries but the file has only 9/,
    );
    // a file cut inside a line: the partial line is malformed
    const partial = A.text.slice(0, A.text.length - 40);
    expect(codes(verify(partial))).to.include('malformed');
  });

  it('an entry of another scope is wrong-scope (inserted: skipped; substituted: a gap too)', () => {
    const C = makeScope(8, [], { genesis: 'genesis of us-east' });
    const at = entryLine(ls, 5);
    const inserted = verify(join(ls.toSpliced(at + 1, 0, entryJson(C.entries[6]!))));
    expect(codes(inserted)).to.deep.equal(['wrong-scope']);
    expect(inserted.failures[0]!.message).to.equal(
      `line ${at + 2}: entry 6 belongs to scope ${hex(C.scopeId)}, not ${hex(A.scopeId)}`,
    );
    const replaced = ls.slice();
    replaced[at] = entryJson(C.entries[5]!);
    expect(codes(verify(join(replaced)))).to.deep.equal(['gap', 'wrong-scope']);
    const foreignHead = verify(join(ls.concat(headJson(C.head(8)))));
    expect(codes(foreignHead)).to.deep.equal(['wrong-scope']);
  });

  it('scope id checks: --scope-id mismatch, and a genesis that does not hash to the scope id', () => {
    const r = verify(A.text, { scopeId: sha256(utf8('another')) });
    expect(codes(r)).to.deep.equal(['wrong-scope']);
    expect(r.failures[0]).to.include({ line: 1 });
    const lying = makeScope(5, [5], { scopeId: sha256(utf8('not the genesis')) });
    const g = verify(lying.text);
    expect(codes(g)).to.deep.equal(['wrong-scope']);
    expect(g.failures[0]).to.include({ index: 0, line: 2 });
    expect(g.failures[0]!.message).to.match(
      /the genesis certifies scope [0-9a-f]{64}, but the file is the lineage of scope/,
    );
  });

  it('signers the authority does not allow: entries are bad-signature, heads bad-tree-head-signature', () => {
    const byOutsider = verify(join(ls.concat(headJson(A.head(12, outsider)))));
    expect(codes(byOutsider)).to.deep.equal(['bad-tree-head-signature']);
    expect(byOutsider.failures[0]!.message).to.match(
      /tree head \(size 12\) is signed by [0-9a-f]{16}…, which may not sign tree heads/,
    );
    const forgedHead = { ...A.heads[2]!, timestampMs: A.heads[2]!.timestampMs + 1 };
    const forged = verify(join(ls.concat(headJson(forgedHead))));
    expect(codes(forged)).to.deep.equal(['bad-tree-head-signature']);
    expect(forged.failures[0]!.message).to.match(/signature does not verify/);
    // an entry admitted by a key that may not admit (validly signed by that key)
    const e = decodeEntry(A.entries[5]!);
    const rogue = encodeEntry({ ...e, ...signEntry(e.scopeId, e.kind, e.payload, outsider) });
    const replaced = ls.slice();
    replaced[entryLine(ls, 5)] = entryJson(rogue);
    const r = verify(join(replaced));
    expect(codes(r)).to.deep.equal(['bad-signature', 'tree-head-mismatch']);
    expect(r.failures[0]!.message).to.match(
      /entry 5 is signed by [0-9a-f]{16}…, which may not admit entries/,
    );
    // the authority decides per key: with the outsider allowed, its head is fine
    const allowed = new TestAuthority([...anchors.map((a) => a.publicKey), outsider.publicKey]);
    expect(
      verifyExport(join(ls.concat(headJson(A.head(12, outsider)))), { authority: allowed, verifier: noble })
        .ok,
    ).to.equal(true);
  });

  it('equivocation inside one file: two validly signed heads of one size with different roots', () => {
    const B = makeScope(14, [], { forkAt: 7 });
    const r = verify(join(ls.concat(headJson(B.head(8)))));
    expect(codes(r)).to.deep.equal(['equivocation', 'tree-head-mismatch']);
  });

  it('the authority rejecting an entry or the genesis record is reported as rejected', () => {
    const r = verifyExport(A.text, {
      authority: new TestAuthority(undefined, (e) => (e.index === 3 ? 'quota exceeded' : null)),
      verifier: noble,
    });
    expect(r.failures).to.deep.equal([
      {
        code: 'rejected',
        index: 3,
        line: 5,
        message: "line 5: entry 3 is rejected by the scope's rules: quota exceeded",
      },
    ]);
    const empty = makeScope(3, [], { genesis: '' });
    expect(codes(verify(empty.text))).to.deep.equal(['rejected']);
  });

  it('malformed input of every kind is reported, and verification goes on', () => {
    const mal = (text: string): VerifyReport => {
      const r = verify(text);
      expect(codes(r), text.slice(0, 80)).to.include('malformed');
      return r;
    };
    expect(mal('').failures[0]!.message).to.equal('the file is empty (expected an aq-lineage header line)');
    expect(mal(join(['{"format":"aq-lineage","version":2,"scopeId":"00"}'])).failures[0]!.message).to.match(
      /unsupported aq-lineage version 2/,
    );
    expect(mal(join(['{"format":"other"}'])).failures).to.have.length(1);
    // missing header: reported, and the entries still verified
    const noHeader = mal(join(ls.slice(1)));
    expect(noHeader.failures.map((f) => f.code)).to.deep.equal(['malformed']);
    expect(noHeader.entries).to.equal(N);
    const withExtra = ls.slice();
    withExtra[0] = ls[0]!.replace('}', ',"x":1}');
    mal(join(withExtra));
    const at = entryLine(ls, 5);
    const cases: [string, string][] = [
      ['not JSON', '{"entry":'],
      ['not an object', '[1,2]'],
      ['unknown key', '{"entries":"QQ=="}'],
      ['two keys', `{"entry":"QQ==","treeHead":{}}`],
      ['entry not a string', '{"entry":5}'],
      ['bad base64', '{"entry":"QQ="}'],
      ['undecodable entry', '{"entry":"QQ=="}'],
      ['bad tree head', '{"treeHead":{"size":1}}'],
      ['empty line', ''],
    ];
    for (const [name, line] of cases) {
      const replaced = ls.slice();
      replaced[at] = line;
      const r = verify(join(replaced));
      expect(codes(r), name).to.deep.equal(['gap', 'malformed']);
      expect(r.failures.find((f) => f.code === 'malformed')!.line, name).to.equal(at + 1);
    }
    const genesisNotFirst = makeScope(3, []);
    const e0 = decodeEntry(genesisNotFirst.entries[0]!);
    const cmd0 = encodeEntry({
      ...e0,
      kind: 'command',
      ...signEntry(e0.scopeId, 'command', e0.payload, leader),
    });
    expect(
      verify(writeExport(e0.scopeId, [cmd0, ...genesisNotFirst.entries.slice(1)], [])).failures[0]!.message,
    ).to.match(/entry 0 is a command, not the genesis/);
    expect(codes(verify(join([ls[0]!])))).to.deep.equal(['malformed']);
  });

  it('verifyInclusionAgainstHead checks one receipt-style inclusion offline', () => {
    const keys = anchors.map((a) => a.publicKey);
    const head = A.heads[2]!;
    for (let i = 0; i < N; i++) {
      const r = verifyInclusionAgainstHead(A.entries[i]!, i, A.log.inclusionProof(i, 12), head, noble, keys);
      expect(r.ok, `entry ${i}`).to.equal(true);
    }
    const proof = A.log.inclusionProof(5, 12);
    const code = (r: ReturnType<typeof verifyInclusionAgainstHead>): string => (r.ok ? 'ok' : r.code);
    expect(code(verifyInclusionAgainstHead(A.entries[5]!, 6, proof, head, noble, keys))).to.equal(
      'malformed',
    );
    expect(code(verifyInclusionAgainstHead(A.entries[5]!, 5, proof.slice(1), head, noble, keys))).to.equal(
      'tree-head-mismatch',
    );
    expect(code(verifyInclusionAgainstHead(A.entries[5]!, 5, proof, A.heads[1]!, noble, keys))).to.equal(
      'tree-head-mismatch',
    );
    expect(code(verifyInclusionAgainstHead(A.entries[5]!, 5, proof, head, noble, keys.slice(1)))).to.equal(
      'bad-tree-head-signature',
    );
    expect(
      code(verifyInclusionAgainstHead(A.entries[5]!, 5, proof, head, noble, [leader.publicKey])),
    ).to.equal('bad-signature');
    const tampered = A.entries[5]!.slice();
    tampered[PAYLOAD_AT]! ^= 1;
    expect(code(verifyInclusionAgainstHead(tampered, 5, proof, head, noble, keys))).to.equal('bad-signature');
    expect(code(verifyInclusionAgainstHead(tampered.subarray(1), 5, proof, head, noble, keys))).to.equal(
      'malformed',
    );
    const C = makeScope(6, [6], { genesis: 'c' });
    expect(
      code(verifyInclusionAgainstHead(C.entries[5]!, 5, C.log.inclusionProof(5), head, noble, keys)),
    ).to.equal('wrong-scope');
    expect(code(verifyInclusionAgainstHead(A.entries[5]!, 5, proof, head, nodeVerifier, keys))).to.equal(
      'ok',
    );
  });
});
