// The governance commands: aq keygen, aq scope create|sign|show, aq credential issue|revoke|show|list,
// aq policy get|set|test, aq quota get|set. Each validates its flags first (governance-requests.ts; a
// mistake is a usage error and nothing is sent), then calls the anchor (aq.v1.Governance) or works
// offline, then prints (output.ts; --json: one JSON line). Changes are governance commands
// (src/registry/commands.ts, format 3) signed with the admin's key and scope-admin credential
// (signing.ts) and submitted; the scope's group admits or refuses them at one log index.

import { constants } from 'node:fs';
import { mkdir, open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { bytesToHex } from '@noble/hashes/utils.js';
import { ROLE_GRANTS } from '../governance/authority.ts';
import { type Credential, credentialIdHex, encodeCredential } from '../governance/credential.ts';
import {
  type Genesis,
  genesisSignatureStatus,
  scopeIdHex,
  signGenesis,
  sortKeys,
} from '../governance/genesis.ts';
import { genesisToJson } from '../governance/genesis-file.ts';
import {
  type Decision,
  decodePolicy,
  describePolicy,
  evaluatePolicy,
  type PolicyDocument,
  PolicyError,
  policyToJson,
} from '../governance/policy.ts';
import { decodeQuota, quotaToJson } from '../governance/quota.ts';
import { encodeKeyFile } from '../identity/key-file.ts';
import { NodeSigner, NodeVerifier, newSeed } from '../identity/signer.ts';
import {
  type Command,
  commandSignedBody,
  encodeCommand,
  type GovernanceCommand,
} from '../registry/commands.ts';
import { quote } from '../registry/names.ts';
import type { AnchorClient } from './client.ts';
import { type ClientFlags, type CommandContext, type Io, newClientId, withClient } from './commands.ts';
import { CliError, EXIT, type ExitCode, usageError } from './errors.ts';
import { readGenesisFile } from './governance-files.ts';
import {
  checkScopeName,
  parseCredentialPrefix,
  parseCredentialRef,
  parseFromScope,
  parsePolicyAction,
  parsePrincipal,
  parseRole,
  parseValidity,
  quotaOfFlags,
} from './governance-requests.ts';
import { parsePublicKey, peerIdOf, shortHex, signerOfKeyFile } from './keys.ts';
import {
  type CredentialRow,
  credentialsTable,
  describeQuota,
  formatCredential,
  jsonLine,
  prefixText,
  printable,
  validityText,
} from './output.ts';
import { describe } from './parse.ts';
import { parseTarget } from './requests.ts';
import { type CredentialView, getScope, type KeyFlags, RequestSigner, type ScopeView } from './signing.ts';

// ---- files ----

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw usageError(`${what} ${quote(path)}`, code === 'ENOENT' ? 'no such file' : (error as Error).message);
  }
}

/** Writes a new file (never replacing one): a secret or a signed document must not clobber another. */
async function writeNewFile(path: string, text: string, mode: number, what: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  let file: Awaited<ReturnType<typeof open>>;
  try {
    file = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST')
      throw usageError(
        `${what} ${quote(path)}`,
        'the file exists: refusing to overwrite it (choose another path)',
      );
    throw new CliError(`${what} ${quote(path)}: ${(error as Error).message}`, EXIT.failure);
  }
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
}

/** Replaces a file atomically (write a sibling, then rename), keeping its mode. */
async function replaceFile(path: string, text: string): Promise<void> {
  const mode = (await stat(path)).mode & 0o777;
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, path);
}

// ---- aq keygen ----

export async function keygen(flags: { out: string; json?: boolean }, io: Io): Promise<ExitCode> {
  const seed = newSeed();
  const signer = new NodeSigner(seed);
  await writeNewFile(flags.out, encodeKeyFile(seed), 0o600, '--out');
  const publicKey = bytesToHex(signer.publicKey);
  const peerId = await peerIdOf(signer.publicKey);
  if (flags.json === true) io.out(jsonLine({ file: flags.out, publicKey, peerId }));
  else
    io.out(
      `wrote a new ed25519 key to ${flags.out} (mode 0600; keep it secret)\n` +
        `public key  ${publicKey}\n` +
        (peerId === null
          ? ''
          : `peer id     ${peerId} (its name as an anchor: aq anchor start uses <data-dir>/anchor.key)\n`),
    );
  return EXIT.ok;
}

