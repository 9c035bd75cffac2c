// Registry-shaped data shared by the benchmark's orchestrator and its client workers: names
// `bench/svc-<k>` (k in 0..names-1), one instance per name whose protobuf encoding (aq.v1.Instance) is
// INSTANCE_BYTES long, and the etcd key `/registry/bench/svc-<k>/<id>` whose value is those same bytes
// (what a registry built on etcd would store). A write changes the meta value `rev`, so every write is a
// real change on both systems (an identical re-registration could be cheaper than a change).

import { serviceClient } from '../../src/api/proto.ts';
import type { WireInstance } from '../../src/api/registry-service.ts';

export const SCOPE = 'bench';
export const INSTANCE_BYTES = 300;
/** `rev` is a fixed-width decimal so that the encoded size does not move with it. */
const REV_WIDTH = 12;

/** An instance as the Registry service takes it on the wire. */
export type BenchInstance = WireInstance;

export function nameOf(k: number, scope = SCOPE): string {
  return `${scope}/svc-${k}`;
}

export function instanceIdOf(k: number): string {
  return `svc-${k}-a`;
}

export function etcdKeyOf(k: number): string {
  return `/registry/${nameOf(k)}/${instanceIdOf(k)}`;
}

export function etcdPrefixOf(k: number): string {
  return `/registry/${nameOf(k)}/`;
}

type Serialize = (value: unknown) => Buffer;

let serializeRegister: Serialize | null = null;

function serializer(): Serialize {
  if (serializeRegister === null) {
    const Registry = serviceClient('Registry');
    const def = Registry.service.Register;
    if (def === undefined) throw new Error('aq.v1.Registry has no Register method');
    serializeRegister = def.requestSerialize as Serialize;
  }
  return serializeRegister;
}

/**
 * The protobuf bytes of an Instance alone: a RegisterRequest with an empty name is field 2 (tag 0x12),
 * a varint length and the instance's bytes.
 */
export function encodeInstance(instance: BenchInstance): Buffer {
  const request = serializer()({ name: '', instance });
  let at = 1;
  while ((request[at] ?? 0) & 0x80) at++;
  return request.subarray(at + 1);
}

function baseInstance(k: number, rev: number, pad: string): BenchInstance {
  return {
    id: instanceIdOf(k),
    address: `10.${(k >> 8) & 255}.${k & 255}.17`,
    port: 8443,
    tags: ['v2.14.3', 'zone-eu-central-1a', 'http2', 'primary', 'canary'],
    meta: {
      version: '2.14.3-build.20261125',
      commit: '9f2c4e1a7b3d5f60812c4e9a0b7d3f5e1c2a4b6d',
      owner: 'team-payments',
      protocol: 'grpc',
      rev: String(rev % 10 ** REV_WIDTH).padStart(REV_WIDTH, '0'),
      pad,
    },
    health: 'HEALTH_PASSING',
    ttlMs: 0,
  };
}

const padByName = new Map<number, string>();

/** Instance of name k at write number `rev`, padded so that its encoding is INSTANCE_BYTES long. */
export function instanceOf(k: number, rev: number): BenchInstance {
  let pad = padByName.get(k);
  if (pad === undefined) {
    const bare = encodeInstance(baseInstance(k, 0, '')).length;
    const want = Math.max(0, INSTANCE_BYTES - bare);
    // The meta entry's own length prefix may grow by a byte as the pad grows: adjust until exact.
    pad = 'p'.repeat(want);
    for (let i = 0; i < 4; i++) {
      const size = encodeInstance(baseInstance(k, 0, pad)).length;
      if (size === INSTANCE_BYTES || pad.length === 0) break;
      pad = 'p'.repeat(Math.max(0, pad.length + INSTANCE_BYTES - size));
    }
    padByName.set(k, pad);
  }
  return baseInstance(k, rev, pad);
}

/** Instances per name in `make bench-scale` (1,000,000 instances over 100,000 names). */
export const SCALE_PER_NAME = 10;

/** The j-th instance of the scale benchmark: name k = j / 10, instance `svc-<k>-<j % 10>`, ~300 bytes. */
export function scaleInstance(j: number): { name: string; instance: BenchInstance } {
  const k = Math.floor(j / SCALE_PER_NAME);
  return { name: nameOf(k), instance: { ...instanceOf(k, j), id: `svc-${k}-${j % SCALE_PER_NAME}` } };
}
