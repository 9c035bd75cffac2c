// aq.v1.Governance: a scope's genesis, credentials, policy and quota (proto/aq/v1/governance.proto). Reads
// answer from this member's applied state; a change is a signed governance command that the anchor checks,
// wraps with its admitting signature and proposes; the group decides it at one log index.

import { type handleUnaryCall, status } from '@grpc/grpc-js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import type { Logger } from 'pino';
import type { CredentialRecord } from '../governance/authority.ts';
import { encodeCredential } from '../governance/credential.ts';
import { CommandDecodeError, commandSignedBody, decodeCommand } from '../registry/commands.ts';
import type { ScopeHost } from '../scope/scope-host.ts';
import { type Admission, refusalOf } from './admission.ts';
import { ApiError, toServiceError } from './api-error.ts';
import { LAG_SENSITIVE } from './registry-service.ts';
import { callSignal, hostedScope } from './scope-lookup.ts';

export interface GovernanceServiceComponents {
  readonly host: ScopeHost;
  readonly admission: Admission;
  readonly logger: Logger;
}

const SUBMITTABLE = new Set(['issue-credential', 'revoke-credential', 'set-policy', 'set-quota']);

export function credentialToWire(r: CredentialRecord) {
  return {
    id: bytesToHex(r.id),
    credential: encodeCredential(r.credential),
    role: r.credential.role,
    subject: bytesToHex(r.credential.subject),
    prefix: r.credential.prefix,
    notBeforeMs: r.credential.notBeforeMs,
    notAfterMs: r.credential.notAfterMs,
    issuedAt: r.issuedAt,
    revokedAt: r.revokedAt,
    revokeReason: r.reason,
  };
}

export function governanceHandlers(c: GovernanceServiceComponents) {
  const unary =
    <Res>(
      method: string,
      body: (call: Parameters<handleUnaryCall<Record<string, unknown>, Res>>[0]) => Promise<Res>,
    ): handleUnaryCall<Record<string, unknown>, Res> =>
    (call, callback) => {
      body(call).then(
        (response) => callback(null, response),
        (error: unknown) => callback(toServiceError(error, c.logger, method)),
      );
    };

  return {
    GetScope: unary('GetScope', async (call) => {
      const name = String(call.request.name ?? '');
      const owner = name === '' ? undefined : c.host.owner(name);
      if (name !== '' && owner === undefined)
        throw new ApiError(status.NOT_FOUND, `no scope served by this anchor owns ${name}`);
      const s = owner ?? hostedScope(c.host, call.request.scope);
      const machine = s.group.registry;
      const a = machine.authority;
      return {
        scope: s.name,
        scopeId: a.scopeId === undefined ? '' : bytesToHex(a.scopeId),
        genesis: machine.store.getAux('g/genesis') ?? new Uint8Array(0),
        governed: a.genesis !== undefined && !a.open,
        policy: a.policyJson,
        quota: a.quota === undefined ? '' : new TextDecoder().decode(machine.store.getAux('g/quota')),
        lineageSize: machine.lineage.size,
        appliedIndex: s.group.appliedIndex,
      };
    }),

    ListCredentials: unary('ListCredentials', async (call) => {
      const s = hostedScope(c.host, call.request.scope);
      const a = s.group.registry.authority;
      const id = String(call.request.id ?? '');
      if (id !== '') {
        if (!/^[0-9a-f]{64}$/.test(id))
          throw new ApiError(
            status.INVALID_ARGUMENT,
            `credential id ${JSON.stringify(id)} is not 64 hex digits`,
          );
        const r = a.credential(hexToBytes(id));
        if (r === undefined) throw new ApiError(status.NOT_FOUND, `scope ${s.name} has no credential ${id}`);
        return { credentials: [credentialToWire(r)] };
      }
      return { credentials: a.credentials('', 10_000).map(credentialToWire) };
    }),

    Submit: unary('Submit', async (call) => {
      const s = hostedScope(c.host, call.request.scope);
      const machine = s.group.registry;
      const bytes = new Uint8Array((call.request.command as Uint8Array | undefined) ?? []);
      let cmd: ReturnType<typeof decodeCommand>;
      try {
        cmd = decodeCommand(bytes);
      } catch (error) {
        if (error instanceof CommandDecodeError) throw new ApiError(status.INVALID_ARGUMENT, error.message);
        throw error;
      }
      if (!SUBMITTABLE.has(cmd.type))
        throw new ApiError(
          status.INVALID_ARGUMENT,
          `a ${cmd.type} command cannot be submitted (only credential, policy and quota changes)`,
        );
      if (cmd.session === undefined)
        throw new ApiError(status.INVALID_ARGUMENT, 'a governance command needs a session (client and seq)');
      if (machine.authority.open)
        throw refusalOf(
          'unauthenticated',
          `scope ${s.name} is open (no admins): nobody administers it; found a governed scope with aq scope create`,
        );
      const signal = callSignal(call);
      const applied = s.group.registry.store.getSession(cmd.session.client);
      const retry = applied !== undefined && applied.seq >= cmd.session.seq;
      const check = () =>
        c.admission.check(
          s.group.registry,
          cmd.auth ?? null,
          'administer',
          '',
          () => commandSignedBody(cmd),
          {
            retry,
          },
        );
      // A retry of a command this member already applied: its request is checked, not its authorization
      // (the state machine answers it with the first result).
      try {
        check();
      } catch (error) {
        // This member may lag the group (the admin's credential just issued): catch up, then decide.
        if (
          !(error instanceof ApiError) ||
          !LAG_SENSITIVE.has(String(error.metadata?.get('aq-reason')[0] ?? ''))
        )
          throw error;
        await s.group.linearizableRead(signal);
        check();
      }
      const result = await s.group.propose(
        c.admission.admit(s.group.registry, bytes),
        `${cmd.session.client}#${cmd.session.seq}`,
        signal,
      );
      if (result.type === 'rejected') throw refusalOf(result.code, result.message);
      if (result.type !== 'govern') throw new ApiError(status.INTERNAL, `unexpected result ${result.type}`);
      return { index: result.index, lineageIndex: result.lineageIndex ?? 0, detail: result.detail };
    }),
  };
}
