// Instances (DESIGN.md §2): one registered endpoint of a name. Types and validation; pure.

import { describeChar, quote, utf8Length } from './names.ts';

export type Health = 'passing' | 'warning' | 'critical';

/** The health values, in their wire order (the codec writes the index). */
export const HEALTH_VALUES: readonly Health[] = ['passing', 'warning', 'critical'];

export interface Instance {
  readonly id: string;
  readonly address: string;
  readonly port: number;
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
  readonly health: Health;
  /**
   * TTL check, in milliseconds: the instance must heartbeat at least this often, or the scope's leader
   * marks it critical (and a later heartbeat makes it passing again). 0 = no TTL check.
   */
  readonly ttlMs: number;
}

/** An instance id is 1..MAX_INSTANCE_ID_LENGTH printable ASCII characters (0x21..0x7e), no spaces. */
export const MAX_INSTANCE_ID_LENGTH = 128;
/** An address (IP address or host name) is 1..MAX_ADDRESS_BYTES bytes. */
export const MAX_ADDRESS_BYTES = 255;
/** Ports are integers 0..MAX_PORT (0 = "no port", as in Consul). */
export const MAX_PORT = 65535;
/** At most MAX_TAGS tags, each at most MAX_TAG_BYTES UTF-8 bytes. */
export const MAX_TAGS = 64;
export const MAX_TAG_BYTES = 255;
/** At most MAX_META_KEYS meta entries; keys are 1..MAX_META_KEY_LENGTH of [A-Za-z0-9_-]; values at most MAX_META_VALUE_BYTES. */
export const MAX_META_KEYS = 64;
export const MAX_META_KEY_LENGTH = 128;
export const MAX_META_VALUE_BYTES = 512;
/** A TTL is 0 (no TTL check) or MIN_TTL_MS..MAX_TTL_MS milliseconds (1 s to 24 h). */
export const MIN_TTL_MS = 1_000;
export const MAX_TTL_MS = 86_400_000;
/** Host names are at most 253 characters (255 bytes on the DNS wire), labels 1..63. */
export const MAX_HOSTNAME_LENGTH = 253;

export type InstanceErrorCode =
  | 'bad-id'
  | 'bad-address'
  | 'bad-port'
  | 'too-many-tags'
  | 'bad-tag'
  | 'too-many-meta'
  | 'bad-meta-key'
  | 'bad-meta-value'
  | 'bad-health'
  | 'bad-ttl';

/** Why an instance is invalid: a stable code and one human-readable line. */
export interface InstanceError {
  readonly code: InstanceErrorCode;
  readonly message: string;
}

const ID_RULE = `an instance id is 1..${MAX_INSTANCE_ID_LENGTH} printable ASCII characters without spaces`;

/** Validates an instance id alone (also used for deregister commands). */
export function validateInstanceId(id: string): InstanceError | null {
  if (typeof id !== 'string') return { code: 'bad-id', message: `instance id must be a string: ${ID_RULE}` };
  if (id.length === 0) return { code: 'bad-id', message: `instance id is empty: ${ID_RULE}` };
  if (id.length > MAX_INSTANCE_ID_LENGTH) {
    return {
      code: 'bad-id',
      message: `instance id ${quote(id)} is ${id.length} characters long: ${ID_RULE}`,
    };
  }
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c > 0x20 && c < 0x7f) continue;
    const cp = id.codePointAt(i) ?? c;
    return {
      code: 'bad-id',
      message: `instance id ${quote(id)} has a character ${describeChar(cp)} at position ${i}: ${ID_RULE}`,
    };
  }
  return null;
}

