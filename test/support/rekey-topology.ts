/** A small topology that re-keys basket events by sku through a repartition topic and counts watchers per sku. */
import { jsonCodec, keyValueStore, TopologyBuilder, type Processor, type ProcessorContext, type StreamRecord, type Topology } from '../../src/engine/api/index.js';
import type { BasketEvent } from '../../schemas/contract.js';

export const watchersStore = keyValueStore('test.watchers', jsonCodec<string[]>());

class BySku implements Processor<BasketEvent, { customerId: string }> {
  #ctx!: ProcessorContext<{ customerId: string }>;
  init(ctx: ProcessorContext<{ customerId: string }>): void {
    this.#ctx = ctx;
  }
  process(r: StreamRecord<BasketEvent>): void {
    if (r.value.type === 'ITEM_ADDED' && r.value.sku !== undefined) this.#ctx.forward({ key: r.value.sku, value: { customerId: r.value.customerId }, timestamp: r.timestamp });
  }
}

class Watchers implements Processor<{ customerId: string }, { sku: string; watchers: string[]; partition: number }> {
  #ctx!: ProcessorContext<{ sku: string; watchers: string[]; partition: number }>;
  init(ctx: ProcessorContext<{ sku: string; watchers: string[]; partition: number }>): void {
    this.#ctx = ctx;
  }
  async process(r: StreamRecord<{ customerId: string }>): Promise<void> {
    const sku = r.key as string;
    const store = this.#ctx.getStore(watchersStore);
    const list = (await store.get(sku)) ?? [];
    if (!list.includes(r.value.customerId)) list.push(r.value.customerId);
    store.put(sku, list);
    this.#ctx.forward({ key: sku, value: { sku, watchers: [...list], partition: this.#ctx.partition }, timestamp: r.timestamp });
  }
}

export function rekeyTopology(applicationId: string): Topology {
  return new TopologyBuilder(applicationId)
    .addSource('basket', ['shop.basket.v1'])
    .addProcessor('by-sku', () => new BySku(), ['basket'])
    .addRepartition('basket-by-sku', ['by-sku'])
    .addProcessor('watchers', () => new Watchers(), ['basket-by-sku'])
    .addStore(watchersStore, ['watchers'])
    .addSink('watchers.out', 'test.watchers', ['watchers'])
    .build();
}
