import { describe, expect, it } from 'vitest';
import { parseNatsUrl } from './nats-url.js';

describe('parseNatsUrl', () => {
  it('takes one server or a comma-separated cluster, nats:// or tls://, credentials kept', () => {
    expect(parseNatsUrl('nats://127.0.0.1:4222', 'url')).toEqual({
      servers: ['nats://127.0.0.1:4222'],
    });
    expect(parseNatsUrl(' nats://a:4222 , tls://u:p@b ', 'url')).toEqual({
      servers: ['nats://a:4222', 'tls://u:p@b'],
    });
  });

  it.each([
    undefined,
    '',
    'not a url',
    'grpc://a:1',
    'nats://',
    'nats://a:4222/path',
    'nats://a:4222?x=1',
    'nats://a:4222,',
  ])('refuses %j with a TypeError naming the field', (url) => {
    expect(() => parseNatsUrl(url, 'NatsBridgeOptions.url')).toThrow(TypeError);
    expect(() => parseNatsUrl(url, 'NatsBridgeOptions.url')).toThrow('NatsBridgeOptions.url');
  });
});
