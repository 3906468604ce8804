/**
 * The options of `persist-pubsub demo`, parsed and validated once, each error naming its flag.
 */

export interface DemoOptions {
  /** How long writers commit, in seconds. @default 24 */
  durationS: number;
  /** Shards every writer writes and every reader follows. @default 4 */
  shards: number;
  /** Commits per second per shard, both writers together. @default 10 */
  rate: number;
  /** A Consensus URL shared by every process. @default a throwaway SQLite file */
  consensus: string | undefined;
  /** When pubsub is switched off, in seconds from the start. @default 8 */
  pubsubOffAtS: number;
  /** For how long, in seconds; 0 never switches it off. @default 6 */
  pubsubOffForS: number;
  /** Where pubsub runs (`--pubsub`). @default `{ kind: 'broker' }` */
  pubsub: DemoPubsub;
}

/**
 * The demo's pubsub topology: one broker process for every client (`broker`), clients on NATS
 * directly with no broker (`nats://HOST:PORT`), or two brokers bridged through NATS with the
 * writers on one and the readers on the other (`bridged:nats://HOST:PORT`).
 */
export type DemoPubsub =
  | { kind: 'broker' }
  | { kind: 'nats'; url: string }
  | { kind: 'bridged'; url: string };

/** What commander hands the action (strings as typed). */
export interface RawDemoOptions {
  duration: string;
  shards: string;
  rate: string;
  consensus?: string | undefined;
  pubsubOffAt: string;
  pubsubOffFor: string;
  pubsub: string;
}

export const DEMO_DEFAULTS = {
  duration: '24',
  shards: '4',
  rate: '10',
  pubsubOffAt: '8',
  pubsubOffFor: '6',
  pubsub: 'broker',
} as const;

export class DemoOptionError extends Error {
  override readonly name = 'DemoOptionError';
  readonly code = 'invalid_argument';
  constructor(
    readonly flag: string,
    message: string,
  ) {
    super(`${flag} ${message}`);
  }
}

function num(flag: string, raw: string, min: number, max: number, integer = false): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || v < min || v > max) {
    throw new DemoOptionError(
      flag,
      `must be a number from ${min} to ${max}, got ${JSON.stringify(raw)}`,
    );
  }
  if (integer && !Number.isInteger(v)) {
    throw new DemoOptionError(flag, `must be an integer, got ${JSON.stringify(raw)}`);
  }
  return v;
}

export function parseDemoOptions(raw: RawDemoOptions): DemoOptions {
  const durationS = num('--duration', raw.duration, 1, 3600);
  const shards = num('--shards', raw.shards, 1, 1000, true);
  const rate = num('--rate', raw.rate, 0.1, 500);
  const pubsubOffAtS = num('--pubsub-off-at', raw.pubsubOffAt, 0, 3600);
  const pubsubOffForS = num('--pubsub-off-for', raw.pubsubOffFor, 0, 3600);
  if (pubsubOffForS > 0 && pubsubOffAtS + pubsubOffForS > durationS) {
    throw new DemoOptionError(
      '--pubsub-off-at',
      `plus --pubsub-off-for (${pubsubOffAtS} + ${pubsubOffForS} s) must end within --duration (${durationS} s)`,
    );
  }
  const consensus = raw.consensus;
  if (consensus !== undefined) {
    if (consensus === 'mem:' || consensus.startsWith('mem:') || consensus.includes(':memory:')) {
      throw new DemoOptionError(
        '--consensus',
        'must be shared between processes: sqlite:PATH, postgres://… or redis://…, not an in-memory store',
      );
    }
    if (!/^(sqlite:|postgres(ql)?:\/\/|rediss?:\/\/)/.test(consensus)) {
      throw new DemoOptionError(
        '--consensus',
        `must be sqlite:PATH, postgres://… or redis://…, got ${JSON.stringify(consensus)}`,
      );
    }
  }
  const pubsub = parsePubsub(raw.pubsub);
  return { durationS, shards, rate, consensus, pubsubOffAtS, pubsubOffForS, pubsub };
}

/** `broker`, `nats://HOST:PORT` or `bridged:nats://HOST:PORT`; anything else names `--pubsub`. */
function parsePubsub(raw: string): DemoPubsub {
  if (raw === 'broker') return { kind: 'broker' };
  const bridged = raw.startsWith('bridged:');
  const url = bridged ? raw.slice('bridged:'.length) : raw;
  const expected = 'must be broker, nats://HOST:PORT or bridged:nats://HOST:PORT';
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new DemoOptionError('--pubsub', `${expected}, got ${JSON.stringify(raw)}`);
  }
  const bare = u.username === '' && u.search === '' && u.hash === '' && /^\/?$/.test(u.pathname);
  if (u.protocol !== 'nats:' || u.hostname === '' || u.port === '' || !bare) {
    throw new DemoOptionError('--pubsub', `${expected}, got ${JSON.stringify(raw)}`);
  }
  const clean = `nats://${u.host}`;
  return bridged ? { kind: 'bridged', url: clean } : { kind: 'nats', url: clean };
}
