/**
 * The Redis / Valkey Consensus backend (ioredis).
 *
 * Layout, per key (shard) `K`, with `H` the lower-case hex of `K`'s UTF-8 bytes:
 * - `<prefix>{H}:log` — a sorted set whose scores are all 0. Each member is the seqno as 19
 *   zero-padded decimal digits followed by the version's bytes. With equal scores Redis orders
 *   members bytewise, and fixed-width digits order like the numbers, so `ZRANGEBYLEX` scans by
 *   seqno and `ZREMRANGEBYLEX` truncates. Scores are doubles and cannot hold seqnos up to
 *   2^63-1 exactly; they are not used.
 * - `<prefix>{H}:head` — the head seqno (19 digits), so a compare-and-set compares a few bytes
 *   instead of loading the head version; `listKeys` scans for these keys.
 * The hash tag `{H}` is exactly the shard: hex has no braces, so no key can break out of its
 * tag, and every key of a shard lands in one cluster slot.
 *
 * Compare-and-set, scan and truncate are each one Lua script (EVALSHA, args as strings or
 * bytes), so each is atomic. `head` is one `ZRANGE`, atomic on its own.
 *
 * Connection policy (deliberate): no offline queue (`enableOfflineQueue: false`) and no resend
 * of unanswered commands (`maxRetriesPerRequest: 0`, `autoResendUnfulfilledCommands: false`). A
 * command is sent only when the connection is ready; otherwise it fails at once with
 * determinate `unavailable`. A write whose connection is lost after sending, or that outlives
 * `commandTimeoutMs`, is `indeterminate`: resending a CAS after it may have applied would turn
 * its success into a false mismatch. The client reconnects in the background.
 */
import { Cluster, Redis, ReplyError } from 'ioredis';
import { type Logger, pino } from 'pino';
import { type Clock, systemClock } from '../util/index.js';
import { ConsensusError } from './errors.js';
import {
  decodePageToken,
  encodePageToken,
  MAX_LIST_PAGE_SIZE,
  throwIfAborted,
  validateCas,
  validateKey,
  validateLimit,
  validatePageSize,
  validateSeqno,
} from './limits.js';
import { raceAbort } from './postgres-redis-abort.js';
import type {
  CallOptions,
  CasResult,
  Consensus,
  ListKeysOptions,
  ListKeysPage,
  OpenConsensusOptions,
  VersionedData,
} from './types.js';

export const DEFAULT_REDIS_KEY_PREFIX = 'pp:';
export const DEFAULT_REDIS_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 10_000;
export const DEFAULT_REDIS_WAIT_TIMEOUT_MS = 1_000;
/** SCAN round trips one `listKeys` page makes at most before returning (maybe short). */
const MAX_SCANS_PER_PAGE = 32;
const SEQNO_DIGITS = 19;

/**
 * Options of `openRedisConsensus`. The URL (`redis://` or `rediss://`) may carry `key_prefix`,
 * `cluster=1`, `wait_replicas` and `wait_timeout_ms` query parameters; options given here win.
 */
export interface RedisConsensusOptions extends OpenConsensusOptions {
  /** Prefix of every key: `[A-Za-z0-9:_.-]`, at most 64 characters. @default 'pp:' */
  keyPrefix?: string | undefined;
  /** Connect as a cluster client; the URL's host is the seed node. @default false */
  cluster?: boolean | undefined;
  /** How long opening waits for a ready connection before `unavailable`. @default 5000 */
  connectTimeoutMs?: number | undefined;
  /**
   * The open's ready-wait runs on it (the command timeout is ioredis' own timer).
   * @default systemClock
   */
  clock?: Clock | undefined;
  /** A command unanswered after this long fails; a write is then indeterminate. @default 10000 */
  commandTimeoutMs?: number | undefined;
  /**
   * After each committed compare-and-set, `WAIT` until this many replicas acknowledged it; if
   * fewer did within `waitTimeoutMs`, the call fails `indeterminate` (it committed on the
   * primary, but a failover may lose it). Standalone only. @default 0 (no WAIT)
   */
  waitReplicas?: number | undefined;
  /** The `WAIT` timeout. @default 1000 */
  waitTimeoutMs?: number | undefined;
  /** The connection's name in `CLIENT LIST`. @default 'persist-pubsub-consensus' */
  connectionName?: string | undefined;
}

