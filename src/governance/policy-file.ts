/**
 * Reads a policy file (HCL or JSON, see policy.ts for the language) into the canonical policy document.
 *
 * Every failure is a PolicyError whose message is one line naming the file and, whenever there is one,
 * the line (`policy.hcl:3: rule "x": roles: "registar" is not a role ...`): syntax errors (HCL's own
 * diagnostics, V8's JSON messages), and schema errors located in the source text — the rule's block or the
 * attribute's line (best effort for attributes). Anything over 64 KiB is refused before parsing.
 *
 * JSON is read when the first non-space character is `{`, HCL otherwise. JSON is parsed here; a small
 * scanner also finds the line of every key and refuses duplicate keys (which JSON.parse would silently
 * resolve to the last one — a duplicated rule must not vanish).
 *
 * HCL is parsed by HashiCorp's own parser (@cdktf/hcl2json: hashicorp/hcl compiled to WebAssembly). It
 * runs in a worker thread, not in this thread, because:
 * - the Go runtime it embeds sets globals (`require`, `fs`, ...) and writes crash traces to fd 2 — in
 *   the worker both stay confined (the worker's stdout/stderr are discarded);
 * - deep nesting overflows the stack inside WebAssembly and leaves that Go runtime unusable (the next call
 *   crashes it); nesting is bounded before parsing, and a worker that failed in any other way than a
 *   syntax diagnostic is replaced, so one hostile file cannot break parsing for the process;
 * - a hung parse is bounded by a timeout.
 * The worker starts on the first HCL file (~150 ms, once) and does not keep the process alive.
 *
 * hcl2json is lossy in one way that matters: an attribute and a block of the same name keep only the
 * attribute (`rule = {}` next to rule blocks drops the blocks). So the HCL text is also outlined here
 * (blocks, labels and attributes with their lines) and such shapes are refused before the document is read.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { quote, utf8Length } from '../registry/names.ts';
import {
  cleanJsonMessage,
  MAX_POLICY_BYTES,
  MAX_RULES,
  type PolicyDocument,
  PolicyError,
  type PolicyErrorCode,
  policyFromObject,
} from './policy.ts';

/** Deepest bracket nesting (`{`, `[`, `(`, counted anywhere in an HCL file) handed to the parser. */
export const MAX_HCL_NESTING = 64;
/** How long one HCL parse may take before the parser is replaced and the file refused. */
export const HCL_PARSE_TIMEOUT_MS = 20_000;

/** Parses a policy file (HCL, or JSON when it starts with `{`). Rejects only with PolicyError. */
export async function parsePolicyFile(text: string, filename: string): Promise<PolicyDocument> {
  const file = displayName(filename);
  try {
    return await parse(text, file);
  } catch (error) {
    if (error instanceof PolicyError) throw error;
    // Not expected; still one line and a PolicyError, never a stack trace.
    throw new PolicyError(`${file}: could not read the policy: ${oneLine(errorMessage(error))}`, {
      code: 'parser-failure',
      file,
    });
  }
}

/** Stops the HCL parser's worker thread, if it runs (it does not keep the process alive anyway). */
export async function stopPolicyParser(): Promise<void> {
  await hcl.stop();
}

async function parse(text: string, file: string): Promise<PolicyDocument> {
  if (typeof text !== 'string') {
    throw new PolicyError(`${file}: the policy file is not text`, { code: 'bad-type', file });
  }
  const bytes = utf8Length(text);
  if (bytes > MAX_POLICY_BYTES) {
    const line = lineAtByte(text, MAX_POLICY_BYTES);
    throw located(
      file,
      line,
      `the file is ${bytes} bytes, over the ${MAX_POLICY_BYTES}-byte (64 KiB) limit of a policy file from this line on`,
      'too-large',
    );
  }
  const body = text.charCodeAt(0) === 0xfeff ? ` ${text.slice(1)}` : text; // BOM -> space keeps columns
  const first = /[^ \t\r\n]/.exec(body);
  return first !== null && first[0] === '{' ? parseJson(body, file) : parseHcl(body, file);
}

