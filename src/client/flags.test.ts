import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFakeClock } from '../util/index.js';
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
  /** A flags file turning push_diff off, fresh flags, and where the watcher's errors go. */
  const setup = () => {
    const dir = mkdtempSync(join(tmpdir(), 'client-flags-'));
    dirs.push(dir);
    const path = join(dir, 'flags.json');
    writeFileSync(path, JSON.stringify({ persist_pubsub_push_diff_enabled: false }));
    return { path, flags: createFlags(), errors: [] as Error[] };
  };

  it('applies edits within 100 ms, keeps values on a bad file, restores defaults on removal', async () => {
    const { path, flags, errors } = setup();
    const clock = createFakeClock();
    const watcher = watchFlagsFile(flags, path, { onError: (e) => errors.push(e), clock });
    try {
      expect(flags.get().persist_pubsub_push_diff_enabled).toBe(false);

      const changed = new Promise<number>((resolve) => {
        const t0 = clock.monotonicMs();
        const off = flags.onChange(() => {
          off();
          resolve(clock.monotonicMs() - t0);
        });
        // An atomic replace (write + rename), as config management tools do.
        writeFileSync(`${path}.tmp`, JSON.stringify({ persist_pubsub_client_enabled: false }));
        renameSync(`${path}.tmp`, path);
      });
      // The target is 100 ms: the first poll, at the 50 ms default interval, applies it.
      await clock.advance(50);
      const ms = await changed;
      expect(ms).toBe(50);
      expect(flags.get().persist_pubsub_client_enabled).toBe(false);
      // Removed from the file: back to its default.
      expect(flags.get().persist_pubsub_push_diff_enabled).toBe(true);

      writeFileSync(path, '{"persist_pubsub_client_enabled": "nope"');
      await watcher.reload();
      writeFileSync(path, '{"persist_pubsub_client_enabled": "nope"}');
      await watcher.reload();
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

  it('an empty file (a write caught half-way) changes nothing; a missing one restores defaults', async () => {
    const { path, flags, errors } = setup();
    const watcher = watchFlagsFile(flags, path, {
      onError: (e) => errors.push(e),
      clock: createFakeClock(),
    });
    try {
      writeFileSync(path, '');
      await watcher.reload();
      expect(flags.get().persist_pubsub_push_diff_enabled).toBe(false);
      rmSync(path);
      await watcher.reload();
      expect(flags.get().persist_pubsub_push_diff_enabled).toBe(true);
      expect(errors).toEqual([]);
      expect(() => watchFlagsFile(flags, path, { pollIntervalMs: 0.5 })).toThrow(
        expect.objectContaining({ code: 'invalid_argument', field: 'pollIntervalMs' }),
      );
    } finally {
      watcher.close();
    }
  });
});
