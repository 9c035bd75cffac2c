// The anchor's key on disk: `<data-dir>/anchor.key`, created on first start, readable by the owner only.
// The file holds the 32-byte Ed25519 seed as hex with a format line, so an operator can tell what it is.

import { chmod, mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { KeyFormatError, NodeSigner, newSeed, SEED_BYTES } from './signer.ts';

const HEADER = 'aqmesh-ed25519-seed-v1';
export const KEY_FILE_NAME = 'anchor.key';

export function encodeKeyFile(seed: Uint8Array): string {
  return `${HEADER}\n${Buffer.from(seed).toString('hex')}\n`;
}

export function decodeKeyFile(text: string, path: string): Uint8Array {
  const [header, hex, ...rest] = text.split('\n');
  if (header !== HEADER)
    throw new KeyFormatError(`${path}: not an aqmesh key file (first line must be ${HEADER})`);
  if (
    !hex ||
    !/^[0-9a-f]+$/.test(hex) ||
    hex.length !== SEED_BYTES * 2 ||
    rest.some((l) => l.trim() !== '')
  ) {
    throw new KeyFormatError(
      `${path}: the second line must be ${SEED_BYTES * 2} lowercase hex digits and nothing may follow`,
    );
  }
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** Load the anchor's key from `dataDir`, creating it (mode 0600, written atomically) when absent. */
export async function loadOrCreateKey(
  dataDir: string,
  options: { signal?: AbortSignal } = {},
): Promise<NodeSigner> {
  return new NodeSigner(await loadOrCreateSeed(dataDir, options));
}

/** The anchor's 32-byte seed (its libp2p identity and TLS key derive from it too); created when absent. */
export async function loadOrCreateSeed(
  dataDir: string,
  options: { signal?: AbortSignal } = {},
): Promise<Uint8Array> {
  const path = join(dataDir, KEY_FILE_NAME);
  options.signal?.throwIfAborted();
  try {
    return decodeKeyFile(await readFile(path, { encoding: 'utf8', signal: options.signal }), path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const seed = newSeed();
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp`;
  const file = await open(tmp, 'w', 0o600);
  try {
    await file.writeFile(encodeKeyFile(seed));
    await file.sync();
  } finally {
    await file.close();
  }
  await chmod(tmp, 0o600);
  await rename(tmp, path);
  return seed;
}
