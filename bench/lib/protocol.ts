// The messages between the benchmark's orchestrator and its client workers (IPC, advanced serialization).

import type { SigningIdentity } from './authority.ts';

export type System = 'aqmesh' | 'etcd';
/** The *-signed kinds run against the governed scope with signed requests (aqmesh only). */
export type PhaseKind =
  | 'register'
  | 'resolve-linearizable'
  | 'resolve-stale'
  | 'register-signed'
  | 'resolve-linearizable-signed'
  | 'resolve-stale-signed'
  | 'resolve-linearizable-tls'
  | 'resolve-stale-tls';

export interface WorkerInit {
  index: number;
  system: System;
  /** aqmesh: every anchor's client gRPC address. */
  anchors: string[];
  /** aqmesh: the leader's client gRPC address (used when writes = 'leader'). */
  leader: string;
  /** 'all': writes round robin over every anchor (followers forward); 'leader': writes to the leader. */
  writes: 'all' | 'leader';
  /** etcd: every member's client address (host:port). */
  etcd: string[];
  names: number;
  /** aqmesh: the keys and credentials that sign the governed scope's requests. */
  signing?: SigningIdentity;
  /** aqmesh: every anchor's TLS client port and peer id (the *-tls phases). */
  anchorsTls?: { address: string; peerId: string }[];
}

export type ParentMessage =
  | { type: 'init'; init: WorkerInit }
  | {
      type: 'run';
      kind: PhaseKind;
      inFlight: number;
      names: number;
      /** Wall-clock instants (Date.now()): start, then the measured window [measureFrom, measureUntil]. */
      startAt: number;
      measureFrom: number;
      measureUntil: number;
      /** First value of the per-write counter (keeps every write a change). */
      revBase: number;
    }
  | { type: 'stop' };

export interface PhaseResult {
  type: 'result';
  index: number;
  /** Successful operations completed inside the window (and in the whole run, warm-up included). */
  ok: number;
  okTotal: number;
  errorsTotal: number;
  /** Errors by gRPC status name (or error class), inside the window unless marked otherwise. */
  errors: Record<string, number>;
  errorSamples: Record<string, string>;
  latenciesUs: Float64Array;
  /** When the last in-flight operation of the phase completed. */
  drainedAt: number;
}

export type WorkerMessage =
  | { type: 'ready'; index: number }
  | PhaseResult
  | { type: 'failed'; index: number; message: string };
