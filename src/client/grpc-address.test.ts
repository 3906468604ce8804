import { describe, expect, it } from 'vitest';
import { ClientError } from './errors.js';
import { describeGrpcAddress, parseGrpcAddress } from './grpc-address.js';

describe('parseGrpcAddress', () => {
  it('parses grpc:// and grpcs://, IPv6 in brackets', () => {
    expect(parseGrpcAddress('grpc://127.0.0.1:6879')).toEqual({
      kind: 'tcp',
      tls: false,
      host: '127.0.0.1',
      port: 6879,
      target: '127.0.0.1:6879',
    });
    expect(parseGrpcAddress('grpcs://broker.example:443/')).toMatchObject({
      tls: true,
      target: 'broker.example:443',
    });
    expect(parseGrpcAddress('grpc://[::1]:6879').target).toBe('[::1]:6879');
  });

  it.each([
    ['unix:/run/pubsub.sock', '/run/pubsub.sock'],
    ['unix:///run/pubsub.sock', '/run/pubsub.sock'],
    ['unix:pubsub.sock', 'pubsub.sock'],
  ])('parses the Unix socket %s (gRPC naming), authority localhost as grpc-js', (url, path) => {
    const a = parseGrpcAddress(url);
    expect(a).toEqual({ kind: 'unix', tls: false, path, target: 'localhost' });
    expect(describeGrpcAddress(a)).toBe(`unix:${path}`);
  });

  it.each([
    ['broker:6879', /scheme/],
    ['http://x:1', /scheme/],
    ['grpc://x', /host and a port/],
    ['grpc://x:0', /host and a port/],
    ['grpc://x:1/path', /no path/],
    ['grpc://x:1?q=1', /no path/],
    ['not a url', /not a URL|scheme/],
    ['unix:', /not a Unix socket target: the socket path is empty/],
    ['unix://host/run/x.sock', /no authority/],
    [`unix:/${'x'.repeat(200)}`, /longer than a socket address holds/],
  ])('rejects %s naming the pubsub field', (url, message) => {
    let err: unknown;
    try {
      parseGrpcAddress(url);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ClientError);
    expect((err as ClientError).field).toBe('pubsub');
    expect((err as ClientError).message).toMatch(message);
  });
});
