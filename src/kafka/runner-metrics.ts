/** Prometheus metrics of the Kafka runner (names in the `kairos_` namespace). */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { TaskState } from '../engine/state/task-state.js';

/** The open tasks' states, read when Prometheus scrapes. */
export type OpenStates = () => Promise<{ partition: number; state: TaskState }[]>;

export interface RunnerMetrics {
  readonly processed: Counter<'topic'>;
  readonly failed: Counter<'topic' | 'reason'>;
  readonly dlq: Counter<'topic'>;
  readonly emitted: Counter<'topic'>;
  readonly lag: Gauge<'topic' | 'partition'>;
  readonly tasks: Gauge;
  readonly timersPending: Gauge<'partition'>;
  readonly commitSeconds: Histogram;
  readonly restored: Counter<'partition'>;
  readonly restoreRemaining: Gauge<'partition'>;
  readonly restoreTrimmed: Counter<'topic'>;
  readonly rebalances: Counter;
  readonly rebalancePause: Histogram;
  readonly consumerRestarts: Counter;
  readonly membershipLost: Counter;
  readonly standbyApplied: Counter<'partition'>;
  readonly rerouted: Counter<'topic'>;
  readonly idleForced: Counter<'partition'>;
  readonly lateRecords: Counter<'partition'>;
  readonly endProbes: Counter<'result'>;
  readonly skippedRecords: Counter<'partition'>;
  readonly producerReplaced: Counter<'reason'>;
  readonly purgeFailed: Counter<'topic'>;
}

