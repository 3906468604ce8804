/**
 * The admin listings of shards and connections: paginated, with opaque page tokens (AIP-158
 * style). Shards come in key order, resumed strictly after the last one returned, so a shard
 * present for the whole listing is returned exactly once; connections in `seq` order. Neither
 * sorts everything: a page costs O(shards) comparisons and O(page) memory.
 */
import { BrokerError } from './errors.js';
import type { FanoutCore } from './fanout.js';
import { smallestAfter } from './page-select.js';
import type { ConnectionInfo, Page, PageRequest, ShardInfo } from './types.js';

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export interface Listings {
  listShards(request?: PageRequest): Page<ShardInfo>;
  listConnections(request?: PageRequest): Page<ConnectionInfo>;
}

function pageSizeOf(request: PageRequest | undefined): number {
  const n = request?.pageSize ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(n) || n < 1) {
    throw new BrokerError('invalid_argument', 'pageSize must be a positive integer');
  }
  return Math.min(n, MAX_PAGE_SIZE);
}

function decodeToken(token: string | undefined, prefix: string): string | undefined {
  if (token === undefined || token === '') return undefined;
  const text = Buffer.from(token, 'base64url').toString('utf8');
  if (!text.startsWith(prefix)) throw new BrokerError('invalid_argument', 'invalid pageToken');
  return text.slice(prefix.length);
}

const encodeToken = (text: string) => Buffer.from(text).toString('base64url');

export function createListings(fan: FanoutCore): Listings {
  function* shardIds(): Generator<string> {
    for (const [shardId] of fan.table.shards()) yield shardId;
  }
  return {
    listShards(request) {
      const size = pageSizeOf(request);
      const after = decodeToken(request?.pageToken, 's:');
      // One more than a page tells whether another page follows.
      const keys = smallestAfter(shardIds(), after, size + 1);
      const pageKeys = keys.slice(0, size);
      const items = pageKeys.map((shardId) => {
        const last = fan.resume.lastSeqno(shardId);
        return {
          shardId,
          subscribers: fan.table.subscribers(shardId)?.size ?? 0,
          lastSeqno: last === undefined ? undefined : last.toString(),
        };
      });
      return {
        items,
        nextPageToken:
          keys.length > size ? encodeToken(`s:${pageKeys[pageKeys.length - 1]!}`) : undefined,
      };
    },
    listConnections(request) {
      const size = pageSizeOf(request);
      const afterText = decodeToken(request?.pageToken, 'c:');
      const after = afterText === undefined ? 0 : Number(afterText);
      if (!Number.isSafeInteger(after)) {
        throw new BrokerError('invalid_argument', 'invalid pageToken');
      }
      const items: ConnectionInfo[] = [];
      let last = 0;
      let more = false;
      // Map order is insertion order, which is `seq` order.
      for (const c of fan.connections.values()) {
        if (c.seq <= after) continue;
        if (items.length === size) {
          more = true;
          break;
        }
        items.push({
          connId: c.connId,
          callerId: c.callerId,
          remoteAddress: c.remoteAddress,
          connectedAtMs: c.connectedAtMs,
          subscriptions: fan.table.shardsOf(c)?.size ?? 0,
          queueMessages: c.queue.length,
          queueBytes: c.queueBytes,
          dropped: c.dropped,
        });
        last = c.seq;
      }
      return { items, nextPageToken: more ? encodeToken(`c:${last}`) : undefined };
    },
  };
}