function located(
  file: string,
  line: number | undefined,
  message: string,
  code: PolicyErrorCode,
  from?: PolicyError,
) {
  return new PolicyError(`${file}${line === undefined ? '' : `:${line}`}: ${message}`, {
    code,
    file,
    line,
    rule: from?.rule,
    attribute: from?.attribute,
  });
}

// ---------------------------------------------------------------------------------------------------
// JSON

function parseJson(text: string, file: string): PolicyDocument {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    // V8's wording, and its "(line L column C)" when it gives one, else the scanner's position.
    const v8 = cleanJsonMessage(error);
    const position = / at position \d+(?: \(line (\d+) column \d+\))?/;
    const at = position.exec(v8);
    const line = at?.[1] !== undefined ? Number(at[1]) : scanJson(text).error?.line;
    throw located(file, line, `not valid JSON: ${v8.replace(position, '')}`, 'syntax');
  }
  const scan = scanJson(text);
  for (const [path, lines] of scan.keys) {
    if (lines.length < 2) continue;
    const segments = path.split('\u0000');
    const isRule = segments.length === 2 && segments[0] === 'rule';
    const message = isRule
      ? `rule ${quote(segments[1]!)} is defined ${lines.length} times (lines ${lines.join(', ')}): rule names are unique`
      : `key ${quote(segments.at(-1)!)} appears ${lines.length} times in the same object (lines ${lines.join(', ')})`;
    throw located(file, lines[1], message, isRule ? 'duplicate-rule' : 'syntax');
  }
  try {
    return policyFromObject(value);
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    throw located(file, locateJson(error, scan.keys, value), error.message, error.code, error);
  }
}

interface JsonScan {
  /** Path (segments joined by NUL) of every object key -> the lines it appears on. */
  readonly keys: Map<string, number[]>;
  readonly error?: { readonly message: string; readonly line: number };
}

/**
 * A JSON syntax scanner: validates like JSON.parse (iteratively, no recursion) and records the line of
 * every object key by path. Array elements get their index as a path segment.
 */
function scanJson(text: string): JsonScan {
  const keys = new Map<string, number[]>();
  type Frame = { readonly kind: 'object' | 'array'; readonly path: string[]; key: string; index: number };
  const stack: Frame[] = [];
  let i = 0;
  let line = 1;
  const n = text.length;
  const fail = (message: string): JsonScan => ({ keys, error: { message, line } });
  const skipSpace = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x0a) line++;
      else if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return;
      i++;
    }
  };
  const readString = (): string | null => {
    // text[i] === '"'
    let out = '';
    i++;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return out;
      }
      if (c < 0x20) return null;
      if (c === 0x5c) {
        const e = text[i + 1];
        const simple: Record<string, string> = {
          '"': '"',
          '\\': '\\',
          '/': '/',
          b: '\b',
          f: '\f',
          n: '\n',
          r: '\r',
          t: '\t',
        };
        if (e !== undefined && Object.hasOwn(simple, e)) {
          out += simple[e];
          i += 2;
        } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          out += String.fromCharCode(Number.parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
        } else return null;
        continue;
      }
      out += text[i];
      i++;
    }
    return null;
  };
  const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  // Reads one value start; containers push a frame. Returns an error message or null.
  const readValue = (path: string[]): string | null => {
    skipSpace();
    const c = text[i];
    if (c === '{') {
      stack.push({ kind: 'object', path, key: '', index: 0 });
      i++;
      return null;
    }
    if (c === '[') {
      stack.push({ kind: 'array', path, key: '', index: 0 });
      i++;
      return null;
    }
    if (c === '"') return readString() === null ? 'bad string' : null;
    for (const literal of ['true', 'false', 'null']) {
      if (text.startsWith(literal, i)) {
        i += literal.length;
        return null;
      }
    }
    NUMBER.lastIndex = i;
    if (NUMBER.exec(text) !== null) {
      i = NUMBER.lastIndex;
      return null;
    }
    return i >= n ? 'unexpected end of input' : `unexpected character ${quote(c ?? '')}`;
  };
  // Reads `"key": ` then the value, inside the object frame on top.
  const readMember = (frame: Frame): string | null => {
    skipSpace();
    if (text[i] !== '"') return 'expected a double-quoted property name';
    const keyLine = line;
    const key = readString();
    if (key === null) return 'bad string';
    const path = [...frame.path, key];
    const id = path.join('\u0000');
    const lines = keys.get(id);
    if (lines === undefined) keys.set(id, [keyLine]);
    else lines.push(keyLine);
    skipSpace();
    if (text[i] !== ':') return "expected ':' after a property name";
    i++;
    return readValue(path);
  };

  let error = readValue([]);
  if (error !== null) return fail(error);
  let fresh = true; // the container on top was just opened
  while (stack.length > 0) {
    const frame = stack.at(-1)!;
    skipSpace();
    const c = text[i];
    const closer = frame.kind === 'object' ? '}' : ']';
    if (c === closer && (fresh || frame.index > 0)) {
      i++;
      stack.pop();
      fresh = false;
      if (stack.length > 0) stack.at(-1)!.index++;
      continue;
    }
    if (!fresh) {
      if (c !== ',') return fail(`expected ',' or '${closer}'`);
      i++;
    }
    const depth = stack.length;
    error = frame.kind === 'object' ? readMember(frame) : readValue([...frame.path, String(frame.index)]);
    if (error !== null) return fail(error);
    if (stack.length > depth) {
      fresh = true; // a container value opened
    } else {
      frame.index++;
      fresh = false;
    }
  }
  skipSpace();
  if (i < n) return fail('unexpected text after the JSON document');
  return { keys };
}