export function runnerMetrics(registry: Registry, states?: OpenStates): RunnerMetrics {
  const registers = [registry];
  if (states) stateMetrics(registry, states);
  return {
    processed: new Counter({ name: 'kairos_records_processed_total', help: 'Input records processed, by topic', labelNames: ['topic'], registers }),
    failed: new Counter({ name: 'kairos_records_failed_total', help: 'Input records that could not be decoded or validated, by topic and reason', labelNames: ['topic', 'reason'], registers }),
    dlq: new Counter({ name: 'kairos_dlq_records_total', help: 'Records written to dead-letter topics, by source topic', labelNames: ['topic'], registers }),
    emitted: new Counter({ name: 'kairos_records_emitted_total', help: 'Records produced by the topology, by output topic', labelNames: ['topic'], registers }),
    lag: new Gauge({ name: 'kairos_consumer_lag_records', help: 'High watermark minus the next offset to process, per input partition', labelNames: ['topic', 'partition'], registers }),
    tasks: new Gauge({ name: 'kairos_tasks_assigned', help: 'Tasks (input partitions) owned by this instance', registers }),
    timersPending: new Gauge({ name: 'kairos_timers_pending', help: 'Timers waiting to fire, per task', labelNames: ['partition'], registers }),
    commitSeconds: new Histogram({
      name: 'kairos_commit_duration_seconds',
      help: 'Time to commit a task: outputs flushed, changelog written, RocksDB batch, offsets',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    restored: new Counter({ name: 'kairos_restore_records_total', help: 'Changelog records applied while restoring tasks', labelNames: ['partition'], registers }),
    restoreRemaining: new Gauge({ name: 'kairos_restore_remaining_records', help: 'Changelog records still to restore, per task', labelNames: ['partition'], registers }),
    restoreTrimmed: new Counter({
      name: 'kairos_restore_trimmed_records_total',
      help: 'Changelog records deleted by the broker before a restore could read them (state lost; changelogs must be compacted)',
      labelNames: ['topic'],
      registers,
    }),
    rebalances: new Counter({ name: 'kairos_rebalances_total', help: 'Consumer group joins (rebalances) seen by this instance', registers }),
    rebalancePause: new Histogram({
      name: 'kairos_rebalance_pause_seconds',
      help: 'Time from the consumer starting to rebalance to joining the new generation (processing paused)',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    standbyApplied: new Counter({ name: 'kairos_standby_records_total', help: 'Changelog records applied to standby copies, per task', labelNames: ['partition'], registers }),
    rerouted: new Counter({
      name: 'kairos_rerouted_records_total',
      help: 'Input records found on a partition their key does not hash to (a producer with another partitioner), routed to the key\'s task',
      labelNames: ['topic'],
      registers,
    }),
    idleForced: new Counter({
      name: 'kairos_task_idle_forced_total',
      help: 'Times a task processed without an input known to lag, after maxTaskIdleMs (event-time order not guaranteed)',
      labelNames: ['partition'],
      registers,
    }),
    endProbes: new Counter({
      name: 'kairos_input_end_probes_total',
      help: 'Inputs a live task asked the end offset of because their confirmation alone held a record back, by result: confirmed (at its end: the record went on), behind (more to fetch: left to the fetch), failed (a request that failed: left to the next fetch)',
      labelNames: ['result'],
      registers,
    }),
    lateRecords: new Counter({
      name: 'kairos_task_late_records_total',
      help: 'Records a task processed from an input with an event time below its stream time: out-of-order input, or records of one input fetched after a newer record of another passed them',
      labelNames: ['partition'],
      registers,
    }),
    skippedRecords: new Counter({
      name: 'kairos_task_records_skipped_total',
      help: 'Records a task fetched again that its state already holds (below its position), skipped: fetched twice, read and decoded for nothing',
      labelNames: ['partition'],
      registers,
    }),
    purgeFailed: new Counter({
      name: 'kairos_repartition_purge_failed_total',
      help: 'Deletions of consumed repartition records (DeleteRecords) the broker refused or that failed, by topic: the topics keep records without time retention, so they grow until a purge succeeds',
      labelNames: ['topic'],
      registers,
    }),
    producerReplaced: new Counter({ name: 'kairos_producer_replaced_total', help: 'Producers replaced after a failed produce request, by reason', labelNames: ['reason'], registers }),
    consumerRestarts: new Counter({ name: 'kairos_consumer_restarts_total', help: 'Consumers replaced after kafkajs crashed them with a non-retriable error', registers }),
    membershipLost: new Counter({
      name: 'kairos_group_membership_lost_total',
      help: 'Group joins after the membership was lost (a new member id, or a join asked for after a silence longer than the session: an expired session or a replaced consumer); every open task was closed without a commit and restored',
      registers,
    }),
  };
}

/**
 * State metrics, read from the open tasks when Prometheus scrapes: RocksDB size per task and the write-back
 * cache's hits and misses (cumulative counters; a task that moves away takes its counts with it, which
 * `rate()` treats as a counter reset).
 */
function stateMetrics(registry: Registry, states: OpenStates): void {
  const registers = [registry];
  new Gauge({
    name: 'kairos_state_store_bytes',
    help: 'Approximate on-disk size of each open task\'s RocksDB (all stores)',
    labelNames: ['partition'],
    registers,
    async collect() {
      this.reset();
      for (const { partition, state } of await states()) this.set({ partition: String(partition) }, await state.approximateSize().catch(() => 0));
    },
  });
  new Gauge({
    name: 'kairos_state_cache_bytes',
    help: "Estimated heap bytes of each open task's state cache (its budget: kairos_state_cache_budget_bytes)",
    labelNames: ['partition'],
    registers,
    async collect() {
      this.reset();
      for (const { partition, state } of await states()) this.set({ partition: String(partition) }, state.cacheBytes);
    },
  });
  new Gauge({
    name: 'kairos_state_cache_budget_bytes',
    help: "The state cache's memory budget per task (estimated heap); over it, clean entries are evicted",
    registers,
    async collect() {
      const open = await states();
      this.reset();
      if (open.length > 0) this.set(Math.max(...open.map(({ state }) => state.cacheMaxBytes)));
    },
  });
  new Counter({
    name: 'kairos_state_cache_lookups_total',
    help: 'Store reads by result: hit (answered by the write-back cache) or miss (read from RocksDB), over open tasks',
    labelNames: ['result'],
    registers,
    async collect() {
      let hits = 0;
      let misses = 0;
      for (const { state } of await states()) {
        hits += state.stats.cacheHits;
        misses += state.stats.cacheMisses;
      }
      this.reset();
      this.inc({ result: 'hit' }, hits);
      this.inc({ result: 'miss' }, misses);
    },
  });
  /** A counter of one TaskState statistic, summed over the open tasks when scraped. */
  const statCounter = (name: string, help: string, stat: 'prefetched' | 'reads' | 'evicted'): void => {
    new Counter({
      name,
      help,
      registers,
      async collect() {
        let n = 0;
        for (const { state } of await states()) n += state.stats[stat];
        this.reset();
        this.inc(n);
      },
    });
  };
  statCounter('kairos_state_prefetched_total', 'Keys loaded from RocksDB ahead of processing, with one multi-get per fetched batch (the keys its records will read), over open tasks', 'prefetched');
  statCounter('kairos_state_cache_evictions_total', 'Entries evicted from the state caches to keep their budget (read from RocksDB when needed again), over open tasks', 'evicted');
  statCounter('kairos_state_reads_total', 'Reads of RocksDB (a single get or a multi-get of any number of keys and stores; each is a trip through the thread pool), over open tasks', 'reads');
}
