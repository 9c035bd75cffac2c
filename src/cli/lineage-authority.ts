// The scope's governance rules as an offline lineage verifier needs them (src/lineage/export.ts's
// LineageAuthority): which keys may admit entries and sign tree heads at each point of the log, rebuilt
// from the log alone. Pure: no I/O, no clock; signatures through the Verifier given (NobleVerifier for
// `aq verify`, NodeVerifier online).
//
// - The genesis (entry 0) must decode and, unless the scope is open, carry every founder's and admin's
//   valid signature; it certifies the scope id (SHA-256 of its body). Its founders hold implicit anchor
//   credentials, its admins implicit scope-admin credentials (src/governance/credential.ts).
// - An entry or tree head may be signed by a key holding a non-revoked anchor credential at that point of
//   the log: a founder, or a key an issue-credential entry made an anchor; a revoke-credential entry ends
//   it. In an open scope (no founders, no admins) any key may sign.
// - Each command entry of a governed scope is re-checked as the anchors checked it: a registration or
//   governance change must carry the caller's signed request (auth), by a credential the log issued, not
//   revoked before, valid at the request's timestamp, whose prefix covers the name; a governance change
//   needs a scope-admin credential. So an anchor that forges a credential for itself, or admits a change
//   nobody signed, is caught by anyone holding the export. (Policy and quota decisions are not re-run:
//   the verifier checks who signed what, not what the policy said.)
// Validity windows are checked against each request's own signed timestamp; there is no clock here.

import { bytesToHex } from '@noble/hashes/utils.js';
import { decodeConfChange } from '../consensus/conf-change.ts';
import {
  type Credential,
  CredentialError,
  credentialId,
  decodeCredential,
  genesisCredentials,
} from '../governance/credential.ts';
import { decodeGenesis, type Genesis, isOpenScope, scopeIdOf, verifyGenesis } from '../governance/genesis.ts';
import { type Action, requestSignedBytes } from '../governance/request.ts';
import type { Verifier } from '../identity/signer.ts';
import type { LineageEntry } from '../lineage/entry.ts';
import type { LineageAuthority } from '../lineage/export.ts';
import { type Command, CommandDecodeError, commandSignedBody, decodeCommand } from '../registry/commands.ts';

interface Held {
  readonly credential: Credential;
  /** The lineage entry that issued it (0: the genesis). */
  readonly issuedAt: number;
  /** The lineage entry that revoked it, or null. */
  revokedAt: number | null;
}

export interface ScopeLineageAuthority extends LineageAuthority {
  /** The genesis of entry 0, once seen and valid. */
  readonly genesisRecord: Genesis | undefined;
  /** The keys (hex) holding a non-revoked anchor credential now. */
  anchorKeys(): string[];
}

const short = (b: Uint8Array): string => `${bytesToHex(b).slice(0, 16)}…`;

