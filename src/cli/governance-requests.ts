// The governance commands' flags and arguments into values (roles, times, prefixes, quota documents,
// credential ids). Pure, and run before anything touches the network: every mistake is a usage error
// (exit 2) naming the flag and the rule.

import { FOREVER_MS, isRole, ROLES, type Role } from '../governance/credential.ts';
import {
  ACTIONS as POLICY_ACTIONS,
  type Action as PolicyAction,
  prefixProblem,
} from '../governance/policy.ts';
import { type QuotaDocument, QuotaError, quotaFromFlags } from '../governance/quota.ts';
import { quote, validateName } from '../registry/names.ts';
import { CliError, EXIT, usageError } from './errors.ts';
import { describe } from './parse.ts';

export function checkScopeName(scope: string, what = 'invalid scope'): string {
  const error = validateName(scope);
  if (error !== null) throw usageError(what, error.message);
  return scope;
}

export function parseRole(text: string, what = '--role'): Role {
  if (!isRole(text)) throw usageError(describe(what, text), `not a role: use one of ${ROLES.join(', ')}`);
  return text;
}

export function parsePolicyAction(text: string, what = '--action'): PolicyAction {
  if (!(POLICY_ACTIONS as readonly string[]).includes(text))
    throw usageError(describe(what, text), `not an action: use one of ${POLICY_ACTIONS.join(', ')}`);
  return text as PolicyAction;
}

/** A credential's name prefix: "" (every name of the scope) or characters names use. */
export function parseCredentialPrefix(prefix: string, scope: string, what = '--prefix'): string {
  if (prefix === '') return prefix;
  const problem = prefixProblem(prefix);
  if (problem !== null) throw usageError(describe(what, prefix), `the prefix ${problem}`);
  // A prefix that neither lies inside the scope nor contains it covers none of its names.
  if (!prefix.startsWith(scope) && !scope.startsWith(prefix))
    throw usageError(
      describe(what, prefix),
      `covers no name of scope ${quote(scope)} (its names are ${scope} and ${scope}/...)`,
    );
  return prefix;
}

const DAY_MS = 86_400_000;
const SPAN_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS };
const SPAN = /^(?:[0-9]+(?:ms|s|m|h|d))+$/;
const TIME_RULE =
  'a time is now, an ISO 8601 date or date-time (2026-03-01, 2026-03-01T12:00:00Z) or ms since the epoch';

/** A point in time: `now`, ISO 8601, or ms since the epoch. */
export function parseTime(text: string, what: string, nowMs: number): number {
  if (text === 'now') return nowMs;
  if (/^[0-9]{10,16}$/.test(text)) return Number(text);
  if (/^[0-9]{4}-[0-9]{2}-[0-9]{2}/.test(text)) {
    const ms = Date.parse(text);
    if (Number.isSafeInteger(ms) && ms >= 0) return ms;
  }
  throw usageError(describe(what, text), TIME_RULE);
}

/** A span such as 90d, 12h or 1d12h (units ms, s, m, h, d). */
export function parseSpan(text: string, what: string): number | null {
  if (!SPAN.test(text)) return null;
  let total = 0;
  for (const [, n, unit] of text.matchAll(/([0-9]+)(ms|s|m|h|d)/g))
    total += Number(n) * (SPAN_UNITS[unit as string] ?? 0);
  if (!Number.isSafeInteger(total) || total <= 0)
    throw usageError(describe(what, text), 'must be more than 0');
  return total;
}

/** The default lifetime of a credential. */
export const DEFAULT_CREDENTIAL_LIFETIME_MS = 90 * DAY_MS;

/**
 * A credential's validity window from --not-before (default now) and --expires: a span after not-before
 * (90d, 12h), a time, or `never`. Default: 90 days.
 */
