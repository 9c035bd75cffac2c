// Loads the wire contract (proto/aq/v1/*.proto) once, with the options the codecs expect (camelCase
// fields, enums as strings, 64-bit integers as numbers, defaults filled in). Servers and clients both
// use it; there is no generated code to drift from the .proto files.

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type GrpcObject, loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS } from '../transport/consensus-codec.ts';

export const PROTO_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'proto');
export const PROTO_FILES = ['aq/v1/registry.proto', 'aq/v1/membership.proto', 'aq/v1/consensus.proto'];

let cached: { definition: PackageDefinition; grpc: GrpcObject } | null = null;

export function loadProtos(): { definition: PackageDefinition; grpc: GrpcObject } {
  if (cached === null) {
    const definition = loadSync(PROTO_FILES, { ...PROTO_LOADER_OPTIONS, includeDirs: [PROTO_DIR] });
    cached = { definition, grpc: loadPackageDefinition(definition) };
  }
  return cached;
}

/** The client constructor of a service in package aq.v1, e.g. serviceClient('Registry'). */
export function serviceClient(name: 'Registry' | 'Membership' | 'Consensus'): ServiceClientConstructor {
  const aq = loadProtos().grpc.aq as GrpcObject;
  const v1 = aq.v1 as GrpcObject;
  return v1[name] as ServiceClientConstructor;
}
