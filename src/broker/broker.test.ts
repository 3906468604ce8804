/**
 * The drain waits on events, not on a timer: with no client it ends without time moving (the
 * fake clock never advances), the broker's own helper connections (the NATS bridge's) do not
 * hold it, and a client does, until it leaves or the deadline.
 */
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { settled } from '../../test/support/wait.js';
import { createFakeClock } from '../util/index.js';
import { createBroker } from './broker.js';
import type { Broker } from './types.js';

const brokers: Broker[] = [];
afterEach(() => {
  for (const b of brokers.splice(0)) b.destroy();
});

async function started() {
  const clock = createFakeClock();
  const broker = createBroker({
    listen: { host: '127.0.0.1', port: 0 },
    registry: new Registry(),
    clock,
    reflection: false,
  });
  brokers.push(broker);
  await broker.start();
  return { broker, clock };
}

describe('drain', () => {
  it('ends at once with no client: no timer had to fire', async () => {
    const { broker } = await started();
    const closing = broker.close({ deadlineMs: 30_000 });
    expect(await settled(closing)).toBe(true);
    expect(broker.state).toBe('closed');
  });

  it('does not wait for an internal (bridge) connection, and ends it after the clients', async () => {
    const { broker } = await started();
    const ends: string[] = [];
    const bridge = broker.connectInProcess({
      callerId: 'nats-bridge',
      internal: true,
      onMessage: () => {},
      onClose: (r) => ends.push(`bridge ${r.code}`),
    });
    bridge.subscribe('s-bridge');
    const closing = broker.close({ deadlineMs: 30_000 });
    expect(await settled(closing)).toBe(true);
    expect(ends).toEqual(['bridge UNAVAILABLE']);
  });

  it('waits for a client until it leaves, however many helpers there are', async () => {
    const { broker } = await started();
    broker.connectInProcess({ internal: true, onMessage: () => {} });
    const client = broker.connectInProcess({ callerId: 'app', onMessage: () => {} });
    client.subscribe('s-app');
    const closing = broker.close({ deadlineMs: 30_000 });
    expect(await settled(closing)).toBe(false);
    client.close();
    expect(await settled(closing)).toBe(true);
  });

  it('ends a client that stays at the deadline', async () => {
    const { broker, clock } = await started();
    let why: string | undefined;
    broker.connectInProcess({ onMessage: () => {}, onClose: (r) => (why = r.message) });
    const closing = broker.close({ deadlineMs: 30_000 });
    await clock.advance(29_999);
    expect(await settled(closing)).toBe(false);
    await clock.advance(1);
    expect(await settled(closing)).toBe(true);
    expect(why).toBe('broker is shutting down');
  });
});