/** A LineageAuthority that learns the scope's anchors and credentials from the entries it is shown. */
export function lineageAuthority(verifier: Verifier): ScopeLineageAuthority {
  let genesis: Genesis | undefined;
  let scopeId: Uint8Array | undefined;
  let open = false;
  const held = new Map<string, Held>();

  const grant = (c: Credential, at: number): Uint8Array => {
    const id = credentialId(c);
    held.set(bytesToHex(id), { credential: c, issuedAt: at, revokedAt: null });
    return id;
  };

  /** Why `cmd`'s auth does not authorize `action` on `name`, or null. */
  const checkAuth = (cmd: Command, action: Action, name: string): string | null => {
    const auth = cmd.auth;
    if (auth === undefined)
      return `a ${cmd.type} that nobody signed (a governed scope admits only signed requests)`;
    const record = held.get(bytesToHex(auth.credentialId));
    const id = short(auth.credentialId);
    if (record === undefined)
      return `a ${cmd.type} signed with credential ${id}, which this log never issued`;
    const c = record.credential;
    if (record.revokedAt !== null)
      return `a ${cmd.type} signed with credential ${id}, revoked at entry ${record.revokedAt}`;
    if (auth.timestampMs < c.notBeforeMs || auth.timestampMs > c.notAfterMs)
      return `a ${cmd.type} signed with credential ${id} at ${auth.timestampMs}, outside its validity ${c.notBeforeMs}..${c.notAfterMs}`;
    if (!name.startsWith(c.prefix))
      return `a ${cmd.type} of ${JSON.stringify(name)} signed with credential ${id}, which covers only ${JSON.stringify(c.prefix)}`;
    if (action === 'administer' && c.role !== 'scope-admin')
      return `a ${cmd.type} signed with a ${c.role} credential ${id} (administering needs scope-admin)`;
    const signed = requestSignedBytes(
      scopeId as Uint8Array,
      auth.credentialId,
      auth.timestampMs,
      auth.nonce,
      action,
      commandSignedBody(cmd),
    );
    if (!verifier.verify(c.subject, signed, auth.signature))
      return `the request signature of a ${cmd.type} does not verify under credential ${id}`;
    return null;
  };

  const observeCommand = (entry: LineageEntry, cmd: Command): string | null => {
    if (cmd.type === 'genesis' || cmd.type === 'tree-head')
      return `a ${cmd.type} command is not a lineage entry of its own`;
    if (open) {
      if (cmd.type === 'register' || cmd.type === 'deregister' || cmd.type === 'set-health') return null;
      return `a ${cmd.type} in an open scope (nobody administers one)`;
    }
    switch (cmd.type) {
      case 'register':
        return checkAuth(cmd, 'register', cmd.name);
      case 'deregister':
        return checkAuth(cmd, 'deregister', cmd.name);
      case 'set-health':
        // The leader's TTL monitor proposes these unsigned; the entry's anchor signature covers them.
        return cmd.auth === undefined ? null : checkAuth(cmd, 'heartbeat', cmd.name);
      case 'issue-credential': {
        const problem = checkAuth(cmd, 'administer', '');
        if (problem !== null) return problem;
        let c: Credential;
        try {
          c = decodeCredential(cmd.credential);
        } catch (error) {
          if (error instanceof CredentialError) return error.message;
          throw error;
        }
        if (scopeId === undefined || bytesToHex(c.scopeId) !== bytesToHex(scopeId))
          return 'an issued credential names another scope';
        const admin = held.get(bytesToHex(cmd.auth?.credentialId ?? new Uint8Array(0)));
        if (admin !== undefined && !c.prefix.startsWith(admin.credential.prefix))
          return `a scope-admin for ${JSON.stringify(admin.credential.prefix)} issued a credential for ${JSON.stringify(c.prefix)}`;
        const id = bytesToHex(credentialId(c));
        if (held.has(id)) return `credential ${id.slice(0, 16)}… is issued twice`;
        grant(c, entry.index);
        return null;
      }
      case 'revoke-credential': {
        const problem = checkAuth(cmd, 'administer', '');
        if (problem !== null) return problem;
        const record = held.get(bytesToHex(cmd.credentialId));
        if (record === undefined)
          return `revokes credential ${short(cmd.credentialId)}, which this log never issued`;
        if (record.revokedAt !== null)
          return `revokes credential ${short(cmd.credentialId)} again (revoked at entry ${record.revokedAt})`;
        record.revokedAt = entry.index;
        return null;
      }
      case 'set-policy':
      case 'set-quota':
        return checkAuth(cmd, 'administer', '');
    }
  };

  return {
    get genesisRecord() {
      return genesis;
    },

    genesis(payload) {
      try {
        const g = decodeGenesis(payload);
        if (!isOpenScope(g)) verifyGenesis(g, verifier);
        genesis = g;
        scopeId = scopeIdOf(g);
        open = isOpenScope(g);
        for (const c of genesisCredentials(scopeId, g.founders, g.admins)) grant(c, 0);
        return { scopeId };
      } catch (error) {
        return { error: (error as Error).message };
      }
    },

    mayAnchorSign(key) {
      if (genesis === undefined) return false;
      if (open) return true;
      const hex = bytesToHex(key);
      for (const h of held.values()) {
        if (
          h.credential.role === 'anchor' &&
          h.revokedAt === null &&
          bytesToHex(h.credential.subject) === hex
        )
          return true;
      }
      return false;
    },

    observe(entry) {
      if (entry.kind === 'genesis') return null;
      if (entry.kind === 'membership') {
        try {
          decodeConfChange(entry.payload);
          return null;
        } catch (error) {
          return `a membership entry that is not a configuration change: ${(error as Error).message}`;
        }
      }
      if (genesis === undefined) return 'an entry before a valid genesis';
      let cmd: Command;
      try {
        cmd = decodeCommand(entry.payload);
      } catch (error) {
        if (error instanceof CommandDecodeError) return error.message;
        throw error;
      }
      return observeCommand(entry, cmd);
    },

    anchorKeys() {
      const keys = new Set<string>();
      for (const h of held.values())
        if (h.credential.role === 'anchor' && h.revokedAt === null)
          keys.add(bytesToHex(h.credential.subject));
      return [...keys].sort();
    },
  };
}
