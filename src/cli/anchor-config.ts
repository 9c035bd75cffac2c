// `aq anchor start`: flags and the --config file into an AnchorConfig. Pure (the file is read by the
// caller), so that precedence and every validation rule are unit-tested without starting anything.
//
// Precedence: a flag given on the command line > the same key in the config file > DEFAULT_ANCHOR_CONFIG.
// Repeatable flags (--bootstrap, --scope) given on the command line replace the file's list rather than
// extend it, so a flag always means exactly what it says.

import { readFileSync } from 'node:fs';
import { type AnchorConfig, DEFAULT_ANCHOR_CONFIG } from '../anchor/config.ts';
import { quote, validateName } from '../registry/names.ts';
import { oneLine, usageError } from './errors.ts';
import { readGenesisFile } from './governance-files.ts';
import { describe, parseHostPort, parseInteger } from './parse.ts';

/** The flags of `aq anchor start` as commander hands them over (strings, lists for repeatable ones). */
export interface AnchorFlags {
  readonly config?: string | undefined;
  readonly dataDir?: string | undefined;
  readonly grpc?: string | undefined;
  readonly grpcTls?: string | undefined;
  readonly peer?: string | undefined;
  readonly http?: string | undefined;
  readonly dns?: string | undefined;
  readonly p2p?: string | undefined;
  readonly bootstrap?: readonly string[] | undefined;
  readonly region?: string | undefined;
  readonly scope?: readonly string[] | undefined;
  readonly genesis?: readonly string[] | undefined;
  readonly bootstrapExpect?: string | undefined;
  readonly logLevel?: string | undefined;
  readonly cacheMb?: string | undefined;
  readonly snapshotCount?: string | undefined;
}

/** A parsed --config file: its path (for messages) and its JSON content. */
export interface ConfigFile {
  readonly path: string;
  readonly content: unknown;
}

export interface BuiltAnchorConfig {
  readonly config: AnchorConfig;
  /** The --dns address, accepted and checked but not served yet. */
  readonly dns: string | null;
  /** One line each, for stderr; not errors. */
  readonly warnings: readonly string[];
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The config file's keys are the flag names; the value type each one takes. */
const FILE_KEYS = {
  'data-dir': 'string',
  grpc: 'string',
  'grpc-tls': 'string',
  peer: 'string',
  http: 'string',
  dns: 'string',
  p2p: 'string',
  bootstrap: 'list',
  region: 'string',
  scope: 'list',
  genesis: 'list',
  'bootstrap-expect': 'integer',
  'log-level': 'string',
  'cache-mb': 'integer',
  'snapshot-count': 'integer',
} as const;

type FileKey = keyof typeof FILE_KEYS;
type FileValues = { [K in FileKey]?: (typeof FILE_KEYS)[K] extends 'list' ? string[] : string };

/** Reads and parses a --config file; a missing or malformed file is a usage error naming the file. */
export function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : oneLine((error as Error).message);
    throw usageError(`config file ${quote(path)}`, `cannot read it: ${why}`);
  }
  try {
    return { path, content: JSON.parse(text) as unknown };
  } catch (error) {
    throw usageError(`config file ${quote(path)}`, `not valid JSON: ${oneLine((error as Error).message)}`);
  }
}

