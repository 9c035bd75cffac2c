// Registry fixtures shared by the state machine's unit tests and the RocksDB store's tests: instances
// and encoded commands, with or without a client session.

import { encodeCommand, type Health, type Instance, type Session } from '../../src/registry/index.ts';

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const NOOP = new Uint8Array(0);

export function inst(id: string, patch: Partial<Instance> = {}): Instance {
  return { id, address: '10.0.0.1', port: 80, tags: [], meta: {}, health: 'passing', ttlMs: 0, ...patch };
}

export function reg(name: string, instance: Instance, session?: Session): Uint8Array {
  return encodeCommand(
    session === undefined
      ? { type: 'register', name, instance }
      : { type: 'register', name, instance, session },
  );
}

export function dereg(name: string, id: string, session?: Session): Uint8Array {
  return encodeCommand(
    session === undefined ? { type: 'deregister', name, id } : { type: 'deregister', name, id, session },
  );
}

export function health(name: string, id: string, h: Health, session?: Session): Uint8Array {
  return encodeCommand(
    session === undefined
      ? { type: 'set-health', name, id, health: h }
      : { type: 'set-health', name, id, health: h, session },
  );
}
