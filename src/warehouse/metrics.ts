/** Prometheus metrics of `kairos export` and `kairos segments sync` (registered on the registry given). */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ExportMetrics {
  readonly rows: Counter<'table'>;
  readonly rejected: Counter<'table'>;
  readonly dlq: Counter<'topic' | 'reason'>;
  readonly inserts: Counter<'table' | 'result'>;
  readonly insertSeconds: Histogram<'table'>;
  readonly retries: Counter;
  readonly buffered: Gauge;
  readonly backpressureWaits: Counter;
  readonly commits: Counter;
  readonly lastFlush: Gauge;
}

export function exportMetrics(registry: Registry): ExportMetrics {
  const registers = [registry];
  return {
    rows: new Counter({ name: 'kairos_export_rows_total', help: 'Rows the warehouse accepted, by table', labelNames: ['table'], registers }),
    rejected: new Counter({ name: 'kairos_export_rows_rejected_total', help: 'Rows the warehouse refused for their content (sent to the DLQ), by table', labelNames: ['table'], registers }),
    dlq: new Counter({ name: 'kairos_export_dlq_records_total', help: 'Records sent to <topic>.dlq, by source topic and reason', labelNames: ['topic', 'reason'], registers }),
    inserts: new Counter({ name: 'kairos_export_insert_requests_total', help: 'Insert requests, by table and result (ok, error)', labelNames: ['table', 'result'], registers }),
    insertSeconds: new Histogram({
      name: 'kairos_export_insert_duration_seconds',
      help: 'Duration of one insert request',
      labelNames: ['table'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    retries: new Counter({ name: 'kairos_export_retries_total', help: 'Flushes retried after a warehouse error', registers }),
    buffered: new Gauge({ name: 'kairos_export_buffered_rows', help: 'Rows read from Kafka, not yet accepted by the warehouse', registers }),
    backpressureWaits: new Counter({ name: 'kairos_export_backpressure_waits_total', help: 'Times consumption waited for a flush because the buffer was full', registers }),
    commits: new Counter({ name: 'kairos_export_offset_commits_total', help: 'Offset commits after the warehouse accepted the rows', registers }),
    lastFlush: new Gauge({ name: 'kairos_export_last_flush_timestamp_seconds', help: 'When rows were last accepted by the warehouse', registers }),
  };
}

export interface SegmentMetrics {
  readonly runs: Counter<'result'>;
  readonly members: Gauge<'segment'>;
  readonly changes: Counter<'segment' | 'change'>;
  readonly published: Counter;
  readonly profilesRead: Gauge;
  readonly runSeconds: Histogram;
  readonly lastSuccess: Gauge;
}

export function segmentMetrics(registry: Registry): SegmentMetrics {
  const registers = [registry];
  return {
    runs: new Counter({ name: 'kairos_segments_runs_total', help: 'Segment sync runs, by result (ok, error)', labelNames: ['result'], registers }),
    members: new Gauge({ name: 'kairos_segments_members', help: 'Members of each segment after the last run', labelNames: ['segment'], registers }),
    changes: new Counter({
      name: 'kairos_segments_changes_total',
      help: 'Membership and attribute changes published, by segment and change (joined, left, attributes)',
      labelNames: ['segment', 'change'],
      registers,
    }),
    published: new Counter({ name: 'kairos_segments_profiles_published_total', help: 'Profiles published to crm.customers.v1', registers }),
    profilesRead: new Gauge({ name: 'kairos_segments_profiles_known', help: 'Profiles read from crm.customers.v1 at the last run', registers }),
    runSeconds: new Histogram({ name: 'kairos_segments_run_duration_seconds', help: 'Duration of a sync run', buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900], registers }),
    lastSuccess: new Gauge({ name: 'kairos_segments_last_success_timestamp_seconds', help: 'When a sync run last succeeded', registers }),
  };
}
