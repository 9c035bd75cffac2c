/**
 * A scope's policy: who may do what on which names (DESIGN.md §2). Pure: no I/O, no clock.
 *
 * A policy is authored in HCL (what Consul and Nomad users write) or JSON, parsed by policy-file.ts, and
 * stored and replicated as one canonical JSON document (`policyToJson`). The state machine only ever
 * sees the canonical document, so every member of the scope group evaluates every request identically.
 *
 * ## The language
 *
 *     default = "refuse"               # outcome when no rule matches: "refuse" (if omitted) | "allow" | "defer"
 *
 *     rule "nomad-clients" {           # one block per rule; the label is the rule's name
 *       roles    = ["registrar"]       # required. credential roles: scope-admin | anchor | registrar |
 *                                      #   resolver | auditor, or "*" for any role
 *       actions  = ["register", "deregister"]
 *                                      # required. register | deregister | resolve | read-lineage |
 *                                      #   administer, or "*" for any action
 *       outcome  = "allow"             # required. allow | refuse | defer
 *       keys     = []                  # principal public keys (64 hex digits); empty (the default) = any key
 *       scopes   = ["local"]           # the requester's scope: "local" (a principal of this scope), a scope
 *                                      #   id (64 hex digits), or "*" for any; default ["local"]
 *       prefixes = ["eu/payments/"]    # name prefixes; "" matches every name; default [""]
 *       tags     = ["prod"]            # the request must carry ALL these tags (registrations carry the
 *                                      #   instance's tags; requests without tags never match); default []
 *       attest   = false               # an allowed resolve is answered with attestation; default false;
 *                                      #   only on allow rules
 *     }
 *
 * The JSON form is the same object: `{"default": "refuse", "rule": {"nomad-clients": {...}}}`; what hcl2json
 * produces (`"rule": {"nomad-clients": [{...}]}`, one block per name) is accepted too, and so is the
 * canonical form below (`"rules": [{"name": ..., ...}]`), so a document read back can be applied again.
 * Values are literals: HCL expressions and interpolations (`${...}`) are not evaluated and are refused.
 * Unknown attributes, blocks inside a rule, and a rule block without exactly one label are refused.
 *
 * Names and limits: a rule name is 1..64 characters of [A-Za-z0-9_.-] and is unique; "default" is reserved
 * (decisions name it when no rule matched). At most 256 rules, at most 64 entries per list, a prefix is at
 * most 256 bytes of the characters names use ([a-z0-9-] and '/'), a tag at most 255 bytes. The source file
 * and the canonical JSON are each at most 64 KiB.
 *
 * ## Matching
 *
 * A rule matches a request when every one of these holds:
 * - its roles contain the requester's role or "*";
 * - its actions contain the action or "*";
 * - its keys are empty or contain the requester's key (hex, compared case-insensitively);
 * - its scopes contain "*" or the requester's scope ("local", or the requesting scope's id);
 * - one of its prefixes is a prefix of the name — a plain string prefix, as Consul's `*_prefix` rules and
 *   credentials: "eu/pay" matches "eu/payments/api"; end a prefix with "/" to match only below a label;
 * - every one of its tags is among the request's tags.
 *
 * `scope-admin` gets nothing implicitly here: the evaluator only reports what the rules say, and the caller
 * decides what a role may do when no rule matches (`Decision.rule === 'default'`).
 *
 * ## Deciding (order-independent: the order of rules in the file never matters)
 *
 * 1. No rule matches: the outcome is the policy's `default`, `rule` is "default", `attest` is false.
 * 2. Otherwise deny overrides: if any matching rule refuses, the outcome is refuse; else if any defers,
 *    defer; else allow. A refuse rule is not overridden by a more specific allow rule: narrow the refuse
 *    rule instead.
 * 3. Among the matching rules with that outcome, the most specific one is named in the decision (it also
 *    supplies the reason). Specificity compares, in order, and the first difference decides:
 *    a. the longest of the rule's prefixes that matches the name (in bytes) — longer wins;
 *    b. whether the rule names keys — a rule naming keys wins over one that does not;
 *    c. how many of roles, scopes, actions and tags the rule constrains (a list without "*"; tags
 *       non-empty) — more wins;
 *    d. the rule name — the smaller in ASCII order wins.
 * 4. `attest` is true when the outcome is allow and any matching allow rule has `attest = true`.
 *
 * Reasons are one line: `rule "R" allows | forbids | defers the decision for ROLE to ACTION NAME`, or
 * `no rule allows ROLE to ACTION NAME: the default is refuse|defer` (`no rule matches ...: the default is
 * allow`). Values that are not plain printable ASCII are quoted and escaped.
 *
 * ## Canonical form
 *
 * `{"default": ..., "rules": [...], "version": 1}`: rules sorted by name, every field present with its
 * default filled in, lists deduplicated and sorted (JavaScript string order), keys and scope ids lowercase, a list
 * holding "*" reduced to ["*"], object keys sorted. Equal policies give equal strings.
 */
