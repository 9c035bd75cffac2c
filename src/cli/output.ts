// What the client commands print: tables and lines for people, one JSON document per line for scripts.
// Pure string building; commands.ts decides when to print. Responses arrive in the proto-loader shape
// (camelCase fields, enums as strings like 'HEALTH_PASSING', 64-bit integers as numbers, bytes as Buffers).

/** The instance fields the CLI shows (a subset of aq.v1.Instance as proto-loader decodes it). */
export interface InstanceView {
  readonly id: string;
  readonly address: string;
  readonly port: number;
  readonly tags?: readonly string[];
  readonly meta?: Readonly<Record<string, string>>;
  readonly health?: string;
  readonly ttlMs?: number;
}

export interface ResolveView {
  readonly name: string;
  readonly scope?: string;
  readonly instances?: readonly InstanceView[];
  readonly index?: number;
  readonly appliedIndex?: number;
  /** The scope's lineage size the answer reflects (entries 0..lineageSize-1). */
  readonly lineageSize?: number;
}

export interface ReceiptView {
  readonly scope?: string;
  readonly name?: string;
  readonly index?: number;
  readonly anchor?: string;
  readonly signature?: Uint8Array;
}

export interface MemberView {
  readonly id: string;
  readonly role?: string;
  readonly leader?: boolean;
  readonly grpc?: string;
  readonly matchIndex?: number;
}

export interface MembersView {
  readonly scope?: string;
  readonly members?: readonly MemberView[];
  readonly term?: number;
  readonly commitIndex?: number;
  readonly appliedIndex?: number;
}

export interface WatchEventView {
  readonly kind?: string;
  readonly name?: string;
  readonly instances?: readonly InstanceView[];
  readonly index?: number;
}

/** One line of JSON; bytes as base64 (the proto3 JSON mapping), so receipts' signatures stay readable. */
export function jsonLine(value: unknown): string {
  return `${jsonText(value)}\n`;
}

/** JSON with bytes as base64 (as jsonLine), indented by `space` when given (files people read). */
export function jsonText(value: unknown, space?: number): string {
  return JSON.stringify(
    value,
    (_key, v: unknown) => {
      if (v instanceof Uint8Array)
        return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
      // Buffer.toJSON runs before the replacer sees it: {type: 'Buffer', data: [...]}.
      if (isBufferJson(v)) return Buffer.from(v.data).toString('base64');
      return v;
    },
    space,
  );
}

function isBufferJson(v: unknown): v is { type: 'Buffer'; data: number[] } {
  return (
    typeof v === 'object' &&
    v !== null &&
    (v as { type?: unknown }).type === 'Buffer' &&
    Array.isArray((v as { data?: unknown }).data)
  );
}

/**
 * A plain-text table: a header row, columns padded to their widest cell, two spaces apart, no trailing
 * spaces. Control characters in cells are escaped so that a hostile value cannot break the layout.
 */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const cells = [headers, ...rows].map((row) => headers.map((_, i) => printable(row[i] ?? '')));
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => width(row[i] ?? ''))));
  return cells
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - width(cell))))
        .join('  ')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** Escapes control characters (C0, DEL, C1) as \u{..}; everything else is kept. */
export function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);
}

function width(text: string): number {
  return [...text].length;
}

/** 'HEALTH_PASSING' → 'passing'; unspecified shows as '-'. */
export function healthWord(health: string | undefined): string {
  if (health === undefined || health === 'HEALTH_UNSPECIFIED' || health === '') return '-';
  return health.replace(/^HEALTH_/, '').toLowerCase();
}

function tagsText(tags: readonly string[] | undefined): string {
  return tags === undefined || tags.length === 0 ? '-' : tags.join(',');
}