function locateJson(error: PolicyError, keys: Map<string, number[]>, value: unknown): number | undefined {
  const lineOf = (...path: string[]): number | undefined => keys.get(path.join('\u0000'))?.[0];
  const { rule, attribute } = error;
  if (rule === undefined) {
    if (attribute === undefined) return undefined;
    if (error.code === 'limit' && attribute === 'rule') {
      // The first rule over the limit: the (MAX_RULES + 1)th key of "rule".
      const names = [...keys.keys()].filter(
        (k) => k.startsWith('rule\u0000') && k.split('\u0000').length === 2,
      );
      return keys.get(names[MAX_RULES] ?? '')?.[0] ?? lineOf(attribute);
    }
    if (error.code === 'limit' && attribute === 'rules')
      return lineOf('rules', String(MAX_RULES)) ?? lineOf(attribute);
    return lineOf(attribute);
  }
  // The rule's object path: {"rule": {NAME: {...}}}, {"rule": {NAME: [{...}]}}, or {"rules": [{name: NAME}]}.
  let index = -1;
  const rules = (value as { rules?: unknown })?.rules;
  if (Array.isArray(rules)) index = rules.findIndex((r) => (r as { name?: unknown })?.name === rule);
  const bases: string[][] =
    index >= 0
      ? [['rules', String(index)]]
      : [
          ['rule', rule, '0'],
          ['rule', rule],
        ];
  if (attribute !== undefined) {
    for (const base of bases) {
      const line = lineOf(...base, attribute);
      if (line !== undefined) return line;
    }
  }
  if (index >= 0) return lineOf('rules', String(index), 'name') ?? lineOf('rules');
  return lineOf('rule', rule) ?? lineOf('rule');
}

// ---------------------------------------------------------------------------------------------------
// HCL

const SOURCE_NAME = 'aq-policy-source.hcl';

async function parseHcl(text: string, file: string): Promise<PolicyDocument> {
  const deep = nestingProblem(text);
  if (deep !== undefined) {
    throw located(
      file,
      deep,
      `nesting deeper than ${MAX_HCL_NESTING} levels of brackets: a policy needs at most 3`,
      'too-deep',
    );
  }
  const result = await hcl.parse(text);
  if (!result.ok) throw hclError(result, text, file);
  const outline = outlineHcl(text);
  const structural = structureProblem(outline);
  if (structural !== undefined) throw located(file, structural.line, structural.message, 'bad-structure');
  try {
    return policyFromObject(result.value);
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    throw located(file, locateHcl(error, outline), error.message, error.code, error);
  }
}

