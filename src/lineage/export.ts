/**
 * The lineage export file and its offline verifier. Pure: no `node:` imports, no clock, no randomness;
 * signatures are checked through the Verifier interface (NobleVerifier works: no native code needed).
 *
 * `aq lineage SCOPE --export FILE` writes the file (exportLines / writeExport); `aq verify lineage FILE
 * [--scope-id ID]` checks it (verifyExport) with no anchor reachable: every entry's signature and
 * signer, the order and completeness of the entries, every signed tree head against the Merkle root
 * recomputed from the entries, and the heads against each other and against tree heads seen before
 * (to catch a rolled-back or forked log).
 *
 * Format: JSON Lines, UTF-8, one JSON object per line, lines separated by "\n" (a final "\n" ends the
 * file; no blank lines). Version 1:
 *
 *   line 1      {"format":"aq-lineage","version":1,"scopeId":"<64 lowercase hex>"}
 *   entry line  {"entry":"<base64 of the entry bytes>"}
 *               one per entry, in index order, starting at index 0 (the genesis). The bytes are the
 *               canonical entry encoding of entry.ts (the Merkle leaf); base64 is RFC 4648 §4 (standard
 *               alphabet, "=" padding, canonical: no whitespace, zero pad bits).
 *   head line   {"treeHead":{"scopeId":"…","size":N,"root":"…","timestampMs":N,"signer":"…",
 *               "signature":"…"}}  (tree-head.ts's JSON form). Zero or more, each after the entries it
 *               covers. exportLines writes each head right after its last entry (sorted by size; a
 *               size-0 head right after line 1), so any prefix of the file cut after a line is itself a
 *               valid, older export.
 *
 * Objects have exactly the keys shown (an unknown key is malformed: the format is versioned instead).
 *
 * Verification (verifyExport) never throws for bad input; it reports every failure it can find, each
 * with a code, the 1-based line and/or entry index, and a one-line message:
 *
 *   malformed               bad JSON / base64 / entry bytes / tree head fields, header missing or wrong,
 *                           entry 0 not a genesis, a genesis elsewhere, no entries at all
 *   wrong-scope             an entry or head of another scope (skipped), a --scope-id mismatch, a genesis
 *                           that does not hash to the file's scope id
 *   bad-signature           an entry whose signature does not verify (forged / altered) or whose signer
 *                           the authority says may not admit entries at that point of the log
 *   rejected                the authority (governance rules) refused an entry or the genesis record
 *   gap                     entries missing: the indices jump (a dropped entry)
 *   out-of-order            an entry after one with a higher index (reordered entries)
 *   duplicate               a second entry for an index already seen (same or different bytes; the
 *                           first one is kept)
 *   tree-head-mismatch      a validly signed head whose root is not the root of the file's first `size`
 *                           entries (the log was rewritten or an entry altered)
 *   truncated               a validly signed head claims more entries than the file has
 *   inconsistent            two validly signed heads (file or known) where the larger is not an extension
 *                           of the smaller, judged by the roots recomputed from the file's entries (a fork)
 *   rollback                the file's newest valid head is smaller than a tree head seen before (an anchor
 *                           served an older state after a newer one)
 *   equivocation            two validly signed heads of the same size with different roots (file or known)
 *   bad-tree-head-signature a head whose signature does not verify or whose signer may not sign heads
 *
 * Placement: an entry is placed by the index it claims, so a reordered or duplicated entry is reported
 * as such and the rest of the log still verifies; the Merkle tree is recomputed over the contiguous run
 * from index 0 (heads beyond a gap cannot be checked and are not reported again). The authority sees the
 * entries in index order; a head's signer is checked once the authority has seen the entries the head
 * covers. Tree heads seen before (`known`) are trusted input: only their signatures are re-checked
 * (known heads of another scope are ignored). A file cut right after a line is a valid older export: only
 * known heads reveal it (rollback). Cost is dominated by one signature check per entry (measured: about
 * 0.1 ms per entry with NodeVerifier, 1.2 ms with NobleVerifier).
 *
 * verifyInclusionAgainstHead checks one receipt-style inclusion (entry + audit path + signed head).
 */
