/**
 * A scope's quotas (DESIGN.md §2, "quota exhausted" is a DEFER or a REFUSE): budgets on what the scope holds
 * and on how fast one principal registers. Pure and deterministic: no I/O, and no clock — the rate windows
 * are keyed by the request's own (signed) timestamp, supplied by the caller, so every member of the scope
 * group admits or refuses the same registrations at the same log index.
 *
 * Budgets (each optional):
 * - max_instances            instances in the whole scope;
 * - max_names                distinct names in the whole scope;
 * - prefix "P" max_instances instances whose name starts with P (a plain string prefix, as in policies and
 *                            credentials); every budget whose prefix matches the name is checked;
 * - registrations_per_second registrations by one principal within one fixed 1-second window of request
 *                            timestamps (`RateWindows`).
 * `over` says what exceeding any budget yields: "refuse" (the default) or "defer" (retry later).
 *
 * Canonical JSON (`quotaToJson`, stable: sorted keys, prefixes sorted, absent budgets omitted):
 *   {"maxInstances":1000,"maxNames":50,"over":"refuse","prefixes":[{"maxInstances":100,"prefix":"eu/pay/"}],
 *    "registrationsPerSecond":20,"version":1}
 *
 * Admission (`checkQuota`) checks, in this order, and reports the first budget a request would exceed:
 * max_names (when it adds a name), max_instances (when it adds an instance), then the matching prefix budgets
 * in prefix order (when it adds an instance). A budget is exceeded when the count is already at or above
 * its limit. Updating an existing instance adds nothing and passes. The rate is checked separately, last
 * (`checkRate`), so that a registration refused for another budget does not use the principal's rate.
 */
import { quote, utf8Length } from '../registry/names.ts';
import { MAX_LIST_ENTRIES, prefixProblem } from './policy.ts';

export const QUOTA_VERSION = 1;
/** Largest quota JSON document, in UTF-8 bytes. */
export const MAX_QUOTA_BYTES = 64 * 1024;
/** Most prefix budgets in one quota. */
export const MAX_QUOTA_PREFIXES = MAX_LIST_ENTRIES;
/** Largest registrations_per_second. */
export const MAX_RATE = 1_000_000;

export const OVER_OUTCOMES = ['refuse', 'defer'] as const;
export type OverOutcome = (typeof OVER_OUTCOMES)[number];

export interface QuotaPrefixBudget {
  readonly prefix: string;
  readonly maxInstances: number;
}

/** The canonical quota document (what is replicated). Absent budgets are unlimited. */
export interface QuotaDocument {
  readonly version: 1;
  readonly maxInstances?: number;
  readonly maxNames?: number;
  /** Sorted by prefix, no duplicates. */
  readonly prefixes: readonly QuotaPrefixBudget[];
  /** Per principal. */
  readonly registrationsPerSecond?: number;
  readonly over: OverOutcome;
}

/** A quota as code may write it. A QuotaDocument is one. */
export interface QuotaInput {
  readonly version?: 1;
  readonly maxInstances?: number;
  readonly maxNames?: number;
  readonly prefixes?: readonly QuotaPrefixBudget[];
  readonly registrationsPerSecond?: number;
  readonly over?: OverOutcome;
}

/** What the scope holds now. */
export interface QuotaUsage {
  readonly instances: number;
  readonly names: number;
  /** Instances whose name starts with `prefix` (asked only for the quota's own prefixes). */
  prefixInstances(prefix: string): number;
}

/** What a registration would add. */
export interface QuotaRequest {
  readonly addsInstance: boolean;
  readonly addsName: boolean;
  readonly name: string;
}

export type QuotaBudget =
  | 'max_instances'
  | 'max_names'
  | 'registrations_per_second'
  | `prefix "${string}" max_instances`;