import { MAX_TAG_BYTES } from '../registry/instance.ts';
import { quote, utf8Length } from '../registry/names.ts';
import { ROLES, type Role } from './credential.ts';

/** Version of the canonical document format. */
export const POLICY_VERSION = 1;
/** Largest policy source file and largest canonical JSON document, in UTF-8 bytes. */
export const MAX_POLICY_BYTES = 64 * 1024;
export const MAX_RULES = 256;
export const MAX_RULE_NAME_LENGTH = 64;
/** Most entries in one list attribute (roles, keys, scopes, actions, prefixes, tags). */
export const MAX_LIST_ENTRIES = 64;
export const MAX_PREFIX_BYTES = 256;
/** Matches any role, action or scope. */
export const WILDCARD = '*';
/** The scope entry matching principals of the evaluating scope itself. */
export const LOCAL_SCOPE = 'local';
/** The `rule` of a decision that no rule matched; reserved as a rule name. */
export const DEFAULT_RULE = 'default';

export const OUTCOMES = ['allow', 'refuse', 'defer'] as const;
export type Outcome = (typeof OUTCOMES)[number];
export const ACTIONS = ['register', 'deregister', 'resolve', 'read-lineage', 'administer'] as const;
export type Action = (typeof ACTIONS)[number];
export type { Role };

/** One rule of a canonical policy: every field present, lists sorted and deduplicated. */
export interface PolicyRule {
  readonly name: string;
  readonly roles: readonly (Role | '*')[];
  readonly keys: readonly string[];
  readonly scopes: readonly string[];
  readonly actions: readonly (Action | '*')[];
  readonly prefixes: readonly string[];
  readonly tags: readonly string[];
  readonly outcome: Outcome;
  readonly attest: boolean;
}

/** The canonical policy document (what is replicated). */
export interface PolicyDocument {
  readonly version: 1;
  readonly default: Outcome;
  /** Sorted by name. */
  readonly rules: readonly PolicyRule[];
}

/** A rule as code may write it: the optional fields take their defaults. */
export interface PolicyRuleInput {
  readonly name: string;
  readonly roles: readonly string[];
  readonly actions: readonly string[];
  readonly outcome: Outcome;
  readonly keys?: readonly string[];
  readonly scopes?: readonly string[];
  readonly prefixes?: readonly string[];
  readonly tags?: readonly string[];
  readonly attest?: boolean;
}

/** A policy as code may write it (any rule order, defaults omitted). A PolicyDocument is one. */
export interface PolicyInput {
  readonly version?: 1;
  readonly default?: Outcome;
  readonly rules?: readonly PolicyRuleInput[];
}

/** What is being asked. */
export interface PolicyRequest {
  readonly role: Role;
  /** The principal's public key, hex. */
  readonly key: string;
  /** "local" for a principal of this scope, else the requesting scope's id (hex). */
  readonly scope: string;
  readonly action: Action;
  readonly name: string;
  /** The tags the request carries (a registration: its instance's tags). */
  readonly tags?: readonly string[] | undefined;
}

export interface Decision {
  readonly outcome: Outcome;
  /** True when allowed by rules of which at least one asks for attestation. */
  readonly attest: boolean;
  /** The deciding rule's name, or "default" when no rule matched. */
  readonly rule: string;
  /** One line, e.g. `rule "nomad-clients" allows registrar to register eu/payments/api`. */
  readonly reason: string;
}

/** A compiled policy: evaluate many requests against one document. */
export interface PolicyEvaluator {
  readonly document: PolicyDocument;
  /** The canonical JSON of `document`. */
  readonly json: string;
  evaluate(request: PolicyRequest): Decision;
}

