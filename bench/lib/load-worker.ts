// One loading process of `make bench-scale` (forked by bench/scale.ts): registers the instances j in
// [from, to) through the public Registry API, `inFlight` at a time, spread over the given anchors; a
// failed registration is retried (re-registering the same instance is idempotent). Reports progress
// over IPC every 500 ms and once at the end.

import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { serviceClient } from '../../src/api/proto.ts';
import { scaleInstance } from './data.ts';

export interface LoadTask {
  anchors: string[];
  from: number;
  to: number;
  inFlight: number;
}

export type LoadMessage =
  | { type: 'progress'; done: number; errors: number }
  | { type: 'done'; done: number; errors: number; errorSample: string };

type Unary = (
  request: unknown,
  metadata: Metadata,
  options: { deadline: number },
  callback: (error: ServiceError | null) => void,
) => void;

const CALL_DEADLINE_MS = 10_000;

process.once('message', (task: LoadTask) => {
  const Registry = serviceClient('Registry');
  const clients = task.anchors.map(
    (a) => new Registry(a, credentials.createInsecure()) as unknown as { Register: Unary; close(): void },
  );
  let next = task.from;
  let done = 0;
  let errors = 0;
  let errorSample = '';
  let rr = 0;
  const register = (j: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const c = clients[rr++ % clients.length]!;
      c.Register(scaleInstance(j), new Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (e) =>
        e ? reject(e) : resolve(),
      );
    });
  const slot = async (): Promise<void> => {
    while (next < task.to) {
      const j = next++;
      for (;;) {
        try {
          await register(j);
          done++;
          break;
        } catch (error) {
          errors++;
          errorSample ||= String((error as Error).message).slice(0, 200);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
  };
  const timer = setInterval(
    () => process.send?.({ type: 'progress', done, errors } satisfies LoadMessage),
    500,
  );
  void Promise.all(Array.from({ length: task.inFlight }, slot)).then(() => {
    clearInterval(timer);
    for (const c of clients) c.close();
    process.send?.({ type: 'done', done, errors, errorSample } satisfies LoadMessage, () => process.exit(0));
  });
});

process.on('disconnect', () => process.exit(0));