/** The 1-based line where bracket nesting first exceeds MAX_HCL_NESTING, if it does. */
function nestingProblem(text: string): number | undefined {
  let depth = 0;
  let line = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) line++;
    else if (c === 0x7b || c === 0x5b || c === 0x28) {
      if (++depth > MAX_HCL_NESTING) return line;
    } else if ((c === 0x7d || c === 0x5d || c === 0x29) && depth > 0) depth--;
  }
  return undefined;
}

function hclError(result: HclFailure, text: string, file: string): PolicyError {
  const { message } = result;
  if (result.poisoned) {
    return located(
      file,
      undefined,
      `the HCL parser could not read this file (${oneLine(message).slice(0, 200)}); simplify it`,
      'parser-failure',
    );
  }
  // parse config: [NAME:3,16-17: Summary; Detail. NAME:4,1-2: Summary; Detail.]
  const marker = `${SOURCE_NAME}:`;
  const at = message.indexOf(marker);
  if (message.startsWith('parse config:') && at >= 0) {
    const m = /^(\d+),(\d+)(?:-\d+(?:,\d+)?)?: /.exec(message.slice(at + marker.length));
    if (m !== null) {
      let diagnostic = message.slice(at + marker.length + m[0].length);
      const next = diagnostic.search(
        new RegExp(` ${escapeRegExp(SOURCE_NAME)}:\\d+,\\d+(?:-\\d+(?:,\\d+)?)?: `),
      );
      if (next >= 0) diagnostic = diagnostic.slice(0, next);
      diagnostic = diagnostic
        .replace(/\]$/, '')
        .replace(new RegExp(`${escapeRegExp(SOURCE_NAME)}:(\\d+),\\d+(?:-\\d+(?:,\\d+)?)?`, 'g'), 'line $1')
        .replace(/; /, ': ');
      return new PolicyError(`${file}:${m[1]}:${m[2]}: ${oneLine(diagnostic).slice(0, 400)}`, {
        code: 'syntax',
        file,
        line: Number(m[1]),
      });
    }
  }
  // hcl2json's conversion errors carry no position: explain them from the outline when possible.
  const outline = outlineHcl(text);
  const structural = structureProblem(outline);
  if (structural !== undefined) return located(file, structural.line, structural.message, 'bad-structure');
  const detail = oneLine(message.replace(/^(?:[a-z ]+: )+/i, '')).slice(0, 300);
  return located(file, undefined, `not valid HCL: ${detail}`, 'syntax');
}

interface HclOutlineBlock {
  readonly type: string;
  readonly labels: readonly string[];
  readonly line: number;
  readonly attrs: Map<string, number>;
  readonly blocks: HclOutlineBlock[];
}

interface HclOutline {
  readonly attrs: Map<string, number>;
  readonly blocks: HclOutlineBlock[];
}

type Token =
  | { readonly kind: 'ident' | 'punct'; readonly value: string; readonly line: number }
  | { readonly kind: 'string'; readonly value: string; readonly line: number }
  | { readonly kind: 'newline'; readonly line: number };

/**
 * Tokens of HCL native syntax, enough to outline it: identifiers, strings (quoted, with nested template
 * interpolations, and heredocs), punctuation, newlines; comments skipped. Best effort on invalid input.
 */
