// Names (DESIGN.md §2): hierarchical service names made of '/'-separated labels,
// e.g. `eu-central/payments/checkout`. Pure: no I/O, no clock.
//
// Rules, checked in this order so that a name always gets the same (first) reason:
//   1. a name is not empty;
//   2. a name is at most MAX_NAME_BYTES bytes (UTF-8);
//   3. no empty labels: no leading or trailing '/', no '//';
//   4. each label is 1..MAX_LABEL_LENGTH characters;
//   5. each label uses only lowercase DNS-style characters [a-z0-9-];
//   6. like DNS labels (RFC 1123 host names), a label does not start or end with '-'.
//      That keeps every label usable as a DNS label in `<name>.service.consul` answers.

/** Separator between the labels of a name. */
export const NAME_SEPARATOR = '/';
/** Maximum length of a full name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 255;
/** Maximum length of one label, in characters (labels are ASCII, so also bytes). */
export const MAX_LABEL_LENGTH = 63;

export type NameErrorCode =
  | 'empty'
  | 'too-long'
  | 'empty-label'
  | 'label-too-long'
  | 'bad-character'
  | 'bad-hyphen';

/** Why a name is invalid: a stable code and one human-readable line naming the offending part and the rule. */
export interface NameError {
  readonly code: NameErrorCode;
  readonly message: string;
}

const LABEL_RULE = 'labels are lowercase [a-z0-9-]';

/** Returns null when `name` is a valid name, otherwise the first rule it breaks. */
export function validateName(name: string): NameError | null {
  if (typeof name !== 'string') {
    return { code: 'empty', message: `name must be a string, got ${typeof name}` };
  }
  if (name.length === 0) {
    return {
      code: 'empty',
      message: `name is empty: a name is one or more '/'-separated labels, such as "eu-central/payments"`,
    };
  }
  const bytes = utf8Length(name);
  if (bytes > MAX_NAME_BYTES) {
    return {
      code: 'too-long',
      message: `name ${quote(name)} is ${bytes} bytes long: a name is at most ${MAX_NAME_BYTES} bytes`,
    };
  }
  if (name.startsWith(NAME_SEPARATOR)) {
    return {
      code: 'empty-label',
      message: `name ${quote(name)} starts with '/': a name has no leading or trailing '/'`,
    };
  }
  if (name.endsWith(NAME_SEPARATOR)) {
    return {
      code: 'empty-label',
      message: `name ${quote(name)} ends with '/': a name has no leading or trailing '/'`,
    };
  }
  const labels = name.split(NAME_SEPARATOR);
  for (const label of labels) {
    const error = validateLabel(label, name);
    if (error !== null) return error;
  }
  return null;
}

function validateLabel(label: string, name: string): NameError | null {
  if (label.length === 0) {
    return {
      code: 'empty-label',
      message: `name ${quote(name)} has an empty label between two '/': labels are 1..${MAX_LABEL_LENGTH} characters`,
    };
  }
  if (label.length > MAX_LABEL_LENGTH) {
    return {
      code: 'label-too-long',
      message: `label ${quote(label)} in name ${quote(name)} is ${label.length} characters long: labels are 1..${MAX_LABEL_LENGTH} characters`,
    };
  }
  for (let i = 0; i < label.length; i++) {
    const c = label.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d) continue;
    if (c >= 0x41 && c <= 0x5a) {
      return {
        code: 'bad-character',
        message: `label ${quote(label)} in name ${quote(name)} has an uppercase letter '${label[i]}': ${LABEL_RULE}`,
      };
    }
    const cp = label.codePointAt(i) ?? c;
    return {
      code: 'bad-character',
      message: `label ${quote(label)} in name ${quote(name)} has a character ${describeChar(cp)} that is not allowed: ${LABEL_RULE}`,
    };
  }
  if (label.startsWith('-') || label.endsWith('-')) {
    const where = label.startsWith('-') ? 'starts' : 'ends';
    return {
      code: 'bad-hyphen',
      message: `label ${quote(label)} in name ${quote(name)} ${where} with '-': like DNS labels, labels do not start or end with '-'`,
    };
  }
  return null;
}

/** True when `name` is a valid name. */
export function isValidName(name: string): boolean {
  return validateName(name) === null;
}

/** The labels of a name, in order (`a/b/c` -> `['a', 'b', 'c']`). Does not validate. */
export function labelsOf(name: string): string[] {
  return name.split(NAME_SEPARATOR);
}

/** The parent of a name (`eu/payments/checkout` -> `eu/payments`), or null for a one-label name. */
export function parentOf(name: string): string | null {
  const i = name.lastIndexOf(NAME_SEPARATOR);
  return i < 0 ? null : name.slice(0, i);
}

/**
 * True when `name` is `prefix` itself or lies below it, label-wise: `eu/x` is under `eu`,
 * but `europe/x` is not (a scope `eu` does not own `europe`). The empty prefix is the whole namespace.
 */
export function isUnder(name: string, prefix: string): boolean {
  if (prefix.length === 0) return true;
  if (!name.startsWith(prefix)) return false;
  return name.length === prefix.length || name.charCodeAt(prefix.length) === 0x2f; // '/'
}

// ---- helpers shared with the rest of the registry (messages and byte lengths) ----

/** UTF-8 length of a string; a lone surrogate counts as the 3 bytes of its U+FFFD replacement. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

const QUOTE_MAX_CHARS = 100;

/**
 * Quotes a user-supplied string for a one-line message: control and non-ASCII characters are escaped
 * (`\u{a}`), quotes and backslashes too, and long strings are cut with an ellipsis.
 */
export function quote(s: string): string {
  let out = '"';
  let shown = 0;
  for (const ch of s) {
    if (shown === QUOTE_MAX_CHARS) {
      out += '…';
      break;
    }
    const cp = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (cp >= 0x20 && cp < 0x7f) out += ch;
    else out += `\\u{${cp.toString(16)}}`;
    shown++;
  }
  return `${out}"`;
}

/** Describes one character for a message: `'_'` for printable ASCII, else `U+00E9`. */
export function describeChar(cp: number): string {
  if (cp === 0x20) return "' ' (space)";
  if (cp > 0x20 && cp < 0x7f) return `'${String.fromCodePoint(cp)}'`;
  return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
}