interface ResolvedConfig {
  host: string;
  port: number;
  tls: boolean;
  username: string | undefined;
  password: string | undefined;
  db: number;
  keyPrefix: string;
  cluster: boolean;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  waitReplicas: number;
  waitTimeoutMs: number;
  connectionName: string;
}

/** KEYS: log, head. ARGV: expected head (19 digits, or '' for none), next seqno, member. */
const CAS_LUA = `
local head = redis.call('GET', KEYS[2])
if head == false then head = '' end
if head ~= ARGV[1] then return 0 end
redis.call('ZADD', KEYS[1], 0, ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
return 1
`;

/** KEYS: log. ARGV: first seqno (19 digits), limit. Members ascending from the seqno. */
const SCAN_LUA = `
return redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
`;

/**
 * KEYS: log, head. ARGV: seqno (19 digits). -1: no entries; -2: above the head; otherwise the
 * number of versions deleted (those below the seqno). Equal-width digit strings compare like
 * the numbers they spell.
 */
const TRUNCATE_LUA = `
local head = redis.call('GET', KEYS[2])
if head == false then return -1 end
if head < ARGV[1] then return -2 end
return redis.call('ZREMRANGEBYLEX', KEYS[1], '-', '(' .. ARGV[1])
`;

type Client = Redis | Cluster;

interface Scripts {
  ppCas(log: string, head: string, expected: string, next: string, member: Buffer): Promise<number>;
  ppScanBuffer(log: string, from: string, limit: string): Promise<Buffer[]>;
  ppTruncate(log: string, head: string, seqno: string): Promise<number>;
}

type Op = 'head' | 'compare_and_set' | 'scan' | 'truncate' | 'list_keys';

/**
 * Opens a Redis or Valkey Consensus at `url` and waits until the connection is ready; fails
 * with determinate `unavailable` if it is not within `connectTimeoutMs`.
 */
export async function openRedisConsensus(
  url: string,
  options: RedisConsensusOptions = {},
): Promise<Consensus> {
  const config = resolveConfig(url, options);
  const logger = (options.logger ?? pino({ level: 'silent' })).child({
    component: 'consensus',
    backend: 'redis',
  });
  const redisOptions = {
    username: config.username,
    password: config.password,
    db: config.db,
    connectionName: config.connectionName,
    ...(config.tls ? { tls: {} } : {}),
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: config.connectTimeoutMs,
    commandTimeout: config.commandTimeoutMs,
    // Keep reconnecting in the background; commands fail fast meanwhile.
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), 2_000),
  };
  const client: Client = config.cluster
    ? new Cluster([{ host: config.host, port: config.port }], {
        lazyConnect: true,
        enableOfflineQueue: false,
        // ioredis re-sends a command whose node connection closed ("failover" retry): for a
        // CAS that may have applied that would report a false mismatch. Redirects (MOVED,
        // ASK, TRYAGAIN, CLUSTERDOWN) are refusals and are still followed.
        retryDelayOnFailover: 0,
        redisOptions,
      })
    : new Redis({ host: config.host, port: config.port, ...redisOptions });
  client.defineCommand('ppCas', { numberOfKeys: 2, lua: CAS_LUA });
  client.defineCommand('ppScan', { numberOfKeys: 1, lua: SCAN_LUA, readOnly: true });
  client.defineCommand('ppTruncate', { numberOfKeys: 2, lua: TRUNCATE_LUA });
  client.on('error', (err: unknown) => logger.debug({ err }, 'redis connection error'));
  if (client instanceof Cluster) {
    client.on('node error', (err: unknown, node: unknown) =>
      logger.debug({ err, node }, 'redis cluster node error'),
    );
  }
  try {
    const clock = options.clock ?? systemClock;
    await ready(client, config.connectTimeoutMs, clock);
    if (client instanceof Cluster) {
      // Connect to every primary now. A command routed to a node connection that is still
      // connecting is refused with the same error as one lost in flight; with failover
      // resends off (above) it would surface as indeterminate.
      await Promise.all(
        client.nodes('master').map((n) => ready(n, config.connectTimeoutMs, clock)),
      );
    }
  } catch (err) {
    client.disconnect();
    throw new ConsensusError(
      'unavailable',
      `redis consensus: cannot connect to ${redactUrl(url)}`,
      {
        cause: err,
      },
    );
  }
  return new RedisConsensus(client, config, logger);
}

