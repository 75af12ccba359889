/**
 * The query API's latency histogram (`kairos_api_request_duration_seconds`), observed once per request at a cost of
 * a bucket search and three additions. prom-client's labelled child builds a label object, checks its names and
 * joins a hash string on every observation (about 0.8 µs per call on the 2-core benchmark machine, issue 17); here
 * a series is found when its child is made, which the API does once per method, route and status. The metric is
 * exported as prom-client's `Histogram` exports it — the same lines in the same order, series in the order of
 * their first observation, `get()` as its JSON — which test/api/latency-histogram.test.ts compares.
 */
import { format } from 'node:util';
import type { Histogram, Registry } from 'prom-client';

/** One label set's series: `observe` takes seconds. */
export interface LatencyChild {
  observe(seconds: number): void;
}

interface Series {
  readonly labels: Readonly<Record<string, string>>;
  /** Observations per bucket (not cumulative), in the order of the bounds. */
  readonly counts: number[];
  sum: number;
  count: number;
}

/** A value as prom-client's Histogram hands it to the registry: its own labels apart from the series' (shared). */
interface ExportedValue {
  labels: Record<string, string | number>;
  sharedLabels: Readonly<Record<string, string>>;
  value: number;
  metricName: string;
  exemplar: null | undefined;
}

export interface LatencyHistogramConfig {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  /** Upper bounds in seconds, ascending. */
  readonly buckets: readonly number[];
  readonly registers: readonly Registry[];
}

export class LatencyHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames: readonly string[];
  readonly #bounds: readonly number[];
  /** Series by label key, in the order of their first observation (prom-client's order). */
  readonly #series = new Map<string, Series>();

  constructor(config: LatencyHistogramConfig) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = [...config.labelNames];
    this.#bounds = [...config.buckets];
    if (config.labelNames.includes('le')) throw new Error('le is a reserved label keyword');
    // The registry reads name, help, type, aggregator, getForPromString / get and reset: what this class has.
    for (const r of config.registers) r.registerMetric(this as unknown as Histogram);
  }

  /** The series of `labels` (every label name, in the order given: the order they are exported in). */
  labels(labels: Readonly<Record<string, string>>): LatencyChild {
    const names = Object.keys(labels);
    for (const n of names) if (!this.labelNames.includes(n)) throw new Error(`Added label "${n}" is not included in initial labelset: ${format(this.labelNames)}`);
    const key = names.map((n) => `${n}:${labels[n] ?? ''}`).join(',');
    return { observe: (seconds: number): void => this.#observe(key, labels, seconds) };
  }

  #observe(key: string, labels: Readonly<Record<string, string>>, value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${format(value)}`);
    let s = this.#series.get(key);
    if (s === undefined) {
      // Made at the first observation, as prom-client makes its entry (a child alone exports nothing).
      s = { labels, counts: this.#bounds.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    const bounds = this.#bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= (bounds[i] as number)) {
        (s.counts as number[])[i] = (s.counts[i] as number) + 1;
        break;
      }
    }
    s.sum += value;
    s.count += 1;
  }

  /** Every series forgotten (children made before keep working: their series starts again at its next observation). */
  reset(): void {
    this.#series.clear();
  }

  /** What the registry formats: prom-client's Histogram values, with the series' labels as shared labels. */
  getForPromString(): Promise<{ name: string; help: string; type: 'histogram'; values: ExportedValue[]; aggregator: 'sum' }> {
    const bucket = `${this.name}_bucket`;
    const values: ExportedValue[] = [];
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += s.counts[i] as number;
        values.push({ labels: { le: this.#bounds[i] as number }, sharedLabels: s.labels, value: acc, metricName: bucket, exemplar: null });
      }
      values.push(
        { labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket, exemplar: null },
        { labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum`, exemplar: undefined },
        { labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count`, exemplar: undefined },
      );
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  /**
   * As prom-client's Histogram.get() (the registry's JSON): each value's labels with its series' labels merged in.
   * (prom-client's typings say `type` is an enum and `collect` is present; at run time it is the string, and absent.)
   */
  async get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: { value: number; metricName: string; exemplar: null | undefined; labels: Record<string, string | number> }[] }> {
    const data = await this.getForPromString();
    return { ...data, values: data.values.map(({ labels, sharedLabels, value, metricName, exemplar }) => ({ value, metricName, exemplar, labels: Object.assign(labels, sharedLabels) })) };
  }
}
