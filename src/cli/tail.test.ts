import { describe, expect, it } from 'vitest';
import { persistStateModel, type StateModel } from '../shard-state/index.js';
import { describeStatus, tailRow } from './tail.js';

const model = persistStateModel as StateModel<unknown, unknown>;

describe('tailRow', () => {
  it('a diff: size, stamp latency and commit latency, clamped at 0 for a clock ahead', () => {
    const row = tailRow(
      {
        kind: 'diff',
        shardId: 's1',
        seqno: 4n,
        diff: new Uint8Array(10),
        originTimestampMs: 900,
        brokerTimestampMs: 1_200,
      },
      1_000,
      undefined,
    );
    expect(row).toEqual({
      event: 'diff',
      atMs: 1_000,
      shardId: 's1',
      seqno: 4n,
      bytes: 10,
      latencyMs: 0,
      commitLatencyMs: 100,
    });
  });

  it('--decode of bytes the model cannot read shows the error instead of crashing', () => {
    const row = tailRow(
      {
        kind: 'diff',
        shardId: 's1',
        seqno: 1n,
        diff: new Uint8Array([0xff, 0xff]),
        originTimestampMs: undefined,
        brokerTimestampMs: undefined,
      },
      0,
      model,
    );
    expect(row).toMatchObject({ latencyMs: undefined, decoded: { error: expect.any(String) } });
  });

  it("a refusal is a row naming the reason and the broker's detail", () => {
    expect(
      tailRow(
        {
          kind: 'refused',
          shardId: 's1',
          reason: 'invalid_shard_id',
          detail: 'too long',
          call: 'subscribe',
        },
        5,
        model,
      ),
    ).toEqual({
      event: 'refused',
      atMs: 5,
      shardId: 's1',
      reason: 'invalid_shard_id',
      detail: 'too long',
    });
  });

  it('a gap is a row; a resync is not printed', () => {
    expect(
      tailRow({ kind: 'gap', shardId: 's1', reason: 'slow_consumer', fromSeqno: 3n }, 5, model),
    ).toEqual({ event: 'gap', atMs: 5, shardId: 's1', reason: 'slow_consumer', fromSeqno: 3n });
    expect(tailRow({ kind: 'resync', shardIds: ['s1'], reconnect: true }, 5, model)).toBe(
      undefined,
    );
  });
});

describe('describeStatus', () => {
  const url = 'grpc://b:6879';
  it('says a GOAWAY handover is a move, not an outage', () => {
    expect(
      describeStatus({ state: 'connected', sinceMs: 0, connections: 1, draining: true }, url),
    ).toBe('broker draining (GOAWAY); moving to a new connection, the current one still delivers');
    expect(describeStatus({ state: 'connecting', attempt: 1, reason: 'goaway' }, url)).toBe(
      undefined,
    );
    expect(
      describeStatus({ state: 'connected', sinceMs: 0, connections: 2, reason: 'goaway' }, url),
    ).toBe('connected to grpc://b:6879 (moved: the old broker is draining)');
  });

  it('reports connects and outages as before', () => {
    expect(describeStatus({ state: 'connecting', attempt: 1 }, url)).toBe(
      'connecting to grpc://b:6879',
    );
    expect(describeStatus({ state: 'connected', sinceMs: 0, connections: 1 }, url)).toBe(
      'connected to grpc://b:6879',
    );
    expect(
      describeStatus({ state: 'backoff', attempt: 0, delayMs: 5000, error: 'reset' }, url),
    ).toBe('not connected (reset); retrying in 5000 ms');
  });
});
