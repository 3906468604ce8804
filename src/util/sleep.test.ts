import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { countListeners } from './abort-listeners.test-support.js';
import type { Clock, TimerOptions } from './clock.js';
import { createFakeClock } from './fake-clock.js';
import { sleep } from './sleep.js';

const built = join(dirname(fileURLToPath(import.meta.url)), '../../dist/src/util/sleep.js');

/** A fake clock that records the options of every timer set on it. */
function recordingClock() {
  const clock = createFakeClock();
  const options: (TimerOptions | undefined)[] = [];
  const recording: Clock = {
    nowMs: clock.nowMs,
    monotonicMs: clock.monotonicMs,
    setTimer(fn, delayMs, o) {
      options.push(o);
      return clock.setTimer(fn, delayMs, o);
    },
  };
  return { clock, recording, options };
}

describe('sleep', () => {
  it('resolves after the delay on the injected clock, and not before', async () => {
    const clock = createFakeClock();
    let done = false;
    const p = sleep(100, { clock }).then(() => {
      done = true;
    });
    await clock.advance(99);
    expect(done).toBe(false);
    await clock.advance(1);
    expect(done).toBe(true);
    await p;
    expect(clock.pending()).toBe(0);
  });

  it('rejects with the reason on abort, cancelling its timer and its listener', async () => {
    const clock = createFakeClock();
    const ac = new AbortController();
    const listeners = countListeners(ac.signal);
    const p = sleep(1000, { clock, signal: ac.signal });
    expect(clock.pending()).toBe(1);
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
    expect(clock.pending()).toBe(0);
    expect(listeners()).toBe(1); // added once; a `once` listener goes with the event
  });

  it('rejects at once on an aborted signal, with the mapped error if one is given', async () => {
    const clock = createFakeClock();
    const ac = new AbortController();
    ac.abort(new Error('before'));
    await expect(sleep(10, { clock, signal: ac.signal })).rejects.toThrow('before');
    const mapped = sleep(10, { clock, signal: ac.signal, abortError: () => new Error('mapped') });
    await expect(mapped).rejects.toThrow('mapped');
    expect(clock.pending()).toBe(0);
  });

  it('removes its abort listener when it resolves', async () => {
    const clock = createFakeClock();
    const ac = new AbortController();
    const listeners = countListeners(ac.signal);
    const p = sleep(5, { clock, signal: ac.signal });
    expect(listeners()).toBe(1);
    await clock.advance(5);
    await p;
    expect(listeners()).toBe(0);
  });

  it('keeps the process alive unless told otherwise', async () => {
    const { clock, recording, options } = recordingClock();
    const a = sleep(1, { clock: recording });
    const b = sleep(1, { clock: recording, keepAlive: false });
    await clock.advance(1);
    await Promise.all([a, b]);
    expect(options).toEqual([{ keepAlive: true }, { keepAlive: false }]);
  });

  it.skipIf(!existsSync(built))('keeps the process alive while a call awaits it', () => {
    // With an unref'd timer Node would exit (code 13) before printing.
    const script = `const { sleep } = await import(${JSON.stringify(built)});
await sleep(50); process.stdout.write('slept');`;
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
    });
    expect(res.status).toBe(0);
    expect(res.stdout).toBe('slept');
  });
});
