import { afterEach, describe, expect, it } from 'vitest';
import { decodeMessage, encodeForward } from '../protocol/index.js';
import { createBroker } from './broker.js';
import { BrokerError } from './errors.js';
import type {
  Broker,
  BrokerObserver,
  BrokerObserverControls,
  InProcessMessage,
  ObservedPush,
} from './types.js';

const brokers: Broker[] = [];
afterEach(() => {
  for (const b of brokers.splice(0)) b.destroy();
});

async function observed() {
  const events: string[] = [];
  const pushes: ObservedPush[] = [];
  const observer: BrokerObserver = {
    shardActive: (s) => events.push(`active ${s}`),
    shardIdle: (s) => events.push(`idle ${s}`),
    pushed: (p) => {
      pushes.push(p);
      events.push(`pushed ${p.shardId} ${p.seqno}`);
    },
  };
  const broker = createBroker({ listen: { host: '127.0.0.1', port: 0 }, observer });
  brokers.push(broker);
  await broker.start();
  return { broker, events, pushes };
}

const noop = () => {};

describe('broker observer hooks', () => {
  it('reports the first and last subscriber of a shard, across unsubscribe and disconnect', async () => {
    const { broker, events } = await observed();
    const a = broker.connectInProcess({ onMessage: noop });
    const b = broker.connectInProcess({ onMessage: noop });
    a.subscribe('s1');
    a.subscribe('s1'); // idempotent: no second event
    b.subscribe('s1');
    b.subscribe('s2');
    expect(events).toEqual(['active s1', 'active s2']);
    a.unsubscribe('s1');
    expect(events).toEqual(['active s1', 'active s2']);
    b.close(); // held s1 (last) and s2 (last)
    expect(events).toEqual(['active s1', 'active s2', 'idle s1', 'idle s2']);
    a.unsubscribe('s1'); // not subscribed any more: nothing
    expect(events).toHaveLength(4);
  });

  it('reports every accepted push with its sender and raw push_diff, not while forwarding is off', async () => {
    const { broker, pushes } = await observed();
    const a = broker.connectInProcess({ onMessage: noop });
    a.push('s1', 5n, new Uint8Array([1, 2]), 1_700_000_000_000);
    expect(pushes).toHaveLength(1);
    expect(pushes[0]).toMatchObject({ shardId: 's1', seqno: 5n, connId: a.connId });
    const d = decodeMessage(encodeForward(pushes[0]!.pushDiff, undefined, false));
    expect(d.kind === 'push' && [...d.diff]).toEqual([1, 2]);
    expect(d.kind === 'push' && d.originTimestampMs).toBe(1_700_000_000_000);
    broker.setFlags({ forwardPushes: false });
    a.push('s1', 6n, new Uint8Array([3]));
    expect(pushes).toHaveLength(1);
  });

  it('a throwing hook is logged and ignored: fan-out still works', async () => {
    const broker = createBroker({
      listen: { host: '127.0.0.1', port: 0 },
      observer: {
        shardActive: () => {
          throw new Error('boom');
        },
        pushed: () => {
          throw new Error('boom');
        },
      },
    });
    brokers.push(broker);
    await broker.start();
    const got: unknown[] = [];
    const r = broker.connectInProcess({ onMessage: (m) => got.push(m) });
    const w = broker.connectInProcess({ onMessage: noop });
    r.subscribe('s1');
    w.push('s1', 1n, new Uint8Array([1]));
    await new Promise((res) => setImmediate(res));
    expect(got).toHaveLength(1);
  });

  it('hands the observer controls whose notifyGap sends a gap notice to each local subscriber', async () => {
    let controls: BrokerObserverControls | undefined;
    const broker = createBroker({
      listen: { host: '127.0.0.1', port: 0 },
      observer: { attached: (c) => (controls = c) },
    });
    brokers.push(broker);
    await broker.start();
    const a: InProcessMessage[] = [];
    const b: InProcessMessage[] = [];
    broker.connectInProcess({ onMessage: (m) => a.push(m) }).subscribe('s1');
    broker.connectInProcess({ onMessage: (m) => b.push(m) }).subscribe('s2');
    controls?.notifyGap('s1', 7n);
    controls?.notifyGap('nobody-here');
    await new Promise((res) => setImmediate(res));
    expect(a).toEqual([
      { kind: 'gap', shardId: 's1', reason: 'resume_unavailable', fromSeqno: 7n, dropped: 0 },
    ]);
    expect(b).toEqual([]);
  });

  it('validates the observer at construction, naming the field', () => {
    expect(() => createBroker({ observer: 3 as never })).toThrow(BrokerError);
    expect(() => createBroker({ observer: { pushed: 'x' } as never })).toThrow(/observer\.pushed/);
  });
});
