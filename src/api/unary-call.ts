// One unary call on a fresh plaintext client, closed after the answer: for tools that ask an anchor one
// thing at a time (`aq dev`, the benchmarks, tests). Long-lived callers keep their own client.

import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { serviceClient } from './proto.ts';

type Unary = (
  request: unknown,
  metadata: Metadata,
  options: { deadline: number },
  callback: (error: ServiceError | null, response: unknown) => void,
) => void;

export function callOnce<T>(
  address: string,
  service: 'Registry' | 'Membership' | 'Governance' | 'Lineage',
  method: string,
  request: unknown,
  deadlineMs = 10_000,
): Promise<T> {
  const Ctor = serviceClient(service);
  const client = new Ctor(address, credentials.createInsecure()) as unknown as Record<string, Unary> & {
    close(): void;
  };
  return new Promise<T>((resolve, reject) => {
    (client[method] as Unary).call(
      client,
      request,
      new Metadata(),
      { deadline: Date.now() + deadlineMs },
      (error, response) => {
        client.close();
        if (error) reject(error);
        else resolve(response as T);
      },
    );
  });
}