export type PolicyErrorCode =
  | 'syntax' // not HCL / JSON
  | 'too-large' // over MAX_POLICY_BYTES
  | 'too-deep' // nesting too deep for the parser
  | 'bad-structure' // a block where an attribute belongs, a rule block without exactly one label, ...
  | 'unknown-attribute'
  | 'missing-attribute'
  | 'bad-type'
  | 'bad-value'
  | 'duplicate-rule'
  | 'limit' // too many rules, list entries
  | 'parser-failure'; // the HCL parser itself failed

export interface PolicyErrorOptions {
  readonly code: PolicyErrorCode;
  /** The rule the problem is in. */
  readonly rule?: string | undefined;
  /** The attribute the problem is in (of `rule`, or top-level without `rule`). */
  readonly attribute?: string | undefined;
  readonly file?: string | undefined;
  readonly line?: number | undefined;
}

/** Why a policy is refused: one line (`file:line: ...` when read from a file). */
export class PolicyError extends Error {
  override readonly name = 'PolicyError';
  readonly code: PolicyErrorCode;
  readonly rule: string | undefined;
  readonly attribute: string | undefined;
  readonly file: string | undefined;
  readonly line: number | undefined;

  constructor(message: string, options: PolicyErrorOptions) {
    super(oneLine(message));
    this.code = options.code;
    this.rule = options.rule;
    this.attribute = options.attribute;
    this.file = options.file;
    this.line = options.line;
  }
}

// ---------------------------------------------------------------------------------------------------
// Validation and canonical form

const RULE_ATTRIBUTES = [
  'roles',
  'actions',
  'outcome',
  'keys',
  'scopes',
  'prefixes',
  'tags',
  'attest',
] as const;
type RuleAttribute = (typeof RULE_ATTRIBUTES)[number];
const LIST_ATTRIBUTES = ['roles', 'actions', 'keys', 'scopes', 'prefixes', 'tags'] as const;
type ListAttribute = (typeof LIST_ATTRIBUTES)[number];
const HEX64 = /^[0-9a-fA-F]{64}$/;
const RULE_NAME = /^[A-Za-z0-9_.-]+$/;

/** Memo of the canonical JSON of documents built here (frozen, so it cannot go stale). */
const canonicalJson = new WeakMap<PolicyDocument, string>();

/**
 * Validates a decoded policy (authoring form `{default, rule: {NAME: {...}}}`, hcl2json's
 * `{rule: {NAME: [{...}]}}`, or the canonical `{version, default, rules: [...]}`) and returns its
 * canonical document. Throws PolicyError naming the rule and attribute at fault.
 */
export function policyFromObject(value: unknown): PolicyDocument {
  if (!isPlainObject(value)) {
    throw new PolicyError(`a policy is an object of "default" and "rule" entries, not ${describe(value)}`, {
      code: 'bad-type',
    });
  }
  for (const key of Object.keys(value)) {
    if (key !== 'version' && key !== 'default' && key !== 'rule' && key !== 'rules') {
      throw new PolicyError(
        `unknown attribute ${quote(key)}: a policy has default = OUTCOME and rule "NAME" { ... } blocks`,
        { code: 'unknown-attribute', attribute: key },
      );
    }
  }
  if (Object.hasOwn(value, 'version') && value.version !== POLICY_VERSION) {
    throw new PolicyError(`version ${describe(value.version)} is not supported: the policy version is 1`, {
      code: 'bad-value',
      attribute: 'version',
    });
  }
  const fallback = Object.hasOwn(value, 'default')
    ? enumValue(value.default, OUTCOMES, 'an outcome', { attribute: 'default' })
    : 'refuse';
  if (Object.hasOwn(value, 'rule') && Object.hasOwn(value, 'rules')) {
    throw new PolicyError('a policy has either "rule" blocks or a canonical "rules" list, not both', {
      code: 'bad-structure',
      attribute: 'rules',
    });
  }
  const bodies = Object.hasOwn(value, 'rules') ? ruleList(value.rules) : ruleMap(value.rule);
  const rules = bodies.map(([name, body]) => normalizeRule(name, body));
  rules.sort((a, b) => compareStrings(a.name, b.name));
  const doc: PolicyDocument = deepFreeze({ version: 1, default: fallback, rules });
  const json = serialize(doc);
  const bytes = utf8Length(json);
  if (bytes > MAX_POLICY_BYTES) {
    throw new PolicyError(
      `the canonical policy is ${bytes} bytes: a policy is at most ${MAX_POLICY_BYTES} bytes (64 KiB); use fewer or shorter rules`,
      { code: 'too-large' },
    );
  }
  canonicalJson.set(doc, json);
  return doc;
}