/**
 * Connects (if not yet started) and resolves once ready; rejects on the first error or after
 * `timeoutMs`.
 */
function ready(client: Client, timeoutMs: number, clock: Clock): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = clock.setTimer(
      () => done(new Error(`not ready after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onReady = () => done();
    const onError = (err: unknown) => done(err);
    const onEnd = () => done(new Error('the connection ended'));
    function done(err?: unknown) {
      timer.cancel();
      client.off('ready', onReady);
      client.off('error', onError);
      client.off('end', onEnd);
      if (err === undefined) resolve();
      else reject(err);
    }
    client.once('ready', onReady);
    client.once('error', onError);
    client.once('end', onEnd);
    if (client.status === 'ready') done();
    else if (client.status === 'wait') client.connect().catch(onError);
  });
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(bad url)';
  }
}

function invalid(field: string, message: string): ConsensusError {
  return new ConsensusError('invalid_argument', `redis consensus: ${field} ${message}`);
}

function intOption(field: string, value: unknown, fallback: number, min: number, max: number) {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(field, `must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

function urlInt(params: URLSearchParams, name: string): number | undefined {
  const raw = params.get(name);
  if (raw === null) return undefined;
  if (!/^\d{1,9}$/.test(raw)) throw invalid(name, 'in the URL must be a non-negative integer');
  return Number(raw);
}

function resolveConfig(url: string, options: RedisConsensusOptions): ResolvedConfig {
  if (typeof url !== 'string') throw invalid('url', 'must be a string');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new ConsensusError('invalid_argument', 'redis consensus: url is not a URL', { cause });
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw invalid('url', `must start with redis:// or rediss://, got ${parsed.protocol}`);
  }
  const params = parsed.searchParams;
  const keyPrefix = options.keyPrefix ?? params.get('key_prefix') ?? DEFAULT_REDIS_KEY_PREFIX;
  if (typeof keyPrefix !== 'string' || !/^[A-Za-z0-9:_.-]{0,64}$/.test(keyPrefix)) {
    throw invalid('keyPrefix', 'must match [A-Za-z0-9:_.-]{0,64}');
  }
  const clusterParam = params.get('cluster');
  if (clusterParam !== null && !['0', '1', 'true', 'false'].includes(clusterParam)) {
    throw invalid('cluster', 'in the URL must be 0, 1, true or false');
  }
  const cluster = options.cluster ?? (clusterParam === '1' || clusterParam === 'true');
  if (typeof cluster !== 'boolean') throw invalid('cluster', 'must be a boolean');
  const connectionName = options.connectionName ?? 'persist-pubsub-consensus';
  if (typeof connectionName !== 'string' || !/^[!-~]{1,128}$/.test(connectionName)) {
    throw invalid('connectionName', 'must be 1-128 printable ASCII characters without spaces');
  }
  const dbPath = parsed.pathname.replace(/^\//, '');
  if (dbPath !== '' && !/^\d{1,2}$/.test(dbPath)) throw invalid('url', 'database must be 0-99');
  const waitReplicas = intOption(
    'waitReplicas',
    options.waitReplicas ?? urlInt(params, 'wait_replicas'),
    0,
    0,
    1000,
  );
  if (cluster && waitReplicas > 0)
    throw invalid('waitReplicas', 'is not supported in cluster mode');
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    tls: parsed.protocol === 'rediss:',
    username: parsed.username === '' ? undefined : decodeURIComponent(parsed.username),
    password: parsed.password === '' ? undefined : decodeURIComponent(parsed.password),
    db: dbPath === '' ? 0 : Number(dbPath),
    keyPrefix,
    cluster,
    connectTimeoutMs: intOption(
      'connectTimeoutMs',
      options.connectTimeoutMs,
      DEFAULT_REDIS_CONNECT_TIMEOUT_MS,
      1,
      600_000,
    ),
    commandTimeoutMs: intOption(
      'commandTimeoutMs',
      options.commandTimeoutMs,
      DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
      1,
      600_000,
    ),
    waitReplicas,
    connectionName,
    waitTimeoutMs: intOption(
      'waitTimeoutMs',
      options.waitTimeoutMs ?? urlInt(params, 'wait_timeout_ms'),
      DEFAULT_REDIS_WAIT_TIMEOUT_MS,
      1,
      600_000,
    ),
  };
}

/** The seqno as 19 zero-padded digits: bytewise order equals numeric order. */
export function padSeqno(seqno: bigint): string {
  return seqno.toString().padStart(SEQNO_DIGITS, '0');
}

/** The hash-tagged keys of a shard: the tag is the hex of its UTF-8, nothing else. */
export function redisKeys(prefix: string, key: string): { log: string; head: string } {
  const tag = Buffer.from(key, 'utf8').toString('hex');
  return { log: `${prefix}{${tag}}:log`, head: `${prefix}{${tag}}:head` };
}

/** The shard a head key belongs to, or undefined if the key is not one of ours. */
export function shardOfHeadKey(prefix: string, redisKey: string): string | undefined {
  if (!redisKey.startsWith(`${prefix}{`) || !redisKey.endsWith('}:head')) return undefined;
  const hex = redisKey.slice(prefix.length + 1, -'}:head'.length);
  if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-f]+$/.test(hex)) return undefined;
  const shard = Buffer.from(hex, 'hex').toString('utf8');
  // Reject bytes that are not the UTF-8 of a string (they would not round-trip).
  return Buffer.from(shard, 'utf8').toString('hex') === hex ? shard : undefined;
}

