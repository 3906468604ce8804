import { describe, expect, it } from 'vitest';
import { BrokerError } from './errors.js';
import { createTestOpener, setupFanout, silentLog } from './fanout.test-support.js';
import { GrpcStatus } from './grpc-status.js';
import { connectInProcess } from './in-process-connection.js';
import { DEFAULT_LIMITS } from './options.js';
import type { InProcessMessage } from './types.js';

const turn = () => new Promise((r) => setImmediate(r));

function setup(refuse = false) {
  const f = setupFanout();
  const opener = createTestOpener(
    f.core,
    refuse
      ? {
          reason: 'connections',
          status: { code: GrpcStatus.RESOURCE_EXHAUSTED, message: 'too many connections' },
        }
      : undefined,
  );
  const connect = (
    onMessage: (m: InProcessMessage) => void = () => {},
    onClose?: (r: { code: string }) => void,
  ) =>
    connectInProcess(
      { fan: f.core, opener, metrics: f.metrics, limits: DEFAULT_LIMITS, log: silentLog },
      { onMessage, onClose },
    );
  return { ...f, connect };
}

const codeOf = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    return err instanceof BrokerError ? err.code : 'other';
  }
  return 'none';
};

describe('connectInProcess', () => {
  it('delivers decoded pushes to other subscribers after the push returned, never to the sender', async () => {
    const { connect } = setup();
    const got: InProcessMessage[] = [];
    const sub = connect((m) => got.push(m));
    const pub = connect(() =>
      got.push({
        kind: 'gap',
        shardId: 'echo',
        reason: 'slow_consumer',
        fromSeqno: 0n,
        dropped: 0,
      }),
    );
    sub.subscribe('s1');
    pub.subscribe('s1');
    pub.push('s1', 5n, Uint8Array.of(1, 2), 123);
    expect(got).toEqual([]);
    await turn();
    expect(got).toEqual([
      {
        kind: 'push',
        shardId: 's1',
        seqno: 5n,
        diff: Uint8Array.of(1, 2),
        originTimestampMs: 123,
        timestampMs: 1000,
      },
    ]);
  });

  it('refuses bad arguments with typed errors and keeps the connection open', () => {
    const { connect } = setup();
    const c = connect();
    expect(codeOf(() => c.push('bad id', 1n, Uint8Array.of()))).toBe('invalid_argument');
    expect(codeOf(() => c.push('s', -1n, Uint8Array.of()))).toBe('invalid_argument');
    expect(codeOf(() => c.push('s', 2n ** 64n, Uint8Array.of()))).toBe('invalid_argument');
    expect(codeOf(() => c.push('s', 1n, 'x' as unknown as Uint8Array))).toBe('invalid_argument');
    expect(codeOf(() => c.push('s', 1n, Uint8Array.of(), Number.NaN))).toBe('invalid_argument');
    expect(codeOf(() => c.push('s', 1n, new Uint8Array(DEFAULT_LIMITS.maxMessageBytes + 1)))).toBe(
      'resource_exhausted',
    );
    expect(codeOf(() => c.subscribe('s', -1n))).toBe('invalid_argument');
    expect(codeOf(() => c.subscribe('s'))).toBe('none');
  });

  it('is refused when the broker refuses connections, and is unavailable once closed', () => {
    expect(codeOf(() => setup(true).connect())).toBe('resource_exhausted');
    const { connect, core } = setup();
    const closes: string[] = [];
    const c = connect(undefined, (r) => closes.push(r.code));
    c.close();
    c.close();
    expect(closes).toEqual(['OK']);
    expect(core.connections.size).toBe(0);
    expect(codeOf(() => c.subscribe('s'))).toBe('unavailable');
  });
});
