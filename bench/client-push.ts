/**
 * `npm run bench -- client-push [--quick] [--pushes 20000] [--paced-pushes 3000]
 *   [--diff-bytes 560] [--burst 50]`
 *
 * The writer's push path below the persist client: CPU µs per `PubSubClient.push` over the real
 * gRPC transport (`node:http2`) to a broker in its own process (`bench/broker-server.ts`, no
 * subscribers), so the figure is this process's alone: the client's checks, the frame encode,
 * the coalesced write and HTTP/2 and the socket below it. Three shapes:
 * - **burst**: `--burst` pushes per event-loop turn (a writer committing many shards at once);
 * - **one per turn**: one push per `setImmediate` turn, back to back;
 * - **one per 1 ms timer**: an isolated push every millisecond (the e2e writers' shape: each
 *   commit on its own timer, so nothing is warm and every push is its own socket write).
 * Each figure is net of the same turns or timers without pushes (measured first). Prints the
 * load average, since the machine may be shared; per-push cost grows with it.
 */
import { parseArgs } from 'node:util';
import { createFlags, createGrpcPubSubClient } from '../src/client/index.js';
import { forkChild, loadAverage } from './e2e-child.js';

export const clientPushBench = {
  description: 'gRPC client push path: CPU µs per push to a broker process, by shape',
  run,
};

interface Shape {
  name: string;
  pushes: number;
  perTurn: number;
  /** 0: next turn via setImmediate; otherwise a timer of this many ms between turns. */
  paceMs: number;
}

const S = 's00000000-0000-0000-0000-000000000001';

async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      pushes: { type: 'string' },
      'paced-pushes': { type: 'string' },
      'diff-bytes': { type: 'string', default: '560' },
      burst: { type: 'string', default: '50' },
    },
  });
  const num = (name: string, v: string | undefined, d: number): number => {
    const n = v === undefined ? d : Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be an integer >= 1`);
    return n;
  };
  const pushes = num('pushes', values.pushes, values.quick ? 4000 : 20_000);
  const paced = num('paced-pushes', values['paced-pushes'], values.quick ? 500 : 3000);
  const burst = num('burst', values.burst, 50);
  const diff = new Uint8Array(num('diff-bytes', values['diff-bytes'], 560)).fill(7);
  const shapes: Shape[] = [
    { name: `burst: ${burst} per turn`, pushes: pushes * 2, perTurn: burst, paceMs: 0 },
    { name: 'one per turn', pushes, perTurn: 1, paceMs: 0 },
    { name: 'one per 1 ms timer', pushes: paced, perTurn: 1, paceMs: 1 },
  ];

  console.log(
    `diffs ${diff.length} B; broker in its own process; load average before: ${loadAverage()}\n`,
  );
  const broker = forkChild('./broker-server.js', []);
  const { port } = await broker.next<{ port: number }>('ready');
  const client = createGrpcPubSubClient({
    url: `grpc://127.0.0.1:${port}`,
    callerId: 'bench-client-push',
    // The bench pushes faster than a loaded broker may read: no drop may skew the figure.
    flags: createFlags({ persist_pubsub_client_sender_buffer_bytes: 1024 * 1024 * 1024 }),
  });
  try {
    while (client.status.state !== 'connected') await new Promise((r) => setTimeout(r, 10));
    let seqno = 0n;
    let dropped = 0;
    const turns = async (shape: Shape, push: boolean): Promise<void> => {
      const next = (): Promise<void> =>
        new Promise((r) => (shape.paceMs > 0 ? setTimeout(r, shape.paceMs) : setImmediate(r)));
      for (let i = 0; i < shape.pushes; i += shape.perTurn) {
        if (push) {
          for (let j = 0; j < shape.perTurn; j++) {
            if (!client.push(S, ++seqno, diff, Date.now())) dropped++;
          }
        }
        await next();
      }
    };
    console.log('| shape | pushes | CPU µs/push | user µs | system µs | drops |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const shape of shapes) {
      await turns({ ...shape, pushes: Math.min(shape.pushes, 1000) }, true); // warm-up
      const b0 = process.cpuUsage();
      await turns(shape, false);
      const base = process.cpuUsage(b0);
      const dropsBefore = dropped;
      const c0 = process.cpuUsage();
      await turns(shape, true);
      const c = process.cpuUsage(c0);
      const user = (c.user - base.user) / shape.pushes;
      const system = (c.system - base.system) / shape.pushes;
      console.log(
        `| ${shape.name} | ${shape.pushes} | ${(user + system).toFixed(2)} | ${user.toFixed(2)} | ` +
          `${system.toFixed(2)} | ${dropped - dropsBefore} |`,
      );
    }
  } finally {
    await client.close();
    await broker.stop();
  }
  console.log(`\nload average after: ${loadAverage()}`);
}