import type { Verifier } from '../identity/signer.ts';
import {
  bytesEqual,
  decodeEntry,
  fromHex,
  LineageDecodeError,
  type LineageEntry,
  SCOPE_ID_BYTES,
  toHex,
  verifyEntrySignature,
} from './entry.ts';
import { LineageLog, MemoryLineageKv } from './log.ts';
import { leafHash, verifyInclusion } from './merkle.ts';
import {
  type TreeHead,
  TreeHeadJsonError,
  treeHeadFromJson,
  treeHeadToJson,
  verifyTreeHead,
} from './tree-head.ts';

export const EXPORT_FORMAT = 'aq-lineage';
export const EXPORT_FORMAT_VERSION = 1;

export type FailureCode =
  | 'malformed'
  | 'wrong-scope'
  | 'bad-signature'
  | 'rejected'
  | 'gap'
  | 'out-of-order'
  | 'duplicate'
  | 'tree-head-mismatch'
  | 'truncated'
  | 'inconsistent'
  | 'rollback'
  | 'equivocation'
  | 'bad-tree-head-signature'
  /** Entries but no signed tree head: completeness unproven (raised by the CLI, which requires a head). */
  | 'no-tree-head';

export interface VerifyFailure {
  readonly code: FailureCode;
  /** The entry index concerned, when there is one. */
  readonly index?: number;
  /** The 1-based line of the file concerned, when there is one. */
  readonly line?: number;
  readonly message: string;
}

/** Who may sign what: the scope's governance rules, supplied by the caller. */
export interface LineageAuthority {
  /** Called with entry 0's payload; returns the scope id it certifies (sha256 of the genesis body) or an error string. */
  genesis(payload: Uint8Array): { scopeId: Uint8Array } | { error: string };
  /** May `key` sign a lineage entry (as admitting anchor) or a tree head (as leader) at this point of the log? */
  mayAnchorSign(key: Uint8Array): boolean;
  /** Called with each entry in order after its signature verified (to learn new anchor keys, revocations); an error string fails it. */
  observe(entry: LineageEntry): string | null;
}

export interface VerifyOptions {
  readonly authority: LineageAuthority;
  readonly verifier: Verifier;
  /** The scope the caller expects (`--scope-id`). */
  readonly scopeId?: Uint8Array;
  /** Tree heads seen before (the local known-heads file), to detect rollback and forks. */
  readonly known?: readonly TreeHead[];
}

export interface VerifyReport {
  readonly ok: boolean;
  /** Distinct entries of the scope found in the file. */
  readonly entries: number;
  /** Tree head lines of the scope found in the file. */
  readonly treeHeads: number;
  /** The largest validly signed head whose root matches the file's entries. */
  readonly latest?: TreeHead;
  readonly failures: VerifyFailure[];
}

// ---- base64 (RFC 4648 §4, canonical) ----

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = new Int16Array(128).fill(-1);
for (let i = 0; i < B64.length; i++) B64_INDEX[B64.charCodeAt(i)] = i;

/** @internal Standard base64 with padding. */
export function encodeBase64(b: Uint8Array): string {
  let s = '';
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    s += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  if (i + 1 === b.length) {
    const n = b[i]! << 16;
    s += `${B64[n >> 18]!}${B64[(n >> 12) & 63]!}==`;
  } else if (i + 2 === b.length) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8);
    s += `${B64[n >> 18]!}${B64[(n >> 12) & 63]!}${B64[(n >> 6) & 63]!}=`;
  }
  return s;
}