/**
 * A listing position: primary index (sorted by address), SCAN cursor, and, mid-reply, the
 * last key returned from the reply of that cursor and the COUNT that reply was asked with (a
 * different COUNT would cover different buckets).
 */
type Position =
  | [node: number, cursor: string]
  | [node: number, cursor: string, after: string, count: number];

function decodePosition(token: string | undefined, nodes: number): Position {
  const raw = decodePageToken(token);
  if (raw === undefined) return [0, '0'];
  let pos: unknown;
  try {
    pos = JSON.parse(raw);
  } catch {
    pos = undefined;
  }
  if (
    Array.isArray(pos) &&
    (pos.length === 2 || pos.length === 4) &&
    Number.isSafeInteger(pos[0]) &&
    pos[0] >= 0 &&
    pos[0] < nodes &&
    typeof pos[1] === 'string' &&
    /^\d{1,20}$/.test(pos[1]) &&
    (pos.length === 2 ||
      (typeof pos[2] === 'string' &&
        Number.isSafeInteger(pos[3]) &&
        pos[3] >= 1 &&
        pos[3] <= MAX_LIST_PAGE_SIZE))
  ) {
    return pos as Position;
  }
  throw new ConsensusError('invalid_argument', 'pageToken is malformed');
}

class RedisConsensus implements Consensus {
  readonly backend = 'redis' as const;
  readonly #client: Client;
  readonly #scripts: Scripts;
  readonly #config: ResolvedConfig;
  readonly #logger: Logger;
  #closed = false;

  constructor(client: Client, config: ResolvedConfig, logger: Logger) {
    this.#client = client;
    this.#scripts = client as unknown as Scripts;
    this.#config = config;
    this.#logger = logger;
  }

  async head(key: string, options?: CallOptions): Promise<VersionedData | undefined> {
    this.#check(options);
    validateKey(key);
    const { log } = redisKeys(this.#config.keyPrefix, key);
    const members = await this.#send('head', options, () =>
      this.#client.zrangeBuffer(log, '-1', '-1'),
    );
    const last = members[0];
    return last === undefined ? undefined : parseMember(last, key);
  }

