// Totals over many runs, and their text form (shared by the CLI and the tests).

import { type ClientStats, emptyClientStats } from './clients.ts';
import type { RunReport } from './run.ts';

export interface Totals {
  seeds: number;
  ops: ClientStats;
  faults: Record<string, number>;
  violations: Record<string, number>;
  unknown: number[];
  failing: RunReport[];
  events: number;
  simMs: number;
}

export function emptyTotals(): Totals {
  return {
    seeds: 0,
    ops: emptyClientStats(),
    faults: {},
    violations: {},
    unknown: [],
    failing: [],
    events: 0,
    simMs: 0,
  };
}

export function addReport(t: Totals, r: RunReport): void {
  t.seeds++;
  for (const k of Object.keys(t.ops) as (keyof ClientStats)[]) t.ops[k] += r.ops[k];
  t.events += r.stats.events;
  t.simMs += r.stats.simMs;
  for (const [k, v] of Object.entries(r.faults)) t.faults[k] = (t.faults[k] ?? 0) + v;
  for (const v of r.violations) t.violations[v.property] = (t.violations[v.property] ?? 0) + 1;
  if (r.linearizability === 'unknown') t.unknown.push(r.seed);
  if (r.violations.length > 0) t.failing.push(r);
}

function kv(rec: Record<string, number>): string {
  const keys = Object.keys(rec).sort();
  return keys.length === 0 ? 'none' : keys.map((k) => `${k} ${rec[k]}`).join(', ');
}

export function formatTotals(t: Totals, wallMs: number): string {
  const lines = [
    `seeds run: ${t.seeds} in ${(wallMs / 1000).toFixed(1)}s (${(wallMs / Math.max(1, t.seeds)).toFixed(0)} ms/seed, ` +
      `${(t.simMs / 1000).toFixed(0)}s simulated, ${t.events} events)`,
    `operations: ${t.ops.ok} ok, ${t.ops.failed} failed (never proposed), ${t.ops.indeterminate} indeterminate ` +
      `(${t.ops.indeterminateApplied} applied, ${t.ops.indeterminateNeverApplied} never applied), ${t.ops.readsTimedOut} reads timed out`,
    `credentials (in the histories checked): ${t.ops.issues} issued, ${t.ops.revokes} revoked; refused: ` +
      `${t.ops.refusedUnknownCredential} unknown-credential, ${t.ops.refusedRevoked} revoked, ` +
      `${t.ops.refusedWrongPrefix} wrong-prefix, ${t.ops.refusedInvalidGovernance} invalid-governance`,
    `faults injected: ${kv(t.faults)}`,
    `violations: ${kv(t.violations)}`,
  ];
  if (t.unknown.length > 0) {
    lines.push(
      `linearizability unknown (search budget exhausted, not a violation) in ${t.unknown.length} seed(s): ${t.unknown.slice(0, 20).join(' ')}`,
    );
  }
  return lines.join('\n');
}

export function formatFailure(r: RunReport, traceLines: number): string {
  const out = [
    `seed ${r.seed}${r.options.mutation ? ` (mutation ${r.options.mutation})` : ''}: ${r.scenario}`,
  ];
  for (const v of r.violations) {
    out.push(`  ${v.property} at ${(v.time / 1000).toFixed(6)}s: ${v.message.split('\n').join('\n    ')}`);
  }
  out.push(`  last ${Math.min(traceLines, r.trace.length)} trace lines:`);
  for (const line of r.trace.slice(-traceLines)) out.push(`    ${line}`);
  return out.join('\n');
}
