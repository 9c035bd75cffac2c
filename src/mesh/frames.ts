// Length-prefixed frames for the direct announcement exchange: a 4-byte big-endian payload length, then the
// payload. Pure; the decoder refuses a frame longer than its limit as soon as the prefix arrives, so a
// hostile peer cannot make us buffer more than one bounded frame.

import { MeshError } from './errors.ts';

const PREFIX_BYTES = 4;

export function encodeFrame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(PREFIX_BYTES + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length, false);
  out.set(payload, PREFIX_BYTES);
  return out;
}

export class FrameDecoder {
  private buffer: Uint8Array = new Uint8Array(0);
  private readonly maxFrameBytes: number;

  constructor(maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Appends bytes and returns every complete payload; throws MeshError for an oversized frame. */
  push(chunk: Uint8Array): Uint8Array[] {
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer, 0);
    joined.set(chunk, this.buffer.length);
    const out: Uint8Array[] = [];
    let offset = 0;
    while (joined.length - offset >= PREFIX_BYTES) {
      const length = new DataView(joined.buffer, joined.byteOffset + offset, PREFIX_BYTES).getUint32(
        0,
        false,
      );
      if (length > this.maxFrameBytes)
        throw new MeshError(`frame of ${length} bytes exceeds the ${this.maxFrameBytes} limit`);
      if (joined.length - offset - PREFIX_BYTES < length) break;
      out.push(joined.slice(offset + PREFIX_BYTES, offset + PREFIX_BYTES + length));
      offset += PREFIX_BYTES + length;
    }
    this.buffer = joined.slice(offset);
    return out;
  }

  /** Bytes of an unfinished frame (non-zero at end of stream means the peer cut a frame short). */
  get pending(): number {
    return this.buffer.length;
  }
}
