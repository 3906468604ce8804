/**
 * The demo's child processes: the real broker command and the worker script, both plain JS
 * under `dist/` run with this Node (`process.execPath`). Every child is tracked so that every
 * exit path of the demo (normal end, failure, SIGINT/SIGTERM, an uncaught error) kills it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { DemoWorkerConfig, ParentMessage, WorkerMessage } from './demo-protocol.js';

export const MAIN_JS = fileURLToPath(new URL('./main.js', import.meta.url));
export const WORKER_JS = fileURLToPath(new URL('./demo-worker.js', import.meta.url));

/** A running child and how it ended. */
export interface DemoChild {
  readonly name: string;
  readonly process: ChildProcess;
  /** Resolves when it exits: its code, or the signal that ended it. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly hasExited: () => boolean;
}

const live = new Set<DemoChild>();

function track(name: string, child: ChildProcess): DemoChild {
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      live.delete(entry);
      resolve({ code, signal });
    });
    child.once('error', () => {
      // A spawn failure: 'exit' may never come.
      done = true;
      live.delete(entry);
      resolve({ code: null, signal: null });
    });
  });
  const entry: DemoChild = { name, process: child, exited, hasExited: () => done };
  live.add(entry);
  return entry;
}

/** Checks that the build output this demo runs exists. */
export function checkBuilt(): void {
  for (const f of [MAIN_JS, WORKER_JS]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: build first (npm run build)`);
  }
}

export interface BrokerChild extends DemoChild {
  /** `host:port` of the gRPC and admin listeners. */
  readonly grpc: string;
  readonly admin: string;
}

/**
 * Starts `persist-pubsub broker` on free loopback ports and resolves once its `broker listening`
 * line names the bound addresses. `onLog` sees every later JSON log line.
 */
export async function startBrokerChild(
  flags: readonly string[],
  onLog: (line: { level?: number; msg?: string }, raw: string) => void,
  timeoutMs = 15_000,
): Promise<BrokerChild> {
  const child = spawn(
    process.execPath,
    [
      MAIN_JS,
      'broker',
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      '--log-format',
      'json',
      ...flags,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const entry = track('broker', child);
  child.stderr?.on('data', (b: Buffer) => process.stderr.write(b));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  return new Promise<BrokerChild>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`the broker did not log its addresses within ${timeoutMs} ms`));
    }, timeoutMs);
    let listening = false;
    lines.on('line', (raw) => {
      let line: { level?: number; msg?: string; grpc?: string; admin?: string };
      try {
        line = JSON.parse(raw);
      } catch {
        process.stderr.write(`broker: ${raw}\n`);
        return;
      }
      if (!listening && line.msg === 'broker listening' && line.grpc && line.admin) {
        listening = true;
        clearTimeout(timer);
        resolve({ ...entry, grpc: line.grpc, admin: line.admin });
      }
      onLog(line, raw);
    });
    void entry.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      if (!listening) reject(new Error(`the broker exited before listening (${signal ?? code})`));
    });
  });
}

export interface WorkerChild extends DemoChild {
  send(m: ParentMessage): void;
  /** The next message of `type`, or a rejection if the worker exits first or `timeoutMs` passes. */
  next<T extends WorkerMessage['type']>(
    type: T,
    timeoutMs: number,
  ): Promise<Extract<WorkerMessage, { type: T }>>;
}

/** Starts a worker process; `onMessage` sees every message it sends. */
export function startWorkerChild(
  config: DemoWorkerConfig,
  onMessage: (m: WorkerMessage) => void,
): WorkerChild {
  const child = spawn(process.execPath, [WORKER_JS, JSON.stringify(config)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const entry = track(config.name, child);
  child.on('message', (m) => onMessage(m as WorkerMessage));
  // A send to a worker that just died must not crash the demo; its exit is reported instead.
  child.on('error', () => {});
  return {
    ...entry,
    send(m) {
      if (child.connected) child.send(m, (err) => void err);
    },
    next(type, timeoutMs) {
      return new Promise((resolve, reject) => {
        const onMsg = (m: unknown) => {
          if ((m as WorkerMessage).type !== type) return;
          cleanup();
          resolve(m as never);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${config.name}: no ${type} within ${timeoutMs} ms`));
        }, timeoutMs);
        const onExit = (code: number | null, signal: string | null) => {
          cleanup();
          reject(new Error(`${config.name} exited (${signal ?? code}) before ${type}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          child.off('message', onMsg);
          child.off('exit', onExit);
        };
        if (entry.hasExited()) return onExit(child.exitCode, child.signalCode);
        child.on('message', onMsg);
        child.on('exit', onExit);
      });
    },
  };
}

/** Asks a child to stop (SIGTERM), then kills it after `graceMs`. */
export async function stopChild(c: DemoChild, graceMs = 3000): Promise<void> {
  if (c.hasExited()) return;
  c.process.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      c.process.kill('SIGKILL');
      resolve();
    }, graceMs);
  });
  await Promise.race([c.exited, killed]);
  clearTimeout(timer);
  await c.exited;
}

/** Stops every live child (in parallel). */
export async function stopAllChildren(graceMs = 3000): Promise<void> {
  await Promise.all([...live].map((c) => stopChild(c, graceMs)));
}

/** Synchronous last resort (process `exit` handler): SIGKILL whatever is still running. */
export function killAllChildrenNow(): void {
  for (const c of live) {
    try {
      c.process.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
