import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createSubscriptionTable } from './subscription-table.js';

describe('subscription table', () => {
  it('subscribe and unsubscribe are idempotent', () => {
    const t = createSubscriptionTable<string>();
    expect(t.subscribe('c1', 's1')).toBe(true);
    expect(t.subscribe('c1', 's1')).toBe(false);
    expect(t.subscriptionCount).toBe(1);
    expect([...(t.subscribers('s1') ?? [])]).toEqual(['c1']);
    expect(t.unsubscribe('c1', 's1')).toBe(true);
    expect(t.unsubscribe('c1', 's1')).toBe(false);
    expect(t.subscribers('s1')).toBeUndefined();
    expect(t.shardCount).toBe(0);
    expect(t.shardsOf('c1')).toBeUndefined();
  });

  it('removing a connection removes its subscriptions and empty shards only', () => {
    const t = createSubscriptionTable<string>();
    t.subscribe('c1', 'a');
    t.subscribe('c1', 'b');
    t.subscribe('c2', 'b');
    expect(t.removeConnection('c1').sort()).toEqual(['a', 'b']);
    expect(t.subscribers('a')).toBeUndefined();
    expect([...(t.subscribers('b') ?? [])]).toEqual(['c2']);
    expect(t.subscriptionCount).toBe(1);
    expect(t.removeConnection('c1')).toEqual([]);
  });

  it('property: matches a naive model under random operations', () => {
    const op = fc.tuple(
      fc.constantFrom('sub', 'unsub', 'remove'),
      fc.integer({ min: 0, max: 4 }),
      fc.integer({ min: 0, max: 4 }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 100 }), (ops) => {
        const t = createSubscriptionTable<number>();
        const model = new Set<string>();
        for (const [kind, c, s] of ops) {
          const key = `${c}/${s}`;
          if (kind === 'sub') {
            expect(t.subscribe(c, `s${s}`)).toBe(!model.has(key));
            model.add(key);
          } else if (kind === 'unsub') {
            expect(t.unsubscribe(c, `s${s}`)).toBe(model.has(key));
            model.delete(key);
          } else {
            t.removeConnection(c);
            for (const k of [...model]) if (k.startsWith(`${c}/`)) model.delete(k);
          }
        }
        expect(t.subscriptionCount).toBe(model.size);
        const shards = new Set([...model].map((k) => `s${k.split('/')[1]}`));
        expect(t.shardCount).toBe(shards.size);
        for (const k of model) {
          const [c, s] = k.split('/');
          expect(t.isSubscribed(Number(c), `s${s}`)).toBe(true);
        }
      }),
    );
  });
});