function tokenizeHcl(text: string): Token[] {
  const tokens: Token[] = [];
  const n = text.length;
  let i = 0;
  let line = 1;
  // A quoted template from text[i] === '"'; returns its (approximately) decoded literal text.
  const readQuoted = (): string => {
    let out = '';
    i++;
    while (i < n) {
      const c = text[i]!;
      if (c === '"') {
        i++;
        return out;
      }
      if (c === '\n') return out; // unterminated: the parser already refused it
      if (c === '\\') {
        const e = text[i + 1] ?? '';
        out += e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : e;
        i += 2;
        continue;
      }
      if ((c === '$' || c === '%') && text[i + 1] === c && text[i + 2] === '{') {
        out += `${c}{`;
        i += 3;
        continue;
      }
      if ((c === '$' || c === '%') && text[i + 1] === '{') {
        out += `${c}{`;
        i += 2;
        skipInterpolation();
        out += '}';
        continue;
      }
      out += c;
      i++;
    }
    return out;
  };
  // Inside ${ ... }: skips to the matching '}', stepping over nested strings.
  const skipInterpolation = (): void => {
    let depth = 0;
    while (i < n) {
      const c = text[i]!;
      if (c === '"') {
        readQuoted();
        continue;
      }
      if (c === '\n') line++;
      if (c === '{') depth++;
      if (c === '}') {
        if (depth === 0) {
          i++;
          return;
        }
        depth--;
      }
      i++;
    }
  };
  const HEREDOC = /<<-?([A-Za-z_][A-Za-z0-9_-]*)\r?\n/y;
  const IDENT = /[A-Za-z_][A-Za-z0-9_-]*/y;
  /** The heredoc identifier of `<<ID` / `<<-ID` at `at` (HEREDOC.lastIndex then at its content), or null. */
  const heredocAt = (at: number): string | null => {
    HEREDOC.lastIndex = at;
    return HEREDOC.exec(text)?.[1] ?? null;
  };
  while (i < n) {
    const c = text[i]!;
    if (c === '\n') {
      tokens.push({ kind: 'newline', line });
      line++;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r') {
      i++;
    } else if (c === '#' || (c === '/' && text[i + 1] === '/')) {
      while (i < n && text[i] !== '\n') i++;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? n : end + 2;
      for (let j = i; j < stop; j++) if (text[j] === '\n') line++;
      i = stop;
    } else if (c === '"') {
      const start = line;
      tokens.push({ kind: 'string', value: readQuoted(), line: start });
    } else if (c === '<' && text[i + 1] === '<' && heredocAt(i) !== null) {
      const start = line;
      const id = heredocAt(i)!;
      i = HEREDOC.lastIndex;
      line++;
      // Content lines until one whose trimmed text is the identifier.
      while (i < n) {
        const eol = text.indexOf('\n', i);
        const end = eol < 0 ? n : eol;
        const done = text.slice(i, end).trim() === id;
        i = end;
        if (done) break;
        if (eol >= 0) {
          i++;
          line++;
        }
      }
      tokens.push({ kind: 'string', value: '', line: start });
    } else if (/[A-Za-z_]/.test(c)) {
      IDENT.lastIndex = i;
      const m = IDENT.exec(text)!;
      tokens.push({ kind: 'ident', value: m[0], line });
      i = IDENT.lastIndex;
    } else {
      // Two-character operators, so that '==' and '=>' are not taken for an assignment.
      const two = text.slice(i, i + 2);
      const value = ['==', '=>', '!=', '<=', '>=', '&&', '||'].includes(two) ? two : c;
      tokens.push({ kind: 'punct', value, line });
      i += value.length;
    }
  }
  return tokens;
}

