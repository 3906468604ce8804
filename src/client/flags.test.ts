import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ClientError } from './errors.js';
import { createFlags, defaultFlags, flagsFromEnv } from './flags.js';
import { watchFlagsFile } from './flags-file.js';

describe('flags', () => {
  it('defaults every pubsub flag on, with the reference knobs', () => {
    const f = defaultFlags();
    expect(f.persist_pubsub_client_enabled).toBe(true);
    expect(f.persist_pubsub_push_diff_enabled).toBe(true);
    expect(f.persist_pubsub_same_process_delegate_enabled).toBe(true);
    expect(f.persist_pubsub_reconnect_backoff_ms).toBe(5000);
    expect(f.persist_pubsub_connect_attempt_timeout_ms).toBe(5000);
    expect(f.persist_pubsub_connect_max_backoff_ms).toBe(60_000);
    expect(f.persist_pubsub_client_sender_channel_size).toBe(25);
    expect(f.persist_pubsub_client_sender_buffer_bytes).toBe(4 * 1024 * 1024);
  });

  it('notifies listeners and rejects an invalid update as a whole', () => {
    const flags = createFlags();
    const seen: boolean[] = [];
    const off = flags.onChange((cur, prev) => {
      seen.push(cur.persist_pubsub_client_enabled, prev.persist_pubsub_client_enabled);
    });
    flags.set({ persist_pubsub_client_enabled: false });
    expect(seen).toEqual([false, true]);
    let err: unknown;
    try {
      flags.set({ persist_pubsub_client_enabled: true, persist_pubsub_reconnect_backoff_ms: -5 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ClientError);
    expect((err as ClientError).field).toBe('persist_pubsub_reconnect_backoff_ms');
    expect(flags.get().persist_pubsub_client_enabled).toBe(false);
    expect(() => flags.set({ no_such_flag: 1 } as never)).toThrow(/unknown flag "no_such_flag"/);
    expect(() => flags.set({ persist_pubsub_push_diff_enabled: 'yes' })).toThrow(/boolean/);
    off();
    flags.set({ persist_pubsub_client_enabled: true });
    expect(seen).toHaveLength(2);
  });

  it('reads the environment, naming a bad variable', () => {
    expect(
      flagsFromEnv({
        PERSIST_PUBSUB_CLIENT_ENABLED: 'false',
        PERSIST_PUBSUB_CONNECT_MAX_BACKOFF_MS: '250',
        UNRELATED: 'x',
      }),
    ).toEqual({ persist_pubsub_client_enabled: false, persist_pubsub_connect_max_backoff_ms: 250 });
    expect(() => flagsFromEnv({ PERSIST_PUBSUB_CONNECT_MAX_BACKOFF_MS: '1.5' })).toThrow(
      /PERSIST_PUBSUB_CONNECT_MAX_BACKOFF_MS/,
    );
  });
});

describe('watchFlagsFile', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('applies edits within 100 ms, keeps values on a bad file, restores defaults on removal', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'client-flags-'));
    dirs.push(dir);
    const path = join(dir, 'flags.json');
    writeFileSync(path, JSON.stringify({ persist_pubsub_push_diff_enabled: false }));
    const flags = createFlags();
    const errors: Error[] = [];
    const watcher = watchFlagsFile(flags, path, { onError: (e) => errors.push(e) });
    try {
      expect(flags.get().persist_pubsub_push_diff_enabled).toBe(false);

      const changed = new Promise<number>((resolve) => {
        const t0 = performance.now();
        const off = flags.onChange(() => {
          off();
          resolve(performance.now() - t0);
        });
        // An atomic replace (write + rename), as config management tools do.
        writeFileSync(`${path}.tmp`, JSON.stringify({ persist_pubsub_client_enabled: false }));
        renameSync(`${path}.tmp`, path);
      });
      // The target is 100 ms; the bound leaves room for a loaded CI machine (fs.watch, not a
      // poll interval, is what makes it fast).
      const ms = await changed;
      console.log(`flags file change seen after ${ms.toFixed(1)} ms`);
      expect(ms).toBeLessThan(1000);
      expect(flags.get().persist_pubsub_client_enabled).toBe(false);
      // Removed from the file: back to its default.
      expect(flags.get().persist_pubsub_push_diff_enabled).toBe(true);

      writeFileSync(path, '{"persist_pubsub_client_enabled": "nope"');
      watcher.reload();
      writeFileSync(path, '{"persist_pubsub_client_enabled": "nope"}');
      watcher.reload();
      expect(errors.map((e) => (e as ClientError).code)).toEqual([
        'invalid_argument',
        'invalid_argument',
      ]);
      expect(errors[1]?.message).toMatch(/persist_pubsub_client_enabled/);
      expect(flags.get().persist_pubsub_client_enabled).toBe(false);
    } finally {
      watcher.close();
    }
  });
});
