/**
 * Helpers shared by the end-to-end, fan-out and scale benchmarks: forked children with
 * request/response over IPC, CPU time of other processes from `/proc`, and HDR histograms.
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';

export type Message = Record<string, unknown> & { type: string };

/**
 * A forked child with request/response over IPC: `next(type)` waits for its next message of that
 * type (or takes one that came before anyone waited), `request` sends and waits for the reply.
 * Every benchmark that forks children uses this one (`e2e.ts`, `broker.ts`, `fanout-nats.ts`, …).
 */
export class Child {
  private readonly waiters = new Map<string, ((m: Message) => void)[]>();
  private readonly listeners = new Map<string, (m: Message) => void>();
  /** Messages that arrived before anyone waited for them (e.g. an early `ready`). */
  private readonly unclaimed = new Map<string, Message[]>();
  readonly exited: Promise<number | null>;
  constructor(readonly proc: ChildProcess) {
    proc.on('message', (m: Message) => {
      const w = this.waiters.get(m.type)?.shift();
      const l = this.listeners.get(m.type);
      if (w !== undefined) w(m);
      else if (l !== undefined) l(m);
      else {
        const list = this.unclaimed.get(m.type) ?? [];
        list.push(m);
        this.unclaimed.set(m.type, list);
      }
    });
    this.exited = new Promise((r) => proc.on('exit', (code) => r(code)));
  }
  /** Every message of `type` nobody `next()`-waits for goes to `fn`. */
  on(type: string, fn: (m: Message) => void): void {
    this.listeners.set(type, fn);
  }
  next<T>(type: string, timeoutMs = 60_000): Promise<T> {
    const early = this.unclaimed.get(type)?.shift();
    if (early !== undefined) return Promise.resolve(early as unknown as T);
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        const list = this.waiters.get(type);
        const i = list?.indexOf(done) ?? -1;
        if (i >= 0) list?.splice(i, 1);
        reject(new Error(`pid ${this.proc.pid}: timed out waiting for ${type}`));
      }, timeoutMs);
      const done = (m: Message) => {
        clearTimeout(t);
        resolve(m as unknown as T);
      };
      const list = this.waiters.get(type) ?? [];
      list.push(done);
      this.waiters.set(type, list);
    });
  }
  request<T>(message: Message, reply: string, timeoutMs?: number): Promise<T> {
    const p = this.next<T>(reply, timeoutMs);
    this.proc.send(message);
    return p;
  }
  send(message: Message): void {
    if (this.proc.connected) this.proc.send(message);
  }
  async stop(graceMs = 3000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.send({ type: 'exit' });
    const t = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

/** Path of a sibling module of this (compiled) file. */
export const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));

