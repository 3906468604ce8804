/**
 * The bench clients' side of their IPC protocol (`ClientRequest`, forked by `bench/broker.ts`
 * and `bench/fanout-nats.ts`): one request at a time answered by its reply (`subscribe` →
 * `subscribed`, `reset`, `report`, `publish` → `published` with the count sent, `cpu` with this
 * process's `process.cpuUsage()`, `exit`), and `ready` once listening. The same for our broker's
 * clients (`broker-client.ts`) and nats-server's (`fanout-nats-client.ts`); what each request
 * does is the client's.
 */
import * as hdr from 'hdr-histogram-js';
import type { ClientRequest } from './broker-client.js';

type Request<T extends ClientRequest['type']> = Extract<ClientRequest, { type: T }>;

export interface ClientRequestHandlers {
  subscribe(m: Request<'subscribe'>): Promise<void>;
  /** Starts a measurement: counts and histogram from zero, recording on. */
  reset(): void;
  /** The `report` reply's fields besides its type. */
  report(): Record<string, unknown>;
  /** Resolves with how many messages it sent. */
  publish(m: Request<'publish'>): Promise<number>;
  /** Before exit: cut every connection. */
  close(): void;
}

/**
 * A subscriber's fan-out latency histogram, in µs (1 µs to 60 s, 3 significant digits), sent
 * compressed in its `report`: the same for both systems, so their figures compare.
 */
export function latencyHistogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
}

/** Serves the parent's requests with `h` and tells it this process is ready. */
export function serveClientRequests(h: ClientRequestHandlers): void {
  const send = (m: unknown) => process.send?.(m);
  process.on('message', async (m: ClientRequest) => {
    switch (m.type) {
      case 'subscribe':
        await h.subscribe(m);
        send({ type: 'subscribed' });
        break;
      case 'reset':
        h.reset();
        send({ type: 'reset' });
        break;
      case 'report':
        send({ type: 'report', ...h.report() });
        break;
      case 'publish': {
        const sent = await h.publish(m);
        send({ type: 'published', sent });
        break;
      }
      case 'cpu':
        send({ type: 'cpu', cpu: process.cpuUsage() });
        break;
      case 'exit':
        h.close();
        process.exit(0);
    }
  });
  send({ type: 'ready' });
}
