// A scope's lineage from the CLI: `aq lineage SCOPE` (a table of entries, or --verify / --export),
// `aq verify lineage FILE` and `aq verify receipt FILE` (offline, the portable verifier), and the receipt
// upgrade of `aq register --receipt FILE`.
//
// Receipt files. `aq register --json` prints the Register answer (aq.v1.RegisterResponse) as one JSON
// object; `aq register --receipt FILE` writes the same object, indented, upgraded with the signed tree
// head and inclusion proof that prove the registration is in the scope's log. `aq verify receipt` reads
// either. Field encodings (the proto3 JSON names and mapping, except where noted):
//
//   {
//     "receipt": {
//       "scope": "eu/payments", "name": "eu/payments/api/checkout",
//       "instance": {"id", "address", "port", "tags", "meta", "health": "HEALTH_PASSING", "ttlMs"},
//       "index": 12,                       the log index that applied it
//       "anchor": "12D3KooW…",             the admitting anchor's peer id
//       "signature": "<base64>",           its signature (the lineage entry's, 64 bytes)
//       "scopeId": "<64 hex>",             SHA-256 of the scope's genesis
//       "lineageIndex": 3,                 the entry's position in the scope's lineage
//       "entry": "<base64>"                the lineage entry bytes (src/lineage/entry.ts)
//     },
//     "index": 12,                         the name's modify index
//     "treeHead": {"scopeId", "size", "root", "timestampMs", "signer", "signature"},
//                                          optional: a signed tree head covering the entry, in the JSON
//                                          form of src/lineage/tree-head.ts (hex, not base64)
//     "proof": {"treeSize": 5, "hashes": ["<64 hex>", ...]}
//                                          optional: the RFC 6962 audit path of entry lineageIndex in the
//                                          tree of treeSize entries (leaf to root)
//   }
//
// Known tree heads: `aq lineage SCOPE --verify` remembers the newest tree head it verified for each scope
// id in `$AQ_STATE_DIR/tree-heads/<scope id>.json` (default state dir ~/.config/aq), the JSON form of
// tree-head.ts, and checks the next export against it (a rollback or a fork of the log is then caught).

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { decodeConfChange } from '../consensus/conf-change.ts';
import { credentialId, decodeCredential } from '../governance/credential.ts';
import {
  decodeGenesis,
  type Genesis,
  isOpenScope,
  scopeIdHex,
  verifyGenesis,
} from '../governance/genesis.ts';
import { decodePolicy, describePolicy } from '../governance/policy.ts';
import { decodeQuota } from '../governance/quota.ts';
import type { Verifier } from '../identity/signer.ts';
import { decodeEntry, type LineageEntry, verifyEntrySignature } from '../lineage/entry.ts';
import {
  EXPORT_FORMAT,
  EXPORT_FORMAT_VERSION,
  exportLines,
  type VerifyFailure,
  type VerifyReport,
  verifyExport,
  verifyInclusionAgainstHead,
} from '../lineage/export.ts';
import { type TreeHead, treeHeadFromJson, treeHeadToJson } from '../lineage/tree-head.ts';
import { decodeCommand } from '../registry/commands.ts';
import { quote } from '../registry/names.ts';
import { type AnchorClient, isServiceError } from './client.ts';
import { type CommandContext, type Io, type SignedFlags, withClient } from './commands.ts';
import { CliError, EXIT, type ExitCode, usageError } from './errors.ts';
import { readGenesisFile } from './governance-files.ts';
import { checkScopeName, parseScopeId } from './governance-requests.ts';
import { peerIdOf, shortHex, shortPeerId } from './keys.ts';
import { lineageAuthority } from './lineage-authority.ts';
import {
  describeQuota,
  jsonLine,
  jsonText,
  type LineageRow,
  lineageTable,
  prefixText,
  type ReceiptView,
  shortTime,
} from './output.ts';
import { parseInteger } from './parse.ts';
import { parseTarget } from './requests.ts';
import { getScope, RequestSigner, type ScopeView, type WireAuth } from './signing.ts';

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
/** Entries per GetEntries call (the anchor's maximum). */
const PAGE = 10_000;

// ---- the wire ----

