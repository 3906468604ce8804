import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { ConsensusError } from './errors.js';
import { CONSENSUS_OPS_TOTAL } from './instrument.js';
import { openConsensus } from './open.js';

const dir = mkdtempSync(join(tmpdir(), 'persist-pubsub-open-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const data = new Uint8Array([1, 2, 3]);

describe('openConsensus', () => {
  it('opens a fresh memory store for mem:', async () => {
    const a = await openConsensus('mem:');
    const b = await openConsensus('mem:');
    expect(a.backend).toBe('memory');
    await a.compareAndSet('k', null, { seqno: 0n, data });
    expect(await b.head('k')).toBeUndefined();
    await Promise.all([a.close(), b.close()]);
  });

  it('opens one SQLite file from sqlite:PATH and sqlite:///PATH, shared by both handles', async () => {
    const path = join(dir, 'open.db');
    const a = await openConsensus(`sqlite:${path}`);
    const b = await openConsensus(`sqlite://${path}`);
    expect(a.backend).toBe('sqlite');
    expect(await a.compareAndSet('k', null, { seqno: 7n, data })).toBe('committed');
    expect((await b.head('k'))?.seqno).toBe(7n);
    await Promise.all([a.close(), b.close()]);
  });

  it('opens a private SQLite database for sqlite::memory:', async () => {
    const a = await openConsensus('sqlite::memory:');
    const b = await openConsensus('sqlite::memory:');
    expect(a.backend).toBe('sqlite');
    await a.compareAndSet('k', null, { seqno: 0n, data });
    expect((await a.head('k'))?.seqno).toBe(0n);
    expect(await b.head('k')).toBeUndefined();
    await Promise.all([a.close(), b.close()]);
  });

  it.each([
    'http://example.com',
    'mysql://localhost/db',
    'memory:',
    'mem:extra',
    'sqlite:',
    '',
    'just words',
    42 as unknown as string,
  ])('rejects %j as invalid_argument naming the accepted schemes', async (url) => {
    const err = await openConsensus(url).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConsensusError);
    expect(err).toMatchObject({ code: 'invalid_argument', determinate: true });
    if (typeof url === 'string' && url !== 'sqlite:') {
      expect((err as Error).message).toMatch(/mem:.*sqlite:PATH.*postgres:\/\/.*redis:\/\//);
    }
  });

  it('rejects options that are not an object', async () => {
    const err = await openConsensus('mem:', null as never).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'invalid_argument' });
  });

  it('keeps a password out of the error message', async () => {
    const err = await openConsensus('mysql://user:hunter2@host/db').catch((e: unknown) => e);
    expect((err as Error).message).not.toContain('hunter2');
    expect((err as Error).message).toContain('mysql://user:***@host/db');
  });

  it('fails a missing SQLite directory as unavailable, not a crash', async () => {
    const err = await openConsensus(`sqlite:${join(dir, 'no', 'such', 'dir', 'x.db')}`).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'unavailable', determinate: true });
  });

  it('instruments the result when given a registry', async () => {
    const registry = new Registry();
    const c = await openConsensus('sqlite::memory:', { registry });
    expect(await c.compareAndSet('k', null, { seqno: 0n, data })).toBe('committed');
    expect(await c.compareAndSet('k', null, { seqno: 1n, data })).toBe('mismatch');
    const text = await registry.metrics();
    expect(text).toContain(
      `${CONSENSUS_OPS_TOTAL}{op="compare_and_set",backend="sqlite",result="committed"} 1`,
    );
    expect(text).toContain(
      `${CONSENSUS_OPS_TOTAL}{op="compare_and_set",backend="sqlite",result="mismatch"} 1`,
    );
    await c.close();
  });
});