/** @internal Strict canonical base64 (padding required, pad bits zero, no whitespace), or undefined. */
export function decodeBase64(s: string): Uint8Array | undefined {
  if (s.length % 4 !== 0) return undefined;
  let pad = 0;
  if (s.endsWith('==')) pad = 2;
  else if (s.endsWith('=')) pad = 1;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  const sym = (i: number): number => {
    const c = s.charCodeAt(i);
    return c < 128 ? B64_INDEX[c]! : -1;
  };
  let o = 0;
  const full = pad === 0 ? s.length : s.length - 4;
  for (let i = 0; i < full; i += 4) {
    const a = sym(i);
    const b = sym(i + 1);
    const c = sym(i + 2);
    const d = sym(i + 3);
    if ((a | b | c | d) < 0) return undefined;
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = n >> 16;
    out[o++] = (n >> 8) & 255;
    out[o++] = n & 255;
  }
  if (pad > 0) {
    const a = sym(full);
    const b = sym(full + 1);
    if ((a | b) < 0) return undefined;
    if (pad === 2) {
      if ((b & 15) !== 0) return undefined;
      out[o] = (a << 2) | (b >> 4);
    } else {
      const c = sym(full + 2);
      if (c < 0 || (c & 3) !== 0) return undefined;
      out[o++] = (a << 2) | (b >> 4);
      out[o] = ((b & 15) << 4) | (c >> 2);
    }
  }
  return out;
}

// ---- writing ----

/**
 * The export's lines (without "\n"), streamed: header, the entries in index order, each head right
 * after its last entry. Throws RangeError when an entry is not of `scopeId` or not at its index, or a
 * head is of another scope or covers more entries than given, and LineageDecodeError for undecodable
 * entry bytes (the writer never writes an invalid file).
 */
export function* exportLines(
  scopeId: Uint8Array,
  entries: Iterable<Uint8Array>,
  heads: readonly TreeHead[],
): Generator<string, void, undefined> {
  if (!(scopeId instanceof Uint8Array) || scopeId.length !== SCOPE_ID_BYTES) {
    throw new RangeError(`exportLines: scope id must be ${SCOPE_ID_BYTES} bytes`);
  }
  for (const h of heads) {
    if (!bytesEqual(h.scopeId, scopeId)) {
      throw new RangeError(`exportLines: a tree head (size ${h.size}) belongs to scope ${toHex(h.scopeId)}`);
    }
  }
  const sorted = heads.map((h, i) => ({ h, i })).sort((a, b) => a.h.size - b.h.size || a.i - b.i);
  let next = 0;
  const headLines = function* (size: number): Generator<string, void, undefined> {
    while (next < sorted.length && sorted[next]!.h.size === size) {
      yield JSON.stringify({ treeHead: treeHeadToJson(sorted[next]!.h) });
      next++;
    }
  };
  yield JSON.stringify({ format: EXPORT_FORMAT, version: EXPORT_FORMAT_VERSION, scopeId: toHex(scopeId) });
  yield* headLines(0);
  let count = 0;
  for (const bytes of entries) {
    const e = decodeEntry(bytes);
    if (!bytesEqual(e.scopeId, scopeId)) {
      throw new RangeError(`exportLines: entry ${count} belongs to scope ${toHex(e.scopeId)}`);
    }
    if (e.index !== count) throw new RangeError(`exportLines: entry ${count} says it is entry ${e.index}`);
    yield JSON.stringify({ entry: encodeBase64(bytes) });
    count++;
    yield* headLines(count);
  }
  if (next < sorted.length) {
    throw new RangeError(
      `exportLines: a tree head has size ${sorted[next]!.h.size} but only ${count} entries were given`,
    );
  }
}

/** The whole export file as one string (lines joined by "\n", with a final "\n"). */
export function writeExport(
  scopeId: Uint8Array,
  entries: Iterable<Uint8Array>,
  heads: readonly TreeHead[],
): string {
  let s = '';
  for (const line of exportLines(scopeId, entries, heads)) s += `${line}\n`;
  return s;
}

// ---- verifying ----

interface EntryItem {
  readonly line: number;
  readonly bytes: Uint8Array;
  readonly entry: LineageEntry;
}

