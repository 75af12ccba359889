/**
 * Replaces, before kafkajs loads, one of its modules that is quadratic in the messages of a send:
 * `producer/groupMessagesPerPartition` copies the partition's whole array for every message it adds
 * (`[...current, message]`), which for a commit's changelog batch of a few thousand records per partition cost
 * about as much as encoding the request. The replacement groups in one pass and returns the same object (keys,
 * order, fresh arrays). kafkajs' sendMessages takes the module when kafkajs loads, so this module has no import
 * of kafkajs and is imported ahead of it (src/kafka/client.ts, src/kafka/assignor.ts); when kafkajs was loaded
 * first (a program importing kafkajs itself before any of Kairos), or for another kafkajs version, kafkajs' own
 * module stays. {@link kafkajsPreload} tells which. It also mends one method of kafkajs' request queue (see
 * {@link scheduleCheckPendingRequests}).
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const GROUPING = 'kafkajs/src/producer/groupMessagesPerPartition.js';

/** The kafkajs version whose internals Kairos replaces (here and in produce-encoding.ts). */
export const KAFKAJS_VERSION = '2.2.4';

/** Why kafkajs' internals are not replaced (another version installed), or undefined when they can be. */
export function kafkajsVersionMismatch(): string | undefined {
  const version = (require('kafkajs/package.json') as { version: string }).version;
  return version === KAFKAJS_VERSION ? undefined : `kafkajs ${version}, not ${KAFKAJS_VERSION}`;
}

interface GroupArgs<M> {
  readonly topic: string;
  readonly partitionMetadata: readonly unknown[];
  readonly messages: readonly M[];
  readonly partitioner: (args: { topic: string; partitionMetadata: readonly unknown[]; message: M }) => number;
}

/** kafkajs' groupMessagesPerPartition in one pass: partition → its messages in order. */
export function groupMessagesPerPartition<M>({ topic, partitionMetadata, messages, partitioner }: GroupArgs<M>): Record<string, M[]> {
  const result: Record<string, M[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    const current = result[partition];
    if (current === undefined) result[partition] = [message];
    else current.push(message);
  }
  return result;
}

function preload(): string {
  const mismatch = kafkajsVersionMismatch();
  if (mismatch !== undefined) return `${mismatch}: its own grouping is used`;
  const path = require.resolve(GROUPING);
  // The module that takes the grouping when kafkajs loads (the index itself may be in the cache already, not
  // run yet: Node's ESM loader enters a CommonJS module there before evaluating it).
  const taker = require.resolve('kafkajs/src/producer/sendMessages.js');
  if (require.cache[taker] !== undefined || require.cache[path] !== undefined) return 'kafkajs loaded before Kairos: its own grouping is used';
  const Module = require('node:module') as new (id: string) => NodeJS.Module;
  const m = new Module(path);
  m.filename = path;
  m.loaded = true;
  m.exports = groupMessagesPerPartition;
  require.cache[path] = m;
  return 'installed';
}

const status = preload();

/** 'installed', or why kafkajs' own module is used. */
export function kafkajsPreload(): string {
  return status;
}

/** kafkajs' RequestQueue (one per broker connection), as far as its pending-request check goes. */
interface RequestQueueState {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null;
  checkPendingRequests(): void;
}

/** kafkajs' CHECK_PENDING_REQUESTS_INTERVAL (ms). */
const CHECK_PENDING_REQUESTS_INTERVAL = 10;

/**
 * kafkajs 2.2.4's `RequestQueue.scheduleCheckPendingRequests` without its idle loop (kafkajs issues 1556, 1704;
 * pull request 1667, not released): with nothing pending and no throttle, kafkajs still schedules the next check, at
 * `throttledUntil - now` — negative, so 1 ms — and that check schedules the next: every broker connection wakes
 * the event loop about every millisecond for as long as it lives (on the mock cluster ~800 wake-ups a second, 5–9 %
 * of a core for an idle `kairos start`, also while it serves). Here nothing is scheduled then; the rest is kafkajs'
 * code: a request that finds the queue full or throttled is pending and schedules its check (after the throttle, or
 * in 10 ms), and every answer checks the queue again (fulfillRequest, a timeout).
 */
export function scheduleCheckPendingRequests(this: RequestQueueState): void {
  if (this.throttleCheckTimeoutId) return;
  let scheduleAt = this.throttledUntil - Date.now();
  if (this.pending.length > 0) scheduleAt = scheduleAt > 0 ? scheduleAt : CHECK_PENDING_REQUESTS_INTERVAL;
  else if (scheduleAt <= 0) return;
  this.throttleCheckTimeoutId = setTimeout(() => {
    this.throttleCheckTimeoutId = null;
    this.checkPendingRequests();
  }, scheduleAt);
}

