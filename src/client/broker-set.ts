/**
 * A pubsub client over a list of brokers (docs/architecture.md "Several brokers"), composed of
 * one `createPubSubClient` per broker address (each with its own stream, reconnect loop and
 * backoff), in one of two topologies:
 *
 * - `replicated` (the default): every shard on every broker. Each subscription is sent to every
 *   broker and every push goes to every broker: brokers that are not bridged know nothing of
 *   each other, so a reader connected to broker B sees a writer's diff only if the writer
 *   pushed it to B. Bridged brokers would need one push only, but which one is up is exactly
 *   what a client cannot know at the moment a broker dies, and a copy costs one frame per
 *   broker while a miss costs a Consensus read: we always push to each. The first copy of a
 *   diff to arrive goes on to shard state; the others are dropped before it (`DuplicateFilter`,
 *   `persist_pubsub_client_duplicate_diffs_total`), so a duplicate costs no Consensus read. Any
 *   one broker may die: the others carry on, and when it returns its resync and its resume gaps
 *   are not turned into catch-up reads for shards another broker carried meanwhile
 *   (`persist_pubsub_client_catch_ups_covered_total`).
 * - `sharded`: each shard on one broker, the highest-ranked live one by rendezvous hashing of
 *   the shard id (`rendezvous.ts`), so N brokers each carry 1/N of the traffic. Every process
 *   given the same list routes a shard to the same broker. When a broker dies its shards move to
 *   each shard's next-ranked live broker, with one catch-up read for those shards only; when it
 *   returns they move back make-before-break: subscribed and pushed on it at once, and for
 *   `handoverGraceMs` still subscribed and pushed on the previous broker too, for the writers
 *   and readers that have not seen it return yet (their reconnects are jittered by seconds).
 *
 * A host name (not an IP literal) stands for every address it resolves to, as a Kubernetes
 * headless Service's name does: one broker per address, the name re-resolved whenever one of
 * its brokers' streams fails (and every `persist_pubsub_reconnect_backoff_ms` while it resolves
 * to nothing), brokers added and removed as the answer changes. `localhost` (`::1` and
 * `127.0.0.1`) is one host, taken at its first address.
 *
 * Status: `connected` while any broker's stream is up (`connections`: how many are), otherwise
 * the most hopeful of the brokers' states; `brokers()` lists each broker's own status.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { toShardId } from '../protocol/index.js';
import { type Clock, systemClock, type Timer } from '../util/index.js';
import { createPubSubClient, jitterMs, type PubSubClientOptions } from './create-pubsub-client.js';
import { DuplicateFilter } from './duplicate-filter.js';
import { ClientError } from './errors.js';
import { EventQueue } from './event-queue.js';
import { createFlags } from './flags.js';
import { type GrpcAddress, parseGrpcAddress } from './grpc-address.js';
import { clientMetrics } from './metrics.js';
import {
  acquireSubscription,
  type ConnectionStatus,
  type PubSubClient,
  type PubSubEvent,
  type RefcountedSubscription,
  type SubscriptionToken,
} from './pubsub-client.js';
import { createRendezvous, type Rendezvous } from './rendezvous.js';
import { StatusFeed } from './status-feed.js';
import type { PubSubTransport } from './transport.js';

export type BrokerSetMode = 'replicated' | 'sharded';

/** In sharded mode, how long a shard moving to a returning broker stays on its previous one. */
export const DEFAULT_HANDOVER_GRACE_MS = 5000;

export interface BrokerSetOptions extends Omit<PubSubClientOptions, 'reportConnected'> {
  /**
   * `grpc://host:port` or `grpcs://host:port` URLs (a host name stands for all its addresses), or
   * Unix sockets (`unix:/path`, one broker each).
   */
  brokers: readonly string[];
  /** @default 'replicated' */
  mode?: BrokerSetMode | undefined;
  /**
   * The transport to one broker address (`grpc://10.0.0.7:6879`); `serverName` is the host name
   * it was resolved from, for TLS verification (undefined for an address given as an IP).
   */
  transport: (url: string, serverName: string | undefined) => PubSubTransport;
  /** A host name's addresses. @default `dns.lookup(host, { all: true })` */
  resolve?: ((host: string) => Promise<string[]>) | undefined;
  /** Sharded mode: see `DEFAULT_HANDOVER_GRACE_MS`, in ms. @default 5000 */
  handoverGraceMs?: number | undefined;
}

