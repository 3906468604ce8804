/**
 * Rendezvous (highest random weight) hashing: which broker of a set carries a shard in sharded
 * mode (docs/architecture.md "Several brokers"). Every node gets a weight per key, the hash of
 * the node's name and the key; the key belongs to the node of highest weight. Pure and
 * deterministic, so every process given the same broker names routes a shard to the same
 * broker with no coordination: a writer pushes where its readers subscribe.
 *
 * Why rendezvous rather than a ring: with a handful of brokers it needs no virtual nodes to
 * balance, and when a node leaves only its own keys move (each to its next-ranked node); when
 * it returns exactly those keys come back. Cost: one hash of the key per node (FNV-1a over the
 * key, mixed with each node's precomputed seed): a few hundred nanoseconds for a 37-byte shard
 * id and two brokers, and callers cache the owner per shard until the live set changes.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** 32-bit FNV-1a of a string's UTF-16 code units, from `seed`. */
function fnv1a(s: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

/** murmur3's finaliser: spreads every input bit over the output, so nearby seeds differ. */
function fmix32(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The weight of `node` for `key`: FNV-1a of the key started from the node's seed, mixed. */
export function rendezvousWeight(node: string, key: string): number {
  return fmix32(fnv1a(key, fnv1a(node, FNV_OFFSET)));
}

/**
 * A set of node names with the weight seeds computed once. `owner(key)` is the node of highest
 * weight; ties (equal 32-bit weights, about one key in four billion per pair) go to the name
 * that sorts first, so the choice never depends on the order the nodes were listed in.
 */
export interface Rendezvous {
  readonly nodes: readonly string[];
  /** The node of highest weight for `key`, or undefined for an empty set. */
  owner(key: string): string | undefined;
  /** Every node, highest weight first: `owner` is the first, then who takes over from it. */
  rank(key: string): string[];
}

export function createRendezvous(nodes: Iterable<string>): Rendezvous {
  const names = [...new Set(nodes)].sort();
  const seeds = names.map((n) => fnv1a(n, FNV_OFFSET));
  const weightsOf = (key: string): number[] => seeds.map((seed) => fmix32(fnv1a(key, seed)));
  return {
    nodes: names,
    owner(key) {
      let best = -1;
      let bestWeight = -1;
      for (let i = 0; i < seeds.length; i++) {
        const w = fmix32(fnv1a(key, seeds[i] as number));
        // Strictly greater: on a tie the earlier (sorted) name keeps it.
        if (w > bestWeight) {
          bestWeight = w;
          best = i;
        }
      }
      return best < 0 ? undefined : names[best];
    },
    rank(key) {
      const w = weightsOf(key);
      return names
        .map((name, i) => ({ name, w: w[i] as number, i }))
        .sort((a, b) => b.w - a.w || a.i - b.i)
        .map((e) => e.name);
    },
  };
}