/** aq.v1.TreeHead as proto-loader decodes it. */
interface TreeHeadWire {
  readonly scopeId: string;
  readonly size: number;
  readonly root: Uint8Array;
  readonly timestampMs: number;
  readonly signer: Uint8Array;
  readonly signature: Uint8Array;
}

function treeHeadFromWire(w: TreeHeadWire): TreeHead {
  return {
    scopeId: /^[0-9a-f]{64}$/.test(w.scopeId) ? hexToBytes(w.scopeId) : new Uint8Array(0),
    size: Number(w.size),
    root: new Uint8Array(w.root),
    timestampMs: Number(w.timestampMs),
    signer: new Uint8Array(w.signer),
    signature: new Uint8Array(w.signature),
  };
}

function isNotFound(error: unknown): boolean {
  return error instanceof CliError && isServiceError(error.cause) && error.cause.code === status.NOT_FOUND;
}

/** aq.v1.Lineage calls for one scope, each signed afresh when the scope is governed. */
class LineageReader {
  readonly #client: AnchorClient;
  readonly #scope: string;
  readonly #auth: ((body: Uint8Array) => WireAuth) | null;
  readonly #command: string;

  constructor(
    client: AnchorClient,
    scope: string,
    auth: ((body: Uint8Array) => WireAuth) | null,
    command: string,
  ) {
    this.#client = client;
    this.#scope = scope;
    this.#auth = auth;
    this.#command = command;
  }

  #call<T>(method: string, request: object): Promise<T> {
    const auth = this.#auth;
    const body = utf8(this.#scope);
    const make = auth === null ? request : () => ({ ...request, auth: auth(body) });
    return this.#client.call<T>('Lineage', method, make, this.#command, false);
  }

  /** The latest signed tree head (size 0) or the one of `size`; null when there is none yet. */
  async treeHead(size = 0): Promise<TreeHead | null> {
    try {
      const r = await this.#call<{ treeHead?: TreeHeadWire | null }>('GetTreeHead', {
        scope: this.#scope,
        size,
      });
      return r.treeHead == null ? null : treeHeadFromWire(r.treeHead);
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async entries(
    from: number,
    limit: number,
  ): Promise<{ entries: Uint8Array[]; size: number; scopeId: string }> {
    const r = await this.#call<{
      entries?: { index: number; entry: Uint8Array }[];
      size?: number;
      scopeId?: string;
    }>('GetEntries', { scope: this.#scope, from, limit });
    return {
      entries: (r.entries ?? []).map((e) => new Uint8Array(e.entry)),
      size: Number(r.size ?? 0),
      scopeId: r.scopeId ?? '',
    };
  }

  /** Every entry from 0 on, at least up to `atLeast` (the log only grows). */
  async allEntries(atLeast: number): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    for (;;) {
      const page = await this.entries(out.length, PAGE);
      out.push(...page.entries);
      if (page.entries.length === 0 || out.length >= Math.max(page.size, atLeast)) return out;
    }
  }

  async inclusionProof(index: number, treeSize: number): Promise<Uint8Array[]> {
    const r = await this.#call<{ hashes?: Uint8Array[] }>('GetInclusionProof', {
      scope: this.#scope,
      index,
      treeSize,
    });
    return (r.hashes ?? []).map((h) => new Uint8Array(h));
  }
}