/** The file's top-level attributes and blocks, and for each top-level block its attributes and blocks. */
function outlineHcl(text: string): HclOutline {
  const tokens = tokenizeHcl(text);
  const root: HclOutline = { attrs: new Map(), blocks: [] };
  // A body frame records into `into` (or nowhere, below the second level); 'other' is a bracket.
  type Frame =
    | { readonly kind: 'body'; readonly into: HclOutline | HclOutlineBlock | null }
    | { readonly kind: 'other' };
  const stack: Frame[] = [{ kind: 'body', into: root }];
  let statementStart = true;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const top = stack.at(-1)!;
    if (t.kind === 'newline') {
      if (top.kind === 'body') statementStart = true;
      continue;
    }
    if (statementStart && top.kind === 'body' && t.kind === 'ident') {
      statementStart = false;
      const next = tokens[i + 1];
      if (next?.kind === 'punct' && next.value === '=') {
        if (top.into !== null && !top.into.attrs.has(t.value)) top.into.attrs.set(t.value, t.line);
        i++;
        continue;
      }
      const labels: string[] = [];
      let j = i + 1;
      for (; j < tokens.length; j++) {
        const l = tokens[j]!;
        if (l.kind === 'string' || l.kind === 'ident') labels.push(l.value);
        else break;
      }
      const open = tokens[j];
      if (open?.kind === 'punct' && open.value === '{') {
        const block: HclOutlineBlock = { type: t.value, labels, line: t.line, attrs: new Map(), blocks: [] };
        top.into?.blocks.push(block);
        stack.push({ kind: 'body', into: top.into === root ? block : null });
        statementStart = true;
        i = j;
      }
      continue;
    }
    statementStart = false;
    if (t.kind !== 'punct') continue;
    if (t.value === '{' || t.value === '[' || t.value === '(') stack.push({ kind: 'other' });
    else if ((t.value === '}' || t.value === ']' || t.value === ')') && stack.length > 1) {
      const popped = stack.pop()!;
      if (popped.kind === 'body') statementStart = true;
    }
  }
  return root;
}

/** Shapes hcl2json would silently lose or misread: refused with their line. */
function structureProblem(outline: HclOutline): { line: number; message: string } | undefined {
  const problems: { line: number; message: string }[] = [];
  const ruleAttr = outline.attrs.get('rule');
  if (ruleAttr !== undefined) {
    problems.push({
      line: ruleAttr,
      message: 'rule is a block, not an attribute: write rule "NAME" { ... }',
    });
  }
  for (const b of outline.blocks) {
    if (b.type !== 'rule') {
      problems.push({
        line: b.line,
        message: `unexpected block ${quote(b.type)}: a policy has default = OUTCOME and rule "NAME" { ... } blocks`,
      });
      continue;
    }
    if (b.labels.length !== 1) {
      problems.push({
        line: b.line,
        message: `a rule block takes exactly one label, its name: rule "NAME" { ... } (this one has ${b.labels.length})`,
      });
      continue;
    }
    for (const inner of b.blocks) {
      problems.push({
        line: inner.line,
        message: `rule ${quote(b.labels[0]!)}: unexpected block ${quote(inner.type)}: a rule holds only attributes (NAME = VALUE)`,
      });
    }
  }
  problems.sort((a, b) => a.line - b.line);
  return problems[0];
}

function locateHcl(error: PolicyError, outline: HclOutline): number | undefined {
  const { rule, attribute } = error;
  if (rule === undefined) {
    if (attribute === undefined) return undefined;
    const blocks = outline.blocks.filter((b) => b.type === attribute);
    if (error.code === 'limit' && blocks.length > MAX_RULES) return blocks[MAX_RULES]!.line;
    return outline.attrs.get(attribute) ?? blocks[0]?.line;
  }
  const blocks = outline.blocks.filter((b) => b.type === 'rule' && b.labels[0] === rule);
  const block = error.code === 'duplicate-rule' ? (blocks[1] ?? blocks[0]) : blocks[0];
  if (block === undefined) return outline.blocks.find((b) => b.type === 'rule')?.line;
  if (attribute !== undefined) {
    return block.attrs.get(attribute) ?? block.blocks.find((b) => b.type === attribute)?.line ?? block.line;
  }
  return block.line;
}

// ---- the parser's worker thread ----

type HclResult = { readonly ok: true; readonly value: unknown } | HclFailure;
interface HclFailure {
  readonly ok: false;
  readonly message: string;
  /** The parser failed other than with a diagnostic: its runtime is not trusted any more. */
  readonly poisoned: boolean;
}

