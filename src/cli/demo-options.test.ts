import { describe, expect, it } from 'vitest';
import { DEMO_DEFAULTS, DemoOptionError, parseDemoOptions } from './demo-options.js';

const raw = { ...DEMO_DEFAULTS, consensus: undefined };

describe('parseDemoOptions', () => {
  it('parses the defaults: a 24 s run, pubsub off from 8 s to 14 s', () => {
    expect(parseDemoOptions(raw)).toEqual({
      durationS: 24,
      shards: 4,
      rate: 10,
      consensus: undefined,
      pubsubOffAtS: 8,
      pubsubOffForS: 6,
      pubsub: { kind: 'broker' },
    });
  });

  it('parses --pubsub: broker, NATS directly, brokers bridged by NATS', () => {
    expect(parseDemoOptions({ ...raw, pubsub: 'nats://127.0.0.1:4222' }).pubsub).toEqual({
      kind: 'nats',
      url: 'nats://127.0.0.1:4222',
    });
    expect(parseDemoOptions({ ...raw, pubsub: 'bridged:nats://nats.local:4223/' }).pubsub).toEqual({
      kind: 'bridged',
      url: 'nats://nats.local:4223',
    });
    for (const bad of [
      '',
      'nats',
      'grpc://127.0.0.1:1',
      'nats://127.0.0.1',
      'nats://h:4222/x',
      'nats://u:p@h:4222',
      'bridged:',
      'bridged:broker',
      'bridged:bridged:nats://h:1',
    ]) {
      expect(() => parseDemoOptions({ ...raw, pubsub: bad }), bad).toThrow(
        /^--pubsub must be broker, nats:\/\/HOST:PORT or bridged:nats:\/\/HOST:PORT/,
      );
    }
  });

  it('accepts shared Consensus URLs and a run that never switches', () => {
    for (const consensus of [
      'sqlite:/tmp/x.db',
      'postgres://u@h/db',
      'postgresql://h/db',
      'redis://h:6379',
      'rediss://h',
    ]) {
      expect(parseDemoOptions({ ...raw, consensus }).consensus).toBe(consensus);
    }
    expect(
      parseDemoOptions({ ...raw, duration: '5', pubsubOffAt: '9', pubsubOffFor: '0' })
        .pubsubOffForS,
    ).toBe(0);
  });

  it.each([
    [{ duration: '0' }, '--duration'],
    [{ duration: '' }, '--duration'],
    [{ shards: '1.5' }, '--shards'],
    [{ shards: '1001' }, '--shards'],
    [{ rate: 'NaN' }, '--rate'],
    [{ rate: '-1' }, '--rate'],
    [{ pubsubOffAt: '-1' }, '--pubsub-off-at'],
    [{ pubsubOffFor: 'x' }, '--pubsub-off-for'],
    [{ duration: '10', pubsubOffAt: '8', pubsubOffFor: '3' }, '--pubsub-off-at'],
    [{ consensus: 'mem:' }, '--consensus'],
    [{ consensus: 'sqlite::memory:' }, '--consensus'],
    [{ consensus: 'mysql://h/db' }, '--consensus'],
  ])('rejects %j naming %s', (bad, flag) => {
    let err: unknown;
    try {
      parseDemoOptions({ ...raw, ...bad });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DemoOptionError);
    expect((err as DemoOptionError).flag).toBe(flag);
    expect((err as DemoOptionError).message.startsWith(flag)).toBe(true);
  });
});