interface HeadItem {
  readonly line?: number; // undefined for a known head
  readonly known?: number; // position in options.known
  readonly head: TreeHead;
  valid: boolean;
  /** true / false: root checked against the file's entries; undefined: not checkable. */
  matches?: boolean;
  equivocated?: boolean;
}

const short = (key: Uint8Array): string => `${toHex(key.subarray(0, 8))}…`;
const where = (h: HeadItem): string =>
  h.line !== undefined ? `line ${h.line}` : `known tree head #${h.known}`;

function* splitLines(text: string): Generator<string, void, undefined> {
  let start = 0;
  for (;;) {
    const nl = text.indexOf('\n', start);
    if (nl < 0) {
      if (start < text.length) yield text.slice(start);
      return;
    }
    yield text.slice(start, nl);
    start = nl + 1;
  }
}

const parseJson = (line: string): { value: unknown } | { error: string } => {
  try {
    return { value: JSON.parse(line) };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
};

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Verifies an export offline. `input` is the file's text, or its lines (without "\n") for files too
 * large for one string. Never throws for bad input (an authority that throws is the caller's bug).
 */
export function verifyExport(input: string | Iterable<string>, options: VerifyOptions): VerifyReport {
  const { authority, verifier } = options;
  const failures: VerifyFailure[] = [];
  const fail = (code: FailureCode, message: string, at: { line?: number; index?: number } = {}): void => {
    const f: { code: FailureCode; message: string; line?: number; index?: number } = { code, message };
    if (at.index !== undefined) f.index = at.index;
    if (at.line !== undefined) f.line = at.line;
    failures.push(f);
  };

  let scope: Uint8Array | undefined;
  const slots = new Map<number, EntryItem>();
  let maxIndex = -1;
  let maxLine = 0;
  const heads: HeadItem[] = [];
  let lineNo = 0;
  let distinct = 0;

  const lines = typeof input === 'string' ? splitLines(input) : input;
  for (const line of lines) {
    lineNo++;
    if (line.trim() === '') {
      fail('malformed', `line ${lineNo}: empty line`, { line: lineNo });
      continue;
    }
    const parsed = parseJson(line);
    if ('error' in parsed) {
      fail('malformed', `line ${lineNo}: not JSON (${parsed.error})`, { line: lineNo });
      continue;
    }
    const v = parsed.value;
    const keys = isObject(v) ? Object.keys(v) : [];
    if (lineNo === 1) {
      if (isObject(v) && 'format' in v) {
        if (v.format !== EXPORT_FORMAT) {
          fail('malformed', `line 1: format ${JSON.stringify(v.format)} is not "${EXPORT_FORMAT}"`, {
            line: 1,
          });
          return report();
        }
        if (v.version !== EXPORT_FORMAT_VERSION) {
          fail(
            'malformed',
            `line 1: unsupported ${EXPORT_FORMAT} version ${JSON.stringify(v.version)} (this build reads version ${EXPORT_FORMAT_VERSION})`,
            { line: 1 },
          );
          return report();
        }
        const id = fromHex(v.scopeId, SCOPE_ID_BYTES);
        const extra = keys.filter((k) => k !== 'format' && k !== 'version' && k !== 'scopeId');
        if (id === undefined) {
          fail('malformed', `line 1: header scopeId must be 64 lowercase hex digits`, { line: 1 });
        } else if (extra.length > 0) {
          fail('malformed', `line 1: unknown header field ${JSON.stringify(extra[0])}`, { line: 1 });
        }
        if (id !== undefined) {
          scope = id;
          if (options.scopeId !== undefined && !bytesEqual(options.scopeId, id)) {
            fail(
              'wrong-scope',
              `line 1: the file is the lineage of scope ${toHex(id)}, not of the expected scope ${toHex(options.scopeId)}`,
              { line: 1 },
            );
          }
        }
        continue;
      }
      fail('malformed', `line 1: missing header {"format":"${EXPORT_FORMAT}","version":1,"scopeId":…}`, {
        line: 1,
      });
      // fall through: the line may still be an entry or a head
    }
    if (!isObject(v) || keys.length !== 1 || (keys[0] !== 'entry' && keys[0] !== 'treeHead')) {
      fail('malformed', `line ${lineNo}: expected {"entry":…} or {"treeHead":…}`, { line: lineNo });
      continue;
    }
    if (keys[0] === 'entry') {
      if (typeof v.entry !== 'string') {
        fail('malformed', `line ${lineNo}: "entry" must be a base64 string`, { line: lineNo });
        continue;
      }
      const bytes = decodeBase64(v.entry);
      if (bytes === undefined) {
        fail('malformed', `line ${lineNo}: "entry" is not canonical base64`, { line: lineNo });
        continue;
      }
      let entry: LineageEntry;
      try {
        entry = decodeEntry(bytes);
      } catch (e) {
        if (!(e instanceof LineageDecodeError)) throw e;
        fail('malformed', `line ${lineNo}: ${e.message}`, { line: lineNo });
        continue;
      }
      const index = entry.index;
      scope ??= options.scopeId ?? entry.scopeId;
      if (!bytesEqual(entry.scopeId, scope)) {
        fail(
          'wrong-scope',
          `line ${lineNo}: entry ${index} belongs to scope ${toHex(entry.scopeId)}, not ${toHex(scope)}`,
          { line: lineNo, index },
        );
        continue;
      }
      const first = slots.get(index);
      if (first !== undefined) {
        fail(
          'duplicate',
          bytesEqual(first.bytes, bytes)
            ? `line ${lineNo}: entry ${index} repeats line ${first.line}`
            : `line ${lineNo}: a second, different entry claims index ${index} (the first is at line ${first.line})`,
          { line: lineNo, index },
        );
        continue;
      }
      if (index < maxIndex) {
        fail(
          'out-of-order',
          `line ${lineNo}: entry ${index} comes after entry ${maxIndex} (line ${maxLine})`,
          {
            line: lineNo,
            index,
          },
        );
      } else {
        maxIndex = index;
        maxLine = lineNo;
      }
      slots.set(index, { line: lineNo, bytes, entry });
      distinct++;
      continue;
    }
    // a tree head
    let head: TreeHead;
    try {
      head = treeHeadFromJson(v.treeHead);
    } catch (e) {
      if (!(e instanceof TreeHeadJsonError)) throw e;
      fail('malformed', `line ${lineNo}: ${e.message}`, { line: lineNo });
      continue;
    }
    scope ??= options.scopeId ?? head.scopeId;
    if (!bytesEqual(head.scopeId, scope)) {
      fail(
        'wrong-scope',
        `line ${lineNo}: tree head (size ${head.size}) belongs to scope ${toHex(head.scopeId)}, not ${toHex(scope)}`,
        { line: lineNo },
      );
      continue;
    }
    heads.push({ line: lineNo, head, valid: false });
  }
  if (lineNo === 0) {
    fail('malformed', 'the file is empty (expected an aq-lineage header line)');
    return report();
  }
  const count = maxIndex + 1; // entries the file reaches
  if (distinct === 0) fail('malformed', 'the file has no entries (an export starts with the genesis entry)');

  // ---- gaps (over the indices present: a hostile index near 2^53 must not make us count to it) ----
  const indices = [...slots.keys()].sort((a, b) => a - b);
  {
    let prev = -1;
    for (const i of indices) {
      if (i > prev + 1) {
        const next = slots.get(i)!;
        const what =
          prev + 1 === i - 1
            ? `entry ${prev + 1}${prev === -1 ? ' (the genesis)' : ''} is`
            : `entries ${prev + 1}..${i - 1} are`;
        fail(
          'gap',
          `${what} missing (entry ${i} at line ${next.line} follows ${prev === -1 ? 'the header' : `entry ${prev}`})`,
          {
            line: next.line,
            index: prev + 1,
          },
        );
      }
      prev = i;
    }
  }

  // ---- entries in index order: genesis, signatures, authority; tree; heads once their entries are seen ----
  const bySize = new Map<number, HeadItem[]>();
  for (const h of heads) {
    const list = bySize.get(h.head.size);
    if (list) list.push(h);
    else bySize.set(h.head.size, [h]);
  }
  const sizes = [...bySize.keys()].sort((a, b) => a - b);
  const log = new LineageLog(new MemoryLineageKv());
  const checkHeadSignature = (h: HeadItem): void => {
    if (!verifyTreeHead(h.head, verifier)) {
      fail(
        'bad-tree-head-signature',
        `${where(h)}: tree head (size ${h.head.size}) signature does not verify`,
        {
          line: h.line!,
        },
      );
    } else if (!authority.mayAnchorSign(h.head.signer)) {
      fail(
        'bad-tree-head-signature',
        `${where(h)}: tree head (size ${h.head.size}) is signed by ${short(h.head.signer)}, which may not sign tree heads of this scope`,
        { line: h.line! },
      );
    } else h.valid = true;
  };
  /** Checks the heads of every size ≤ limit not checked yet; the authority has seen the entries below. */
  let nextSize = 0;
  const checkHeadsUpTo = (limit: number): void => {
    for (; nextSize < sizes.length && sizes[nextSize]! <= limit; nextSize++) {
      const size = sizes[nextSize]!;
      for (const h of bySize.get(size)!) {
        checkHeadSignature(h);
        if (!h.valid || size > log.size) continue; // beyond a gap: not checkable (the gap is reported)
        const root = log.root(size);
        h.matches = bytesEqual(root, h.head.root);
        if (!h.matches) {
          fail(
            'tree-head-mismatch',
            `line ${h.line}: signed tree head of size ${size} has root ${toHex(h.head.root)}, but entries 0..${size - 1} of the file hash to ${toHex(root)}`,
            { line: h.line! },
          );
        }
      }
    }
  };
  for (const i of indices) {
    checkHeadsUpTo(i);
    const item = slots.get(i)!;
    checkEntry(item);
    if (log.size === i) log.append(item.bytes);
  }
  slots.clear();
  checkHeadsUpTo(count);
  for (; nextSize < sizes.length; nextSize++) {
    const size = sizes[nextSize]!;
    for (const h of bySize.get(size)!) {
      checkHeadSignature(h);
      if (h.valid) {
        fail(
          'truncated',
          `line ${h.line}: signed tree head claims ${size} entries but the file has only ${count} (entries ${count}..${size - 1} are missing)`,
          { line: h.line!, index: count },
        );
      }
    }
  }

  function checkEntry(item: EntryItem): void {
    const { entry, line } = item;
    const index = entry.index;
    if (index === 0) {
      if (entry.kind !== 'genesis') {
        fail('malformed', `line ${line}: entry 0 is a command, not the genesis`, { line, index });
      } else {
        const g = authority.genesis(entry.payload);
        if ('error' in g) {
          fail('rejected', `line ${line}: the genesis record is not valid: ${g.error}`, { line, index });
        } else if (scope !== undefined && !bytesEqual(g.scopeId, scope)) {
          fail(
            'wrong-scope',
            `line ${line}: the genesis certifies scope ${toHex(g.scopeId)}, but the file is the lineage of scope ${toHex(scope)}`,
            { line, index },
          );
        }
      }
    } else if (entry.kind === 'genesis') {
      fail('malformed', `line ${line}: entry ${index} is a second genesis (only entry 0 may be)`, {
        line,
        index,
      });
    }
    if (entry.kind === 'membership') {
      // Unsigned by design (entry.ts): bound by the signed tree heads only; a signature here is foreign.
      if (entry.signer.some((b) => b !== 0) || entry.signature.some((b) => b !== 0)) {
        fail('bad-signature', `line ${line}: entry ${index}: a membership entry carries no signature`, {
          line,
          index,
        });
        return;
      }
    } else if (!verifyEntrySignature(entry, verifier)) {
      fail(
        'bad-signature',
        `line ${line}: entry ${index}: the signature by ${short(entry.signer)} does not verify (altered or forged entry)`,
        { line, index },
      );
      return;
    } else if (!authority.mayAnchorSign(entry.signer)) {
      fail(
        'bad-signature',
        `line ${line}: entry ${index} is signed by ${short(entry.signer)}, which may not admit entries to this scope`,
        { line, index },
      );
      return;
    }
    const err = authority.observe(entry);
    if (err !== null)
      fail('rejected', `line ${line}: entry ${index} is rejected by the scope's rules: ${err}`, {
        line,
        index,
      });
  }

  // ---- heads against each other and against the heads seen before ----
  const known: HeadItem[] = [];
  (options.known ?? []).forEach((head, i) => {
    if (scope !== undefined && !bytesEqual(head.scopeId, scope)) return; // another scope's head: not ours
    const h: HeadItem = { known: i, head, valid: verifyTreeHead(head, verifier) };
    if (!h.valid) {
      fail('bad-tree-head-signature', `known tree head #${i} (size ${head.size}): signature does not verify`);
      return;
    }
    known.push(h);
  });
  const valid = [...known, ...heads.filter((h) => h.valid)];

  // equivocation: same size, different roots
  const groups = new Map<number, HeadItem[]>();
  for (const h of valid) {
    const g = groups.get(h.head.size);
    if (g) g.push(h);
    else groups.set(h.head.size, [h]);
  }
  for (const [size, group] of groups) {
    const seen: HeadItem[] = [];
    for (const h of group) {
      if (seen.some((s) => bytesEqual(s.head.root, h.head.root))) continue;
      const first = seen[0];
      seen.push(h);
      if (first === undefined) continue;
      first.equivocated = true;
      h.equivocated = true;
      fail(
        'equivocation',
        `${where(h)}: tree head of size ${size} has root ${toHex(h.head.root)} (signed by ${short(h.head.signer)}), but ${where(first)} has root ${toHex(first.head.root)} (signed by ${short(first.head.signer)})`,
        h.line !== undefined ? { line: h.line } : {},
      );
    }
  }

  // inconsistent: a known head that is not a prefix of the file's log
  for (const k of known) {
    if (k.equivocated || k.head.size > log.size || k.head.size === 0) continue;
    const root = log.root(k.head.size);
    if (!bytesEqual(root, k.head.root)) {
      fail(
        'inconsistent',
        `known tree head #${k.known} (size ${k.head.size}, root ${toHex(k.head.root)}) is not a prefix of this file's log: its first ${k.head.size} entries hash to ${toHex(root)} (a fork)`,
        { index: k.head.size - 1 },
      );
    }
  }
  // inconsistent: a file head that the file's entries contradict while a larger file head matches them
  const matching = heads.filter((h) => h.valid && h.matches === true);
  for (const x of heads) {
    if (!x.valid || x.matches !== false || x.equivocated) continue;
    let y: HeadItem | undefined;
    for (const m of matching) if (m.head.size > x.head.size && (!y || m.head.size > y.head.size)) y = m;
    if (y === undefined) continue;
    fail(
      'inconsistent',
      `line ${x.line}: signed tree heads of size ${x.head.size} (line ${x.line}) and size ${y.head.size} (line ${y.line}) describe different histories: the larger does not extend the smaller`,
      { line: x.line! },
    );
  }

  // rollback: the file is older than what was already seen
  let newest: HeadItem | undefined;
  for (const h of heads) if (h.valid && (!newest || h.head.size > newest.head.size)) newest = h;
  let newestKnown: HeadItem | undefined;
  for (const k of known) if (!newestKnown || k.head.size > newestKnown.head.size) newestKnown = k;
  if (newestKnown !== undefined && (newest === undefined || newest.head.size < newestKnown.head.size)) {
    fail(
      'rollback',
      newest === undefined
        ? `the file has no valid tree head, but a tree head of size ${newestKnown.head.size} was seen before (known tree head #${newestKnown.known})`
        : `the file's newest valid tree head (line ${newest.line}) has size ${newest.head.size}, older than the tree head of size ${newestKnown.head.size} seen before (known tree head #${newestKnown.known}): this export rolls the log back`,
      newest?.line !== undefined ? { line: newest.line } : {},
    );
  }

  let latest: TreeHead | undefined;
  for (const h of matching) {
    if (
      !latest ||
      h.head.size > latest.size ||
      (h.head.size === latest.size && h.head.timestampMs > latest.timestampMs)
    ) {
      latest = h.head;
    }
  }
  return report(latest);

  function report(latestHead?: TreeHead): VerifyReport {
    const r = { ok: failures.length === 0, entries: distinct, treeHeads: heads.length, failures };
    return latestHead === undefined ? r : { ...r, latest: latestHead };
  }
}

// ---- one receipt-style inclusion ----

export type InclusionCheck =
  | { readonly ok: true; readonly entry: LineageEntry }
  | { readonly ok: false; readonly code: FailureCode; readonly message: string };

/**
 * Verifies offline that `entryBytes` is entry `index` of the log a signed tree head commits to: the
 * head's signature by one of `authorityKeys`, the entry's signature by one of `authorityKeys`, the same
 * scope, the entry's own index, and the RFC 6962 audit path `proof` from the leaf to the head's root.
 */
export function verifyInclusionAgainstHead(
  entryBytes: Uint8Array,
  index: number,
  proof: readonly Uint8Array[],
  head: TreeHead,
  verifier: Verifier,
  authorityKeys: readonly Uint8Array[],
): InclusionCheck {
  const authorized = (key: Uint8Array): boolean => authorityKeys.some((k) => bytesEqual(k, key));
  let entry: LineageEntry;
  try {
    entry = decodeEntry(entryBytes);
  } catch (e) {
    if (!(e instanceof LineageDecodeError)) throw e;
    return { ok: false, code: 'malformed', message: e.message };
  }
  if (!verifyTreeHead(head, verifier)) {
    return {
      ok: false,
      code: 'bad-tree-head-signature',
      message: `tree head (size ${head.size}) signature does not verify`,
    };
  }
  if (!authorized(head.signer)) {
    return {
      ok: false,
      code: 'bad-tree-head-signature',
      message: `tree head (size ${head.size}) is signed by ${short(head.signer)}, which is not an authority key of the scope`,
    };
  }
  if (!bytesEqual(entry.scopeId, head.scopeId)) {
    return {
      ok: false,
      code: 'wrong-scope',
      message: `entry belongs to scope ${toHex(entry.scopeId)}, the tree head to scope ${toHex(head.scopeId)}`,
    };
  }
  if (entry.index !== index) {
    return {
      ok: false,
      code: 'malformed',
      message: `the entry says it is entry ${entry.index}, the proof is for entry ${index}`,
    };
  }
  if (!verifyEntrySignature(entry, verifier)) {
    return {
      ok: false,
      code: 'bad-signature',
      message: `entry ${index}: the signature by ${short(entry.signer)} does not verify`,
    };
  }
  if (!authorized(entry.signer)) {
    return {
      ok: false,
      code: 'bad-signature',
      message: `entry ${index} is signed by ${short(entry.signer)}, which is not an authority key of the scope`,
    };
  }
  if (!verifyInclusion(leafHash(entryBytes), index, head.size, proof, head.root)) {
    return {
      ok: false,
      code: 'tree-head-mismatch',
      message: `entry ${index} is not in the tree of size ${head.size} with root ${toHex(head.root)} (the inclusion proof does not verify)`,
    };
  }
  return { ok: true, entry };
}
