/**
 * A benchmark process's worst stall over a window, at a fine grain (`bench broker` and
 * `bench fanout`: the broker, and the subscriber of our bench clients): a timer every
 * `intervalMs` (1 ms) and the main thread's `/proc/thread-self/schedstat` at each tick tell
 *
 * - the longest gap between two ticks, and inside it the main thread's time on a CPU (its own
 *   work or a GC pause), in the run queue (runnable, descheduled by the machine's other load),
 *   and the GC pauses that fell inside it;
 * - the main thread's whole run-queue wait over the window (every gap's, summed);
 * - the most time on a CPU between two ticks: the process's own longest run (a synchronous turn
 *   or a GC pause no tick could interrupt), whatever the machine did to the gaps, with the GC
 *   pauses inside that interval (so a long run is told apart as a collection or our code).
 *
 * Time on a CPU is not schedstat's own figure: the kernel brings a running thread's
 * `sum_exec_runtime` up to date only at a scheduler tick (HZ 250 here: 4 ms) or a context switch,
 * so a thread that keeps running reads a stale value (measured: a 0.5 ms busy section read as
 * 0 ms in half the cases and as up to 4.2 ms in others), and every "longest run on a CPU" taken
 * from it was up to 4 ms too long. Instead, between two ticks, the smaller of two upper bounds
 * of the main thread's time on a CPU: the wall time less its run-queue wait (schedstat's wait is
 * exact once the thread runs again; the rest of the gap it was either on a CPU or asleep) and
 * the whole process's CPU time (`process.cpuUsage()`, exact, but every thread's: V8's GC and
 * compiler helpers count too). In a synchronous run the first is exact; across an idle wait the
 * second is, unless helpers ran.
 *
 * The 1 ms timer costs ~20 ms of CPU a second, so it runs only where the stall is the figure.
 * For coarse, long-lived stall records with timestamps see `stall-log.ts`.
 */
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { schedstatReader } from './stall-log.js';

/** A window's worst stall, ms (see the file comment). */
export interface TickStalls {
  wallMs: number;
  onCpuMs: number;
  runQueueMs: number;
  gcMs: number;
  busyMs: number;
  busyGcMs: number;
  /**
   * The main thread's whole run-queue wait over the window, ms, and the window's length, ms: how
   * much of the time it was runnable and not running, in all the gaps together.
   */
  runQueueSumMs: number;
  windowMs: number;
}

export interface RunningTickStalls {
  /** The worst stall since the last `reset()`. */
  read(): TickStalls;
  /** Starts a new window. */
  reset(): void;
  /** Stops the timer and the GC observer. Idempotent. */
  stop(): void;
}

export const noStall = (): TickStalls => ({
  wallMs: 0,
  onCpuMs: 0,
  runQueueMs: 0,
  gcMs: 0,
  busyMs: 0,
  busyGcMs: 0,
  runQueueSumMs: 0,
  windowMs: 0,
});

export function startTickStalls(intervalMs = 1): RunningTickStalls {
  const sched = schedstatReader();
  /** The window's GC pauses as [start, end] (performance.now() ms). */
  let pauses: [number, number][] = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) pauses.push([e.startTime, e.startTime + e.duration]);
  });
  observer.observe({ entryTypes: ['gc'] });
  let gap = { wallMs: 0, onCpuMs: 0, runQueueMs: 0, at: 0 };
  let busy = { ms: 0, at: 0, until: 0 };
  let runQueueSumMs = 0;
  let last = performance.now();
  let windowStart = last;
  let lastWait = sched.read()?.[1] ?? 0;
  let lastCpu = process.cpuUsage();
  const timer = setInterval(() => {
    const t = performance.now();
    const wait = sched.read()?.[1] ?? 0;
    const cpu = process.cpuUsage();
    const wallMs = t - last;
    const runQueueMs = (wait - lastWait) / 1e6;
    const processCpuMs = (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000;
    const onCpuMs = Math.max(0, Math.min(wallMs - runQueueMs, processCpuMs));
    runQueueSumMs += runQueueMs;
    if (onCpuMs > busy.ms) busy = { ms: onCpuMs, at: last, until: t };
    if (wallMs > gap.wallMs) gap = { wallMs, onCpuMs, runQueueMs, at: last };
    last = t;
    lastWait = wait;
    lastCpu = cpu;
  }, intervalMs);
  timer.unref();
  /** GC pause time inside [from, to], ms. */
  const gcIn = (from: number, to: number) =>
    pauses.reduce((a, [s, e]) => a + Math.max(0, Math.min(e, to) - Math.max(s, from)), 0);
  let stopped = false;
  return {
    read: () => ({
      wallMs: gap.wallMs,
      onCpuMs: gap.onCpuMs,
      runQueueMs: gap.runQueueMs,
      gcMs: gcIn(gap.at, gap.at + gap.wallMs),
      busyMs: busy.ms,
      busyGcMs: gcIn(busy.at, busy.until),
      runQueueSumMs,
      windowMs: last - windowStart,
    }),
    reset: () => {
      pauses = [];
      gap = { wallMs: 0, onCpuMs: 0, runQueueMs: 0, at: 0 };
      busy = { ms: 0, at: 0, until: 0 };
      runQueueSumMs = 0;
      windowStart = last;
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      observer.disconnect();
      sched.close();
    },
  };
}