function metaText(meta: Readonly<Record<string, string>> | undefined): string {
  const entries = Object.entries(meta ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length === 0 ? '-' : entries.map(([k, v]) => `${k}=${v}`).join(',');
}

export function instancesTable(instances: readonly InstanceView[]): string {
  return renderTable(
    ['ID', 'ADDRESS', 'PORT', 'HEALTH', 'TAGS', 'META'],
    instances.map((i) => [
      i.id,
      i.address,
      String(i.port),
      healthWord(i.health),
      tagsText(i.tags),
      metaText(i.meta),
    ]),
  );
}

export function formatResolve(answer: ResolveView): string {
  const instances = answer.instances ?? [];
  const lineage = answer.lineageSize ? `, lineage ${answer.lineageSize}` : '';
  const where = `scope ${answer.scope || '-'}, index ${answer.index ?? 0}${lineage}`;
  if (instances.length === 0) return `${printable(answer.name)}: no instances (${where})\n`;
  const count = instances.length === 1 ? '1 instance' : `${instances.length} instances`;
  return `${printable(answer.name)}: ${count} (${where})\n${instancesTable(instances)}`;
}

export function formatList(names: readonly ResolveView[], prefix: string, more: boolean): string {
  if (names.length === 0) return prefix.length === 0 ? 'no names\n' : `no names under ${printable(prefix)}\n`;
  const table = renderTable(
    ['NAME', 'SCOPE', 'INSTANCES', 'PASSING', 'INDEX'],
    names.map((n) => {
      const instances = n.instances ?? [];
      const passing = instances.filter((i) => i.health === 'HEALTH_PASSING').length;
      return [n.name, n.scope || '-', String(instances.length), String(passing), String(n.index ?? 0)];
    }),
  );
  return more ? `${table}(more names follow: raise --limit to see them)\n` : table;
}

export function formatReceipt(name: string, id: string, receipt: ReceiptView | null, index: number): string {
  const lines = [`registered ${printable(id)} under ${printable(name)} at index ${index}`];
  if (receipt === null) lines.push('no receipt in the answer');
  else {
    const signature =
      receipt.signature === undefined || receipt.signature.length === 0
        ? '-'
        : Buffer.from(receipt.signature).toString('base64');
    const pairs: [string, string][] = [
      ['scope', receipt.scope || '-'],
      ['index', String(receipt.index ?? 0)],
      ['anchor', receipt.anchor || '-'],
      ['signature', signature],
    ];
    lines.push('receipt:', ...pairs.map(([key, value]) => `  ${key.padEnd(10)} ${printable(value)}`));
  }
  return `${lines.join('\n')}\n`;
}

export function formatDeregister(name: string, id: string, removed: boolean, index: number): string {
  return removed
    ? `deregistered ${printable(id)} from ${printable(name)} at index ${index}\n`
    : `${printable(id)} was not registered under ${printable(name)}: nothing to remove (index ${index})\n`;
}

export function formatHeartbeat(name: string, id: string, health: string | undefined): string {
  return `${printable(id)} under ${printable(name)}: ${healthWord(health)}\n`;
}

export function formatMembers(answer: MembersView): string {
  const head = `scope ${printable(answer.scope ?? '-')}: term ${answer.term ?? 0}, commit index ${answer.commitIndex ?? 0}, applied index ${answer.appliedIndex ?? 0}\n`;
  const members = answer.members ?? [];
  if (members.length === 0) return `${head}no members\n`;
  return (
    head +
    renderTable(
      ['ID', 'ROLE', 'LEADER', 'GRPC', 'MATCH INDEX'],
      members.map((m) => [
        m.id,
        m.role || '-',
        m.leader === true ? 'yes' : 'no',
        m.grpc || '-',
        String(m.matchIndex ?? 0),
      ]),
    )
  );
}

export function formatRemove(scope: string, id: string, index: number): string {
  return `removed ${printable(id)} from scope ${printable(scope)} at index ${index}\n`;
}

/** One line per watch event: `[index] kind name: instances`. */
export function formatWatchEvent(event: WatchEventView): string {
  const kind = (event.kind ?? 'KIND_UNSPECIFIED').replace(/^KIND_/, '').toLowerCase();
  const head = `[${event.index ?? 0}] ${kind}`;
  if (event.kind === 'KIND_SYNCED') return `${head}\n`;
  const instances = event.instances ?? [];
  const body =
    instances.length === 0
      ? 'no instances'
      : instances.map((i) => `${i.id} ${hostPort(i.address, i.port)} ${healthWord(i.health)}`).join('; ');
  return `${head} ${printable(event.name ?? '')}: ${printable(body)}\n`;
}

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

// ---- governance ----

/** A credential as the commands show it (aq.v1.Credential as proto-loader decodes it). */
export interface CredentialRow {
  readonly id: string;
  readonly role: string;
  readonly subject: string;
  readonly prefix: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly issuedAt: number;
  readonly revokedAt: number;
  readonly revokeReason?: string;
}

/** Largest validity bound: "forever" (credential.ts FOREVER_MS). */
const FOREVER = Number.MAX_SAFE_INTEGER;

/** A time for people: `2026-02-23 14:05Z` (UTC, to the minute). */
export function shortTime(ms: number): string {
  if (!Number.isFinite(ms) || ms > 8.64e15) return 'never';
  return new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/:[0-9]{2}\.[0-9]{3}Z$/, 'Z');
}