export interface QuotaVerdict {
  /** 'max_instances', 'max_names', 'prefix "eu/pay/" max_instances' or 'registrations_per_second'. */
  readonly budget: QuotaBudget;
  readonly limit: number;
  readonly current: number;
  readonly outcome: OverOutcome;
  /** One line naming the budget, e.g. `quota exceeded: scope max_instances 1000 reached (1000 registered)`. */
  readonly message: string;
  /** For the rate: milliseconds from the request's timestamp to the start of the next window. */
  readonly retryAfterMs?: number;
}

export class QuotaError extends Error {
  override readonly name = 'QuotaError';
}

// ---------------------------------------------------------------------------------------------------
// Validation and canonical form

const KEYS = ['version', 'maxInstances', 'maxNames', 'prefixes', 'registrationsPerSecond', 'over'] as const;
const canonicalJson = new WeakMap<QuotaDocument, string>();

/** Validates a decoded quota object and returns its canonical document. Throws QuotaError. */
export function quotaFromObject(value: unknown): QuotaDocument {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new QuotaError(`a quota is a JSON object such as {"maxInstances": 1000}, not ${describe(value)}`);
  }
  const v = value as Record<string, unknown>;
  for (const key of Object.keys(v)) {
    if (!(KEYS as readonly string[]).includes(key)) {
      throw new QuotaError(`quota: unknown field ${quote(key)}: a quota has ${KEYS.join(', ')}`);
    }
  }
  if (Object.hasOwn(v, 'version') && v.version !== QUOTA_VERSION) {
    throw new QuotaError(`quota: version ${describe(v.version)} is not supported: the quota version is 1`);
  }
  const maxInstances = optionalCount(v, 'maxInstances', 'max_instances');
  const maxNames = optionalCount(v, 'maxNames', 'max_names');
  let rate: number | undefined;
  if (Object.hasOwn(v, 'registrationsPerSecond')) {
    const r = v.registrationsPerSecond;
    if (typeof r !== 'number' || !Number.isSafeInteger(r) || r < 1 || r > MAX_RATE) {
      throw new QuotaError(
        `quota: registrations_per_second ${describe(r)} is not an integer 1..${MAX_RATE} (leave it out for no rate limit)`,
      );
    }
    rate = r;
  }
  let over: OverOutcome = 'refuse';
  if (Object.hasOwn(v, 'over')) {
    if (typeof v.over !== 'string' || !(OVER_OUTCOMES as readonly string[]).includes(v.over)) {
      throw new QuotaError(`quota: over ${describe(v.over)} is not "refuse" or "defer"`);
    }
    over = v.over as OverOutcome;
  }
  const prefixes = prefixBudgets(Object.hasOwn(v, 'prefixes') ? v.prefixes : []);
  // Built with its keys in sorted order, so that JSON.stringify gives the canonical JSON.
  const doc: QuotaDocument = Object.freeze({
    ...(maxInstances === undefined ? {} : { maxInstances }),
    ...(maxNames === undefined ? {} : { maxNames }),
    over,
    prefixes,
    ...(rate === undefined ? {} : { registrationsPerSecond: rate }),
    version: 1 as const,
  });
  canonicalJson.set(doc, JSON.stringify(doc));
  return doc;
}

/** The canonical form of a quota written in code. Throws QuotaError. */
export function canonicalQuota(doc: QuotaInput): QuotaDocument {
  const known = doc as QuotaDocument;
  if (typeof doc === 'object' && doc !== null && canonicalJson.has(known)) return known;
  return quotaFromObject(doc);
}

/** Canonical JSON: equal quotas give equal strings. */
export function quotaToJson(doc: QuotaInput): string {
  return canonicalJson.get(canonicalQuota(doc))!;
}

/** Decodes and validates a quota JSON document (as replicated). Throws QuotaError. */
export function decodeQuota(json: string): QuotaDocument {
  if (typeof json !== 'string')
    throw new QuotaError(`a quota document is a JSON string, not ${describe(json)}`);
  const bytes = utf8Length(json);
  if (bytes > MAX_QUOTA_BYTES) {
    throw new QuotaError(`the quota is ${bytes} bytes: a quota document is at most ${MAX_QUOTA_BYTES} bytes`);
  }
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const clean = message.replace(/, (?:\.\.\.)?"[\s\S]*" is not valid JSON$/, '').replace(/\s+/g, ' ');
    throw new QuotaError(`the quota is not valid JSON: ${clean.slice(0, 200)}`);
  }
  return quotaFromObject(value);
}