export function forkChild(
  module: string,
  args: string[] = [],
  opts: {
    cpuProf?: string | undefined;
    /** The profiler's sampling interval in µs (Node's default: 1000). */
    cpuProfIntervalUs?: number | undefined;
    traceGc?: boolean;
    env?: NodeJS.ProcessEnv;
  } = {},
): Child {
  const execArgv =
    opts.cpuProf === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProf}`];
  if (opts.cpuProf !== undefined && opts.cpuProfIntervalUs !== undefined) {
    execArgv.push(`--cpu-prof-interval=${opts.cpuProfIntervalUs}`);
  }
  // Each GC pause printed by V8 (times in ms since the child's start, prefixed by its pid).
  if (opts.traceGc === true) execArgv.push('--trace-gc');
  return new Child(fork(here(module), args, { execArgv, stdio: 'inherit', env: opts.env }));
}

/** Kernel clock ticks per second (`getconf CLK_TCK`; 100 on Linux for every common arch). */
const CLK_TCK = 100;

/** utime and stime of a process (all its threads) in seconds, or undefined if it is gone. */
export function procCpu(pid: number): { userSeconds: number; systemSeconds: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces: fields after it start past the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return { userSeconds: Number(rest[11]) / CLK_TCK, systemSeconds: Number(rest[12]) / CLK_TCK };
  } catch {
    return undefined;
  }
}

/** utime + stime of a process in seconds, or undefined if it is gone. */
export function procCpuSeconds(pid: number): number | undefined {
  const c = procCpu(pid);
  return c === undefined ? undefined : c.userSeconds + c.systemSeconds;
}

/**
 * Context switches of one thread (`/proc/<pid>/task/<tid>/status`; the main thread's tid is the
 * pid), zeros if it is gone: voluntary ones are the thread blocking (in `epoll_wait`, a futex),
 * so about one per wake-up; involuntary ones are it being preempted while runnable.
 */
export function threadContextSwitches(
  pid: number,
  tid: number | string = pid,
): { voluntary: number; involuntary: number } {
  try {
    const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    return {
      voluntary: Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0),
      involuntary: Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0),
    };
  } catch {
    return { voluntary: 0, involuntary: 0 }; // The thread exited meanwhile.
  }
}

/** Context switches of a process, summed over its live threads (`threadContextSwitches`). */
export function procContextSwitches(pid: number): { voluntary: number; involuntary: number } {
  let voluntary = 0;
  let involuntary = 0;
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    // Gone.
  }
  for (const tid of tids) {
    const c = threadContextSwitches(pid, tid);
    voluntary += c.voluntary;
    involuntary += c.involuntary;
  }
  return { voluntary, involuntary };
}

/**
 * How `bench broker` and `bench fanout` schedule their load generators (the publisher and
 * subscriber processes, ours and nats-server's alike; never the server under test): `batch` is
 * Linux's SCHED_BATCH, the same share of the CPU as before (nice 0) but a woken client never
 * preempts a running task, so it does not take the CPU from the server that woke it (at a
 * scheduler tick, when the server's slice is used up, it still may). At `other` (the default
 * policy, as every run before session 7) the subscriber, woken by the broker's socket write onto
 * the broker's own CPU (a synchronous wake-up), preempted the broker ~800-1,500 times a second at
 * fan-out 10, 200k deliveries/s; at `batch` ~330-550 (`perf sched`; bench/results/notes.md, "What
 * keeps the broker off the CPU"). A lower priority (nice 10) cut that further, but gave the
 * server the clients' share whenever the machine was short of CPU: the subscriber fell behind and
 * fan-out 100 dropped diffs at 1M/s where nice 0 delivered them all.
 * The default is `other`: in the lead's full `bench fanout` (session 7, 00:04 UTC, load 1.2) with
 * batch clients both systems failed the p99 bound at fan-out 10 and 100 from 20–56k/s (ours and
 * nats-server alike, where `other` had passed 0.9–1.8M/s), because a batch subscriber's wake-up
 * waits for the running task's slice, and that wait is in the latency figure: the bench then
 * measures its own client. `batch` stays for the stall diagnosis at fan-out 10 (`bench broker`).
 */
export type ClientSched = 'batch' | 'other';
export const DEFAULT_CLIENT_SCHED: ClientSched = 'other';

/**
 * Sets the scheduling policy of every thread of a process (`chrt --all-tasks`: Linux applies a
 * policy to one thread at a time; threads the process starts later inherit it from the thread
 * that starts them). Call it once the process is up (its `ready`). Without `chrt` (not Linux,
 * no util-linux) it warns once and leaves the process as it is.
 */
export function setProcessSched(pid: number, sched: ClientSched): void {
  if (sched === 'other') return;
  try {
    execFileSync('chrt', ['--all-tasks', '--batch', '--pid', '0', String(pid)], {
      stdio: 'ignore',
    });
  } catch (err) {
    if (!warnedNoChrt) console.warn(`cannot set SCHED_BATCH on the bench clients: ${String(err)}`);
    warnedNoChrt = true;
  }
}
let warnedNoChrt = false;

/** Pids of every process of a user (by uid, from `/proc`). */
export function pidsOfUser(uid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      const m = /^Uid:\s+(\d+)/m.exec(status);
      if (m !== null && Number(m[1]) === uid) out.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** CPU seconds per pid, for a set of pids. */
export function cpuSnapshot(pids: number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const pid of pids) {
    const s = procCpuSeconds(pid);
    if (s !== undefined) m.set(pid, s);
  }
  return m;
}

/** CPU used between two snapshots by the processes alive at the second (new ones from 0). */
export function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, s] of after) sum += s - (before.get(pid) ?? 0);
  return sum;
}

/** The uid `postgres` runs as, from `/etc/passwd`, or undefined. */
export function uidOf(user: string): number | undefined {
  try {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${user}:`));
    return line === undefined ? undefined : Number(line.split(':')[2]);
  } catch {
    return undefined;
  }
}

export function newHistogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
  });
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  meanMs: number;
}

/** Percentiles of a histogram of µs values, in ms. */
export function summarize(h: hdr.Histogram): LatencySummary {
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    count: h.totalCount,
    p50Ms: ms(h.getValueAtPercentile(50)),
    p90Ms: ms(h.getValueAtPercentile(90)),
    p99Ms: ms(h.getValueAtPercentile(99)),
    p999Ms: ms(h.getValueAtPercentile(99.9)),
    maxMs: ms(h.maxValue),
    meanMs: ms(h.mean),
  };
}

/** The CDF as (latency ms, cumulative fraction) points, for charts. */
export function cdfPoints(h: hdr.Histogram): { ms: number; p: number }[] {
  const out: { ms: number; p: number }[] = [];
  for (const q of [
    0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96, 97, 98, 99, 99.5, 99.9,
    99.95, 99.99, 100,
  ]) {
    const v = q === 100 ? h.maxValue : h.getValueAtPercentile(q);
    out.push({ ms: Math.max(0.001, v / 1000), p: q / 100 });
  }
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'unknown';
  }
}
