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
  /**
   * A fingerprint of the bytes the runner read the record from (Kafka: the message value; replay: the input line),
   * so a stage can tell a byte-identical redelivery from another record reusing its id without hashing the
   * decoded value. Absent on records a processor made (forwards, repartitioned records) and where a runner had no
   * bytes (the test drivers).
   */
  readonly fingerprint?: number;
}

/** What a processor forwards downstream or to a sink topic. */
export interface OutputRecord<V = unknown> {
  readonly key: string | null;
  readonly value: V;
  readonly timestamp: number;
  readonly headers?: RecordHeaders;
}
