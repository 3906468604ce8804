import { describe, expect, it } from 'vitest';
import { createRendezvous, rendezvousWeight } from './rendezvous.js';

const shardIds = Array.from(
  { length: 10_000 },
  (_, i) =>
    `s${i.toString(16).padStart(8, '0')}-0000-4000-8000-${(i * 7919).toString(16).padStart(12, '0')}`,
);

describe('rendezvous hashing', () => {
  it('is stable: the same owner for the same nodes in any order, in any process', () => {
    const a = createRendezvous(['grpc://a:6879', 'grpc://b:6879', 'grpc://c:6879']);
    const b = createRendezvous(['grpc://c:6879', 'grpc://a:6879', 'grpc://b:6879']);
    for (const id of shardIds.slice(0, 1000)) expect(b.owner(id)).toBe(a.owner(id));
    // Fixed values: the hash is the routing contract between processes (and versions).
    expect(rendezvousWeight('grpc://a:6879', 's0')).toBe(607205018);
    expect(rendezvousWeight('grpc://b:6879', 's0')).toBe(776432089);
    expect(createRendezvous(['grpc://a:6879', 'grpc://b:6879']).owner('s0')).toBe('grpc://b:6879');
  });

  it('ranks every node, the owner first', () => {
    const r = createRendezvous(['x', 'y', 'z']);
    for (const id of shardIds.slice(0, 100)) {
      const ranked = r.rank(id);
      expect([...ranked].sort()).toEqual(['x', 'y', 'z']);
      expect(ranked[0]).toBe(r.owner(id));
      const w = ranked.map((n) => rendezvousWeight(n, id));
      expect([...w].sort((p, q) => q - p)).toEqual(w);
    }
  });

  it('balances: each of 2, 3 and 5 nodes owns its share of 10,000 shard ids within 5%', () => {
    for (const n of [2, 3, 5]) {
      const nodes = Array.from({ length: n }, (_, i) => `grpc://10.0.0.${i + 1}:6879`);
      const r = createRendezvous(nodes);
      const counts = new Map<string, number>();
      for (const id of shardIds) {
        const o = r.owner(id) as string;
        counts.set(o, (counts.get(o) ?? 0) + 1);
      }
      expect(counts.size).toBe(n);
      for (const c of counts.values()) {
        expect(Math.abs(c - shardIds.length / n)).toBeLessThan(0.05 * shardIds.length);
      }
    }
  });

  it('moves only the departed node’s keys, each to its next-ranked node, and back on return', () => {
    const all = ['a', 'b', 'c', 'd'];
    const full = createRendezvous(all);
    const without = createRendezvous(['a', 'c', 'd']);
    let moved = 0;
    for (const id of shardIds) {
      const before = full.owner(id);
      const after = without.owner(id);
      if (before === 'b') {
        moved++;
        expect(after).toBe(full.rank(id)[1]);
      } else {
        expect(after).toBe(before);
      }
    }
    expect(moved).toBeGreaterThan(0);
    // The node returns: the same set as before, so exactly the same owners.
    const back = createRendezvous(['d', 'c', 'b', 'a']);
    for (const id of shardIds) expect(back.owner(id)).toBe(full.owner(id));
  });

  it('an empty set owns nothing; one node owns everything; duplicates count once', () => {
    expect(createRendezvous([]).owner('s1')).toBeUndefined();
    expect(createRendezvous([]).rank('s1')).toEqual([]);
    expect(createRendezvous(['only']).owner('s1')).toBe('only');
    expect(createRendezvous(['a', 'a', 'b']).nodes).toEqual(['a', 'b']);
  });
});