export function parseValidity(
  flags: { notBefore?: string | undefined; expires?: string | undefined },
  nowMs: number,
): { notBeforeMs: number; notAfterMs: number } {
  const notBeforeMs =
    flags.notBefore === undefined ? nowMs : parseTime(flags.notBefore, '--not-before', nowMs);
  let notAfterMs: number;
  if (flags.expires === undefined) notAfterMs = notBeforeMs + DEFAULT_CREDENTIAL_LIFETIME_MS;
  else if (flags.expires === 'never') notAfterMs = FOREVER_MS;
  else {
    const span = parseSpan(flags.expires, '--expires');
    notAfterMs =
      span !== null
        ? notBeforeMs + span
        : (() => {
            try {
              return parseTime(flags.expires, '--expires', nowMs);
            } catch {
              throw usageError(
                describe('--expires', flags.expires),
                `give a span after --not-before (90d, 12h, 30m), a time (${TIME_RULE.replace('a time is ', '')}) or never`,
              );
            }
          })();
  }
  if (notAfterMs > FOREVER_MS) notAfterMs = FOREVER_MS;
  if (notAfterMs <= notBeforeMs)
    throw usageError(
      describe('--expires', flags.expires ?? ''),
      `the credential would expire (${iso(notAfterMs)}) before it becomes valid (${iso(notBeforeMs)})`,
    );
  return { notBeforeMs, notAfterMs };
}

function iso(ms: number): string {
  return new Date(Math.min(ms, 8.64e15)).toISOString();
}

/** A credential id argument: 64 hex digits, or a unique prefix of at least 4 (resolved against the list). */
export function parseCredentialRef(
  text: string,
  what = 'credential id',
): { full: string | null; prefix: string } {
  const lower = text.toLowerCase();
  if (/^[0-9a-f]{64}$/.test(lower)) return { full: lower, prefix: lower };
  if (/^[0-9a-f]{4,63}$/.test(lower)) return { full: null, prefix: lower };
  throw usageError(
    `invalid ${what} ${quote(text)}`,
    'give the 64 hex digits of aq credential list, or a unique prefix of at least 4',
  );
}

/** Quota flags into the canonical document; null when none is given. */
export function quotaOfFlags(flags: {
  maxInstances?: string | undefined;
  maxNames?: string | undefined;
  prefixMax?: readonly string[] | undefined;
  rate?: string | undefined;
  over?: string | undefined;
}): QuotaDocument | null {
  const given =
    flags.maxInstances !== undefined ||
    flags.maxNames !== undefined ||
    (flags.prefixMax !== undefined && flags.prefixMax.length > 0) ||
    flags.rate !== undefined ||
    flags.over !== undefined;
  if (!given) return null;
  try {
    return quotaFromFlags({
      maxInstances: flags.maxInstances,
      maxNames: flags.maxNames,
      prefix: flags.prefixMax?.map(String),
      rate: flags.rate,
      over: flags.over,
    });
  } catch (error) {
    if (error instanceof QuotaError)
      throw new CliError(error.message.replace(/^--prefix /, '--prefix-max '), EXIT.usage);
    throw error;
  }
}

/** `--principal HEX` of aq policy test: a 64-hex public key. */
export function parsePrincipal(text: string | undefined): string {
  if (text === undefined) return '0'.repeat(64);
  if (!/^[0-9a-fA-F]{64}$/.test(text))
    throw usageError(describe('--principal', text), 'a principal is an ed25519 public key, 64 hex digits');
  return text.toLowerCase();
}

/** `--from-scope ID` of aq policy test: local (default) or a scope id (64 hex). */
export function parseFromScope(text: string | undefined): string {
  if (text === undefined || text === 'local') return 'local';
  if (!/^[0-9a-fA-F]{64}$/.test(text))
    throw usageError(
      describe('--from-scope', text),
      'give local or a scope id (64 hex digits, aq scope show)',
    );
  return text.toLowerCase();
}

/** `--scope-id ID`: 64 hex digits. */
export function parseScopeId(text: string, what = '--scope-id'): string {
  if (!/^[0-9a-fA-F]{64}$/.test(text))
    throw usageError(describe(what, text), 'a scope id is 64 hex digits (aq scope show SCOPE)');
  return text.toLowerCase();
}