/** Command-line flags of `aq quota set`; numbers may be given as the strings the command line has. */
export interface QuotaFlags {
  readonly maxInstances?: number | string | undefined;
  readonly maxNames?: number | string | undefined;
  /** Repeatable `--prefix PREFIX=MAX_INSTANCES`, e.g. "eu/pay/=100". */
  readonly prefix?: readonly string[] | undefined;
  readonly rate?: number | string | undefined;
  readonly over?: string | undefined;
}

/** Builds a quota from command-line flags. Throws QuotaError naming the flag. */
export function quotaFromFlags(flags: QuotaFlags): QuotaDocument {
  const input: Record<string, unknown> = {};
  if (flags.maxInstances !== undefined)
    input.maxInstances = flagCount('--max-instances', flags.maxInstances, 0);
  if (flags.maxNames !== undefined) input.maxNames = flagCount('--max-names', flags.maxNames, 0);
  if (flags.rate !== undefined) input.registrationsPerSecond = flagCount('--rate', flags.rate, 1, MAX_RATE);
  if (flags.over !== undefined) {
    if (!(OVER_OUTCOMES as readonly string[]).includes(flags.over)) {
      throw new QuotaError(`--over ${quote(String(flags.over))}: expected refuse or defer`);
    }
    input.over = flags.over;
  }
  if (flags.prefix !== undefined) {
    input.prefixes = flags.prefix.map((spec) => {
      const s = String(spec);
      const eq = s.lastIndexOf('=');
      if (eq < 0) {
        throw new QuotaError(
          `--prefix ${quote(s)}: expected PREFIX=MAX_INSTANCES, such as "eu/payments/=100"`,
        );
      }
      const prefix = s.slice(0, eq);
      const problem = prefixBudgetProblem(prefix);
      if (problem !== null) throw new QuotaError(`--prefix ${quote(s)}: the prefix ${problem}`);
      return { prefix, maxInstances: flagCount(`--prefix ${quote(s)}: MAX_INSTANCES`, s.slice(eq + 1), 0) };
    });
  }
  return quotaFromObject(input);
}

function flagCount(flag: string, value: number | string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof value === 'number' ? value : /^[0-9]{1,16}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range =
      max === Number.MAX_SAFE_INTEGER ? `an integer of at least ${min}` : `an integer ${min}..${max}`;
    throw new QuotaError(`${flag} ${quote(String(value))}: expected ${range}`);
  }
  return n;
}

function optionalCount(v: Record<string, unknown>, key: string, budget: string): number | undefined {
  if (!Object.hasOwn(v, key)) return undefined;
  const n = v[key];
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new QuotaError(
      `quota: ${budget} ${describe(n)} is not a non-negative integer (leave it out for no limit)`,
    );
  }
  return n;
}

