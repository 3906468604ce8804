import type { Registry } from 'prom-client';

/**
 * The sum of a metric's values on `registry` whose labels pass `keep` (0 if not registered).
 * For a histogram or summary, the number of observations: only its `_count` values count.
 */
export async function sumMetric(
  registry: Registry,
  name: string,
  keep: (labels: Partial<Record<string, string | number>>) => boolean = () => true,
): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  const { values } = await metric.get();
  let sum = 0;
  for (const v of values) {
    const series = (v as { metricName?: string }).metricName;
    if (series !== undefined && series !== name && series !== `${name}_count`) continue;
    if (keep(v.labels)) sum += v.value;
  }
  return sum;
}

/** A `keep` for `sumMetric`: the labels include every one of `labels`. */
export const withLabels =
  (labels: Record<string, string>) =>
  (have: Partial<Record<string, string | number>>): boolean =>
    Object.entries(labels).every(([k, v]) => have[k] === v);
