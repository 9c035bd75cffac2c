// Loads the wire contract (proto/aq/v1/*.proto) once, with the options the codecs expect (camelCase
// fields, enums as strings, 64-bit integers as numbers, defaults filled in). Servers and clients both
// use it; there is no generated code to drift from the .proto files.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type GrpcObject, loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS } from '../transport/consensus-codec.ts';

export const PROTO_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'proto');
export const PROTO_FILES = [
  'aq/v1/registry.proto',
  'aq/v1/consensus.proto',
  'aq/v1/lineage.proto',
  'aq/v1/governance.proto',
];

let cached: { definition: PackageDefinition; grpc: GrpcObject } | null = null;

export function loadProtos(): { definition: PackageDefinition; grpc: GrpcObject } {
  if (cached === null) {
    const definition = strictDecoding(
      loadSync(PROTO_FILES, { ...PROTO_LOADER_OPTIONS, includeDirs: [PROTO_DIR] }),
    );
    cached = { definition, grpc: loadPackageDefinition(definition) };
  }
  return cached;
}

/**
 * protobufjs (under proto-loader) decodes a Node Buffer with a reader that cuts a string or nested message
 * whose declared length runs past the end down to the bytes present, so a truncated request would be
 * accepted. Its plain Uint8Array reader checks bounds and refuses it; every deserializer gets a view of
 * the same bytes (no copy).
 */
function strictDecoding(definition: PackageDefinition): PackageDefinition {
  for (const entry of Object.values(definition)) {
    if (!('format' in entry) && typeof entry === 'object') {
      for (const method of Object.values(entry as unknown as Record<string, Record<string, unknown>>)) {
        for (const key of ['requestDeserialize', 'responseDeserialize'] as const) {
          const original = method[key] as ((b: Buffer) => unknown) | undefined;
          if (typeof original !== 'function') continue;
          method[key] = (b: Buffer) =>
            original(new Uint8Array(b.buffer, b.byteOffset, b.byteLength) as Buffer);
        }
      }
    }
  }
  return definition;
}

/** The client constructor of a service in package aq.v1, e.g. serviceClient('Registry'). */
export function serviceClient(
  name: 'Registry' | 'Membership' | 'Consensus' | 'Lineage' | 'Governance',
): ServiceClientConstructor {
  const aq = loadProtos().grpc.aq as GrpcObject;
  const v1 = aq.v1 as GrpcObject;
  return v1[name] as ServiceClientConstructor;
}

/** The descriptor set `make proto` generates from proto/ (buf build), for server reflection. */
export const DESCRIPTOR_SET = join(dirname(fileURLToPath(import.meta.url)), 'generated', 'aq.binpb');

/**
 * What @grpc/reflection reads from a package definition: the serialized FileDescriptorProto of every
 * proto file. Taken from buf's descriptor set rather than from proto-loader, whose descriptors merge all
 * files of a package into one and make reflection clients (buf curl) fail to find services.
 */
export function reflectionDefinition(): PackageDefinition {
  return {
    'aq.v1': { fileDescriptorProtos: splitDescriptorSet(readFileSync(DESCRIPTOR_SET)) },
  } as unknown as PackageDefinition;
}

/**
 * A FileDescriptorSet is `repeated FileDescriptorProto file = 1`: on the wire, a run of (tag 0x0a, varint
 * length, bytes). Splitting it needs no protobuf library.
 */
export function splitDescriptorSet(bytes: Uint8Array): Uint8Array[] {
  const files: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (bytes[at++] !== 0x0a)
      throw new Error(`${DESCRIPTOR_SET}: not a FileDescriptorSet (run 'make proto')`);
    let length = 0;
    for (let shift = 0; ; shift += 7) {
      const b = bytes[at++];
      if (b === undefined || shift > 28) throw new Error(`${DESCRIPTOR_SET}: truncated (run 'make proto')`);
      length += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
    }
    if (at + length > bytes.length) throw new Error(`${DESCRIPTOR_SET}: truncated (run 'make proto')`);
    files.push(bytes.subarray(at, at + length));
    at += length;
  }
  return files;
}
