import type { Registry } from 'prom-client';

/** The sum of a metric's values on `registry` whose labels pass `keep` (0 if not registered). */
export async function sumMetric(
  registry: Registry,
  name: string,
  keep: (labels: Partial<Record<string, string | number>>) => boolean = () => true,
): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  const { values } = await metric.get();
  return values.filter((v) => keep(v.labels)).reduce((a, v) => a + v.value, 0);
}
