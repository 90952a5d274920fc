import type { Metric, Registry } from 'prom-client';

/**
 * A counter and a histogram for the metrics every proxied request touches, exposed through a prom-client
 * Registry like any other metric. prom-client's own check and hash the label object on every observation
 * (three allocations and a sort per call); these resolve a label set to a child once and then count in
 * plain numbers: an observation is an array slot increment.
 *
 * Label values are fixed when a child is made (`labels(...)`), in the order of `labelNames`; callers keep
 * the children they use. The number of children is capped: past the cap, new label sets share one
 * `overflow` child rather than grow memory without bound.
 */

const MAX_CHILDREN = 10_000;
const OVERFLOW = 'overflow';

/** What prom-client's Registry reads of a metric: `name`, `help`, `type`, `aggregator` and `get()`. */
interface Exported {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  values: { labels: Record<string, string | number>; value: number; metricName?: string }[];
}

function labelObject(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (let i = 0; i < names.length; i++) labels[names[i]!] = values[i] ?? '';
  return labels;
}

/** Children by label values, capped. */
class Children<C> {
  readonly #map = new Map<string, C>();
  readonly #labelNames: readonly string[];
  readonly #make: (labels: Record<string, string>) => C;

  constructor(labelNames: readonly string[], make: (labels: Record<string, string>) => C) {
    this.#labelNames = labelNames;
    this.#make = make;
  }

  get(values: readonly string[]): C {
    const key = values.length === 1 ? values[0]! : values.join('\u0000');
    let child = this.#map.get(key);
    if (child === undefined) {
      if (this.#map.size >= MAX_CHILDREN && !values.every((value) => value === OVERFLOW)) return this.get(this.#labelNames.map(() => OVERFLOW));
      child = this.#make(labelObject(this.#labelNames, values));
      this.#map.set(key, child);
    }
    return child;
  }

  values(): IterableIterator<C> {
    return this.#map.values();
  }

  clear(): void {
    this.#map.clear();
  }
}

/** What the counter and the histogram share: identity, children, and registration with prom-client registries. */
abstract class HotMetric<T extends string, C> {
  abstract readonly type: Exported['type'];
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly T[];
  protected readonly children: Children<C>;

  constructor(name: string, help: string, labelNames: readonly T[], registers: Registry[], make: (labels: Record<string, string>) => C) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    this.children = new Children(labelNames, make);
    // prom-client's Registry reads `name`, `help`, `type`, `aggregator` and `get()`.
    for (const registry of registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The child of these label values (in `labelNames` order); keep it for the hot path. */
  labels(...values: string[]): C {
    return this.children.get(values);
  }

  abstract get(): Promise<Exported>;

  reset(): void {
    this.children.clear();
  }
}

export class CounterChild {
  value = 0;
  readonly labels: Record<string, string>;

  constructor(labels: Record<string, string>) {
    this.labels = labels;
  }

  inc(by = 1): void {
    this.value += by;
  }
}

export class HotCounter<T extends string> extends HotMetric<T, CounterChild> {
  readonly type = 'counter';

  constructor(name: string, help: string, labelNames: readonly T[], registers: Registry[]) {
    super(name, help, labelNames, registers, (labels) => new CounterChild(labels));
  }

  /** As prom-client's `inc({ label: value })`, for callers off the hot path. */
  inc(labels: Record<T, string>, by = 1): void {
    this.children.get(this.labelNames.map((name) => labels[name])).inc(by);
  }

  async get(): Promise<Exported> {
    const values: Exported['values'] = [];
    for (const child of this.children.values()) values.push({ labels: child.labels, value: child.value });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

export class HistogramChild {
  /** Observations per bucket (not cumulative); the last slot is above every bound (+Inf). */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  readonly labels: Record<string, string>;
  readonly #bounds: readonly number[];

  constructor(labels: Record<string, string>, bounds: readonly number[]) {
    this.labels = labels;
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

export class HotHistogram<T extends string> extends HotMetric<T, HistogramChild> {
  readonly type = 'histogram';
  readonly #bounds: readonly number[];

  constructor(name: string, help: string, labelNames: readonly T[], buckets: readonly number[], registers: Registry[]) {
    const bounds = [...buckets].sort((a, b) => a - b);
    super(name, help, labelNames, registers, (labels) => new HistogramChild(labels, bounds));
    this.#bounds = bounds;
  }

  async get(): Promise<Exported> {
    const values: Exported['values'] = [];
    const bucketName = `${this.name}_bucket`;
    for (const child of this.children.values()) {
      const labels = child.labels;
      let cumulative = 0;
      const bounds = this.#bounds;
      for (let i = 0; i < bounds.length; i++) {
        cumulative += child.counts[i]!;
        values.push({ metricName: bucketName, labels: { ...labels, le: bounds[i]! }, value: cumulative });
      }
      values.push({ metricName: bucketName, labels: { ...labels, le: '+Inf' }, value: child.count });
      values.push({ metricName: `${this.name}_sum`, labels, value: child.sum });
      values.push({ metricName: `${this.name}_count`, labels, value: child.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
