// The command line of one loopback anchor (`aq anchor start ...`) for the tools that start anchors as
// child processes: `aq dev`, the benchmarks and the integration tests. Port 0 everywhere unless given.

export interface LoopbackAnchor {
  readonly dataDir: string;
  readonly scopes: readonly string[];
  readonly bootstrapExpect?: number;
  readonly bootstrap?: readonly string[];
  readonly region?: string;
  /** Client gRPC address; default 127.0.0.1:0. */
  readonly grpc?: string;
  readonly logLevel?: string;
  readonly extraArgs?: readonly string[];
}

/** The arguments after `aq`: `anchor start --data-dir ... --scope ...`. */
export function loopbackAnchorArgs(o: LoopbackAnchor): string[] {
  return [
    'anchor',
    'start',
    '--data-dir',
    o.dataDir,
    '--grpc',
    o.grpc ?? '127.0.0.1:0',
    '--peer',
    '127.0.0.1:0',
    '--http',
    '127.0.0.1:0',
    '--p2p',
    '/ip4/127.0.0.1/tcp/0',
    '--region',
    o.region ?? 'local',
    '--bootstrap-expect',
    String(o.bootstrapExpect ?? 1),
    '--log-level',
    o.logLevel ?? 'info',
    ...o.scopes.flatMap((s) => ['--scope', s]),
    ...(o.bootstrap ?? []).flatMap((b) => ['--bootstrap', b]),
    ...(o.extraArgs ?? []),
  ];
}