// Runs as a CommonJS script in the worker. All output is dropped: the Go runtime writes its crash traces
// to fd 1/2 with fs.writeSync and its exit code with console.warn. (Piping the worker's stdout/stderr to
// the parent instead would keep the parent's event loop alive.)
const WORKER_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const writeSync = fs.writeSync;
fs.writeSync = function (fd, buffer, ...rest) {
  if (fd === 1 || fd === 2) return typeof buffer === 'string' ? Buffer.byteLength(buffer) : buffer.byteLength;
  return writeSync.call(fs, fd, buffer, ...rest);
};
for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace', 'dir']) console[method] = () => {};
process.stdout.write = process.stderr.write = () => true;
const { parse } = require(workerData.module);
parentPort.on('message', ({ id, text }) => {
  let settled = false;
  const reply = (m) => { if (!settled) { settled = true; parentPort.postMessage({ id, ...m }); } };
  try {
    parse(workerData.source, text).then(
      (value) => reply({ ok: true, value }),
      (error) => {
        const message = String((error && error.message) || error);
        const diagnostic = message.startsWith('parse config:') || message.startsWith('convert to HCL:');
        reply({ ok: false, message, poisoned: !diagnostic });
      },
    );
  } catch (error) {
    reply({ ok: false, message: String((error && error.message) || error), poisoned: true });
  }
});
`;

interface Pending {
  readonly resolve: (r: HclResult) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

class HclParser {
  #worker: Worker | undefined;
  #pending = new Map<number, Pending>();
  #nextId = 1;

  parse(text: string): Promise<HclResult> {
    const worker = this.#start();
    const id = this.#nextId++;
    return new Promise<HclResult>((resolve) => {
      const timer = setTimeout(() => {
        this.#fail(worker, `no answer within ${HCL_PARSE_TIMEOUT_MS} ms`);
      }, HCL_PARSE_TIMEOUT_MS);
      timer.unref();
      this.#pending.set(id, { resolve, timer });
      worker.ref();
      worker.postMessage({ id, text });
    });
  }

  async stop(): Promise<void> {
    const worker = this.#worker;
    if (worker === undefined) return;
    this.#fail(worker, 'the parser was stopped');
  }

  #start(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const module = createRequire(import.meta.url).resolve('@cdktf/hcl2json');
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { module, source: SOURCE_NAME },
    });
    worker.on('message', (m: { id: number } & HclResult) => {
      const pending = this.#pending.get(m.id);
      if (pending === undefined) return;
      this.#pending.delete(m.id);
      clearTimeout(pending.timer);
      const result: HclResult = m.ok
        ? { ok: true, value: m.value }
        : { ok: false, message: m.message, poisoned: m.poisoned };
      if (!m.ok && m.poisoned) this.#fail(worker, 'the parser failed');
      else if (this.#pending.size === 0) worker.unref();
      pending.resolve(result);
    });
    worker.on('error', (e) => this.#fail(worker, `the parser failed: ${errorMessage(e)}`));
    worker.on('exit', () => this.#fail(worker, 'the parser stopped'));
    worker.unref();
    this.#worker = worker;
    return worker;
  }

  /** Answers every pending parse with a failure and discards the worker (a new one starts on demand). */
  #fail(worker: Worker, message: string): void {
    if (this.#worker !== worker) return;
    this.#worker = undefined;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.resolve({ ok: false, message, poisoned: true });
    }
    void worker.terminate().catch(() => {});
  }
}

const hcl = new HclParser();

// ---- helpers ----

/** A file name for one-line messages: control characters escaped, long names cut. */
function displayName(filename: unknown): string {
  if (typeof filename !== 'string' || filename.length === 0) return '<policy>';
  const plain = /^[\x21-\x7e][\x20-\x7e]*$/.test(filename) && filename.length <= 200;
  return plain ? filename : quote(filename);
}

/** The 1-based line holding the byte at UTF-8 offset `offset` (0-based). */
function lineAtByte(text: string, offset: number): number {
  let bytes = 0;
  let line = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let size = c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
    const d = text.charCodeAt(i + 1);
    const pair = c >= 0xd800 && c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff;
    if (pair) size = 4;
    if (bytes + size > offset) return line;
    bytes += size;
    if (pair) i++;
    if (c === 0x0a) line++;
  }
  return line;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}
