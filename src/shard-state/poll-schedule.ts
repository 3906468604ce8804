/**
 * A waiting reader's polling fallback (reference schedule, docs/architecture.md "Polling
 * fallback"): while anyone waits for a newer version, Consensus is read on a timer: a first
 * sleep of `pollFirstSleepMs`, then `pollInitialBackoffMs` doubling up to `pollMaxBackoffMs`
 * after each poll that found nothing, each sleep jittered by `pollJitterRatio`. Progress (a
 * version applied, from anywhere) starts the schedule over.
 *
 * State: the phase, one tagged union (`phase`) changed only by `#to`; it is kept unboxed, in
 * four fields of the schedule, so that the progress of every applied diff allocates nothing and
 * touches no object of its own (a reader following a thousand shards makes a new sleep per
 * diff). The timer is a resource the phase
 * asks for: one queue timer per schedule, armed for the sleep's deadline and moved in place when
 * progress moves the deadline (a sift in the cache's timer heap). A reader applying a diff every
 * few hundred milliseconds therefore costs no wake-up per sleep: its timer fires only when a
 * poll is due, exactly when the schedule says. (Arming for the earliest deadline and re-arming
 * when that fired cost a timer wake-up per shard per first sleep, ~1,000 a second in a reader
 * following a thousand shards, three times its socket reads.)
 */
import type { Clock } from '../util/index.js';
import { jitterWith, pollDelayMs, type ShardStateConfig } from './config.js';
import type { QueuedTimer, TimerQueue } from './timer-queue.js';

export type PollPhase =
  /** Nobody waits: no polls. */
  | { readonly kind: 'idle' }
  /** Sleeping before poll number `attempt` (0-based), which is due at `sleepStartMs` + delay. */
  | {
      readonly kind: 'sleeping';
      readonly attempt: number;
      readonly sleepStartMs: number;
      /** The jitter factor's uniform draw for this sleep. */
      readonly jitterUnit: number;
    }
  /** Poll number `attempt` is reading Consensus. */
  | { readonly kind: 'polling'; readonly attempt: number };

/** What every schedule of a cache shares (one object for all of them). */
export interface PollScheduleDeps {
  clock: Clock;
  /** Where the poll timer lives: one queue (one clock timer) for every shard of a cache. */
  timers: TimerQueue;
  random: () => number;
  config: () => Readonly<ShardStateConfig>;
}

const IDLE: PollPhase = Object.freeze({ kind: 'idle' });

type Kind = PollPhase['kind'];

export class PollSchedule {
  readonly #d: PollScheduleDeps;
  /** Reads Consensus for newer versions; never rejects. */
  readonly #poll: () => Promise<void>;
  /** The phase, unboxed: its kind, and the fields of `sleeping` (`attempt` also of `polling`). */
  #kind: Kind = 'idle';
  #attempt = 0;
  #sleepStartMs = 0;
  #jitterUnit = 0;
  /** Counts transitions: a poll that ends in the phase it started sees the same number. */
  #transitions = 0;
  /** The schedule's queue timer, made on first use and rescheduled since; pending while armed. */
  #timer: QueuedTimer | undefined;
  #armed = false;
  readonly #onTimer = (): void => this.#fire();

  constructor(deps: PollScheduleDeps, poll: () => Promise<void>) {
    this.#d = deps;
    this.#poll = poll;
  }

  get phase(): PollPhase {
    if (this.#kind === 'idle') return IDLE;
    if (this.#kind === 'polling') return { kind: 'polling', attempt: this.#attempt };
    return {
      kind: 'sleeping',
      attempt: this.#attempt,
      sleepStartMs: this.#sleepStartMs,
      jitterUnit: this.#jitterUnit,
    };
  }

  /** Someone waits: from idle, the first sleep starts now. */
  start(): void {
    if (this.#kind === 'idle') this.#sleep(0);
  }

  /** A version was applied: a waiting schedule starts over with a fresh first sleep. */
  progress(): void {
    if (this.#kind !== 'idle') this.#sleep(0);
  }

  /**
   * Nobody waits any more (a wait was satisfied). A pending timer due within one first sleep is
   * left to lapse, so that a reader that waits again at once (a listen loop) reuses it; it keeps
   * the process alive until then (at most ~1.3 s by default). A later one (a long backoff) is
   * cancelled.
   */
  idle(): void {
    this.#to('idle', 0, 0, 0);
    if (!this.#armed) return;
    const cfg = this.#d.config();
    const firstSleepMs = cfg.pollFirstSleepMs * (1 + cfg.pollJitterRatio);
    if ((this.#timer as QueuedTimer).atMs - this.#d.clock.monotonicMs() > firstSleepMs) {
      this.#disarm();
    }
  }

  /** Nobody waits, and the timer is cancelled (an abort, a close). */
  stop(): void {
    this.#to('idle', 0, 0, 0);
    this.#disarm();
  }

  /** The configuration changed: a running sleep is re-timed under it (same start and jitter). */
  configChanged(): void {
    if (this.#kind === 'sleeping') this.#arm(this.#deadline());
  }

  /** Starts sleeping before poll number `attempt`, from now, with a fresh jitter draw. */
  #sleep(attempt: number): void {
    this.#to('sleeping', attempt, this.#d.clock.monotonicMs(), this.#d.random());
  }

  /** The one transition: sets the phase and arms the timer a sleep needs. */
  #to(kind: Kind, attempt: number, sleepStartMs: number, jitterUnit: number): void {
    this.#kind = kind;
    this.#attempt = attempt;
    this.#sleepStartMs = sleepStartMs;
    this.#jitterUnit = jitterUnit;
    this.#transitions++;
    if (kind === 'sleeping') this.#arm(this.#deadline());
  }

  /** When the current sleep ends. */
  #deadline(): number {
    const cfg = this.#d.config();
    return (
      this.#sleepStartMs +
      jitterWith(pollDelayMs(cfg, this.#attempt), cfg.pollJitterRatio, this.#jitterUnit)
    );
  }

  /** Makes the timer fire at `atMs` (moved in place if it is pending). */
  #arm(atMs: number): void {
    const t = this.#timer;
    if (t === undefined) this.#timer = this.#d.timers.set(this.#onTimer, atMs);
    else if (!this.#armed || t.atMs !== atMs) t.reschedule(atMs);
    this.#armed = true;
  }

  #disarm(): void {
    if (!this.#armed) return;
    this.#armed = false;
    this.#timer?.cancel();
  }

  #fire(): void {
    this.#armed = false;
    if (this.#kind !== 'sleeping') return;
    const deadline = this.#deadline();
    // Not due yet (a clock timer a fraction early; within a millisecond counts as due).
    if (deadline - this.#d.clock.monotonicMs() >= 1) {
      this.#arm(deadline);
      return;
    }
    const attempt = this.#attempt;
    this.#to('polling', attempt, 0, 0);
    const polling = this.#transitions;
    void this.#poll().then(() => {
      // Progress during the poll already started a new sleep; otherwise it found nothing.
      if (this.#transitions === polling) this.#sleep(attempt + 1);
    });
  }
}