// ---- describing entries ----

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** One line saying what an entry did: `register eu/pay/api id=i1 10.0.0.1:80`, `genesis eu/payments`. */
export function describeEntry(e: LineageEntry): string {
  if (e.kind === 'genesis') {
    try {
      const g = decodeGenesis(e.payload);
      return isOpenScope(g)
        ? `genesis ${g.name} (open)`
        : `genesis ${g.name} (${g.founders.length} founding anchor(s), ${g.admins.length} admin(s))`;
    } catch (error) {
      return `genesis (undecodable: ${(error as Error).message})`;
    }
  }
  if (e.kind === 'membership') {
    try {
      const cc = decodeConfChange(e.payload);
      return `membership ${cc.type} ${cc.node}`;
    } catch (error) {
      return `membership (undecodable: ${(error as Error).message})`;
    }
  }
  let cmd: ReturnType<typeof decodeCommand>;
  try {
    cmd = decodeCommand(e.payload);
  } catch (error) {
    return `undecodable command (${(error as Error).message})`;
  }
  switch (cmd.type) {
    case 'register':
      return `register ${cmd.name} id=${cmd.instance.id} ${hostPort(cmd.instance.address, cmd.instance.port)}`;
    case 'deregister':
      return `deregister ${cmd.name} id=${cmd.id}`;
    case 'set-health':
      return `set-health ${cmd.name} id=${cmd.id} ${cmd.health}`;
    case 'issue-credential':
      try {
        const c = decodeCredential(cmd.credential);
        return `issue-credential ${c.role} ${shortHex(bytesToHex(c.subject), 8)} prefix ${prefixText(c.prefix)} (id ${shortHex(bytesToHex(credentialId(c)), 8)})`;
      } catch {
        return 'issue-credential (undecodable credential)';
      }
    case 'revoke-credential':
      return `revoke-credential ${shortHex(bytesToHex(cmd.credentialId), 8)}${cmd.reason ? ` (${cmd.reason})` : ''}`;
    case 'set-policy':
      try {
        return `set-policy (${describePolicy(decodePolicy(cmd.policy))})`;
      } catch {
        return 'set-policy';
      }
    case 'set-quota':
      try {
        return `set-quota (${describeQuota(decodeQuota(cmd.quota))})`;
      } catch {
        return 'set-quota';
      }
    default:
      return cmd.type;
  }
}

async function anchorNames(entries: readonly LineageEntry[]): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  for (const e of entries) {
    const hex = bytesToHex(e.signer);
    if (!names.has(hex)) names.set(hex, (await peerIdOf(e.signer)) ?? shortHex(hex));
  }
  return names;
}

async function headLine(head: TreeHead | null): Promise<string> {
  if (head === null)
    return 'signed tree head: none yet (the leader publishes one within a second of a change)';
  const signer = (await peerIdOf(head.signer)) ?? bytesToHex(head.signer);
  return `signed tree head: size ${head.size}, root ${shortHex(bytesToHex(head.root))}, signed by ${shortPeerId(signer)} at ${shortTime(head.timestampMs)}`;
}

// ---- known tree heads ----

/** Where this machine remembers the newest verified tree head of a scope. */
export function knownHeadPath(scopeIdHex: string, env: NodeJS.ProcessEnv = process.env): string {
  const dir =
    env.AQ_STATE_DIR !== undefined && env.AQ_STATE_DIR !== ''
      ? env.AQ_STATE_DIR
      : join(homedir(), '.config', 'aq');
  return join(dir, 'tree-heads', `${scopeIdHex}.json`);
}

/** Tree heads from a file: one tree head JSON object, or a list of them. */
export function parseKnownHeads(text: string, path: string): TreeHead[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new CliError(`${path}: not JSON (${(error as Error).message})`, EXIT.failure);
  }
  try {
    return (Array.isArray(value) ? value : [value]).map((v) => treeHeadFromJson(v));
  } catch (error) {
    throw new CliError(`${path}: not a tree head file: ${(error as Error).message}`, EXIT.failure, {
      hint: 'it holds the JSON form of a signed tree head (or a list of them)',
    });
  }
}

async function readKnownHead(path: string): Promise<TreeHead | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new CliError(`cannot read the known tree head ${path}: ${(error as Error).message}`, EXIT.failure);
  }
  const heads = parseKnownHeads(text, path);
  return heads.reduce<TreeHead | null>((a, h) => (a === null || h.size > a.size ? h : a), null);
}