/** `always`, `until 2026-02-23 14:05Z`, `from ... until ...`, with `(expired)` / `(not yet valid)`. */
export function validityText(notBeforeMs: number, notAfterMs: number, nowMs: number): string {
  // The start is worth showing only while it is ahead.
  const from = nowMs < notBeforeMs ? `from ${shortTime(notBeforeMs)} ` : '';
  const until = notAfterMs >= FOREVER ? (from === '' ? 'always' : 'on') : `until ${shortTime(notAfterMs)}`;
  const state = nowMs > notAfterMs ? ' (expired)' : nowMs < notBeforeMs ? ' (not yet valid)' : '';
  return `${from}${until}${state}`;
}

/** `""` shows as `(all)`: a prefix that covers every name of the scope. */
export function prefixText(prefix: string): string {
  return prefix === '' ? '(all)' : prefix;
}

export function credentialsTable(credentials: readonly CredentialRow[], nowMs: number): string {
  if (credentials.length === 0) return 'no credentials\n';
  const rows = [...credentials].sort((a, b) => a.issuedAt - b.issuedAt || (a.id < b.id ? -1 : 1));
  return renderTable(
    ['ID', 'ROLE', 'SUBJECT', 'PREFIX', 'VALID', 'ISSUED', 'REVOKED'],
    rows.map((c) => [
      `${c.id.slice(0, 16)}…`,
      c.role,
      `${c.subject.slice(0, 16)}…`,
      prefixText(c.prefix),
      validityText(c.notBeforeMs, c.notAfterMs, nowMs),
      c.issuedAt === 0 ? 'genesis' : `index ${c.issuedAt}`,
      c.revokedAt === 0 ? '-' : `index ${c.revokedAt}`,
    ]),
  );
}

export function formatCredential(c: CredentialRow, nowMs: number): string {
  const pairs: [string, string][] = [
    ['id', c.id],
    ['role', c.role],
    ['subject', c.subject],
    ['prefix', prefixText(c.prefix)],
    [
      'valid',
      `from ${c.notBeforeMs === 0 ? 'the start' : shortTime(c.notBeforeMs)} until ${shortTime(c.notAfterMs)}${validityText(
        c.notBeforeMs,
        c.notAfterMs,
        nowMs,
      )
        .replace(/^[^(]*/, ' ')
        .trimEnd()}`,
    ],
    ['issued', c.issuedAt === 0 ? 'by the genesis' : `at log index ${c.issuedAt}`],
    [
      'revoked',
      c.revokedAt === 0 ? 'no' : `at log index ${c.revokedAt}${c.revokeReason ? ` (${c.revokeReason})` : ''}`,
    ],
  ];
  return pairs.map(([k, v]) => `${k.padEnd(8)} ${printable(v)}\n`).join('');
}

/** A quota document in one line: `max 1000 instances, max 50 names, eu/pay/ ≤ 100 instances; over: refuse`. */
export function describeQuota(doc: {
  maxInstances?: number;
  maxNames?: number;
  prefixes: readonly { prefix: string; maxInstances: number }[];
  registrationsPerSecond?: number;
  over: string;
}): string {
  const parts: string[] = [];
  if (doc.maxInstances !== undefined) parts.push(`max ${doc.maxInstances} instances`);
  if (doc.maxNames !== undefined) parts.push(`max ${doc.maxNames} names`);
  for (const p of doc.prefixes) parts.push(`${p.prefix} ≤ ${p.maxInstances} instances`);
  if (doc.registrationsPerSecond !== undefined)
    parts.push(`${doc.registrationsPerSecond} registrations/s per principal`);
  return `${parts.length === 0 ? 'no budgets' : parts.join(', ')}; over: ${doc.over}`;
}

/** One row of `aq lineage`. */
export interface LineageRow {
  readonly index: number;
  readonly logIndex: number;
  readonly kind: string;
  readonly what: string;
  /** The admitting anchor (short peer id). */
  readonly anchor: string;
}

export function lineageTable(rows: readonly LineageRow[]): string {
  return renderTable(
    ['INDEX', 'LOG INDEX', 'KIND', 'WHAT', 'ANCHOR'],
    rows.map((r) => [String(r.index), String(r.logIndex), r.kind, r.what, r.anchor]),
  );
}