function prefixBudgets(value: unknown): QuotaPrefixBudget[] {
  if (!Array.isArray(value)) {
    throw new QuotaError(
      `quota: prefixes must be a list of {"prefix", "maxInstances"}, not ${describe(value)}`,
    );
  }
  if (value.length > MAX_QUOTA_PREFIXES) {
    throw new QuotaError(`quota: ${value.length} prefix budgets: at most ${MAX_QUOTA_PREFIXES} are allowed`);
  }
  const out: QuotaPrefixBudget[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < value.length; i++) {
    const b: unknown = value[i];
    if (typeof b !== 'object' || b === null || Array.isArray(b)) {
      throw new QuotaError(
        `quota: prefixes[${i}] must be {"prefix": "...", "maxInstances": N}, not ${describe(b)}`,
      );
    }
    const entry = b as Record<string, unknown>;
    for (const key of Object.keys(entry)) {
      if (key !== 'prefix' && key !== 'maxInstances') {
        throw new QuotaError(
          `quota: prefixes[${i}]: unknown field ${quote(key)}: a prefix budget has prefix, maxInstances`,
        );
      }
    }
    const prefix = entry.prefix;
    if (typeof prefix !== 'string') {
      throw new QuotaError(`quota: prefixes[${i}].prefix must be a string, not ${describe(prefix)}`);
    }
    const problem = prefixBudgetProblem(prefix);
    if (problem !== null) throw new QuotaError(`quota: prefix ${quote(prefix)} ${problem}`);
    const max = entry.maxInstances;
    if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 0) {
      throw new QuotaError(
        `quota: prefix ${quote(prefix)} max_instances ${describe(max)} is not a non-negative integer`,
      );
    }
    if (seen.has(prefix))
      throw new QuotaError(`quota: prefix ${quote(prefix)} has two budgets: give each prefix one`);
    seen.add(prefix);
    out.push(Object.freeze({ maxInstances: max, prefix }));
  }
  out.sort((a, b) => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0));
  return Object.freeze(out) as QuotaPrefixBudget[];
}

function prefixBudgetProblem(prefix: string): string | null {
  if (prefix.length === 0) return 'is empty: use max_instances for the whole scope';
  return prefixProblem(prefix);
}

// ---------------------------------------------------------------------------------------------------
// Admission

/** The first budget `request` would exceed, or null when it is within every budget. Pure. */
export function checkQuota(
  doc: QuotaDocument,
  usage: QuotaUsage,
  request: QuotaRequest,
): QuotaVerdict | null {
  const over = doc.over;
  if (request.addsName && doc.maxNames !== undefined && usage.names >= doc.maxNames) {
    return verdict(
      'max_names',
      doc.maxNames,
      usage.names,
      over,
      `scope max_names ${doc.maxNames} reached (${usage.names} names)`,
    );
  }
  if (!request.addsInstance) return null;
  if (doc.maxInstances !== undefined && usage.instances >= doc.maxInstances) {
    return verdict(
      'max_instances',
      doc.maxInstances,
      usage.instances,
      over,
      `scope max_instances ${doc.maxInstances} reached (${usage.instances} registered)`,
    );
  }
  for (const { prefix, maxInstances } of doc.prefixes) {
    if (!request.name.startsWith(prefix)) continue;
    const current = usage.prefixInstances(prefix);
    if (current >= maxInstances) {
      return verdict(
        `prefix ${quote(prefix)} max_instances` as QuotaBudget,
        maxInstances,
        current,
        over,
        `prefix ${quote(prefix)} max_instances ${maxInstances} reached (${current} registered under it)`,
      );
    }
  }
  return null;
}

/**
 * The rate budget for one registration by `principal` at `timestampMs` (the request's signed timestamp):
 * null when admitted (which uses one of the principal's registrations in that second), else the verdict.
 * Null too when the quota sets no rate.
 */
export function checkRate(
  doc: QuotaDocument,
  windows: RateWindows,
  principal: string,
  timestampMs: number,
): QuotaVerdict | null {
  const limit = doc.registrationsPerSecond;
  if (limit === undefined) return null;
  if (windows.take(principal, timestampMs, limit)) return null;
  const current = windows.count(principal);
  const retryAfterMs = RATE_WINDOW_MS - (((timestampMs % RATE_WINDOW_MS) + RATE_WINDOW_MS) % RATE_WINDOW_MS);
  return {
    ...verdict(
      'registrations_per_second',
      limit,
      current,
      doc.over,
      `registrations_per_second ${limit} reached for this principal (${current} in this second); retry in ${retryAfterMs} ms`,
    ),
    retryAfterMs,
  };
}

function verdict(
  budget: QuotaBudget,
  limit: number,
  current: number,
  outcome: OverOutcome,
  what: string,
): QuotaVerdict {
  return { budget, limit, current, outcome, message: `quota exceeded: ${what}` };
}

