// Files the governance commands read and write: genesis files (src/governance/genesis-file.ts) and key
// files (the anchor key format, src/identity/key-file.ts). Each error is one line naming the file.

import { readFileSync } from 'node:fs';
import type { Genesis } from '../governance/genesis.ts';
import { genesisFromJson } from '../governance/genesis-file.ts';
import { decodePolicy, policyToJson } from '../governance/policy.ts';
import { decodeQuota, quotaToJson } from '../governance/quota.ts';
import { decodeKeyFile } from '../identity/key-file.ts';
import { NodeSigner } from '../identity/signer.ts';

/** Canonical JSON of a policy or quota document given as a parsed JSON value. */
export const CANONICAL = {
  policy: (v: unknown): string => policyToJson(decodePolicy(JSON.stringify(v))),
  quota: (v: unknown): string => quotaToJson(decodeQuota(JSON.stringify(v))),
};

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`${path}: ${code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
}

export function readGenesisFile(path: string): Genesis {
  return genesisFromJson(readText(path), path, CANONICAL);
}

/** A signer from a key file (`aq keygen` writes them; an anchor's `<data-dir>/anchor.key` is one too). */
export function readKeyFile(path: string): NodeSigner {
  return new NodeSigner(decodeKeyFile(readText(path), path));
}
