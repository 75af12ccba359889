import type { Logger } from 'pino';
import type { OutputRecord, RecordOrigin, StreamRecord } from './record.js';
import type { StoreKind, StoreOf } from './stores.js';

/** Any store spec, whatever its value type. */
export interface StoreSpecLike {
  readonly kind: StoreKind;
  readonly name: string;
}

/**
 * Which clock a timer follows. Stream-time timers fire when the task's stream time (largest event time seen)
 * reaches them; when a partition is quiet, the runner advances stream time from the wall clock so they still
 * fire. Wall-clock timers fire on the runner's clock only (never in replay).
 */
export type TimerDomain = 'stream-time' | 'wall-clock';

/** JSON data a timer carries (persisted with it). */
export type TimerData = string | number | boolean | null | TimerData[] | { [k: string]: TimerData };

export interface Timer {
  /** Timer name within the processor, e.g. "abandonment". One timer per (processor, name, key). */
  readonly name: string;
  readonly key: string;
  /** When it fires, in the domain's milliseconds. */
  readonly time: number;
  readonly domain: TimerDomain;
  readonly data?: TimerData;
}

export interface TimerService {
  /** Registers a timer, replacing the one of the same name and key. */
  register(timer: Timer): void;
  cancel(name: string, key: string): void;
  get(name: string, key: string): Timer | undefined;
  /** Timers of this processor pending for a key, for queries and tests. */
  pending(key: string): Timer[];
}

export interface ProcessorContext<Out = unknown> {
  readonly applicationId: string;
  readonly taskId: string;
  readonly partition: number;
  readonly logger: Logger;
  /** The typed store for a spec; the processor must be connected to it in the topology. */
  getStore<S extends StoreSpecLike>(spec: S): StoreOf<S>;
  /** Largest event time seen by this task (or advanced by idleness / --until). */
  streamTime(): number;
  /** The runner's clock (the test driver's and replay's clock is fake). */
  wallClockTime(): number;
  /** Where the record being processed came from; undefined inside a timer callback. */
  recordOrigin(): RecordOrigin | undefined;
  readonly timers: TimerService;
  /**
   * Erasure (GDPR): deletes `key` from every store of the task that is keyed by record key
   * (`keyedByRecordKey`), in every processor, and cancels every timer of that key. Committed like any write.
   */
  eraseKey(key: string): void;
  /**
   * Sends to all children, or to the named child (a processor or a sink). The value is handed over, not
   * copied (sinks serialise it at the next commit): do not mutate it afterwards, e.g. forward a copy of a
   * list that stays in a store.
   */
  forward(record: OutputRecord<Out>, child?: string): void;
}

export interface Processor<In = unknown, Out = unknown> {
  init?(context: ProcessorContext<Out>): void | Promise<void>;
  process(record: StreamRecord<In>): void | Promise<void>;
  onTimer?(timer: Timer): void | Promise<void>;
  close?(): void | Promise<void>;
}

export type ProcessorSupplier<In = unknown, Out = unknown> = () => Processor<In, Out>;