/** The canonical form of a policy written in code. Throws PolicyError when it is not valid. */
export function canonicalPolicy(doc: PolicyInput): PolicyDocument {
  const known = doc as PolicyDocument;
  if (typeof doc === 'object' && doc !== null && canonicalJson.has(known)) return known;
  return policyFromObject(doc);
}

/** Canonical JSON: equal policies give equal strings (rules sorted, defaults filled in, keys sorted). */
export function policyToJson(doc: PolicyInput): string {
  return canonicalJson.get(canonicalPolicy(doc))!;
}

/** Decodes and validates a policy JSON document (as replicated). Throws PolicyError. */
export function decodePolicy(json: string): PolicyDocument {
  if (typeof json !== 'string') {
    throw new PolicyError(`a policy document is a JSON string, not ${describe(json)}`, { code: 'bad-type' });
  }
  const bytes = utf8Length(json);
  if (bytes > MAX_POLICY_BYTES) {
    throw new PolicyError(
      `the policy is ${bytes} bytes: a policy is at most ${MAX_POLICY_BYTES} bytes (64 KiB)`,
      {
        code: 'too-large',
      },
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new PolicyError(`the policy is not valid JSON: ${cleanJsonMessage(error)}`, { code: 'syntax' });
  }
  return policyFromObject(value);
}

/** The development policy `aq dev` runs with: `default = "allow"`, no rules. */
export const PERMISSIVE_POLICY: PolicyDocument = policyFromObject({
  version: 1,
  default: 'allow',
  rules: [],
});

/**
 * Why `prefix` cannot be a name prefix, or null: at most MAX_PREFIX_BYTES bytes of the characters names
 * use ([a-z0-9-] and '/'). "" (every name) is valid. Shared with quotas.
 */
export function prefixProblem(prefix: string): string | null {
  if (prefix.length > MAX_PREFIX_BYTES) {
    return `is ${utf8Length(prefix)} bytes long: a prefix is at most ${MAX_PREFIX_BYTES} bytes`;
  }
  for (let i = 0; i < prefix.length; i++) {
    const c = prefix.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2f) continue;
    const hint = prefix === WILDCARD ? '; "" matches every name' : expressionHint(prefix);
    const ch = prefix.codePointAt(i) ?? c;
    const shown =
      ch > 0x20 && ch < 0x7f ? `'${String.fromCodePoint(ch)}'` : `U+${ch.toString(16).toUpperCase()}`;
    return `has ${shown}, which no name contains: names use lowercase [a-z0-9-] and '/'${hint}`;
  }
  return null;
}

type Located = { readonly rule?: string; readonly attribute?: string };

function ruleMap(value: unknown): [string, Record<string, unknown>][] {
  if (value === undefined) return [];
  if (Array.isArray(value)) {
    throw new PolicyError('a rule needs a name: write rule "NAME" { ... }', {
      code: 'bad-structure',
      attribute: 'rule',
    });
  }
  if (!isPlainObject(value)) {
    throw new PolicyError(`rule must be blocks, rule "NAME" { ... }, not ${describe(value)}`, {
      code: 'bad-type',
      attribute: 'rule',
    });
  }
  const names = Object.keys(value);
  if (names.length > MAX_RULES) {
    throw new PolicyError(`the policy has ${names.length} rules: at most ${MAX_RULES} are allowed`, {
      code: 'limit',
      attribute: 'rule',
    });
  }
  const out: [string, Record<string, unknown>][] = [];
  for (const name of names) {
    checkRuleName(name);
    let body = value[name];
    if (Array.isArray(body)) {
      if (body.length > 1) {
        throw new PolicyError(`rule ${quote(name)} is defined ${body.length} times: rule names are unique`, {
          code: 'duplicate-rule',
          rule: name,
        });
      }
      body = body.length === 1 ? body[0] : undefined;
    }
    if (!isPlainObject(body)) {
      throw new PolicyError(`rule ${quote(name)} must be a block of attributes, not ${describe(body)}`, {
        code: 'bad-type',
        rule: name,
      });
    }
    out.push([name, body]);
  }
  return out;
}