// ---- aq scope create | sign | show ----

export interface ScopeCreateFlags {
  readonly founder?: readonly string[];
  readonly admin?: readonly string[];
  readonly policy?: string;
  readonly maxInstances?: string;
  readonly maxNames?: string;
  readonly prefixMax?: readonly string[];
  readonly rate?: string;
  readonly over?: string;
  readonly sign?: readonly string[];
  readonly out: string;
  readonly json?: boolean;
}

/** A policy file into the canonical JSON; a bad file is a usage error naming its line (nothing is sent). */
async function readPolicy(path: string, what: string): Promise<PolicyDocument> {
  const text = await readText(path, what);
  const { parsePolicyFile } = await import('../governance/policy-file.ts');
  try {
    return await parsePolicyFile(text, path);
  } catch (error) {
    if (error instanceof PolicyError) throw new CliError(`${what}: ${error.message}`, EXIT.usage);
    throw error;
  }
}

async function keysOf(texts: readonly string[] | undefined, what: string): Promise<Uint8Array[]> {
  const keys: Uint8Array[] = [];
  for (const text of texts ?? []) keys.push(await parsePublicKey(text, what));
  return keys;
}

/** Adds each --sign key file's signature; a key that is not a founder or admin is a usage error. */
function signWith(g: Genesis, paths: readonly string[], what: string): Genesis {
  let out = g;
  const required = new Set([...g.founders, ...g.admins].map(bytesToHex));
  for (const path of paths) {
    const signer = signerOfKeyFile(path, what);
    const key = bytesToHex(signer.publicKey);
    if (!required.has(key))
      throw usageError(
        `${what} ${quote(path)}`,
        `its key ${shortHex(key)} is neither a founder nor an admin of scope ${g.name}: only they sign its genesis`,
      );
    out = signGenesis(out, signer);
  }
  return out;
}

/** Who signed a genesis and who still has to (one line each), for aq scope create and sign. */
async function signatureReport(g: Genesis, file: string): Promise<{ text: string; missing: string[] }> {
  const status = genesisSignatureStatus(g, new NodeVerifier());
  const founders = new Set(g.founders.map(bytesToHex));
  const label = async (key: Uint8Array) => {
    const hex = bytesToHex(key);
    if (!founders.has(hex)) return `admin ${hex}`;
    const peer = await peerIdOf(key);
    return `founder ${hex}${peer === null ? '' : ` (anchor ${peer})`}`;
  };
  const missing: string[] = [];
  for (const key of status.missing) missing.push(await label(key));
  const lines: string[] = [];
  for (const key of status.invalid) lines.push(`  INVALID signature of ${await label(key)} (altered file?)`);
  if (missing.length === 0 && status.invalid.length === 0)
    lines.push(
      `every founder and admin has signed: start the founding anchors with aq anchor start --genesis ${file}`,
    );
  else if (missing.length > 0)
    lines.push(
      `still to sign (aq scope sign ${file} --key KEYFILE, with each key):`,
      ...missing.map((m) => `  ${m}`),
    );
  return { text: `${lines.join('\n')}\n`, missing };
}

export async function scopeCreate(name: string, flags: ScopeCreateFlags, io: Io): Promise<ExitCode> {
  checkScopeName(name);
  const founders = sortKeys(await keysOf(flags.founder, '--founder'));
  const admins = sortKeys(await keysOf(flags.admin, '--admin'));
  if (founders.length === 0)
    throw usageError('--founder', 'a governed scope needs at least one founding anchor (its key or peer id)');
  if (admins.length === 0)
    throw usageError('--admin', 'a governed scope needs at least one admin (who issues its credentials)');
  const policy = flags.policy === undefined ? '' : policyToJson(await readPolicy(flags.policy, '--policy'));
  const quotaDoc = quotaOfFlags(flags);
  const quota = quotaDoc === null ? '' : quotaToJson(quotaDoc);
  let genesis: Genesis = { name, createdMs: Date.now(), founders, admins, policy, quota, signatures: [] };
  genesis = signWith(genesis, flags.sign ?? [], '--sign');
  await writeNewFile(flags.out, `${JSON.stringify(genesisToJson(genesis), null, 2)}\n`, 0o644, '--out');
  const id = scopeIdHex(genesis);
  const report = await signatureReport(genesis, flags.out);
  if (flags.json === true)
    io.out(jsonLine({ file: flags.out, scope: name, scopeId: id, missing: report.missing }));
  else io.out(`scope ${name}: scope id ${id}\nwrote the genesis to ${flags.out}\n${report.text}`);
  return EXIT.ok;
}

