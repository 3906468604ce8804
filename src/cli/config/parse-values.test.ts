import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import {
  integerIn,
  oneOf,
  parseBoolean,
  parseFileMode,
  parseHostPort,
  parseListenAddress,
} from './parse-values.js';

describe('flag value parsers', () => {
  it('parses HOST:PORT and [IPv6]:PORT', () => {
    expect(parseHostPort('127.0.0.1:6879')).toEqual({ host: '127.0.0.1', port: 6879 });
    expect(parseHostPort('localhost:0')).toEqual({ host: 'localhost', port: 0 });
    expect(parseHostPort('[::1]:6880')).toEqual({ host: '::1', port: 6880 });
    expect(parseHostPort('0.0.0.0:65535')).toEqual({ host: '0.0.0.0', port: 65535 });
  });

  it.each([
    '',
    '6879',
    '127.0.0.1',
    ':6879',
    '127.0.0.1:',
    '::1:6879',
    'a b:1',
    'h:65536',
    'h:-1',
    'h:1e3',
  ])('rejects host:port %j', (v) => {
    expect(() => parseHostPort(v)).toThrow(InvalidArgumentError);
  });

  it('parses a listen address: HOST:PORT or a Unix socket in gRPC syntax', () => {
    expect(parseListenAddress('127.0.0.1:6879')).toEqual({ host: '127.0.0.1', port: 6879 });
    expect(parseListenAddress('unix:/run/pp.sock')).toEqual({ path: '/run/pp.sock' });
    expect(parseListenAddress('unix:///run/pp.sock')).toEqual({ path: '/run/pp.sock' });
    expect(parseListenAddress('unix:pp.sock')).toEqual({ path: 'pp.sock' });
    expect(() => parseListenAddress('unix:')).toThrow(/empty/);
    expect(() => parseListenAddress('unix://h/x')).toThrow(/no authority/);
  });

  it('parses octal file modes up to 0777', () => {
    expect(parseFileMode('660')).toBe(0o660);
    expect(parseFileMode('0660')).toBe(0o660);
    expect(parseFileMode('0o600')).toBe(0o600);
    for (const bad of ['', '8', '0999', '1777', 'rw', '-1']) {
      expect(() => parseFileMode(bad), bad).toThrow(InvalidArgumentError);
    }
  });

  it('parses integers within bounds only', () => {
    const p = integerIn(1, 100);
    expect(p('1')).toBe(1);
    expect(p('100')).toBe(100);
    for (const bad of ['0', '101', '-1', '1.5', '1e2', ' 5', '', '0x10', '99999999999999999']) {
      expect(() => p(bad), bad).toThrow(/expected an integer in \[1, 100\]/);
    }
  });

  it('parses booleans and choices', () => {
    expect(parseBoolean('true')).toBe(true);
    expect(parseBoolean('OFF')).toBe(false);
    expect(parseBoolean('0')).toBe(false);
    expect(() => parseBoolean('maybe')).toThrow(InvalidArgumentError);
    expect(oneOf(['a', 'b'])('b')).toBe('b');
    expect(() => oneOf(['a', 'b'])('c')).toThrow('expected one of a, b');
  });
});
