/**
 * Input deduplication as Prometheus sees it (topologies/common/dedup.ts): every input record dropped as a
 * redelivery, by topic and kind (`redelivery`: the same bytes as the first delivery; `conflict`: the eventId was
 * reused with other bytes, the first delivery won). Counted when processed: a batch processed again after a
 * crash counts again, like kairos_records_processed_total.
 */
import { Counter, type Registry } from 'prom-client';
import type { InputDuplicate } from '../../topologies/common/dedup.js';

export function inputDedupMetrics(registry: Registry): (d: InputDuplicate) => void {
  const duplicates = new Counter({
    name: 'kairos_input_duplicates_total',
    help: 'Input records dropped because their (key, eventId) was seen within the dedup window, by topic and kind (redelivery, conflict = other bytes)',
    labelNames: ['topic', 'kind'],
    registers: [registry],
  });
  return (d) => duplicates.inc({ topic: d.topic, kind: d.conflict ? 'conflict' : 'redelivery' });
}