export async function scopeSign(
  file: string,
  flags: { key: string; json?: boolean },
  io: Io,
): Promise<ExitCode> {
  let genesis: Genesis;
  try {
    genesis = readGenesisFile(file);
  } catch (error) {
    throw usageError('genesis file', (error as Error).message);
  }
  genesis = signWith(genesis, [flags.key], '--key');
  await replaceFile(file, `${JSON.stringify(genesisToJson(genesis), null, 2)}\n`);
  const report = await signatureReport(genesis, file);
  if (flags.json === true)
    io.out(jsonLine({ file, scope: genesis.name, scopeId: scopeIdHex(genesis), missing: report.missing }));
  else io.out(`signed the genesis of scope ${genesis.name} in ${file}\n${report.text}`);
  return EXIT.ok;
}

/** The decoded genesis of a GetScope answer (undefined for none). */
async function genesisOf(scope: ScopeView): Promise<Genesis | undefined> {
  if (scope.genesis === undefined || scope.genesis.length === 0) return undefined;
  const { decodeGenesis } = await import('../governance/genesis.ts');
  return decodeGenesis(new Uint8Array(scope.genesis));
}

function policySummary(scope: ScopeView): string {
  if (scope.policy === '')
    return scope.governed
      ? 'none: what no credential role grants is refused (the default of a governed scope)'
      : 'none: the scope is open, every request is admitted';
  try {
    return describePolicy(decodePolicy(scope.policy));
  } catch (error) {
    return `unreadable (${(error as Error).message})`;
  }
}

function quotaSummary(scope: ScopeView): string {
  if (scope.quota === '') return 'none';
  try {
    return describeQuota(decodeQuota(scope.quota));
  } catch (error) {
    return `unreadable (${(error as Error).message})`;
  }
}

export async function scopeShow(
  scopeName: string,
  flags: ClientFlags,
  ctx: CommandContext,
): Promise<ExitCode> {
  checkScopeName(scopeName);
  const target = parseTarget(flags, ctx.anchorFrom);
  const scope = await withClient(target, (c) => getScope(c, { scope: scopeName }, 'scope show'));
  const genesis = await genesisOf(scope);
  if (flags.json === true) {
    ctx.io.out(
      jsonLine({
        scope: scope.scope,
        scopeId: scope.scopeId,
        governed: scope.governed,
        genesis: genesis === undefined ? null : genesisToJson(genesis),
        policy: scope.policy === '' ? null : JSON.parse(scope.policy),
        quota: scope.quota === '' ? null : JSON.parse(scope.quota),
        lineageSize: scope.lineageSize,
        appliedIndex: scope.appliedIndex,
      }),
    );
    return EXIT.ok;
  }
  const pairs: [string, string][] = [
    ['scope', scope.scope],
    ['scope id', scope.scopeId || '- (no genesis yet)'],
    [
      'governance',
      scope.governed
        ? `governed: ${genesis?.founders.length ?? 0} founding anchor(s), ${genesis?.admins.length ?? 0} admin(s)`
        : 'open: no admins, every request is admitted unauthenticated',
    ],
  ];
  for (const key of genesis?.founders ?? [])
    pairs.push(['founder', `${bytesToHex(key)} (${(await peerIdOf(key)) ?? '-'})`]);
  for (const key of genesis?.admins ?? []) pairs.push(['admin', bytesToHex(key)]);
  pairs.push(
    ['policy', policySummary(scope)],
    ['quota', quotaSummary(scope)],
    [
      'lineage',
      `${scope.lineageSize} ${scope.lineageSize === 1 ? 'entry' : 'entries'} (applied index ${scope.appliedIndex})`,
    ],
  );
  ctx.io.out(pairs.map(([k, v]) => `${k.padEnd(10)} ${printable(v)}\n`).join(''));
  return EXIT.ok;
}

// ---- submitting governance commands ----

interface SubmitResponse {
  readonly index?: number;
  readonly lineageIndex?: number;
  readonly detail?: string;
}

type AdminFlags = ClientFlags & KeyFlags & { readonly key: string };

/**
 * Signs `cmd` (with a session, so that retries are applied once) with the admin's key and scope-admin
 * credential, and submits it; a fresh auth block per attempt.
 */