// ---------------------------------------------------------------------------------------------------
// Rate windows

/** Length of one rate window. */
export const RATE_WINDOW_MS = 1000;
/** Windows older than the newest timestamp seen minus this are forgotten. */
export const RATE_HORIZON_MS = 60_000;
/** Most principals remembered at once; beyond, the oldest window's principals are forgotten first. */
export const MAX_RATE_PRINCIPALS = 65_536;

/** The serialized form of RateWindows (`toJSON`), JSON-safe. */
export interface RateWindowsState {
  readonly version: 1;
  readonly maxPrincipals: number;
  /** The newest request timestamp seen, or null before any. */
  readonly newest: number | null;
  /** [window, [[principal, count], ...]] by window ascending; principals in the order they entered it. */
  readonly windows: readonly (readonly [number, readonly (readonly [string, number])[]])[];
}

interface RateEntry {
  window: number;
  count: number;
}

/**
 * Per-principal fixed 1-second windows keyed by the request's timestamp (window = floor(ms / 1000)).
 * Deterministic: the same sequence of `take` calls gives the same answers and the same `toJSON()`, and
 * `fromJSON(toJSON())` continues identically. Reads no clock.
 *
 * - A request is counted in its own window, or in the principal's current window when that is newer
 *   (a late timestamp cannot reopen an older window), or in the horizon's window when it is older
 *   than the horizon (newest timestamp seen - 60 s).
 * - Windows before the horizon are forgotten as the newest timestamp advances. So at most 61 windows are
 *   live, and at most `maxPrincipals` principals (65,536): adding one more forgets a principal of the
 *   oldest live window first (the one that entered that window first).
 * - Timestamps are the callers' signed ones: the admitting anchor must bound their skew against its clock,
 *   since a timestamp far in the future moves the horizon for everyone.
 */
export class RateWindows {
  readonly #maxPrincipals: number;
  #newest: number | undefined;
  readonly #entries = new Map<string, RateEntry>();
  /** window -> principals in that window, in the order they entered it. */
  readonly #buckets = new Map<number, Set<string>>();

  constructor(options: { readonly maxPrincipals?: number } = {}) {
    const max = options.maxPrincipals ?? MAX_RATE_PRINCIPALS;
    if (!Number.isSafeInteger(max) || max < 1)
      throw new RangeError(`maxPrincipals ${max} is not a positive integer`);
    this.#maxPrincipals = max;
  }

  /** Principals remembered. */
  get size(): number {
    return this.#entries.size;
  }

  /** Registrations counted for `principal` in its current window (0 when it has none). */
  count(principal: string): number {
    return this.#entries.get(principal)?.count ?? 0;
  }

