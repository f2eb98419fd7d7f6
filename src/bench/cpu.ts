/**
 * Where the CPU goes during a bench run (Linux /proc): CPU seconds of a process, and of a
 * PostgreSQL server as a whole (the postmaster, its live backends, and the backends that exited,
 * which the postmaster reaped into its cutime/cstime).
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

interface Stat {
  ppid: number;
  /** utime + stime, in ticks. */
  own: number;
  /** cutime + cstime (reaped children), in ticks. */
  children: number;
}

function stat(pid: number): Stat | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces: fields start after the last ')'.
    const f = raw.slice(raw.lastIndexOf(")") + 2).split(" ");
    // f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14-17.
    return {
      ppid: Number(f[1]),
      own: Number(f[11]) + Number(f[12]),
      children: Number(f[13]) + Number(f[14]),
    };
  } catch {
    return undefined;
  }
}

/** CPU seconds used by process `pid` so far (0 when it is gone or /proc is not there). */
export function processCpuSeconds(pid: number): number {
  const s = stat(pid);
  return s === undefined ? 0 : s.own / TICKS_PER_SECOND;
}

/** The postmaster's pid of the server whose data directory is `dataDir` (first line of postmaster.pid). */
export function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds of a whole PostgreSQL server: postmaster + reaped backends + live backends. */
export function serverCpuSeconds(postmaster: number): number {
  const root = stat(postmaster);
  if (root === undefined) return 0;
  let ticks = root.own + root.children;
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((d) => /^[0-9]+$/.test(d));
  } catch {
    return ticks / TICKS_PER_SECOND;
  }
  for (const p of pids) {
    const s = stat(Number(p));
    if (s !== undefined && s.ppid === postmaster) ticks += s.own;
  }
  return ticks / TICKS_PER_SECOND;
}

/** CPU seconds of named processes between two moments. */
export class CpuMeter {
  private start = new Map<string, number>();
  private startedAt = 0;

  constructor(private readonly sources: ReadonlyMap<string, () => number>) {}

  begin(): void {
    this.startedAt = performance.now();
    this.start = new Map([...this.sources].map(([k, f]) => [k, f()]));
  }

  /** CPU seconds of each source since begin(), and the wall seconds. */
  end(): { wallSeconds: number; cpuSeconds: Record<string, number> } {
    const wallSeconds = (performance.now() - this.startedAt) / 1000;
    const cpuSeconds: Record<string, number> = {};
    for (const [k, f] of this.sources)
      cpuSeconds[k] = Math.round((f() - (this.start.get(k) ?? 0)) * 100) / 100;
    return { wallSeconds: Math.round(wallSeconds * 100) / 100, cpuSeconds };
  }
}