/** Returns null when the instance is valid, otherwise the first rule it breaks. Checks run-time types too. */
export function validateInstance(instance: Instance): InstanceError | null {
  if (typeof instance !== 'object' || instance === null) {
    return {
      code: 'bad-id',
      message: 'instance must be an object with id, address, port, tags, meta, health, ttlMs',
    };
  }
  const idError = validateInstanceId(instance.id);
  if (idError !== null) return idError;
  const who = `instance ${quote(instance.id)}`;

  const { address } = instance;
  if (typeof address !== 'string' || address.length === 0) {
    return {
      code: 'bad-address',
      message: `${who} has no address: an address is an IP address or a host name`,
    };
  }
  const addressBytes = utf8Length(address);
  if (addressBytes > MAX_ADDRESS_BYTES) {
    return {
      code: 'bad-address',
      message: `${who} address ${quote(address)} is ${addressBytes} bytes long: an address is at most ${MAX_ADDRESS_BYTES} bytes`,
    };
  }
  if (classifyAddress(address) === null) {
    return {
      code: 'bad-address',
      message: `${who} address ${quote(address)} is neither an IP address nor a host name: use e.g. 10.0.0.7, fd00::7 or api.example.internal`,
    };
  }

  const { port } = instance;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > MAX_PORT) {
    return {
      code: 'bad-port',
      message: `${who} port ${String(port)} is not valid: a port is an integer 0..${MAX_PORT}`,
    };
  }

  const { tags } = instance;
  if (!Array.isArray(tags)) {
    return { code: 'bad-tag', message: `${who} tags must be a list of strings` };
  }
  if (tags.length > MAX_TAGS) {
    return {
      code: 'too-many-tags',
      message: `${who} has ${tags.length} tags: at most ${MAX_TAGS} tags are allowed`,
    };
  }
  for (let i = 0; i < tags.length; i++) {
    const tag: unknown = tags[i];
    if (typeof tag !== 'string') {
      return { code: 'bad-tag', message: `${who} tag #${i + 1} is not a string: tags are strings` };
    }
    const error = checkText(tag, MAX_TAG_BYTES);
    if (error !== null) {
      return {
        code: 'bad-tag',
        message: `${who} tag #${i + 1} ${quote(tag)} ${error}: a tag is ${textRule(MAX_TAG_BYTES)}`,
      };
    }
  }

  const { meta } = instance;
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
    return { code: 'bad-meta-key', message: `${who} meta must be an object of string keys to string values` };
  }
  const keys = Object.keys(meta);
  if (keys.length > MAX_META_KEYS) {
    return {
      code: 'too-many-meta',
      message: `${who} has ${keys.length} meta keys: at most ${MAX_META_KEYS} are allowed`,
    };
  }
  for (const key of keys) {
    const keyError = checkMetaKey(key);
    if (keyError !== null) {
      return {
        code: 'bad-meta-key',
        message: `${who} meta key ${quote(key)} ${keyError}: meta keys are 1..${MAX_META_KEY_LENGTH} characters [A-Za-z0-9_-]`,
      };
    }
    const value: unknown = meta[key];
    if (typeof value !== 'string') {
      return {
        code: 'bad-meta-value',
        message: `${who} meta ${quote(key)} value is not a string: values are strings`,
      };
    }
    const valueError = checkText(value, MAX_META_VALUE_BYTES);
    if (valueError !== null) {
      return {
        code: 'bad-meta-value',
        message: `${who} meta ${quote(key)} value ${valueError}: a meta value is ${textRule(MAX_META_VALUE_BYTES)}`,
      };
    }
  }

  if (!HEALTH_VALUES.includes(instance.health)) {
    return {
      code: 'bad-health',
      message: `${who} health ${quote(String(instance.health))} is not one of ${HEALTH_VALUES.join(', ')}`,
    };
  }

  const { ttlMs } = instance;
  if (
    typeof ttlMs !== 'number' ||
    !Number.isInteger(ttlMs) ||
    (ttlMs !== 0 && (ttlMs < MIN_TTL_MS || ttlMs > MAX_TTL_MS))
  ) {
    return {
      code: 'bad-ttl',
      message: `${who} TTL ${String(ttlMs)} ms is not valid: a TTL is 0 (no TTL check) or an integer ${MIN_TTL_MS}..${MAX_TTL_MS} ms (1 s to 24 h)`,
    };
  }
  return null;
}

function textRule(maxBytes: number): string {
  return `well-formed Unicode text of at most ${maxBytes} UTF-8 bytes`;
}

/** Free text (tags, meta values): at most `maxBytes` UTF-8 bytes, and well-formed (no lone surrogate). */
function checkText(s: string, maxBytes: number): string | null {
  const bytes = utf8Length(s);
  if (bytes > maxBytes) return `is ${bytes} bytes long`;
  if (!s.isWellFormed()) return 'has a lone UTF-16 surrogate';
  return null;
}

function checkMetaKey(key: string): string | null {
  if (key.length === 0) return 'is empty';
  if (key.length > MAX_META_KEY_LENGTH) return `is ${key.length} characters long`;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    const ok =
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x5f /* _ */ ||
      c === 0x2d; /* - */
    if (!ok) return `has a character ${describeChar(key.codePointAt(i) ?? c)} that is not allowed`;
  }
  return null;
}

// ---- addresses ----

export type AddressKind = 'ipv4' | 'ipv6' | 'hostname';

/**
 * What an address is: a dotted-quad IPv4 address (no leading zeros), an IPv6 address (RFC 4291 text
 * forms, optionally with an embedded IPv4 tail and a `%zone`), or a host name (dot-separated labels of
 * 1..63 [A-Za-z0-9_-], not starting or ending with '-', at most 253 characters, optional trailing dot;
 * '_' is tolerated because container and SRV-style names use it). Anything else is null. An all-digit
 * dotted string must be a valid IPv4 address (`256.1.1.1` is not a host name).
 */
export function classifyAddress(address: string): AddressKind | null {
  if (address.length === 0 || address.length > MAX_ADDRESS_BYTES) return null;
  if (address.includes(':')) return isIpv6(address) ? 'ipv6' : null;
  if (/^[0-9.]+$/.test(address)) return isIpv4(address) ? 'ipv4' : null;
  return isHostname(address) ? 'hostname' : null;
}

export function isIpv4(s: string): boolean {
  const parts = s.split('.');
  if (parts.length !== 4) return false;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return false;
  }
  return true;
}

export function isIpv6(input: string): boolean {
  let s = input;
  const zone = s.indexOf('%');
  if (zone >= 0) {
    if (!/^[A-Za-z0-9._~-]+$/.test(s.slice(zone + 1))) return false;
    s = s.slice(0, zone);
  }
  const halves = s.split('::');
  if (halves.length > 2) return false;
  const groups = (part: string): string[] => (part.length === 0 ? [] : part.split(':'));
  const head = groups(halves[0] ?? '');
  const tail = halves.length === 2 ? groups(halves[1] ?? '') : [];
  const all = [...head, ...tail];
  let width = 0;
  for (let i = 0; i < all.length; i++) {
    const g = all[i] ?? '';
    if (i === all.length - 1 && g.includes('.')) {
      if (!isIpv4(g)) return false;
      width += 2;
    } else if (/^[0-9A-Fa-f]{1,4}$/.test(g)) {
      width += 1;
    } else {
      return false;
    }
  }
  // With '::' at least one group is compressed; without it, exactly 8 groups.
  return halves.length === 2 ? width <= 7 : width === 8;
}

export function isHostname(s: string): boolean {
  const name = s.endsWith('.') ? s.slice(0, -1) : s;
  if (name.length === 0 || name.length > MAX_HOSTNAME_LENGTH) return false;
  for (const label of name.split('.')) {
    if (!/^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(label)) return false;
  }
  return true;
}