/** One broker's stream, as `brokers()` lists it. */
export interface BrokerStatus {
  /** The address connected to: `grpc://10.0.0.7:6879`. Also its rendezvous name. */
  url: string;
  /** The configured URL it came from (the same, or the host name's URL). */
  configured: string;
  status: ConnectionStatus;
}

export interface BrokerSetPubSubClient extends PubSubClient {
  readonly mode: BrokerSetMode;
  eventBatches(): AsyncIterable<readonly PubSubEvent[]>;
  /** Every broker's own status, in address order. */
  brokers(): BrokerStatus[];
  /** Sharded mode: the broker a shard goes to now (undefined with no broker known yet). */
  brokerOf(shardId: string): string | undefined;
}

/** Every address of `host`, by the system resolver (a headless Service's name: each pod). */
export async function lookupAll(host: string): Promise<string[]> {
  return (await lookup(host, { all: true })).map((a) => a.address);
}

/** `localhost` and its subdomains (RFC 6761) name this host: `::1` and `127.0.0.1` are one broker. */
function isLocalhost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost');
}

function addressUrl(address: Extract<GrpcAddress, { kind: 'tcp' }>, ip: string): string {
  const host = isIP(ip) === 6 ? `[${ip}]` : ip;
  return `${address.tls ? 'grpcs' : 'grpc'}://${host}:${address.port}`;
}

interface MemberSub {
  token: SubscriptionToken;
  /** Tick at which it was subscribed here. */
  at: number;
  /** Sharded: released at the end of a handover grace. */
  graceTimer: Timer | undefined;
}

interface Member {
  url: string;
  entry: Entry;
  client: PubSubClient;
  /** Its stream is up, as last seen on its status feed. */
  up: boolean;
  /** Tick of the current stream coming up (meaningful while `up`). */
  upSince: number;
  /** Tick of the last stream going down (its creation, before the first). */
  lastDownAt: number;
  subs: Map<string, MemberSub>;
  loops: Promise<unknown>;
}

interface Entry {
  configured: string;
  address: GrpcAddress;
  /** True for a host name, re-resolved; false for an IP literal. */
  resolved: boolean;
  members: Map<string, Member>;
  resolving: boolean;
  resolveAgain: boolean;
  retryTimer: Timer | undefined;
}

interface SetSub extends RefcountedSubscription {
  /** Sharded: the broker it is routed to. */
  owner: Member | undefined;
  /**
   * Sharded: the broker it moved from, still subscribed (and pushed to) for the handover grace,
   * for the processes that have not seen the move yet.
   */
  handoverFrom: Member | undefined;
  /** Tick at which a catch-up read was last asked for it (0: never). */
  fetchedAt: number;
}

