/** Headers travel with a record (Kafka headers; DLQ reasons). */
export type RecordHeaders = Readonly<Record<string, string>>;

/** Where a record came from: enough to name the causing event of a trigger. */
export interface RecordOrigin {
  readonly topic: string;
  readonly partition: number;
  /** Kafka offsets are int64; carried as decimal strings so they survive JSON and Avro. */
  readonly offset: string;
}

/** A record as a processor sees it: decoded, validated, with its event time. */
export interface StreamRecord<V = unknown> extends RecordOrigin {
  readonly key: string | null;
  readonly value: V;
  /** Event time in epoch milliseconds (the value's occurredAt/updatedAt). */
  readonly timestamp: number;
  readonly headers?: RecordHeaders;
}

/** What a processor forwards downstream or to a sink topic. */
export interface OutputRecord<V = unknown> {
  readonly key: string | null;
  readonly value: V;
  readonly timestamp: number;
  readonly headers?: RecordHeaders;
}