  /**
   * Counts one registration by `principal` at `timestampMs` if that keeps it within `limit` per window:
   * true when admitted (and counted), false when the window is full (nothing counted).
   */
  take(principal: string, timestampMs: number, limit: number): boolean {
    if (typeof principal !== 'string') throw new RangeError('the principal must be a string');
    if (!Number.isSafeInteger(timestampMs))
      throw new RangeError(`timestamp ${timestampMs} is not an integer (ms)`);
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new RangeError(`limit ${limit} is not a positive integer`);
    if (this.#newest === undefined || timestampMs > this.#newest) {
      this.#newest = timestampMs;
      this.#forgetBefore(this.#horizon());
    }
    const window = Math.max(Math.floor(timestampMs / RATE_WINDOW_MS), this.#horizon());
    const entry = this.#entries.get(principal);
    if (entry !== undefined && entry.window >= window) {
      if (entry.count >= limit) return false;
      entry.count++;
      return true;
    }
    if (entry !== undefined) {
      this.#leave(principal, entry.window);
      entry.window = window;
      entry.count = 1;
    } else {
      if (this.#entries.size >= this.#maxPrincipals) this.#evictOldest();
      this.#entries.set(principal, { window, count: 1 });
    }
    this.#enter(principal, window);
    return true;
  }

  toJSON(): RateWindowsState {
    const windows = [...this.#buckets.keys()]
      .sort((a, b) => a - b)
      .map(
        (w) => [w, [...this.#buckets.get(w)!].map((p) => [p, this.#entries.get(p)!.count] as const)] as const,
      );
    return { version: 1, maxPrincipals: this.#maxPrincipals, newest: this.#newest ?? null, windows };
  }

  /** Restores `toJSON()`'s state, validating it. Throws QuotaError for a malformed state. */
  static fromJSON(state: unknown): RateWindows {
    const bad = (why: string): QuotaError => new QuotaError(`rate windows state is malformed: ${why}`);
    if (typeof state !== 'object' || state === null) throw bad('not an object');
    const s = state as Record<string, unknown>;
    if (s.version !== 1) throw bad('version is not 1');
    const max = s.maxPrincipals;
    if (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 1) throw bad('maxPrincipals');
    const windows = new RateWindows({ maxPrincipals: max });
    const newest = s.newest;
    if (newest !== null && (typeof newest !== 'number' || !Number.isSafeInteger(newest))) throw bad('newest');
    if (!Array.isArray(s.windows)) throw bad('windows is not a list');
    if (newest === null && s.windows.length > 0) throw bad('windows without a newest timestamp');
    windows.#newest = newest ?? undefined;
    let previous = Number.NEGATIVE_INFINITY;
    for (const item of s.windows as unknown[]) {
      if (!Array.isArray(item) || item.length !== 2 || !Array.isArray(item[1]))
        throw bad('a window is not [w, [...]]');
      const w: unknown = item[0];
      if (typeof w !== 'number' || !Number.isSafeInteger(w) || w <= previous)
        throw bad('windows are not ascending integers');
      previous = w;
      if (w < windows.#horizon() || w > Math.floor((newest as number) / RATE_WINDOW_MS)) {
        throw bad(`window ${w} is outside the live range`);
      }
      const entries = item[1] as unknown[];
      if (entries.length === 0) throw bad(`window ${w} is empty`);
      for (const e of entries) {
        if (!Array.isArray(e) || e.length !== 2) throw bad('an entry is not [principal, count]');
        const [principal, count] = e as [unknown, unknown];
        if (typeof principal !== 'string') throw bad('a principal is not a string');
        if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1) throw bad('a count');
        if (windows.#entries.has(principal)) throw bad(`principal ${quote(principal)} appears twice`);
        if (windows.#entries.size >= max) throw bad('more principals than maxPrincipals');
        windows.#entries.set(principal, { window: w, count });
        windows.#enter(principal, w);
      }
    }
    return windows;
  }

  #horizon(): number {
    return this.#newest === undefined
      ? Number.NEGATIVE_INFINITY
      : Math.floor((this.#newest - RATE_HORIZON_MS) / RATE_WINDOW_MS);
  }

  #enter(principal: string, window: number): void {
    let bucket = this.#buckets.get(window);
    if (bucket === undefined) {
      bucket = new Set();
      this.#buckets.set(window, bucket);
    }
    bucket.add(principal);
  }

  #leave(principal: string, window: number): void {
    const bucket = this.#buckets.get(window);
    if (bucket === undefined) return;
    bucket.delete(principal);
    if (bucket.size === 0) this.#buckets.delete(window);
  }

  #forgetBefore(horizon: number): void {
    for (const [window, bucket] of this.#buckets) {
      if (window >= horizon) continue;
      for (const p of bucket) this.#entries.delete(p);
      this.#buckets.delete(window);
    }
  }

  #evictOldest(): void {
    let oldest = Number.POSITIVE_INFINITY;
    for (const window of this.#buckets.keys()) if (window < oldest) oldest = window;
    const bucket = this.#buckets.get(oldest);
    const first = bucket?.values().next();
    if (first === undefined || first.done === true) return;
    this.#entries.delete(first.value);
    this.#leave(first.value, oldest);
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return quote(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return typeof v === 'object' ? 'an object' : typeof v;
}