export function createBrokerSetPubSubClient(options: BrokerSetOptions): BrokerSetPubSubClient {
  const mode = options.mode ?? 'replicated';
  if (mode !== 'replicated' && mode !== 'sharded') {
    throw new ClientError('invalid_argument', `mode must be 'replicated' or 'sharded'`, {
      field: 'mode',
    });
  }
  if (!Array.isArray(options.brokers) || options.brokers.length === 0) {
    throw new ClientError('invalid_argument', 'pubsub: the list of brokers is empty', {
      field: 'pubsub',
    });
  }
  const graceMs = options.handoverGraceMs ?? DEFAULT_HANDOVER_GRACE_MS;
  if (!Number.isInteger(graceMs) || graceMs < 0) {
    throw new ClientError('invalid_argument', 'handoverGraceMs must be an integer >= 0', {
      field: 'handoverGraceMs',
    });
  }
  const flags = options.flags ?? createFlags();
  const clock: Clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const registry = options.registry ?? new Registry();
  const resolve = options.resolve ?? lookupAll;
  const log: Logger | undefined = options.logger?.child({ component: 'broker-set', mode });
  const m = clientMetrics(registry);
  const duplicates = m.duplicateDiffs.cell();
  const entries: Entry[] = [];
  for (const configured of new Set(options.brokers)) {
    const address = parseGrpcAddress(configured);
    entries.push({
      configured,
      address,
      resolved: address.kind === 'tcp' && isIP(address.host.replace(/^\[|\]$/g, '')) === 0,
      members: new Map(),
      resolving: false,
      resolveAgain: false,
      retryTimer: undefined,
    });
  }
  const memberOptions: PubSubClientOptions = {
    flags,
    clock,
    random,
    registry,
    initialConnectBackoffMs: options.initialConnectBackoffMs,
    reconnectOn: options.reconnectOn,
    reportConnected: false,
  };

  const subs = new Map<string, SetSub>();
  const filter = new DuplicateFilter();
  const events = new EventQueue(
    () => flags.get().persist_pubsub_client_receiver_channel_size,
    () => m.receiveLagged.inc({ transport: 'grpc' }),
  );
  const feed = new StatusFeed(
    flags.get().persist_pubsub_client_enabled ? { state: 'idle' } : { state: 'disabled' },
  );
  m.connected.set({ transport: 'grpc' }, 0);
  let closed = false;
  let ticks = 0;
  const tick = (): number => ++ticks;
  /** Sharded: rendezvous over the live brokers (over all of them while none is up). */
  let routing: Rendezvous = createRendezvous([]);
  let upSinceMs = 0;
  let closing: Promise<void> | undefined;

  const allMembers = (): Member[] => entries.flatMap((e) => [...e.members.values()]);
  const memberByUrl = (url: string | undefined): Member | undefined =>
    url === undefined ? undefined : allMembers().find((mb) => mb.url === url);

  const resumeOf = (sub: SetSub): bigint | undefined =>
    typeof sub.resume === 'function' ? sub.resume() : sub.resume;

  const subscribeOn = (member: Member, shardId: string, sub: SetSub): void => {
    const held = member.subs.get(shardId);
    if (held !== undefined) {
      held.graceTimer?.cancel();
      held.graceTimer = undefined;
      if (sub.handoverFrom === member) sub.handoverFrom = undefined;
      return;
    }
    const token = member.client.subscribe(shardId, { resumeAfterSeqno: () => resumeOf(sub) });
    member.subs.set(shardId, { token, at: tick(), graceTimer: undefined });
  };

  const releaseOn = (member: Member, shardId: string): void => {
    const sub = subs.get(shardId);
    if (sub?.handoverFrom === member) sub.handoverFrom = undefined;
    const held = member.subs.get(shardId);
    if (held === undefined) return;
    held.graceTimer?.cancel();
    member.subs.delete(shardId);
    held.token.release();
  };

  /**
   * Whether a resync or resume gap of `member` for `shardId` needs no Consensus read. A stream
   * that is up and subscribed to the shard carries it from `max(upSince, subscribed at)` on;
   * what this one may have missed is what came after `since` (its last outage began, or it was
   * subscribed here). Covered: another such stream has carried the shard since before `since`,
   * or a read was asked for after some such stream (this one included) began carrying it (the
   * read covers what came before, the stream what came after). A read asked for while nobody
   * carried the shard covers nothing after it.
   */
  const covered = (member: Member, shardId: string, sub: SetSub): boolean => {
    const since = Math.max(member.lastDownAt, member.subs.get(shardId)?.at ?? 0);
    for (const carrier of allMembers()) {
      if (!carrier.up) continue;
      const held = carrier.subs.get(shardId);
      if (held === undefined) continue;
      const carriedSince = Math.max(carrier.upSince, held.at);
      if (sub.fetchedAt >= carriedSince) return true;
      if (carrier !== member && carriedSince < since) return true;
    }
    return false;
  };

  /** Asks the consumer to read these shards from Consensus (a `resync` event). */
  const catchUp = (shardIds: string[], reconnect: boolean): void => {
    if (shardIds.length === 0) return;
    const at = tick();
    for (const shardId of shardIds) {
      const sub = subs.get(shardId);
      if (sub !== undefined) sub.fetchedAt = at;
    }
    events.push({ kind: 'resync', shardIds, reconnect });
  };

  /** Sharded: routes every subscription over the live brokers, moving what must move. */
  const reroute = (): void => {
    if (mode !== 'sharded' || closed) return;
    const members = allMembers();
    const live = members.filter((mb) => mb.up);
    routing = createRendezvous((live.length > 0 ? live : members).map((mb) => mb.url));
    const movedFromDead: string[] = [];
    for (const [shardId, sub] of subs) {
      const owner = memberByUrl(routing.owner(shardId));
      if (owner === sub.owner) continue;
      const previous = sub.owner;
      sub.owner = owner;
      if (owner !== undefined) subscribeOn(owner, shardId, sub);
      if (previous === undefined || !members.includes(previous)) {
        if (owner?.up === true && previous !== undefined) movedFromDead.push(shardId);
        continue;
      }
      if (previous.up && owner !== undefined) {
        // Make-before-break: writers that have not seen `owner` come back still push here.
        const held = previous.subs.get(shardId);
        if (held !== undefined && held.graceTimer === undefined) {
          sub.handoverFrom = previous;
          held.graceTimer = clock.setTimer(() => {
            held.graceTimer = undefined;
            if (sub.handoverFrom === previous) sub.handoverFrom = undefined;
            if (subs.get(shardId)?.owner !== previous) releaseOn(previous, shardId);
          }, graceMs);
        }
      } else {
        releaseOn(previous, shardId);
        if (owner?.up === true) movedFromDead.push(shardId);
      }
    }
    if (movedFromDead.length > 0) {
      log?.debug({ shards: movedFromDead.length }, 'shards moved off a broker that went down');
      catchUp(movedFromDead, true);
    }
  };

  let lastPublished = '';
  const publishStatus = (): void => {
    if (closed) return;
    const statuses = allMembers().map((mb) => mb.client.status);
    const up = allMembers().filter((mb) => mb.up).length;
    let next: ConnectionStatus;
    if (up > 0) {
      if (feed.current.state !== 'connected') upSinceMs = clock.nowMs();
      next = { state: 'connected', sinceMs: upSinceMs, connections: up };
    } else if (!flags.get().persist_pubsub_client_enabled) {
      next = { state: 'disabled' };
    } else {
      let soonest: ConnectionStatus | undefined;
      for (const st of statuses) {
        if (st.state === 'connecting') {
          soonest = st;
          break;
        }
        if (
          st.state === 'backoff' &&
          (soonest?.state !== 'backoff' || st.delayMs < soonest.delayMs)
        ) {
          soonest = st;
        }
      }
      next = soonest ?? { state: 'connecting', attempt: 1 };
    }
    m.connected.set({ transport: 'grpc' }, up > 0 ? 1 : 0);
    const key = JSON.stringify(next);
    if (key === lastPublished) return;
    lastPublished = key;
    log?.debug({ status: next }, `broker set ${next.state}`);
    feed.publish(next);
  };

  const handle = (member: Member, ev: PubSubEvent): void => {
    if (ev.kind === 'diff') {
      if (!subs.has(ev.shardId)) return;
      if (filter.firstSeen(ev.shardId, ev.seqno)) events.push(ev);
      else duplicates.value++;
      return;
    }
    if (ev.kind === 'resync') {
      const needed: string[] = [];
      for (const shardId of ev.shardIds) {
        const sub = subs.get(shardId);
        if (sub === undefined) continue;
        if (covered(member, shardId, sub)) m.catchUpsCovered.inc({ reason: 'resync' });
        else needed.push(shardId);
      }
      catchUp(needed, ev.reconnect);
      return;
    }
    const sub = subs.get(ev.shardId);
    if (sub === undefined) return;
    if (ev.kind === 'gap') {
      if (ev.reason === 'resume_unavailable' && covered(member, ev.shardId, sub)) {
        m.catchUpsCovered.inc({ reason: 'resume_unavailable' });
        return;
      }
      sub.fetchedAt = tick();
    }
    // A refusal (this broker's rule or limit) is passed on: the shard's handles show it.
    events.push(ev);
  };

  const watch = async (member: Member): Promise<void> => {
    for await (const status of member.client.statusChanges()) {
      if (status.state === 'closed') break;
      const up = status.state === 'connected';
      if (up !== member.up) {
        member.up = up;
        if (up) member.upSince = tick();
        else member.lastDownAt = tick();
        m.brokerConnected.set({ broker: member.url }, up ? 1 : 0);
        log?.debug({ broker: member.url, status }, up ? 'broker up' : 'broker down');
        reroute();
      }
      if (status.state === 'backoff' && member.entry.resolved) void resolveEntry(member.entry);
      publishStatus();
    }
  };

  const consume = async (member: Member): Promise<void> => {
    const batches = member.client.eventBatches?.();
    if (batches !== undefined) {
      for await (const batch of batches) for (const ev of batch) handle(member, ev);
    } else {
      for await (const ev of member.client.events()) handle(member, ev);
    }
  };

  const addMember = (entry: Entry, url: string): void => {
    const serverName =
      entry.resolved && entry.address.kind === 'tcp' ? entry.address.host : undefined;
    const client = createPubSubClient(options.transport(url, serverName), {
      ...memberOptions,
      logger: options.logger?.child({ broker: url }),
    });
    const member: Member = {
      url,
      entry,
      client,
      up: false,
      upSince: 0,
      lastDownAt: tick(),
      subs: new Map(),
      loops: Promise.resolve(),
    };
    entry.members.set(url, member);
    m.brokerConnected.set({ broker: url }, 0);
    if (mode === 'replicated') {
      for (const [shardId, sub] of subs) subscribeOn(member, shardId, sub);
    }
    member.loops = Promise.all([watch(member), consume(member)]).catch((err: unknown) =>
      log?.error({ err, broker: url }, 'broker set member loop failed'),
    );
    log?.debug({ broker: url }, 'broker added');
    reroute();
  };

  const removeMember = (member: Member): void => {
    member.entry.members.delete(member.url);
    for (const held of member.subs.values()) held.graceTimer?.cancel();
    member.subs.clear();
    m.brokerConnected.remove({ broker: member.url });
    member.up = false;
    void member.client.close();
    log?.debug({ broker: member.url }, 'broker removed (no longer resolved)');
    reroute();
    publishStatus();
  };

  const resolveEntry = async (entry: Entry): Promise<void> => {
    const address = entry.address;
    if (closed || address.kind !== 'tcp') return;
    if (entry.resolving) {
      entry.resolveAgain = true;
      return;
    }
    entry.resolving = true;
    entry.retryTimer?.cancel();
    entry.retryTimer = undefined;
    try {
      let addresses: string[] = [];
      try {
        addresses = [...new Set(await resolve(address.host))];
      } catch (err) {
        log?.warn({ err, broker: entry.configured }, 'resolving a broker name failed');
      }
      if (closed) return;
      if (isLocalhost(address.host)) addresses = addresses.slice(0, 1);
      const wanted = new Set(addresses.map((ip) => addressUrl(address, ip)));
      // An empty or failed answer keeps what we have: a DNS hiccup is not a broker outage.
      if (wanted.size > 0) {
        for (const member of [...entry.members.values()]) {
          if (!wanted.has(member.url)) removeMember(member);
        }
        for (const url of [...wanted].sort()) {
          if (!entry.members.has(url)) addMember(entry, url);
        }
      }
      if (entry.members.size === 0) {
        entry.retryTimer = clock.setTimer(
          () => void resolveEntry(entry),
          jitterMs(flags.get().persist_pubsub_reconnect_backoff_ms, random),
        );
      }
      publishStatus();
    } finally {
      entry.resolving = false;
      if (entry.resolveAgain && !closed) {
        entry.resolveAgain = false;
        void resolveEntry(entry);
      }
    }
  };

  for (const entry of entries) {
    const { address } = entry;
    if (entry.resolved) void resolveEntry(entry);
    // A Unix socket is one broker, named as configured.
    else if (address.kind === 'unix') addMember(entry, entry.configured);
    else addMember(entry, addressUrl(address, address.host.replace(/^\[|\]$/g, '')));
  }
  publishStatus();

  const push = (shardId: string, seqno: bigint, diff: Uint8Array, originMs?: number): boolean => {
    const at = originMs ?? clock.nowMs();
    if (mode === 'sharded') {
      const sub = subs.get(shardId);
      const owner = sub?.owner ?? memberByUrl(routing.owner(shardId));
      if (owner === undefined) {
        m.pushesDropped.inc({ reason: closed ? 'closed' : 'disconnected' });
        return false;
      }
      const sent = owner.client.push(shardId, seqno, diff, at);
      // During a handover the previous broker gets a copy too: readers that have not seen the
      // returning broker yet are still subscribed there only.
      const from = sub?.handoverFrom;
      if (from === undefined || !from.up) return sent;
      return from.client.push(shardId, seqno, diff, at) || sent;
    }
    let sent = false;
    for (const entry of entries) {
      for (const member of entry.members.values()) {
        if (member.client.push(shardId, seqno, diff, at)) sent = true;
      }
    }
    if (entries.every((e) => e.members.size === 0)) {
      m.pushesDropped.inc({ reason: closed ? 'closed' : 'disconnected' });
    }
    return sent;
  };

  return {
    transport: 'grpc',
    mode,
    get status() {
      return feed.current;
    },
    push,
    subscribe(shardId, subscribeOptions = {}) {
      toShardId(shardId);
      if (closed) throw new ClientError('closed', 'the pubsub client is closed');
      return acquireSubscription(subs, shardId, subscribeOptions, {
        create: () => ({
          refs: 0,
          resume: subscribeOptions.resumeAfterSeqno,
          owner: undefined,
          handoverFrom: undefined,
          fetchedAt: 0,
        }),
        onFirst(sub) {
          if (mode === 'replicated') {
            for (const member of allMembers()) subscribeOn(member, shardId, sub);
          } else {
            sub.owner = memberByUrl(routing.owner(shardId));
            if (sub.owner !== undefined) subscribeOn(sub.owner, shardId, sub);
          }
        },
        onLast() {
          filter.forget(shardId);
          for (const member of allMembers()) releaseOn(member, shardId);
        },
      });
    },
    subscribedShards: () => [...subs.keys()],
    events: () => events,
    eventBatches: () => events.batches(),
    onEvent: (listener) => events.sink(listener),
    statusChanges: () => feed.iterate(),
    brokers: () =>
      allMembers()
        .map((mb) => ({ url: mb.url, configured: mb.entry.configured, status: mb.client.status }))
        .sort((a, b) => (a.url < b.url ? -1 : a.url > b.url ? 1 : 0)),
    brokerOf: (shardId) =>
      mode === 'sharded' ? (subs.get(shardId)?.owner?.url ?? routing.owner(shardId)) : undefined,
    close() {
      closing ??= closeAll();
      return closing;
    },
  };

  async function closeAll(): Promise<void> {
    {
      closed = true;
      const members = allMembers();
      for (const entry of entries) entry.retryTimer?.cancel();
      for (const member of members) {
        for (const held of member.subs.values()) held.graceTimer?.cancel();
      }
      await Promise.all(members.map((mb) => mb.client.close()));
      await Promise.all(members.map((mb) => mb.loops));
      for (const member of members) m.brokerConnected.remove({ broker: member.url });
      m.connected.set({ transport: 'grpc' }, 0);
      feed.publish({ state: 'closed' });
      feed.end();
      events.close();
    }
  }
}
