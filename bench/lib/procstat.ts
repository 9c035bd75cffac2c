// Per-process figures from /proc: CPU time (utime + stime, every thread of the process) and peak RSS
// (VmHWM). Linux only.

import { execFileSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';

let ticks: number | null = null;

/** Clock ticks per second (`getconf CLK_TCK`), the unit of utime and stime in /proc/<pid>/stat. */
export function clockTicks(): number {
  if (ticks === null) {
    const out = execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim();
    ticks = Number(out);
    if (!Number.isFinite(ticks) || ticks <= 0)
      throw new Error(`getconf CLK_TCK printed ${JSON.stringify(out)}`);
  }
  return ticks;
}

/** The process's CPU time so far in microseconds, or undefined when it is gone. */
export function cpuMicros(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may contain spaces: split after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1e6) / clockTicks();
}

/** A kB field of /proc/<pid>/status in MiB, or undefined when the process is gone. */
function statusMiB(pid: number, field: 'VmHWM' | 'VmRSS'): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Peak resident set size (VmHWM) in MiB, or undefined when the process is gone. */
export function peakRssMiB(pid: number): number | undefined {
  return statusMiB(pid, 'VmHWM');
}

/** Current resident set size (VmRSS) in MiB, or undefined when the process is gone. */
export function rssMiB(pid: number): number | undefined {
  return statusMiB(pid, 'VmRSS');
}

/** The process's command name (/proc/<pid>/comm), or undefined when it is gone. */
export function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The basename of the program the process runs (/proc/<pid>/exe), or undefined when it is gone. */
export function programOf(pid: number): string | undefined {
  try {
    return basename(readlinkSync(`/proc/${pid}/exe`));
  } catch {
    return undefined;
  }
}