function ruleList(value: unknown): [string, Record<string, unknown>][] {
  if (!Array.isArray(value)) {
    throw new PolicyError(`rules must be a list of rules, not ${describe(value)}`, {
      code: 'bad-type',
      attribute: 'rules',
    });
  }
  if (value.length > MAX_RULES) {
    throw new PolicyError(`the policy has ${value.length} rules: at most ${MAX_RULES} are allowed`, {
      code: 'limit',
      attribute: 'rules',
    });
  }
  const seen = new Set<string>();
  const out: [string, Record<string, unknown>][] = [];
  for (let i = 0; i < value.length; i++) {
    const body: unknown = value[i];
    if (!isPlainObject(body) || typeof body.name !== 'string') {
      throw new PolicyError(`rules[${i}] must be a rule object with a "name" string`, {
        code: 'bad-type',
        attribute: 'rules',
      });
    }
    const name = body.name;
    checkRuleName(name);
    if (seen.has(name)) {
      throw new PolicyError(`rule ${quote(name)} is defined 2 times: rule names are unique`, {
        code: 'duplicate-rule',
        rule: name,
      });
    }
    seen.add(name);
    const { name: _name, ...rest } = body;
    out.push([name, rest]);
  }
  return out;
}

function checkRuleName(name: string): void {
  const at = { rule: name };
  if (name.length === 0 || name.length > MAX_RULE_NAME_LENGTH || !RULE_NAME.test(name)) {
    throw new PolicyError(
      `rule name ${quote(name)} is not valid: a rule name is 1..${MAX_RULE_NAME_LENGTH} characters of [A-Za-z0-9_.-]`,
      { code: 'bad-value', ...at },
    );
  }
  if (name === DEFAULT_RULE) {
    throw new PolicyError(
      `rule name "default" is reserved: decisions name the policy's default outcome "default"`,
      { code: 'bad-value', ...at },
    );
  }
}

function normalizeRule(name: string, body: Record<string, unknown>): PolicyRule {
  for (const key of Object.keys(body)) {
    if ((RULE_ATTRIBUTES as readonly string[]).includes(key)) continue;
    const v = body[key];
    const block = Array.isArray(v) && v.length > 0 && v.every(isPlainObject);
    throw new PolicyError(
      block
        ? `rule ${quote(name)}: unexpected block ${quote(key)}: a rule holds only the attributes ${RULE_ATTRIBUTES.join(', ')}`
        : `rule ${quote(name)}: unknown attribute ${quote(key)}: a rule has ${RULE_ATTRIBUTES.join(', ')}`,
      { code: block ? 'bad-structure' : 'unknown-attribute', rule: name, attribute: key },
    );
  }
  const where = (attribute: RuleAttribute): Located => ({ rule: name, attribute });
  for (const required of ['roles', 'actions', 'outcome'] as const) {
    if (!Object.hasOwn(body, required)) {
      throw new PolicyError(
        `rule ${quote(name)}: ${required} is missing: every rule says its roles, actions and outcome`,
        { code: 'missing-attribute', rule: name },
      );
    }
  }
  const outcome = enumValue(body.outcome, OUTCOMES, 'an outcome', where('outcome'));
  const roles = wildcardList(list(body, 'roles', name), ROLES, 'a role', where('roles'));
  const actions = wildcardList(list(body, 'actions', name), ACTIONS, 'an action', where('actions'));

  const keys = (list(body, 'keys', name) ?? []).map((k) => {
    if (!HEX64.test(k)) throw badEntry(name, 'keys', k, 'is not a public key: a key is 64 hex digits');
    return k.toLowerCase();
  });
  const scopes = (list(body, 'scopes', name) ?? [LOCAL_SCOPE]).map((s) => {
    if (s === LOCAL_SCOPE || s === WILDCARD) return s;
    if (!HEX64.test(s)) {
      throw badEntry(name, 'scopes', s, `is not a scope: use "local", a scope id (64 hex digits) or "*"`);
    }
    return s.toLowerCase();
  });
  const prefixes = list(body, 'prefixes', name) ?? [''];
  for (const p of prefixes) {
    const problem = prefixProblem(p);
    if (problem !== null) throw badEntry(name, 'prefixes', p, problem);
  }
  const tags = list(body, 'tags', name) ?? [];
  for (const t of tags) {
    if (t.length === 0) throw badEntry(name, 'tags', t, 'is empty: a tag is 1 or more characters');
    if (utf8Length(t) > MAX_TAG_BYTES)
      throw badEntry(name, 'tags', t, `is longer than ${MAX_TAG_BYTES} bytes`);
    if (!t.isWellFormed()) throw badEntry(name, 'tags', t, 'has a lone UTF-16 surrogate');
  }
  for (const [attribute, entries] of [
    ['scopes', scopes],
    ['prefixes', prefixes],
  ] as const) {
    if (entries.length === 0) {
      throw new PolicyError(
        `rule ${quote(name)}: ${attribute} is empty, so the rule matches nothing: leave it out for the default`,
        { code: 'bad-value', ...where(attribute) },
      );
    }
  }
  let attest = false;
  if (Object.hasOwn(body, 'attest')) {
    if (typeof body.attest !== 'boolean') {
      throw new PolicyError(
        `rule ${quote(name)}: attest must be true or false, not ${describe(body.attest)}`,
        {
          code: 'bad-type',
          ...where('attest'),
        },
      );
    }
    attest = body.attest;
  }
  if (attest && outcome !== 'allow') {
    throw new PolicyError(
      `rule ${quote(name)}: attest = true only applies to rules whose outcome is "allow"`,
      {
        code: 'bad-value',
        ...where('attest'),
      },
    );
  }
  // Keys in sorted order, so that JSON.stringify of the document is the canonical (sorted-key) JSON.
  return {
    actions,
    attest,
    keys: canonicalList(keys),
    name,
    outcome,
    prefixes: canonicalList(prefixes),
    roles,
    scopes: canonicalWildcard(scopes),
    tags: canonicalList(tags),
  };
}