  async compareAndSet(
    key: string,
    expected: bigint | null,
    next: VersionedData,
    options?: CallOptions,
  ): Promise<CasResult> {
    this.#check(options);
    validateCas(key, expected, next);
    const { log, head } = redisKeys(this.#config.keyPrefix, key);
    const nextSeqno = padSeqno(next.seqno);
    const member = Buffer.concat([Buffer.from(nextSeqno, 'latin1'), next.data]);
    const applied = await this.#send('compare_and_set', options, () =>
      this.#scripts.ppCas(
        log,
        head,
        expected === null ? '' : padSeqno(expected),
        nextSeqno,
        member,
      ),
    );
    if (applied !== 1) return 'mismatch';
    if (this.#config.waitReplicas > 0) await this.#waitForReplicas(key);
    return 'committed';
  }

  async scan(
    key: string,
    from: bigint,
    limit: number,
    options?: CallOptions,
  ): Promise<VersionedData[]> {
    this.#check(options);
    validateKey(key);
    validateSeqno(from, 'from');
    validateLimit(limit);
    const { log } = redisKeys(this.#config.keyPrefix, key);
    const members = await this.#send('scan', options, () =>
      this.#scripts.ppScanBuffer(log, padSeqno(from), String(limit)),
    );
    if (!Array.isArray(members)) throw dataLoss(key, 'scan returned no list');
    return members.map((m) => parseMember(m, key));
  }

  async truncate(key: string, seqno: bigint, options?: CallOptions): Promise<number> {
    this.#check(options);
    validateKey(key);
    validateSeqno(seqno);
    const { log, head } = redisKeys(this.#config.keyPrefix, key);
    const result = await this.#send('truncate', options, () =>
      this.#scripts.ppTruncate(log, head, padSeqno(seqno)),
    );
    if (result === -1) {
      throw new ConsensusError('failed_precondition', `truncate of ${key}: it has no entries`, {
        key,
      });
    }
    if (result === -2) {
      throw new ConsensusError(
        'failed_precondition',
        `truncate of ${key} at ${seqno} is above its head`,
        {
          key,
        },
      );
    }
    if (typeof result !== 'number' || !Number.isSafeInteger(result) || result < 0) {
      throw dataLoss(key, `truncate returned ${String(result)}`);
    }
    return result;
  }

  /**
   * SCANs every primary in turn (sorted by address) for head keys. A page token holds the
   * primary's index, its SCAN cursor and, when one SCAN reply held more keys than the page had
   * room for, the last key returned from it: the same cursor is scanned again and only keys
   * after that one are taken. Soft guarantees: a key may repeat, a page may be short or empty.
   * If the cluster's primaries change during a listing, keys may be missed.
   */
  async listKeys(options?: ListKeysOptions): Promise<ListKeysPage> {
    this.#check(options);
    const pageSize = validatePageSize(options?.pageSize);
    const nodes = this.#primaries();
    let [node, cursor, after, afterCount] = decodePosition(options?.pageToken, nodes.length);
    const prefix = this.#config.keyPrefix;
    const pattern = `${prefix}{*}:head`;
    const keys: string[] = [];
    for (let round = 0; round < MAX_SCANS_PER_PAGE; round++) {
      const target = nodes[node]!;
      // Scanning again the cursor of a reply only partly returned: ask with the same COUNT.
      const count = afterCount ?? Math.max(pageSize - keys.length, 10);
      const [nextCursor, found] = await this.#send('list_keys', options, () =>
        target.scan(cursor, 'MATCH', pattern, 'COUNT', count),
      );
      const batch = found
        .filter((k) => after === undefined || k > after)
        .sort()
        .flatMap((k) => {
          const shard = shardOfHeadKey(prefix, k);
          if (shard === undefined) {
            this.#logger.warn({ redisKey: { key: k } }, 'skipping a foreign key in listKeys');
            return [];
          }
          return [{ redisKey: k, shard }];
        });
      const room = pageSize - keys.length;
      if (batch.length > room) {
        const taken = batch.slice(0, room);
        keys.push(...taken.map((b) => b.shard));
        const last = taken[taken.length - 1]?.redisKey ?? after;
        return {
          keys,
          nextPageToken: token(last === undefined ? [node, cursor] : [node, cursor, last, count]),
        };
      }
      keys.push(...batch.map((b) => b.shard));
      after = undefined;
      afterCount = undefined;
      if (nextCursor === '0') {
        node++;
        cursor = '0';
        if (node >= nodes.length) return { keys };
      } else {
        cursor = nextCursor;
      }
      if (keys.length === pageSize) break;
    }
    return { keys, nextPageToken: token([node, cursor]) };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#client.quit();
    } catch {
      this.#client.disconnect();
    }
  }

  #primaries(): Redis[] {
    if (this.#client instanceof Cluster) {
      const nodes = this.#client.nodes('master');
      if (nodes.length === 0) {
        throw new ConsensusError('unavailable', 'redis cluster: no primaries known');
      }
      const address = (n: Redis) => `${n.options.host}:${n.options.port}`;
      return nodes.sort((a, b) => (address(a) < address(b) ? -1 : address(a) > address(b) ? 1 : 0));
    }
    return [this.#client];
  }

  async #waitForReplicas(key: string): Promise<void> {
    const { waitReplicas, waitTimeoutMs } = this.#config;
    let acked: number;
    try {
      acked = await (this.#client as Redis).wait(waitReplicas, waitTimeoutMs);
    } catch (err) {
      throw new ConsensusError(
        'indeterminate',
        `redis WAIT failed after a committed CAS of ${key}`,
        {
          key,
          cause: err,
        },
      );
    }
    if (acked < waitReplicas) {
      throw new ConsensusError(
        'indeterminate',
        `compare-and-set of ${key} committed on the primary but only ${acked} of ` +
          `${waitReplicas} replicas acknowledged it within ${waitTimeoutMs} ms`,
        { key },
      );
    }
  }

  #check(options: CallOptions | undefined): void {
    if (this.#closed) throw new ConsensusError('closed', 'the Consensus is closed');
    throwIfAborted(options);
  }

  /** Sends one command if the connection is ready and maps its failure. */
  async #send<T>(op: Op, options: CallOptions | undefined, send: () => Promise<T>): Promise<T> {
    this.#check(options);
    if (this.#client.status !== 'ready') {
      throw new ConsensusError(
        'unavailable',
        `redis ${op}: not connected (${this.#client.status})`,
      );
    }
    const write = op === 'compare_and_set' || op === 'truncate';
    try {
      return await raceAbort(send(), options?.signal, () => undefined, write);
    } catch (err) {
      if (err instanceof ConsensusError) throw err;
      throw classify(op, write, err);
    }
  }
}

