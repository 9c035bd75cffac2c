// Receipts (DESIGN.md §2): what an anchor returns when it admits a registration. The anchor signs the
// canonical bytes below with its ed25519 key; anyone holding the anchor's public key (inside its peer id)
// can check a receipt offline. The bytes reuse the command codec's instance encoding, so a receipt names
// exactly the instance the log holds.
//
//   receipt := "AQRC" version:u8 (=1) scope:str index:varint name:str instance
//
// (strings are varint-length-prefixed UTF-8, as in commands.ts)

import { ByteWriter, writeInstance } from './commands.ts';
import type { Instance } from './instance.ts';

export const RECEIPT_FORMAT_VERSION = 1;
const MAGIC = [0x41, 0x51, 0x52, 0x43] as const; // "AQRC"

export interface ReceiptBody {
  readonly scope: string;
  readonly index: number;
  readonly name: string;
  readonly instance: Instance;
}

/** The bytes an anchor signs for a receipt. Equal receipts give equal bytes. */
export function receiptBytes(body: ReceiptBody): Uint8Array {
  const w = new ByteWriter(96, (message) => new RangeError(`cannot encode receipt: ${message}`));
  for (const b of MAGIC) w.u8(b);
  w.u8(RECEIPT_FORMAT_VERSION);
  w.str(body.scope, 'scope');
  w.varint(body.index, 'index');
  w.str(body.name, 'name');
  writeInstance(w, body.instance);
  return w.finish();
}