/** A list attribute's strings, or undefined when absent. */
function list(body: Record<string, unknown>, attribute: ListAttribute, rule: string): string[] | undefined {
  if (!Object.hasOwn(body, attribute)) return undefined;
  const v = body[attribute];
  if (!Array.isArray(v)) {
    const hint = typeof v === 'string' ? `, such as [${JSON.stringify(v)}]` : '';
    throw new PolicyError(
      `rule ${quote(rule)}: ${attribute} must be a list of strings${hint}, not ${describe(v)}${typeof v === 'string' ? expressionHint(v) : ''}`,
      { code: 'bad-type', rule, attribute },
    );
  }
  if (v.length > MAX_LIST_ENTRIES) {
    throw new PolicyError(
      `rule ${quote(rule)}: ${attribute} has ${v.length} entries: a list has at most ${MAX_LIST_ENTRIES}`,
      { code: 'limit', rule, attribute },
    );
  }
  for (let i = 0; i < v.length; i++) {
    if (typeof v[i] !== 'string') {
      throw new PolicyError(
        `rule ${quote(rule)}: ${attribute}[${i}] must be a string, not ${describe(v[i])}`,
        { code: 'bad-type', rule, attribute },
      );
    }
  }
  return v as string[];
}

function wildcardList<T extends string>(
  entries: string[] | undefined,
  allowed: readonly T[],
  what: string,
  at: Located,
): (T | '*')[] {
  const values = entries ?? [];
  if (values.length === 0) {
    throw new PolicyError(
      `rule ${quote(at.rule ?? '')}: ${at.attribute} is empty: list at least one, or "*" for any`,
      { code: 'bad-value', ...at },
    );
  }
  for (const v of values) {
    if (v !== WILDCARD && !(allowed as readonly string[]).includes(v)) {
      throw badEntry(
        at.rule ?? '',
        at.attribute ?? '',
        v,
        `is not ${what} (${allowed.join(', ')}, or "*" for any)`,
      );
    }
  }
  return canonicalWildcard(values) as (T | '*')[];
}

function enumValue<T extends string>(v: unknown, allowed: readonly T[], what: string, at: Located): T {
  if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
  const prefix = at.rule === undefined ? '' : `rule ${quote(at.rule)}: `;
  const hint = typeof v === 'string' ? expressionHint(v) : '';
  throw new PolicyError(
    `${prefix}${at.attribute}: ${typeof v === 'string' ? quote(v) : describe(v)} is not ${what} (${allowed.join(', ')})${hint}`,
    { code: typeof v === 'string' ? 'bad-value' : 'bad-type', ...at },
  );
}

