/**
 * Parses a NATS target as given to the broker's `--bridge` or as a client's `pubsub` target (one
 * form for both, so a bridged broker and a NATS-direct client name a server the same way):
 * `nats://host:port`, or several comma-separated (`nats://a:4222,nats://b:4222`) for a cluster.
 * `tls://` asks for TLS. Credentials in the URL (`nats://user:pass@host`) are passed to nats.js
 * as given. The port defaults to 4222.
 */
export interface NatsTarget {
  /** Server URLs in the form nats.js takes them. */
  servers: string[];
}

/** Throws a `TypeError` naming `field` if `url` is not a NATS URL list. */
export function parseNatsUrl(url: unknown, field: string): NatsTarget {
  if (typeof url !== 'string' || url.trim().length === 0) {
    throw new TypeError(`${field} must be a nats:// URL`);
  }
  const servers: string[] = [];
  for (const part of url.split(',')) {
    const s = part.trim();
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw new TypeError(`${field}: ${JSON.stringify(s)} is not a URL (want nats://host:port)`);
    }
    if (u.protocol !== 'nats:' && u.protocol !== 'tls:') {
      throw new TypeError(`${field}: ${JSON.stringify(s)} must use nats:// or tls://`);
    }
    if (u.hostname === '') throw new TypeError(`${field}: ${JSON.stringify(s)} has no host`);
    if ((u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.hash !== '') {
      throw new TypeError(`${field}: ${JSON.stringify(s)} must be only scheme://host:port`);
    }
    servers.push(s);
  }
  return { servers };
}