/** Merges flags over the config file over the defaults, and checks every value. */
export function buildAnchorConfig(flags: AnchorFlags, file?: ConfigFile): BuiltAnchorConfig {
  const fromFile = file === undefined ? {} : readFileValues(file);
  // Where a value came from, for messages: `--scope "X"` or `"scope" in config file "a.json"`.
  const source = (flag: FileKey, fromFlag: boolean): string =>
    fromFlag || file === undefined ? `--${flag}` : `${quote(flag)} in config file ${quote(file.path)}`;

  function pick(flag: Exclude<FileKey, 'bootstrap' | 'scope' | 'genesis'>, value: string | undefined) {
    if (value !== undefined) return { value, what: `--${flag}` };
    const v = fromFile[flag];
    return v === undefined ? undefined : { value: v, what: source(flag, false) };
  }
  function pickList(flag: 'bootstrap' | 'scope' | 'genesis', value: readonly string[] | undefined) {
    if (value !== undefined) return { value, what: `--${flag}` };
    const v = fromFile[flag];
    return v === undefined ? undefined : { value: v, what: source(flag, false) };
  }

  const dataDir = pick('data-dir', flags.dataDir);
  if (dataDir === undefined) {
    throw usageError('--data-dir', 'required: give it as a flag or as "data-dir" in the --config file');
  }
  if (dataDir.value.trim().length === 0) throw usageError(dataDir.what, 'empty: give a directory');

  const listen = (flag: 'grpc' | 'peer' | 'http', fallback: string): string => {
    const v = pick(flag, flags[flag]);
    return v === undefined ? fallback : parseHostPort(v.value, v.what, { allowZero: true });
  };
  const grpc = listen('grpc', DEFAULT_ANCHOR_CONFIG.grpc);
  const grpcTlsFlag = pick('grpc-tls', flags.grpcTls);
  const grpcTls =
    grpcTlsFlag === undefined
      ? null
      : parseHostPort(grpcTlsFlag.value, grpcTlsFlag.what, { allowZero: true });
  const peer = listen('peer', DEFAULT_ANCHOR_CONFIG.peer);
  const http = listen('http', DEFAULT_ANCHOR_CONFIG.http);

  const warnings: string[] = [];
  const dnsFlag = pick('dns', flags.dns);
  let dns: string | null = null;
  if (dnsFlag !== undefined) {
    dns = parseHostPort(dnsFlag.value, dnsFlag.what, { allowZero: true });
    warnings.push(`${dnsFlag.what}: DNS is not served yet; the anchor starts without it`);
  }

  const p2pFlag = pick('p2p', flags.p2p);
  const p2p = p2pFlag === undefined ? DEFAULT_ANCHOR_CONFIG.p2p : checkMultiaddr(p2pFlag.value, p2pFlag.what);
  const bootstrapFlag = pickList('bootstrap', flags.bootstrap);
  const bootstrap =
    bootstrapFlag === undefined
      ? DEFAULT_ANCHOR_CONFIG.bootstrap
      : unique(
          bootstrapFlag.value.map((a) => checkMultiaddr(a, bootstrapFlag.what)),
          bootstrapFlag.what,
        );

  const regionFlag = pick('region', flags.region);
  const region = regionFlag === undefined ? DEFAULT_ANCHOR_CONFIG.region : checkName(regionFlag);
  const scopeFlag = pickList('scope', flags.scope);
  let scopes =
    scopeFlag === undefined
      ? DEFAULT_ANCHOR_CONFIG.scopes
      : unique(
          scopeFlag.value.map((value) => checkName({ value, what: scopeFlag.what })),
          scopeFlag.what,
        );

  const genesisFlag = pickList('genesis', flags.genesis);
  const geneses = (genesisFlag?.value ?? []).map((path) => {
    try {
      return readGenesisFile(path);
    } catch (error) {
      throw usageError(describe(genesisFlag?.what ?? '--genesis', path), oneLine((error as Error).message));
    }
  });
  for (const g of geneses) if (!scopes.includes(g.name)) scopes = [...scopes, g.name];
  const names = geneses.map((g) => g.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined)
    throw usageError(genesisFlag?.what ?? '--genesis', `two geneses for scope ${quote(twice)}`);

  const expectFlag = pick('bootstrap-expect', flags.bootstrapExpect);
  const bootstrapExpect =
    expectFlag === undefined
      ? DEFAULT_ANCHOR_CONFIG.bootstrapExpect
      : parseInteger(expectFlag.value, expectFlag.what, 1, 99);
  const cacheFlag = pick('cache-mb', flags.cacheMb);
  const cacheMb =
    cacheFlag === undefined
      ? DEFAULT_ANCHOR_CONFIG.cacheMb
      : parseInteger(cacheFlag.value, cacheFlag.what, 1, 1_048_576);

  const snapshotFlag = pick('snapshot-count', flags.snapshotCount);
  const snapshotCount =
    snapshotFlag === undefined
      ? DEFAULT_ANCHOR_CONFIG.snapshotCount
      : parseInteger(snapshotFlag.value, snapshotFlag.what, 1, 100_000_000);

  const levelFlag = pick('log-level', flags.logLevel);
  const logLevel = levelFlag === undefined ? DEFAULT_ANCHOR_CONFIG.logLevel : levelFlag.value;
  if (levelFlag !== undefined && !(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw usageError(describe(levelFlag.what, logLevel), `not one of ${LOG_LEVELS.join(', ')}`);
  }

  const config: AnchorConfig = {
    dataDir: dataDir.value,
    grpc,
    grpcTls,
    peer,
    http,
    p2p,
    bootstrap,
    region,
    scopes,
    geneses,
    bootstrapExpect,
    logLevel,
    cacheMb,
    snapshotCount,
  };
  return { config, dns, warnings };
}

/** Checks the file's shape and value types; returns its values as the strings a flag would give. */
function readFileValues(file: ConfigFile): FileValues {
  const where = `config file ${quote(file.path)}`;
  const { content } = file;
  if (typeof content !== 'object' || content === null || Array.isArray(content)) {
    throw usageError(where, 'not a JSON object: write {"data-dir": "...", "scope": ["..."], ...}');
  }
  const out: Record<string, string | string[]> = {};
  for (const [key, value] of Object.entries(content)) {
    if (!Object.hasOwn(FILE_KEYS, key)) {
      throw usageError(
        where,
        `unknown key ${quote(key)}: the keys are the flag names (${Object.keys(FILE_KEYS).join(', ')})`,
      );
    }
    const kind = FILE_KEYS[key as FileKey];
    const what = `${quote(key)} in ${where}`;
    if (kind === 'string') {
      if (typeof value !== 'string') throw usageError(what, `must be a string, got ${typeName(value)}`);
      out[key] = value;
    } else if (kind === 'integer') {
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
        throw usageError(what, `must be an integer, got ${typeName(value)}`);
      }
      out[key] = String(value);
    } else {
      // A single string is accepted for a list of one, as a flag given once would be.
      if (typeof value === 'string') out[key] = [value];
      else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) out[key] = value;
      else throw usageError(what, `must be a list of strings, got ${typeName(value)}`);
    }
  }
  return out as FileValues;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return value.every((v) => typeof v === 'string') ? 'a list' : 'a mixed list';
  if (typeof value === 'string') return `the string ${quote(value)}`;
  if (typeof value === 'number') return `the number ${value}`;
  return `a ${typeof value}`;
}

/** A light check of a libp2p multiaddr; the anchor parses it for real when it listens or dials. */
function checkMultiaddr(value: string, what: string): string {
  if (!/^\/[^\s]+$/.test(value)) {
    throw usageError(
      describe(what, value),
      'not a multiaddr: use e.g. /ip4/127.0.0.1/tcp/7403 (bootstrap addresses end with /p2p/<peer id>)',
    );
  }
  return value;
}

function checkName(flag: { value: string; what: string }): string {
  const error = validateName(flag.value);
  if (error !== null) throw usageError(flag.what, error.message);
  return flag.value;
}

function unique(values: readonly string[], what: string): string[] {
  const seen = new Set<string>();
  for (const v of values) {
    if (seen.has(v)) throw usageError(describe(what, v), 'given twice');
    seen.add(v);
  }
  return [...seen];
}