function badEntry(rule: string, attribute: string, value: string, problem: string): PolicyError {
  return new PolicyError(
    `rule ${quote(rule)}: ${attribute}: ${quote(value)} ${problem}${expressionHint(value)}`,
    {
      code: 'bad-value',
      rule,
      attribute,
    },
  );
}

function expressionHint(value: string): string {
  return value.includes('${') || value.includes('%{')
    ? ' (HCL expressions are not evaluated in a policy: write a quoted literal)'
    : '';
}

const canonicalList = (values: readonly string[]): string[] => [...new Set(values)].sort(compareStrings);

const canonicalWildcard = (values: readonly string[]): string[] =>
  values.includes(WILDCARD) ? [WILDCARD] : canonicalList(values);

/** Code-unit order, the order of Array.prototype.sort without a comparator; spelled out to be explicit. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** JSON with sorted keys (documents are built with their keys in sorted order). */
function serialize(doc: PolicyDocument): string {
  return JSON.stringify({ default: doc.default, rules: doc.rules, version: doc.version });
}

// ---------------------------------------------------------------------------------------------------
// Evaluation

const VERB: Readonly<Record<Outcome, string>> = {
  allow: 'allows',
  defer: 'defers the decision for',
  refuse: 'forbids',
};

interface CompiledRule {
  readonly name: string;
  readonly outcome: Outcome;
  readonly attest: boolean;
  readonly anyScope: boolean;
  readonly localScope: boolean;
  readonly scopeIds: ReadonlySet<string> | null;
  readonly keys: ReadonlySet<string> | null; // null: any key
  /** Longest first, so the first match is the longest. */
  readonly prefixes: readonly string[];
  readonly tags: readonly string[];
  readonly namesKeys: number;
  readonly constraints: number;
  readonly roles: readonly string[];
  readonly actions: readonly string[];
}

/** The candidate rules for one (role, action): refuse rules, defer rules, allow rules, each in name order. */
type Candidates = readonly [readonly CompiledRule[], readonly CompiledRule[], readonly CompiledRule[]];

/**
 * Compiles a policy (validating it) into an evaluator for many requests. Rules are indexed by (role,
 * action) and grouped by outcome, refuse first: once a group has a match, later groups cannot decide, so
 * they are not looked at (except that allow rules are all looked at for `attest`).
 */
