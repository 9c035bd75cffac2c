// Pure parsers for flag values: durations, ports, HOST:PORT, integers, K=V pairs. Each one throws a usage
// error (exit 2) naming what failed (`what`, e.g. `--ttl "10"`) and why, so commands never reach the
// network with a value the user would have to debug from a server message.

import { classifyAddress, isIpv6 } from '../registry/instance.ts';
import { quote } from '../registry/names.ts';
import { usageError } from './errors.ts';

/** Names the value for a message: `--ttl "10"`. */
export function describe(what: string, value: string): string {
  return `${what} ${quote(value)}`;
}

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_RULE = 'a duration is a number with a unit ms, s, m or h, such as 500ms, 10s, 1m30s or 1.5h';

export interface DurationLimits {
  /** Whether 0 is allowed (a TTL of 0 means "no check"; a timeout of 0 makes no sense). */
  readonly allowZero?: boolean;
  /** The largest value allowed, in milliseconds. */
  readonly maxMs?: number;
}

/**
 * Parses a duration the way Go's time.ParseDuration reads one (`300ms`, `10s`, `1m30s`, `1.5h`, `0`),
 * restricted to the units ms, s, m and h, into whole milliseconds.
 */
export function parseDuration(text: string, what: string, limits: DurationLimits = {}): number {
  const fail = (why: string): never => {
    throw usageError(describe(what, text), why);
  };
  if (text.length === 0) fail(`empty: ${DURATION_RULE}`);
  if (text.startsWith('-')) fail(`negative: ${DURATION_RULE}`);
  let total = 0;
  if (text === '0') {
    total = 0;
  } else {
    if (/^[0-9]+(\.[0-9]*)?$/.test(text)) fail(`missing unit: use e.g. ${text}s or ${text}ms`);
    const unit = /([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([a-zµ]+)/y;
    let at = 0;
    while (at < text.length) {
      unit.lastIndex = at;
      const match = unit.exec(text);
      if (match === null) fail(DURATION_RULE);
      const [whole, number, suffix] = match as unknown as [string, string, string];
      const factor = DURATION_UNITS[suffix];
      if (factor === undefined) fail(`unknown unit ${quote(suffix)}: ${DURATION_RULE}`);
      total += Number(number) * (factor as number);
      at += whole.length;
    }
  }
  const ms = Math.round(total);
  if (Math.abs(total - ms) > 1e-6) fail('not a whole number of milliseconds');
  if (!Number.isSafeInteger(ms)) fail('too long');
  if (ms === 0 && limits.allowZero !== true) fail('must be more than 0');
  if (limits.maxMs !== undefined && ms > limits.maxMs) fail(`longer than the maximum, ${limits.maxMs}ms`);
  return ms;
}

export interface PortLimits {
  /** Port 0 means "pick one" for a listener and "no port" for an instance; a client cannot dial it. */
  readonly allowZero: boolean;
}

/** A decimal port number 0..65535 (1..65535 unless allowZero). */
export function parsePort(text: string, what: string, limits: PortLimits): number {
  const min = limits.allowZero ? 0 : 1;
  const rule = `a port is an integer ${min}..65535`;
  if (!/^[0-9]{1,5}$/.test(text)) throw usageError(describe(what, text), `not a port: ${rule}`);
  const port = Number(text);
  if (port < min || port > 65535) throw usageError(describe(what, text), `out of range: ${rule}`);
  return port;
}

const HOST_PORT_RULE = 'use HOST:PORT, such as 127.0.0.1:7400, anchor.example.internal:7400 or [::1]:7400';

/**
 * Checks a HOST:PORT address (the host an IPv4 address, a host name, or an IPv6 address in brackets) and
 * returns it unchanged, as gRPC and the anchor's listeners take it.
 */
export function parseHostPort(text: string, what: string, limits: PortLimits): string {
  const fail = (why: string): never => {
    throw usageError(describe(what, text), why);
  };
  let host: string;
  let port: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') fail(HOST_PORT_RULE);
    host = text.slice(1, close);
    port = text.slice(close + 2);
    if (!isIpv6(host)) fail(`${quote(host)} is not an IPv6 address: ${HOST_PORT_RULE}`);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) fail(`no port: ${HOST_PORT_RULE}`);
    host = text.slice(0, colon);
    port = text.slice(colon + 1);
    if (host.length === 0) fail(`no host: ${HOST_PORT_RULE}`);
    if (host.includes(':')) fail(`an IPv6 host goes in brackets: ${HOST_PORT_RULE}`);
    if (classifyAddress(host) === null) fail(`${quote(host)} is neither an IP address nor a host name`);
  }
  parsePort(port, what, limits);
  return text;
}

/** A decimal integer in min..max. */
export function parseInteger(text: string, what: string, min: number, max: number): number {
  const rule = max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer ${min}..${max}`;
  if (!/^[0-9]+$/.test(text)) throw usageError(describe(what, text), `not ${rule}`);
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw usageError(describe(what, text), `out of range: ${rule}`);
  }
  return value;
}

/** One K=V pair: the key is everything before the first '=' (not empty); the value may be empty. */
export function parseKeyValue(text: string, what: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq < 0) throw usageError(describe(what, text), 'no "=": use KEY=VALUE, such as version=1.4.2');
  if (eq === 0) throw usageError(describe(what, text), 'empty key: use KEY=VALUE, such as version=1.4.2');
  return [text.slice(0, eq), text.slice(eq + 1)];
}

/** Repeated K=V pairs into one object; a key given twice is a mistake worth stopping for. */
export function parseKeyValues(texts: readonly string[], what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const text of texts) {
    const [key, value] = parseKeyValue(text, what);
    if (Object.hasOwn(out, key)) throw usageError(describe(what, text), `key ${quote(key)} is given twice`);
    // defineProperty, not assignment: `--meta __proto__=x` must be a key, not a prototype change.
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** commander's collector for repeatable flags (`--tag a --tag b`). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return previous === undefined ? [value] : [...previous, value];
}
