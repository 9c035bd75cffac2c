// The anchor's HTTP port: Prometheus metrics (/metrics) and a health probe (/health). Consul's HTTP API
// comes later (DESIGN.md §4) on the same port.

import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface HealthReport {
  readonly serving: boolean;
  readonly scopes: readonly {
    scope: string;
    leader: string;
    role: string;
    applied: number;
    failure: string | null;
  }[];
}

export function httpServer(metrics: Registry, health: () => HealthReport): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    if (path === '/metrics') {
      metrics.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        (error: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${error.message}\n`),
      );
      return;
    }
    if (path === '/health') {
      const report = health();
      res
        .writeHead(report.serving ? 200 : 503, { 'content-type': 'application/json' })
        .end(`${JSON.stringify(report)}\n`);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /health\n');
  });
}