export function compilePolicy(doc: PolicyInput): PolicyEvaluator {
  const document = canonicalPolicy(doc);
  const json = policyToJson(document);
  const any = (l: readonly string[]): boolean => l.includes(WILDCARD);
  // document.rules is sorted by name and the candidate lists keep that order, which makes ties go to the
  // smaller name (a later rule must be strictly more specific to win).
  const compiled: CompiledRule[] = document.rules.map((r) => {
    const ids = r.scopes.filter((s) => s !== LOCAL_SCOPE && s !== WILDCARD);
    return {
      name: r.name,
      outcome: r.outcome,
      attest: r.attest,
      anyScope: any(r.scopes),
      localScope: r.scopes.includes(LOCAL_SCOPE),
      scopeIds: ids.length === 0 ? null : new Set(ids),
      keys: r.keys.length === 0 ? null : new Set(r.keys),
      prefixes: [...r.prefixes].sort((a, b) => b.length - a.length || compareStrings(a, b)),
      tags: r.tags,
      namesKeys: r.keys.length === 0 ? 0 : 1,
      constraints:
        (any(r.roles) ? 0 : 1) +
        (any(r.scopes) ? 0 : 1) +
        (any(r.actions) ? 0 : 1) +
        (r.tags.length > 0 ? 1 : 0),
      roles: r.roles,
      actions: r.actions,
    };
  });
  const candidatesFor = (role: string, action: string): Candidates => {
    const groups: [CompiledRule[], CompiledRule[], CompiledRule[]] = [[], [], []];
    for (const r of compiled) {
      if (!any(r.roles) && !r.roles.includes(role)) continue;
      if (!any(r.actions) && !r.actions.includes(action)) continue;
      groups[r.outcome === 'refuse' ? 0 : r.outcome === 'defer' ? 1 : 2].push(r);
    }
    return groups;
  };
  const table = new Map<string, Map<string, Candidates>>();
  for (const role of ROLES) {
    const byAction = new Map<string, Candidates>();
    for (const action of ACTIONS) byAction.set(action, candidatesFor(role, action));
    table.set(role, byAction);
  }
  const fallback = document.default;

  const evaluate = (request: PolicyRequest): Decision => {
    const { role, action, name } = request;
    // Unknown roles or actions (not in the taxonomy) are matched on the fly, not cached.
    const groups = table.get(role)?.get(action) ?? candidatesFor(role, action);
    let key: string | undefined; // lowercased on first use: most rules name no keys
    const local = request.scope === LOCAL_SCOPE;
    const scope = local ? LOCAL_SCOPE : lowerHex(request.scope);
    const tags = request.tags ?? [];
    let best: CompiledRule | undefined;
    let attest = false;
    for (let g = 0; g < 3 && best === undefined; g++) {
      let bestLength = -1;
      for (const r of groups[g]!) {
        if (!r.anyScope && !(local ? r.localScope : r.scopeIds?.has(scope) === true)) continue;
        if (r.keys !== null) {
          if (key === undefined) key = lowerHex(request.key);
          if (!r.keys.has(key)) continue;
        }
        let length = -1;
        for (const p of r.prefixes) {
          if (name.startsWith(p)) {
            length = p.length;
            break;
          }
        }
        if (length < 0) continue;
        if (r.tags.length > 0 && !hasAll(tags, r.tags)) continue;
        if (r.attest) attest = true; // only allow rules carry attest
        if (
          best === undefined ||
          length > bestLength ||
          (length === bestLength &&
            (r.namesKeys > best.namesKeys ||
              (r.namesKeys === best.namesKeys && r.constraints > best.constraints)))
        ) {
          best = r;
          bestLength = length;
        }
      }
    }
    const what = `${show(role)} to ${show(action)} ${show(name)}`;
    if (best === undefined) {
      const verb = fallback === 'allow' ? 'matches' : 'allows';
      return {
        outcome: fallback,
        attest: false,
        rule: DEFAULT_RULE,
        reason: `no rule ${verb} ${what}: the default is ${fallback}`,
      };
    }
    return {
      outcome: best.outcome,
      attest: best.outcome === 'allow' && attest,
      rule: best.name,
      reason: `rule ${quote(best.name)} ${VERB[best.outcome]} ${what}`,
    };
  };
  return { document, json, evaluate };
}

/** Evaluates one request (compile once with `compilePolicy` to evaluate many). */
export function evaluatePolicy(doc: PolicyInput, request: PolicyRequest): Decision {
  return compilePolicy(doc).evaluate(request);
}

/** One line describing a policy, e.g. for `aq dev` and `aq policy show`. */
export function describePolicy(doc: PolicyInput): string {
  const d = canonicalPolicy(doc);
  if (d.rules.length === 0) {
    const dev = d.default === 'allow' ? ' (the permissive development policy)' : '';
    return `default ${d.default}, no rules${dev}`;
  }
  const counts = OUTCOMES.map((o) => [o, d.rules.filter((r) => r.outcome === o).length] as const)
    .filter(([, n]) => n > 0)
    .map(([o, n]) => `${n} ${o}`);
  return `default ${d.default}, ${d.rules.length} rule${d.rules.length === 1 ? '' : 's'} (${counts.join(', ')})`;
}

function hasAll(have: readonly string[], need: readonly string[]): boolean {
  for (const t of need) if (!have.includes(t)) return false;
  return true;
}

function lowerHex(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return s.toLowerCase();
  }
  return s;
}

/** A request value for a reason line: as is when plain printable ASCII, else quoted and escaped. */
function show(s: unknown): string {
  if (typeof s !== 'string') return describe(s);
  if (s.length === 0 || s.length > 100) return quote(s);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x22 || c === 0x5c) return quote(s);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------
// Helpers

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `the string ${quote(v)}`;
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  if (typeof v === 'object') return 'an object';
  return typeof v;
}

function oneLine(s: string): string {
  return s.replace(/[\r\n\u2028\u2029]+/g, ' ');
}

/** V8's JSON.parse message without the quoted source it sometimes embeds (which may span lines). */
export function cleanJsonMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return oneLine(message.replace(/, (?:\.\.\.)?"[\s\S]*" is not valid JSON$/, '')).slice(0, 300);
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v)) deepFreeze(child);
  }
  return v;
}
