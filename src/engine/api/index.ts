export type { OutputRecord, RecordHeaders, RecordOrigin, StreamRecord } from './record.js';
export type {
  Codec,
  KeyRange,
  KeyValue,
  KeyValueStore,
  KeyValueStoreSpec,
  NotLoaded,
  PrefetchRecord,
  ReadOnlyKeyValueStore,
  SessionEntry,
  SessionStore,
  SessionStoreSpec,
  SessionWindow,
  StoreKind,
  StoreOf,
  StoreSpec,
  WindowEntry,
  WindowStore,
  WindowStoreSpec,
} from './stores.js';
export { keyValueStore, NOT_LOADED, sessionStore, windowStore } from './stores.js';
export { jsonCodec, numberCodec, stringCodec } from './codecs.js';
export type { Processor, ProcessorContext, ProcessorSupplier, StoreSpecLike, Timer, TimerData, TimerDomain, TimerService } from './processor.js';
export type { ProcessorNode, SinkNode, SourceNode, SourceStage, Topology, TopologyNode } from './topology.js';
export { TopologyBuilder } from './topology.js';