function patchRequestQueue(): string {
  const mismatch = kafkajsVersionMismatch();
  if (mismatch !== undefined) return `${mismatch}: its own request queue is used`;
  // A prototype method: replaced for queues made before this ran too.
  const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as { prototype: { scheduleCheckPendingRequests: () => void } };
  RequestQueue.prototype.scheduleCheckPendingRequests = scheduleCheckPendingRequests;
  return 'installed';
}

const requestQueueStatus = patchRequestQueue();

/** 'installed' (kafkajs' request queues without the idle 1 ms loop: {@link scheduleCheckPendingRequests}), or why not. */
export function kafkajsRequestQueuePatch(): string {
  return requestQueueStatus;
}

/** A partition's part of a fetch response, as kafkajs hands it to the runner (its `Batch`). */
export interface FetchedBatch {
  readonly topic: string;
  readonly partition: number;
  /** The offset the fetch asked for (kafkajs' position of the partition then). */
  readonly fetchedOffset: string;
  /** Whether the batch has records kafkajs will hand to eachBatch. */
  isEmpty(): boolean;
  /** Whether the response held nothing at or after the fetched offset: no record, no transaction marker. */
  isEmptyIncludingFiltered(): boolean;
  /** The offset of its last record or transaction marker (of a batch not empty including the filtered). */
  lastOffset(): string;
}

/** The payload of the consumer's FETCH event once patched: kafkajs' own fields, and the response's batches. */
export interface FetchEventPayload {
  readonly nodeId: number;
  readonly duration: number;
  /** Every partition of the response, before kafkajs hands any of them on (absent where the patch is not installed). */
  readonly batches?: readonly FetchedBatch[];
}

/** The part of kafkajs 2.2.4's consumer Runner that `fetch` uses. */
interface RunnerState {
  running: boolean;
  logger: { debug(message: string, extra: object): void };
  consumerGroup: { groupId: string; memberId: string; fetch(nodeId: number): Promise<FetchedBatch[]> };
  instrumentationEmitter: { emit(event: string, payload: object): void };
  heartbeat(): Promise<void>;
}

/**
 * kafkajs 2.2.4's `Runner.fetch`, with the response's batches in its FETCH event. kafkajs hands the batches of one
 * response to eachBatch one by one, several at a time (partitionsConsumedConcurrently), so a task draining one
 * input's batch could not know that another of its inputs has records in the same response, not yet handed on:
 * the FETCH event, emitted after the response is decoded and before any batch is handed on, now says so (the
 * runner marks those inputs behind, see runner.ts). Otherwise kafkajs' code, unchanged.
 */
async function fetchWithBatches(this: RunnerState, nodeId: number): Promise<FetchedBatch[]> {
  if (!this.running) {
    this.logger.debug('consumer not running, exiting', { groupId: this.consumerGroup.groupId, memberId: this.consumerGroup.memberId });
    return [];
  }
  const startFetch = Date.now();
  this.instrumentationEmitter.emit(CONSUMER_EVENTS.FETCH_START, { nodeId });
  const batches = await this.consumerGroup.fetch(nodeId);
  this.instrumentationEmitter.emit(CONSUMER_EVENTS.FETCH, { numberOfBatches: 0, duration: Date.now() - startFetch, nodeId, batches });
  if (batches.length === 0) await this.heartbeat();
  return batches;
}

const CONSUMER_EVENTS = require('kafkajs/src/consumer/instrumentationEvents.js').events as { FETCH: string; FETCH_START: string };

function patchRunnerFetch(): string {
  const mismatch = kafkajsVersionMismatch();
  if (mismatch !== undefined) return `${mismatch}: its own consumer fetch is used (FETCH events without batches)`;
  const Runner = require('kafkajs/src/consumer/runner.js') as { prototype: { fetch: (nodeId: number) => Promise<unknown> } };
  Runner.prototype.fetch = fetchWithBatches as (this: unknown, nodeId: number) => Promise<unknown>;
  return 'installed';
}

const runnerFetchStatus = patchRunnerFetch();

/** 'installed' (the consumer's FETCH event carries the response's batches: {@link fetchWithBatches}), or why not. */
export function kafkajsFetchPatch(): string {
  return runnerFetchStatus;
}