async function submit(
  c: AnchorClient,
  flags: AdminFlags,
  scope: ScopeView,
  cmd: GovernanceCommand,
  command: string,
): Promise<SubmitResponse> {
  const signer = await RequestSigner.open(c, flags, { scope: scope.scope }, command, scope);
  const bare = { ...cmd, session: { client: newClientId(), seq: 1 } } as Command;
  const auth = await signer.authFor('administer', '');
  const body = commandSignedBody(bare);
  const request = () => ({
    scope: scope.scope,
    command: encodeCommand(auth === null ? bare : ({ ...bare, auth: auth(body) } as Command)),
  });
  return c.call<SubmitResponse>('Governance', 'Submit', request, command, true);
}

function appliedAt(r: SubmitResponse): string {
  return `at log index ${r.index ?? 0} (lineage entry ${r.lineageIndex ?? 0})`;
}

// ---- aq credential issue | revoke | show | list ----

export interface IssueFlags extends AdminFlags {
  readonly role: string;
  readonly subject: string;
  readonly prefix: string;
  readonly notBefore?: string;
  readonly expires?: string;
}

export async function credentialIssue(
  scopeName: string,
  flags: IssueFlags,
  ctx: CommandContext,
): Promise<ExitCode> {
  checkScopeName(scopeName);
  const role = parseRole(flags.role);
  const prefix = parseCredentialPrefix(flags.prefix, scopeName);
  const validity = parseValidity(flags, Date.now());
  const subject = await parsePublicKey(flags.subject, '--subject');
  signerOfKeyFile(flags.key, '--key'); // a bad key file is a usage error before any call
  const target = parseTarget(flags, ctx.anchorFrom);
  const { response, credential } = await withClient(target, async (c) => {
    const scope = await getScope(c, { scope: scopeName }, 'credential issue');
    if (scope.scopeId === '')
      throw new CliError(`credential issue: scope ${scopeName} has no genesis yet`, EXIT.defer, {
        hint: 'retrying shortly is safe',
      });
    const { hexToBytes } = await import('@noble/hashes/utils.js');
    const credential: Credential = { scopeId: hexToBytes(scope.scopeId), role, subject, prefix, ...validity };
    const response = await submit(
      c,
      flags,
      scope,
      { type: 'issue-credential', name: '', credential: encodeCredential(credential) },
      'credential issue',
    );
    return { response, credential };
  });
  const id = response.detail || credentialIdHex(credential);
  if (flags.json === true)
    ctx.io.out(
      jsonLine({
        id,
        scope: scopeName,
        role,
        subject: bytesToHex(subject),
        prefix,
        notBeforeMs: credential.notBeforeMs,
        notAfterMs: credential.notAfterMs,
        index: response.index ?? 0,
        lineageIndex: response.lineageIndex ?? 0,
      }),
    );
  else
    ctx.io.out(
      `issued credential ${id}\n` +
        `  ${role} for ${shortHex(bytesToHex(subject))}, names under ${prefixText(prefix)}, valid ${validityText(credential.notBeforeMs, credential.notAfterMs, Date.now())}\n` +
        `  ${appliedAt(response)}\n`,
    );
  return EXIT.ok;
}

async function listCredentials(c: AnchorClient, scope: string, command: string): Promise<CredentialView[]> {
  const r = await c.call<{ credentials?: CredentialView[] }>(
    'Governance',
    'ListCredentials',
    { scope },
    command,
    false,
  );
  return r.credentials ?? [];
}

/** The one credential an id or unique id prefix names. */
function findCredential(
  credentials: readonly CredentialView[],
  ref: string,
  scope: string,
  command: string,
): CredentialView {
  const { prefix } = parseCredentialRef(ref);
  const matches = credentials.filter((c) => c.id.startsWith(prefix));
  if (matches.length === 1) return matches[0] as CredentialView;
  if (matches.length === 0)
    throw new CliError(`${command}: scope ${scope} has no credential ${ref}`, EXIT.failure, {
      hint: `see aq credential list ${scope}`,
    });
  throw usageError(
    `credential id ${quote(ref)}`,
    `${matches.length} credentials start with it: give more digits`,
  );
}