function token(pos: Position): string {
  return encodePageToken(JSON.stringify(pos));
}

/**
 * Maps a failure of a sent command. A reply error means the server ran nothing (a rejected
 * command) or our script failed before its first write: determinate. Its first word is
 * Redis' error code. Anything else (connection lost, timeout) leaves a write's outcome unknown.
 */
function classify(op: Op, write: boolean, err: unknown): ConsensusError {
  if (err instanceof ReplyError) {
    const message = (err as Error).message;
    const code = message.split(/\s/, 1)[0] ?? 'ERR';
    if (code === 'WRONGTYPE') {
      return new ConsensusError(
        'data_loss',
        `redis ${op}: a key holds the wrong type (${message})`,
        {
          cause: err,
        },
      );
    }
    return new ConsensusError('unavailable', `redis ${op} was refused: ${message}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return write
    ? new ConsensusError('indeterminate', `redis ${op}: the outcome is unknown (${message})`, {
        cause: err,
      })
    : new ConsensusError('unavailable', `redis ${op} failed (${message})`, { cause: err });
}

function dataLoss(key: string, message: string): ConsensusError {
  return new ConsensusError('data_loss', `redis consensus: ${message}`, { key });
}

/** Splits a log member into its seqno (19 ASCII digits) and data. */
function parseMember(member: unknown, key: string): VersionedData {
  if (!Buffer.isBuffer(member) || member.byteLength < SEQNO_DIGITS) {
    throw dataLoss(key, 'a log member is shorter than its seqno');
  }
  const digits = member.toString('latin1', 0, SEQNO_DIGITS);
  if (!/^\d{19}$/.test(digits)) throw dataLoss(key, 'a log member has no seqno');
  const seqno = BigInt(digits);
  try {
    validateSeqno(seqno);
  } catch {
    throw dataLoss(key, `seqno ${digits} is out of range`);
  }
  return { seqno, data: new Uint8Array(member.subarray(SEQNO_DIGITS)) };
}