async function rememberHead(path: string, head: TreeHead): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(treeHeadToJson(head))}\n`);
  await rename(tmp, path);
}

// ---- aq lineage SCOPE ----

export interface LineageFlags extends SignedFlags {
  readonly from?: string;
  readonly limit?: string;
  readonly verify?: boolean;
  readonly export?: string;
  readonly scopeId?: string;
}

/**
 * The lines of an export (header, entries, each head after its last entry, heads beyond the entries at
 * the end), without the checks exportLines makes: what the anchor served, for the verifier to judge.
 */
function servedLines(
  scopeIdHex: string,
  entries: readonly Uint8Array[],
  heads: readonly TreeHead[],
): string[] {
  const lines = [
    JSON.stringify({ format: EXPORT_FORMAT, version: EXPORT_FORMAT_VERSION, scopeId: scopeIdHex }),
  ];
  const sorted = [...heads].sort((a, b) => a.size - b.size);
  let next = 0;
  const headsUpTo = (size: number) => {
    while (next < sorted.length && (sorted[next] as TreeHead).size <= size)
      lines.push(JSON.stringify({ treeHead: treeHeadToJson(sorted[next++] as TreeHead) }));
  };
  headsUpTo(0);
  entries.forEach((bytes, i) => {
    lines.push(JSON.stringify({ entry: Buffer.from(bytes).toString('base64') }));
    headsUpTo(i + 1);
  });
  headsUpTo(Number.MAX_SAFE_INTEGER);
  return lines;
}

function failureLines(command: string, failures: readonly VerifyFailure[]): string {
  return failures.map((f) => `aq: ${command}: ${f.code}: ${f.message}\n`).join('');
}

function sameHead(a: TreeHead, b: TreeHead): boolean {
  return (
    a.size === b.size &&
    bytesToHex(a.root) === bytesToHex(b.root) &&
    bytesToHex(a.signature) === bytesToHex(b.signature)
  );
}

export async function lineage(
  scopeName: string,
  flags: LineageFlags,
  ctx: CommandContext,
): Promise<ExitCode> {
  checkScopeName(scopeName);
  const from = flags.from === undefined ? 0 : parseInteger(flags.from, '--from', 0, Number.MAX_SAFE_INTEGER);
  const limit = flags.limit === undefined ? 1000 : parseInteger(flags.limit, '--limit', 1, PAGE);
  const expected = flags.scopeId === undefined ? undefined : parseScopeId(flags.scopeId);
  const target = parseTarget(flags, ctx.anchorFrom);
  if (flags.verify !== true && flags.export === undefined) {
    return withClient(target, async (c) => {
      const signer = await RequestSigner.open(c, flags, { scope: scopeName }, 'lineage');
      const reader = new LineageReader(c, scopeName, await signer.authFor('read-lineage', ''), 'lineage');
      const page = await reader.entries(from, limit);
      const head = await reader.treeHead();
      const decoded = page.entries.map((b) => decodeEntry(b));
      const names = await anchorNames(decoded);
      const rows: LineageRow[] = decoded.map((e) => ({
        index: e.index,
        logIndex: e.logIndex,
        kind: e.kind,
        what: describeEntry(e),
        anchor: shortPeerId(names.get(bytesToHex(e.signer)) ?? '-'),
      }));
      if (flags.json === true) {
        ctx.io.out(
          jsonLine({
            scope: scopeName,
            scopeId: page.scopeId,
            size: page.size,
            entries: decoded.map((e, i) => ({
              index: e.index,
              logIndex: e.logIndex,
              kind: e.kind,
              what: rows[i]?.what,
              anchor: names.get(bytesToHex(e.signer)),
              signer: bytesToHex(e.signer),
              entry: page.entries[i],
            })),
            treeHead: head === null ? null : treeHeadToJson(head),
          }),
        );
        return EXIT.ok;
      }
      const shown = rows.length === 0 ? 'no entries' : `entries ${from}..${from + rows.length - 1}`;
      let text = `lineage of ${scopeName} (scope id ${shortHex(page.scopeId)}): ${page.size} entries; ${shown}\n`;
      if (rows.length > 0) text += lineageTable(rows);
      const last = from + rows.length;
      if (last < page.size) text += `(entries ${last}..${page.size - 1} follow: use --from ${last})\n`;
      ctx.io.out(`${text}${await headLine(head)}\n`);
      return EXIT.ok;
    });
  }
  return withClient(target, async (c) => {
    const scope = await getScope(c, { scope: scopeName }, 'lineage');
    if (scope.scopeId === '')
      throw new CliError(`lineage: scope ${scopeName} has no genesis yet`, EXIT.defer, {
        hint: 'retrying shortly is safe',
      });
    const signer = await RequestSigner.open(c, flags, { scope: scopeName }, 'lineage', scope);
    const reader = new LineageReader(c, scopeName, await signer.authFor('read-lineage', ''), 'lineage');
    // The head first: entries are then fetched up to at least its size (the log only grows).
    const head = await reader.treeHead();
    const entries = await reader.allEntries(head?.size ?? 0);
    const knownPath = knownHeadPath(scope.scopeId);
    const known = await readKnownHead(knownPath);
    if (flags.export !== undefined)
      await exportTo(flags.export, scope, entries, head, known, ctx.io, flags.json === true);
    if (flags.verify !== true) return EXIT.ok;
    const { NodeVerifier } = await import('../identity/signer.ts');
    const verifier = new NodeVerifier();
    const report = requireTreeHead(
      verifyExport(servedLines(scope.scopeId, entries, head === null ? [] : [head]), {
        authority: lineageAuthority(verifier),
        verifier,
        scopeId: hexToBytes(expected ?? scope.scopeId),
        known: known === null ? [] : [known],
      }),
    );
    if (report.ok && report.latest !== undefined && (known === null || report.latest.size >= known.size))
      await rememberHead(knownPath, report.latest);
    printReport(ctx.io, flags.json === true, 'lineage', report, {
      scope: scopeName,
      scopeId: scope.scopeId,
      known,
      knownPath,
    });
    return report.ok ? EXIT.ok : EXIT.failure;
  });
}

async function exportTo(
  path: string,
  scope: ScopeView,
  entries: readonly Uint8Array[],
  head: TreeHead | null,
  known: TreeHead | null,
  io: Io,
  json: boolean,
): Promise<void> {
  const heads: TreeHead[] = [];
  for (const h of [head, known]) {
    if (h === null || h.size > entries.length || bytesToHex(h.scopeId) !== scope.scopeId) continue;
    if (!heads.some((x) => sameHead(x, h))) heads.push(h);
  }
  let text = '';
  try {
    for (const line of exportLines(hexToBytes(scope.scopeId), entries, heads)) text += `${line}\n`;
  } catch (error) {
    throw new CliError(
      `lineage: cannot export what the anchor served: ${(error as Error).message}`,
      EXIT.failure,
    );
  }
  try {
    await writeFile(path, text);
  } catch (error) {
    throw new CliError(`lineage: cannot write ${path}: ${(error as Error).message}`, EXIT.failure);
  }
  const note = `wrote ${entries.length} entries and ${heads.length} tree head(s) to ${path}`;
  // stdout is the JSON report's with --json (or --verify's): then the note goes to stderr.
  if (json) io.err(`aq: lineage: ${note}\n`);
  else io.out(`${note}\n`);
}

function printReport(
  io: Io,
  json: boolean,
  command: string,
  report: VerifyReport,
  about: { scope?: string; scopeId?: string; known?: TreeHead | null; knownPath?: string; file?: string },
): void {
  if (json) {
    io.out(
      jsonLine({
        ok: report.ok,
        ...(about.scope === undefined ? {} : { scope: about.scope }),
        ...(about.file === undefined ? {} : { file: about.file }),
        entries: report.entries,
        treeHeads: report.treeHeads,
        latest: report.latest === undefined ? null : treeHeadToJson(report.latest),
        failures: report.failures,
      }),
    );
    if (!report.ok) io.err(failureLines(command, report.failures));
    return;
  }
  if (!report.ok) {
    io.err(failureLines(command, report.failures));
    return;
  }
  const what = about.scope !== undefined ? `the lineage of ${about.scope}` : (about.file ?? 'the export');
  const lines = [
    `verified ${what}: ${report.entries} entries, ${report.treeHeads} tree head(s), every check passed`,
  ];
  if (report.latest === undefined)
    lines.push(
      'no signed tree head: entry signatures and the scope rules were checked, not the completeness of the log',
    );
  else
    lines.push(
      `latest signed tree head: size ${report.latest.size}, root ${bytesToHex(report.latest.root)}, at ${shortTime(report.latest.timestampMs)}`,
    );
  if (about.knownPath !== undefined) {
    if (about.known == null)
      lines.push(`first check of this scope on this machine: remembered the tree head in ${about.knownPath}`);
    else
      lines.push(
        `consistent with the tree head of size ${about.known.size} seen before (${about.knownPath})`,
      );
  }
  io.out(`${lines.join('\n')}\n`);
}

/**
 * Entries with no signed tree head prove their own signatures, not that the log is complete: an entry's
 * signature does not cover its position, so a log with one entry dropped and the rest renumbered would
 * verify. Without any head, the check fails (a head is published within about a second of a change).
 */
function requireTreeHead(report: VerifyReport): VerifyReport {
  if (!report.ok || report.latest !== undefined || report.entries === 0) return report;
  return {
    ...report,
    ok: false,
    failures: [
      ...report.failures,
      {
        code: 'no-tree-head',
        message:
          'no signed tree head covers the log: its completeness cannot be proven (a dropped entry with the rest renumbered would pass); fetch or export it again once the leader has published one (within about a second of a change)',
      },
    ],
  };
}

// ---- aq verify lineage FILE ----

async function readInput(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw usageError(`${what} ${quote(path)}`, code === 'ENOENT' ? 'no such file' : (error as Error).message);
  }
}

export async function verifyLineage(
  file: string,
  flags: { scopeId?: string; known?: string; json?: boolean },
  io: Io,
): Promise<ExitCode> {
  const expected = flags.scopeId === undefined ? undefined : parseScopeId(flags.scopeId);
  const text = await readInput(file, 'lineage file');
  const known =
    flags.known === undefined ? [] : parseKnownHeads(await readInput(flags.known, '--known'), flags.known);
  const { NobleVerifier } = await import('../identity/signer.ts');
  const verifier = new NobleVerifier();
  const report = requireTreeHead(
    verifyExport(text, {
      authority: lineageAuthority(verifier),
      verifier,
      ...(expected === undefined ? {} : { scopeId: hexToBytes(expected) }),
      known,
    }),
  );
  printReport(io, flags.json === true, 'verify lineage', report, { file });
  return report.ok ? EXIT.ok : EXIT.failure;
}

// ---- receipts ----

interface ReceiptFile {
  readonly receipt?:
    | (ReceiptView & { scopeId?: string; lineageIndex?: number; entry?: unknown; instance?: unknown })
    | null;
  readonly index?: number;
  readonly treeHead?: unknown;
  readonly proof?: { treeSize?: unknown; hashes?: unknown };
}

/**
 * Writes the receipt of a registration to `path`, upgraded with a signed tree head covering its entry
 * (waiting up to ~3 s for the leader to publish one) and the inclusion proof. When the upgrade is not
 * possible (no lineage entry, the key may not read the lineage, no head in time) the plain receipt is
 * written and stderr says why.
 */
export async function writeUpgradedReceipt(
  c: AnchorClient,
  signer: RequestSigner,
  response: { receipt?: ReceiptView | null; index?: number },
  path: string,
  io: Io,
): Promise<void> {
  const receipt = response.receipt as
    | (ReceiptView & { lineageIndex?: number; entry?: Uint8Array })
    | null
    | undefined;
  let upgrade: { treeHead: unknown; proof: unknown } | null = null;
  let why = '';
  if (receipt == null || receipt.entry === undefined || receipt.entry.length === 0) {
    why = 'the anchor returned no lineage entry';
  } else {
    try {
      const reader = new LineageReader(
        c,
        receipt.scope ?? '',
        await signer.authFor('read-lineage', ''),
        'register',
      );
      const index = Number(receipt.lineageIndex ?? 0);
      const until = Date.now() + 3000;
      let head = await reader.treeHead();
      while ((head === null || head.size <= index) && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 150));
        head = await reader.treeHead();
      }
      if (head === null || head.size <= index) why = 'no signed tree head covers the entry yet (waited 3 s)';
      else {
        const hashes = await reader.inclusionProof(index, head.size);
        upgrade = {
          treeHead: treeHeadToJson(head),
          proof: { treeSize: head.size, hashes: hashes.map(bytesToHex) },
        };
      }
    } catch (error) {
      if (!(error instanceof CliError)) throw error;
      why = error.message.replace(/^register: /, '');
    }
  }
  try {
    await writeFile(path, `${jsonText(upgrade === null ? response : { ...response, ...upgrade }, 2)}\n`);
  } catch (error) {
    throw new CliError(
      `register: registered, but cannot write the receipt to ${path}: ${(error as Error).message}`,
      EXIT.failure,
    );
  }
  if (upgrade === null)
    io.err(`aq: register: wrote the receipt to ${path} without an inclusion proof: ${why}\n`);
}

type ReceiptCheck = { code: string; message: string };

function base64Bytes(value: unknown): Uint8Array | null {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0)
    return null;
  const bytes = new Uint8Array(Buffer.from(value, 'base64'));
  return Buffer.from(bytes).toString('base64') === value ? bytes : null;
}

/** Checks a receipt file offline; returns what was checked and what failed. Pure but for peer ids. */
export async function checkReceipt(
  value: unknown,
  options: { verifier: Verifier; scopeId?: string; genesis?: Genesis },
): Promise<{ checked: string[]; notes: string[]; failures: ReceiptCheck[] }> {
  const checked: string[] = [];
  const notes: string[] = [];
  const failures: ReceiptCheck[] = [];
  const fail = (code: string, message: string) => failures.push({ code, message });
  const file = value as ReceiptFile;
  const receipt = typeof value === 'object' && value !== null ? file.receipt : undefined;
  if (receipt == null || typeof receipt !== 'object') {
    fail('malformed', 'no "receipt" object (the file is what aq register --json or --receipt FILE writes)');
    return { checked, notes, failures };
  }
  const entryBytes = base64Bytes(receipt.entry);
  if (entryBytes === null || entryBytes.length === 0) {
    fail('malformed', 'receipt.entry is not base64 lineage entry bytes');
    return { checked, notes, failures };
  }
  let entry: LineageEntry;
  try {
    entry = decodeEntry(entryBytes);
  } catch (error) {
    fail('malformed', `receipt.entry: ${(error as Error).message}`);
    return { checked, notes, failures };
  }
  const scopeHex = bytesToHex(entry.scopeId);
  // The entry itself: signed by its admitting anchor.
  if (!verifyEntrySignature(entry, options.verifier))
    fail(
      'bad-signature',
      `the entry's signature by ${shortHex(bytesToHex(entry.signer))} does not verify (altered or forged)`,
    );
  else
    checked.push(
      `the entry is signed by anchor ${(await peerIdOf(entry.signer)) ?? bytesToHex(entry.signer)}`,
    );
  // Its scope.
  if (receipt.scopeId !== scopeHex)
    fail('wrong-scope', `receipt.scopeId ${String(receipt.scopeId)} is not the entry's scope ${scopeHex}`);
  if (options.scopeId !== undefined && options.scopeId !== scopeHex)
    fail('wrong-scope', `the entry is of scope ${scopeHex}, not the expected ${options.scopeId}`);
  const g = options.genesis;
  if (g !== undefined) {
    try {
      if (!isOpenScope(g)) verifyGenesis(g, options.verifier);
      if (scopeIdHex(g) !== scopeHex)
        fail('wrong-scope', `the genesis is of scope ${scopeIdHex(g)}, the entry of ${scopeHex}`);
      else checked.push(`the scope is ${g.name} (${scopeHex}), certified by the genesis`);
    } catch (error) {
      fail('rejected', `the genesis: ${(error as Error).message}`);
    }
  }
  // The readable fields say what the entry says.
  if (receipt.lineageIndex !== entry.index)
    fail(
      'mismatch',
      `receipt.lineageIndex ${String(receipt.lineageIndex)} is not the entry's index ${entry.index}`,
    );
  const sig = base64Bytes(receipt.signature);
  if (sig === null || bytesToHex(sig) !== bytesToHex(entry.signature))
    fail('mismatch', "receipt.signature is not the entry's signature");
  const anchor = await peerIdOf(entry.signer);
  if (receipt.anchor !== anchor)
    fail('mismatch', `receipt.anchor ${String(receipt.anchor)} did not sign the entry (${anchor})`);
  let cmd: ReturnType<typeof decodeCommand> | null = null;
  try {
    cmd = entry.kind === 'command' ? decodeCommand(entry.payload) : null;
  } catch {
    cmd = null;
  }
  const inst = (receipt.instance ?? {}) as { id?: unknown; address?: unknown; port?: unknown };
  if (cmd === null || cmd.type !== 'register') fail('mismatch', 'the entry is not a registration');
  else if (
    cmd.name !== receipt.name ||
    cmd.instance.id !== inst.id ||
    cmd.instance.address !== inst.address ||
    cmd.instance.port !== inst.port
  )
    fail(
      'mismatch',
      `the receipt says ${String(receipt.name)} id=${String(inst.id)} ${String(inst.address)}:${String(inst.port)}, the entry registers ${cmd.name} id=${cmd.instance.id} ${hostPort(cmd.instance.address, cmd.instance.port)}`,
    );
  else
    checked.push(
      `it registers ${cmd.name} id=${cmd.instance.id} ${hostPort(cmd.instance.address, cmd.instance.port)} at lineage entry ${entry.index} (log index ${entry.logIndex})`,
    );
  // Who may sign: the genesis' founding anchors (an anchor added later is only known to the lineage).
  const founders = g === undefined || isOpenScope(g) ? null : g.founders;
  if (founders !== null && !founders.some((k) => bytesToHex(k) === bytesToHex(entry.signer)))
    fail(
      'not-an-anchor',
      `the entry is signed by ${shortHex(bytesToHex(entry.signer))}, not a founding anchor of the scope`,
    );
  // Inclusion in the log.
  if (file.treeHead === undefined && file.proof === undefined) {
    notes.push(
      'no inclusion proof in the receipt (aq register --receipt FILE writes one): the entry was not checked against a signed tree head',
    );
  } else {
    let head: TreeHead | null = null;
    try {
      head = treeHeadFromJson(file.treeHead);
    } catch (error) {
      fail('malformed', `treeHead: ${(error as Error).message}`);
    }
    const hashes = Array.isArray(file.proof?.hashes) ? (file.proof.hashes as unknown[]) : null;
    if (hashes === null || !hashes.every((h) => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h)))
      fail('malformed', 'proof.hashes must be a list of 64-hex hashes');
    else if (head !== null) {
      if (file.proof?.treeSize !== head.size)
        fail(
          'malformed',
          `proof.treeSize ${String(file.proof?.treeSize)} is not the tree head's size ${head.size}`,
        );
      const keys = founders ?? [entry.signer, head.signer];
      const check = verifyInclusionAgainstHead(
        entryBytes,
        entry.index,
        hashes.map((h) => hexToBytes(h as string)),
        head,
        options.verifier,
        keys,
      );
      if (!check.ok) fail(check.code, check.message);
      else
        checked.push(
          `the entry is in the log: the inclusion proof leads to the root of the tree head of size ${head.size}, signed by ${(await peerIdOf(head.signer)) ?? bytesToHex(head.signer)} at ${shortTime(head.timestampMs)}`,
        );
    }
  }
  if (founders === null)
    notes.push(
      g === undefined
        ? "the signers were not checked against the scope's anchors (pass --genesis FILE)"
        : 'the scope is open: any anchor may sign',
    );
  return { checked, notes, failures };
}