export async function credentialRevoke(
  scopeName: string,
  ref: string,
  flags: AdminFlags & { reason?: string },
  ctx: CommandContext,
): Promise<ExitCode> {
  checkScopeName(scopeName);
  parseCredentialRef(ref);
  signerOfKeyFile(flags.key, '--key');
  const target = parseTarget(flags, ctx.anchorFrom);
  const { response, id } = await withClient(target, async (c) => {
    const scope = await getScope(c, { scope: scopeName }, 'credential revoke');
    const found = findCredential(
      await listCredentials(c, scopeName, 'credential revoke'),
      ref,
      scopeName,
      'credential revoke',
    );
    const { hexToBytes } = await import('@noble/hashes/utils.js');
    const response = await submit(
      c,
      flags,
      scope,
      { type: 'revoke-credential', name: '', credentialId: hexToBytes(found.id), reason: flags.reason ?? '' },
      'credential revoke',
    );
    return { response, id: found.id };
  });
  if (flags.json === true)
    ctx.io.out(
      jsonLine({
        id,
        scope: scopeName,
        index: response.index ?? 0,
        lineageIndex: response.lineageIndex ?? 0,
      }),
    );
  else ctx.io.out(`revoked credential ${id} ${appliedAt(response)}\n`);
  return EXIT.ok;
}

export async function credentialShow(
  scopeName: string,
  ref: string,
  flags: ClientFlags,
  ctx: CommandContext,
): Promise<ExitCode> {
  checkScopeName(scopeName);
  parseCredentialRef(ref);
  const target = parseTarget(flags, ctx.anchorFrom);
  const found = await withClient(target, async (c) =>
    findCredential(await listCredentials(c, scopeName, 'credential show'), ref, scopeName, 'credential show'),
  );
  ctx.io.out(flags.json === true ? jsonLine(found) : formatCredential(found as CredentialRow, Date.now()));
  return EXIT.ok;
}

export async function credentialList(
  scopeName: string,
  flags: ClientFlags,
  ctx: CommandContext,
): Promise<ExitCode> {
  checkScopeName(scopeName);
  const target = parseTarget(flags, ctx.anchorFrom);
  const credentials = await withClient(target, (c) => listCredentials(c, scopeName, 'credential list'));
  ctx.io.out(
    flags.json === true
      ? jsonLine({ scope: scopeName, credentials })
      : credentialsTable(credentials, Date.now()),
  );
  return EXIT.ok;
}

// ---- aq policy get | set | test ----

export async function policyGet(
  scopeName: string,
  flags: ClientFlags,
  ctx: CommandContext,
): Promise<ExitCode> {
  checkScopeName(scopeName);
  const target = parseTarget(flags, ctx.anchorFrom);
  const scope = await withClient(target, (c) => getScope(c, { scope: scopeName }, 'policy get'));
  if (flags.json === true)
    ctx.io.out(
      jsonLine({ scope: scope.scope, policy: scope.policy === '' ? null : JSON.parse(scope.policy) }),
    );
  else if (scope.policy === '') ctx.io.out(`no policy: ${policySummary(scope).replace(/^none: /, '')}\n`);
  else ctx.io.out(`${scope.policy}\n`);
  return EXIT.ok;
}

export async function policySet(
  scopeName: string,
  file: string,
  flags: AdminFlags,
  ctx: CommandContext,
): Promise<ExitCode> {
  checkScopeName(scopeName);
  const doc = await readPolicy(file, 'policy file');
  signerOfKeyFile(flags.key, '--key');
  const target = parseTarget(flags, ctx.anchorFrom);
  const response = await withClient(target, async (c) => {
    const scope = await getScope(c, { scope: scopeName }, 'policy set');
    return submit(c, flags, scope, { type: 'set-policy', name: '', policy: policyToJson(doc) }, 'policy set');
  });
  if (flags.json === true)
    ctx.io.out(
      jsonLine({ scope: scopeName, index: response.index ?? 0, lineageIndex: response.lineageIndex ?? 0 }),
    );
  else ctx.io.out(`set the policy of ${scopeName} ${appliedAt(response)}: ${describePolicy(doc)}\n`);
  return EXIT.ok;
}

export interface PolicyTestFlags {
  readonly role: string;
  readonly action: string;
  readonly name: string;
  readonly tag?: readonly string[];
  readonly principal?: string;
  readonly fromScope?: string;
  readonly json?: boolean;
}

/**
 * The decision a governed scope's anchors would make for a request that passed authentication (a valid
 * credential of `role` covering the name), as src/governance/authority.ts decides it: administering needs
 * scope-admin whatever the policy; a matching rule decides; when none matches, the role's own grants
 * allow, else the policy's default applies.
 */
