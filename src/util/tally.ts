/**
 * Metrics whose hot path costs nanoseconds. prom-client hashes the label object on every
 * `inc`/`observe` (a string built per call) and a histogram searches its buckets through an
 * object keyed by bound; at one update per diff per metric that is a measurable share of a
 * reader's CPU. Here a caller takes a *cell* for a label set once (`cell(labels)`, the label work
 * done then) and the hot path is a number addition on it; the totals reach prom-client when the
 * registry is scraped, through the metric's `collect()`. Scrapes, names, help, labels and
 * values are exactly those of the prom-client metric underneath (it is one).
 */
import { Counter, Histogram, type Registry } from 'prom-client';

/** A counter cell: add to `value` (never subtract). */
export interface CounterCell {
  value: number;
}

interface CounterEntry<L extends string> extends CounterCell {
  labels: Partial<Record<L, string>>;
  reported: number;
}

export interface TallyCounterOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  registers: Registry[];
}

/** A prom-client `Counter` fed from cells. */
export class TallyCounter<L extends string = never> {
  readonly metric: Counter<L>;
  readonly #labelNames: readonly L[];
  readonly #cells = new Map<string, CounterEntry<L>>();

  constructor(options: TallyCounterOptions<L>) {
    this.#labelNames = options.labelNames ?? [];
    const fold = () => this.#fold();
    this.metric = new Counter<L>({
      name: options.name,
      help: options.help,
      labelNames: [...this.#labelNames],
      registers: options.registers,
      collect() {
        fold();
      },
    });
  }

  /** The cell of one label set (created on first use; keep it, that is the point). */
  cell(labels: Partial<Record<L, string>> = {}): CounterCell {
    const key = keyOf(this.#labelNames, labels);
    let c = this.#cells.get(key);
    if (c === undefined) {
      c = { labels: { ...labels }, value: 0, reported: 0 };
      this.#cells.set(key, c);
    }
    return c;
  }

  /** `cell(labels).value += n`, for cold paths. */
  inc(labels: Partial<Record<L, string>> = {}, n = 1): void {
    this.cell(labels).value += n;
  }

  /** Forgets a label set (its series disappears from the next scrape). */
  remove(labels: Partial<Record<L, string>>): void {
    this.#cells.delete(keyOf(this.#labelNames, labels));
    this.metric.remove(labels as never);
  }

  #fold(): void {
    for (const c of this.#cells.values()) {
      const delta = c.value - c.reported;
      if (delta > 0) {
        c.reported = c.value;
        this.metric.inc(c.labels as never, delta);
      }
    }
  }
}

/** A histogram cell: `observe(v)` is a bucket search over a small array and three additions. */
export interface HistogramCell {
  observe(value: number): void;
}

class HistogramEntry<L extends string> implements HistogramCell {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Partial<Record<L, string>>,
    readonly bounds: readonly number[],
  ) {
    // One slot per bound, and one for values above the last (counted in +Inf only).
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > (b[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

export interface TallyHistogramOptions<L extends string> extends TallyCounterOptions<L> {
  buckets: readonly number[];
}

/** prom-client's per-label-set histogram record (15.x): what `collect()` folds into. */
interface PromHistogramRecord {
  labels: Record<string, string>;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

/**
 * A prom-client `Histogram` fed from cells. At a scrape the cells' new observations are added
 * to the histogram's own records (prom-client 15's `hashMap`: `{ labels, bucketValues, sum,
 * count }`, pinned in package.json); `tally.test.ts` checks the result against `observe`.
 */
export class TallyHistogram<L extends string = never> {
  readonly metric: Histogram<L>;
  readonly #labelNames: readonly L[];
  readonly #bounds: readonly number[];
  readonly #cells = new Map<string, HistogramEntry<L>>();

  constructor(options: TallyHistogramOptions<L>) {
    this.#labelNames = options.labelNames ?? [];
    this.#bounds = [...options.buckets].sort((a, b) => a - b);
    const fold = () => this.#fold();
    this.metric = new Histogram<L>({
      name: options.name,
      help: options.help,
      labelNames: [...this.#labelNames],
      buckets: [...this.#bounds],
      registers: options.registers,
      collect() {
        fold();
      },
    });
  }

  cell(labels: Partial<Record<L, string>> = {}): HistogramCell {
    const key = keyOf(this.#labelNames, labels);
    let c = this.#cells.get(key);
    if (c === undefined) {
      c = new HistogramEntry<L>({ ...labels }, this.#bounds);
      this.#cells.set(key, c);
    }
    return c;
  }

  #fold(): void {
    const h = this.metric as unknown as {
      hashMap: Record<string, PromHistogramRecord>;
      sortedLabelNames: readonly string[];
      zero(labels: Record<string, string>): void;
    };
    for (const c of this.#cells.values()) {
      if (c.count === 0) continue;
      const labels = c.labels as Record<string, string>;
      const hash = promHash(h.sortedLabelNames, labels);
      let rec = h.hashMap[hash];
      if (rec === undefined) {
        h.zero(labels);
        rec = h.hashMap[hash] as PromHistogramRecord;
      }
      for (let i = 0; i < this.#bounds.length; i++) {
        const n = c.counts[i] as number;
        if (n > 0) {
          const bound = this.#bounds[i] as number;
          rec.bucketValues[bound] = (rec.bucketValues[bound] ?? 0) + n;
        }
      }
      rec.sum += c.sum;
      rec.count += c.count;
      c.counts.fill(0);
      c.sum = 0;
      c.count = 0;
    }
  }
}

function keyOf(labelNames: readonly string[], labels: Record<string, string | undefined>): string {
  let key = '';
  for (const n of labelNames) key += `${labels[n] ?? ''}\u0000`;
  return key;
}

/** prom-client 15's label hash (`util.hashObject` over the metric's sorted label names). */
function promHash(sortedLabelNames: readonly string[], labels: Record<string, string>): string {
  let hash = '';
  for (const n of sortedLabelNames) {
    const v = labels[n];
    if (v !== undefined) hash += `${n}:${v},`;
  }
  return hash;
}