export async function verifyReceipt(
  file: string,
  flags: { scopeId?: string; genesis?: string; json?: boolean },
  io: Io,
): Promise<ExitCode> {
  const expected = flags.scopeId === undefined ? undefined : parseScopeId(flags.scopeId);
  let genesis: Genesis | undefined;
  if (flags.genesis !== undefined) {
    try {
      genesis = readGenesisFile(flags.genesis);
    } catch (error) {
      throw usageError('--genesis', (error as Error).message);
    }
  }
  const text = await readInput(file, 'receipt file');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    io.err(`aq: verify receipt: malformed: ${file} is not JSON (${(error as Error).message})\n`);
    return EXIT.failure;
  }
  const { NobleVerifier } = await import('../identity/signer.ts');
  const result = await checkReceipt(value, {
    verifier: new NobleVerifier(),
    ...(expected === undefined ? {} : { scopeId: expected }),
    ...(genesis === undefined ? {} : { genesis }),
  });
  const ok = result.failures.length === 0;
  if (flags.json === true) io.out(jsonLine({ ok, file, ...result }));
  if (!ok) {
    io.err(result.failures.map((f) => `aq: verify receipt: ${f.code}: ${f.message}\n`).join(''));
    return EXIT.failure;
  }
  if (flags.json !== true)
    io.out(
      `verified the receipt in ${file}\n${result.checked.map((l) => `  checked: ${l}\n`).join('')}${result.notes.map((l) => `  note: ${l}\n`).join('')}`,
    );
  return EXIT.ok;
}