export function decideLikeAnchor(
  doc: PolicyDocument,
  request: Parameters<typeof evaluatePolicy>[1],
): Decision {
  const { role, action } = request;
  if (action === 'administer')
    return role === 'scope-admin'
      ? {
          outcome: 'allow',
          attest: false,
          rule: 'role',
          reason: 'a scope-admin credential administers the scope',
        }
      : {
          outcome: 'refuse',
          attest: false,
          rule: 'role',
          reason: `administering the scope needs a scope-admin credential, not ${role}`,
        };
  const decision = evaluatePolicy(doc, request);
  if (decision.rule !== 'default') return decision;
  if ((ROLE_GRANTS[role] as readonly string[]).includes(action))
    return {
      outcome: 'allow',
      attest: false,
      rule: 'role',
      reason: `no rule matched; ${/^[aeiou]/.test(role) ? 'an' : 'a'} ${role} credential grants ${action} by its role`,
    };
  return decision;
}

export async function policyTest(file: string, flags: PolicyTestFlags, io: Io): Promise<ExitCode> {
  const role = parseRole(flags.role);
  const action = parsePolicyAction(flags.action);
  const { validateName } = await import('../registry/names.ts');
  const nameError = validateName(flags.name);
  if (nameError !== null) throw usageError(describe('--name', flags.name), nameError.message);
  const key = parsePrincipal(flags.principal);
  const scope = parseFromScope(flags.fromScope);
  const doc = await readPolicy(file, 'policy file');
  const decision = decideLikeAnchor(doc, {
    role,
    key,
    scope,
    action,
    name: flags.name,
    tags: [...(flags.tag ?? [])],
  });
  if (flags.json === true) io.out(jsonLine(decision));
  else
    io.out(
      `${decision.outcome}${decision.attest ? ' (with attestation)' : ''}\n` +
        `rule    ${decision.rule === 'role' ? '(none: the role decides)' : decision.rule}\n` +
        `reason  ${printable(decision.reason)}\n`,
    );
  return decision.outcome === 'allow' ? EXIT.ok : decision.outcome === 'defer' ? EXIT.defer : EXIT.refuse;
}

// ---- aq quota get | set ----

export async function quotaGet(
  scopeName: string,
  flags: ClientFlags,
  ctx: CommandContext,
): Promise<ExitCode> {
  checkScopeName(scopeName);
  const target = parseTarget(flags, ctx.anchorFrom);
  const scope = await withClient(target, (c) => getScope(c, { scope: scopeName }, 'quota get'));
  if (flags.json === true)
    ctx.io.out(jsonLine({ scope: scope.scope, quota: scope.quota === '' ? null : JSON.parse(scope.quota) }));
  else if (scope.quota === '') ctx.io.out(`no quota: scope ${scope.scope} has no budgets\n`);
  else ctx.io.out(`${scope.quota}\n${quotaSummary(scope)}\n`);
  return EXIT.ok;
}

export interface QuotaSetFlags extends AdminFlags {
  readonly maxInstances?: string;
  readonly maxNames?: string;
  readonly prefixMax?: readonly string[];
  readonly rate?: string;
  readonly over?: string;
}

export async function quotaSet(
  scopeName: string,
  flags: QuotaSetFlags,
  ctx: CommandContext,
): Promise<ExitCode> {
  checkScopeName(scopeName);
  const doc = quotaOfFlags(flags);
  if (doc === null)
    throw usageError(
      'no budget given',
      'pass at least one of --max-instances, --max-names, --prefix-max, --rate, --over (the quota replaces the current one)',
    );
  signerOfKeyFile(flags.key, '--key');
  const target = parseTarget(flags, ctx.anchorFrom);
  const response = await withClient(target, async (c) => {
    const scope = await getScope(c, { scope: scopeName }, 'quota set');
    return submit(c, flags, scope, { type: 'set-quota', name: '', quota: quotaToJson(doc) }, 'quota set');
  });
  if (flags.json === true)
    ctx.io.out(
      jsonLine({ scope: scopeName, quota: JSON.parse(quotaToJson(doc)), index: response.index ?? 0 }),
    );
  else ctx.io.out(`set the quota of ${scopeName} ${appliedAt(response)}: ${describeQuota(doc)}\n`);
  return EXIT.ok;
}
