import { describe, expect, it } from 'vitest';
import { ConsensusError } from './errors.js';
import { createMemoryConsensus } from './memory.js';

const bytes = (s: string) => new TextEncoder().encode(s);

describe('memory consensus', () => {
  it('copies data in and out so callers cannot mutate stored versions', async () => {
    const c = createMemoryConsensus();
    const data = bytes('abc');
    expect(await c.compareAndSet('k', null, { seqno: 1n, data })).toBe('committed');
    data[0] = 0;
    const head = await c.head('k');
    expect(head?.data).toEqual(bytes('abc'));
    head!.data[0] = 0;
    expect((await c.head('k'))?.data).toEqual(bytes('abc'));
  });

  it('rejects every call after close with code closed', async () => {
    const c = createMemoryConsensus();
    await c.close();
    await c.close();
    await expect(c.head('k')).rejects.toMatchObject({ code: 'closed' });
    await expect(c.head('k')).rejects.toBeInstanceOf(ConsensusError);
  });
});
