import { describe, expect, it } from 'vitest';
import {
  checkSocketPath,
  formatUnixTarget,
  MAX_UNIX_SOCKET_PATH_BYTES,
  parseUnixTarget,
} from './unix-target.js';

describe('parseUnixTarget', () => {
  it.each([
    ['unix:/run/pubsub.sock', '/run/pubsub.sock'],
    ['unix:///run/pubsub.sock', '/run/pubsub.sock'],
    ['unix:pubsub.sock', 'pubsub.sock'],
    ['unix:./dir/pubsub.sock', './dir/pubsub.sock'],
    ['UNIX:/run/x', '/run/x'],
  ])('%s is the socket %s (gRPC naming)', (target, path) => {
    expect(parseUnixTarget(target)).toEqual({ kind: 'unix', path });
    expect(parseUnixTarget(formatUnixTarget(path))).toEqual({ kind: 'unix', path });
  });

  it('is none for other schemes', () => {
    expect(parseUnixTarget('grpc://127.0.0.1:6879')).toEqual({ kind: 'none' });
    expect(parseUnixTarget('127.0.0.1:6879')).toEqual({ kind: 'none' });
    expect(parseUnixTarget('unix-abstract:x')).toEqual({ kind: 'none' });
  });

  it.each([
    ['unix:', /empty/],
    ['unix://', /no authority/],
    ['unix://host/run/x.sock', /no authority/],
    ['unix:/run/a\0b', /NUL/],
    [`unix:/${'x'.repeat(MAX_UNIX_SOCKET_PATH_BYTES)}`, /longer than a socket address holds/],
  ])('refuses %j', (target, reason) => {
    const r = parseUnixTarget(target);
    expect(r.kind).toBe('invalid');
    expect(r.kind === 'invalid' && r.reason).toMatch(reason);
  });

  it('takes a path of the longest length', () => {
    const path = `/${'x'.repeat(MAX_UNIX_SOCKET_PATH_BYTES - 1)}`;
    expect(checkSocketPath(path)).toEqual({ kind: 'unix', path });
  });
});
