import { KairosError } from '../../errors.js';
import type { ProcessorSupplier } from './processor.js';
import type { StoreSpec } from './stores.js';

export interface SourceNode {
  readonly kind: 'source';
  readonly name: string;
  readonly topics: readonly string[];
}
export interface ProcessorNode {
  readonly kind: 'processor';
  readonly name: string;
  readonly parents: readonly string[];
  readonly supplier: ProcessorSupplier<never, unknown>;
  readonly stores: readonly string[];
  readonly doc?: string;
}
export interface SinkNode {
  readonly kind: 'sink';
  readonly name: string;
  readonly topic: string;
  readonly parents: readonly string[];
}
export type TopologyNode = SourceNode | ProcessorNode | SinkNode;

/** A validated, immutable processing graph: what every runner executes. */
export interface Topology {
  readonly applicationId: string;
  readonly nodes: ReadonlyMap<string, TopologyNode>;
  /** Store specs by name, with the processors connected to each. */
  readonly stores: ReadonlyMap<string, { readonly spec: StoreSpec<unknown>; readonly processors: readonly string[] }>;
  /** Children of each node, in the order they were added. */
  readonly children: ReadonlyMap<string, readonly string[]>;
  readonly sourceTopics: readonly string[];
  readonly sinkTopics: readonly string[];
  /**
   * Internal repartition topics (`<applicationId>-<name>-repartition`): written by the topology, read back by
   * it, keyed by the forwarded key. Runners with partitions create them with the inputs' partition count; a
   * single-task runner (replay, test driver) routes them straight back into the task.
   */
  readonly repartitionTopics: readonly string[];
  describe(): string;
  describeMermaid(): string;
}

/** Adds the nodes that records of `topic` pass after its source node `source`; returns the last one. */
export type SourceStage = (topic: string, source: string) => string;

const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function repartitionTopic(applicationId: string, name: string): string {
  return `${applicationId}-${name}-repartition`;
}

/**
 * Builds a topology the Kafka Streams way: sources → processors → sinks, stores connected by name.
 * Every name is explicit; nothing is derived from the order of calls.
 */
export class TopologyBuilder {
  readonly #applicationId: string;
  readonly #nodes = new Map<string, TopologyNode>();
  readonly #stores = new Map<string, { spec: StoreSpec<unknown>; processors: string[] }>();
  readonly #repartition = new Set<string>();
  /** What `ensureSource` returns per topic: its source node, or the last node of the source stage after it. */
  readonly #sourceOutputs = new Map<string, string>();
  #sourceStage: SourceStage | undefined;

  constructor(applicationId: string) {
    this.#applicationId = applicationId;
  }

  addSource(name: string, topics: readonly string[]): this {
    if (topics.length === 0) throw this.#error(`source "${name}" needs at least one topic`);
    this.#add({ kind: 'source', name, topics: [...topics] });
    return this;
  }

  /** `supplier` is called once per task. The processor's input type is the union its parents forward. */
  addProcessor<In, Out>(name: string, supplier: ProcessorSupplier<In, Out>, parents: readonly string[], doc?: string): this {
    this.#checkParents(name, parents);
    const node: ProcessorNode = {
      kind: 'processor',
      name,
      parents: [...parents],
      supplier: supplier as unknown as ProcessorSupplier<never, unknown>,
      stores: [],
      ...(doc === undefined ? {} : { doc }),
    };
    this.#add(node);
    return this;
  }

  /**
   * Adds `parent` to the parents of an existing processor or sink: lets a shared stage defined before the
   * topologies that feed it (e.g. the guards every trigger passes) receive their output.
   */
  connect(parent: string, child: string): this {
    this.#checkParents(child, [parent]);
    const node = this.#nodes.get(child);
    if (node === undefined || node.kind === 'source') throw this.#error(`cannot connect "${parent}" to "${child}": not a processor or sink`);
    if (!node.parents.includes(parent)) (node.parents as string[]).push(parent);
    return this;
  }

  /**
   * Re-keys a stream: what `parents` forward (with its new key, e.g. sku instead of customerId) goes through
   * the internal topic `<applicationId>-<name>-repartition` and comes back out of the source node `name`, in
   * the task that owns the new key. Add processors with `name` as their parent.
   */
  addRepartition(name: string, parents: readonly string[]): this {
    const topic = repartitionTopic(this.#applicationId, name);
    this.addSink(`${name}.sink`, topic, parents);
    this.addSource(name, [topic]);
    this.#repartition.add(topic);
    return this;
  }

  addSink(name: string, topic: string, parents: readonly string[]): this {
    this.#checkParents(name, parents);
    this.#add({ kind: 'sink', name, topic, parents: [...parents] });
    return this;
  }

  /** Adds a store (once) and connects it to processors. Adding the same name with another spec is an error. */
  addStore<V>(spec: StoreSpec<V>, processors: readonly string[]): this {
    const existing = this.#stores.get(spec.name);
    if (existing && existing.spec !== (spec as StoreSpec<unknown>)) {
      throw this.#error(`store "${spec.name}" is already defined by another spec`);
    }
    const entry = existing ?? { spec: spec as StoreSpec<unknown>, processors: [] };
    for (const p of processors) {
      const node = this.#nodes.get(p);
      if (node?.kind !== 'processor') throw this.#error(`store "${spec.name}": "${p}" is not a processor`);
      if (!entry.processors.includes(p)) entry.processors.push(p);
      if (!node.stores.includes(spec.name)) (node.stores as string[]).push(spec.name);
    }
    this.#stores.set(spec.name, entry);
    return this;
  }

  /**
   * The source node reading `topic`, added (named after the topic) if no source reads it yet. Lets several
   * topologies composed into one builder share an input topic.
   */
  ensureSource(topic: string): string {
    const output = this.#sourceOutputs.get(topic);
    if (output !== undefined) return output;
    for (const node of this.#nodes.values()) {
      if (node.kind === 'source' && node.topics.includes(topic)) return node.name;
    }
    this.addSource(topic, [topic]);
    const staged = this.#sourceStage?.(topic, topic) ?? topic;
    this.#sourceOutputs.set(topic, staged);
    return staged;
  }

  /**
   * Puts a stage between every input topic that `ensureSource` adds and the topologies reading it (e.g. input
   * deduplication): called once per topic, with the source node's name; returns the node the readers of the
   * topic connect to (the source itself to leave a topic alone). So a topic read by several topologies passes
   * the stage once. Set it before the first `ensureSource`; sources added with `addSource` do not pass it.
   */
  setSourceStage(stage: SourceStage): this {
    if (this.#sourceOutputs.size > 0) throw this.#error('setSourceStage must be called before the first ensureSource');
    this.#sourceStage = stage;
    return this;
  }

  hasNode(name: string): boolean {
    return this.#nodes.has(name);
  }

  build(): Topology {
    const children = new Map<string, string[]>();
    for (const node of this.#nodes.values()) {
      children.set(node.name, []);
    }
    for (const node of this.#nodes.values()) {
      if (node.kind !== 'source') for (const p of node.parents) children.get(p)?.push(node.name);
    }
    for (const [name, kids] of children) {
      const node = this.#nodes.get(name);
      if (node?.kind === 'source' && kids.length === 0) throw this.#error(`source "${name}" has no processor reading it`);
    }
    const topicOwners = new Map<string, string>();
    for (const node of this.#nodes.values()) {
      if (node.kind !== 'source') continue;
      for (const t of node.topics) {
        const other = topicOwners.get(t);
        if (other !== undefined) throw this.#error(`topic "${t}" is read by two sources: "${other}" and "${node.name}"`);
        topicOwners.set(t, node.name);
      }
    }
    const nodes = new Map(this.#nodes);
    const stores = new Map(
      [...this.#stores].map(([k, v]) => [k, { spec: v.spec, processors: [...v.processors] as readonly string[] }] as const),
    );
    const frozenChildren = new Map([...children].map(([k, v]) => [k, Object.freeze([...v]) as readonly string[]] as const));
    const sourceTopics = [...topicOwners.keys()].sort();
    const sinkTopics = [...new Set([...nodes.values()].flatMap((n) => (n.kind === 'sink' ? [n.topic] : [])))].sort();
    const applicationId = this.#applicationId;
    return Object.freeze({
      applicationId,
      nodes,
      stores,
      children: frozenChildren,
      sourceTopics,
      sinkTopics,
      repartitionTopics: [...this.#repartition].sort(),
      describe: () => describeText(applicationId, nodes, frozenChildren, stores),
      describeMermaid: () => describeMermaid(nodes, stores),
    });
  }

  #add(node: TopologyNode): void {
    if (!NODE_NAME.test(node.name)) throw this.#error(`node name "${node.name}" must match ${String(NODE_NAME)}`);
    if (this.#nodes.has(node.name)) throw this.#error(`node "${node.name}" is defined twice`);
    this.#nodes.set(node.name, node);
  }

  #checkParents(name: string, parents: readonly string[]): void {
    if (parents.length === 0) throw this.#error(`"${name}" needs at least one parent`);
    for (const p of parents) {
      const parent = this.#nodes.get(p);
      if (!parent) throw this.#error(`"${name}": parent "${p}" is not defined (add parents first)`);
      if (parent.kind === 'sink') throw this.#error(`"${name}": parent "${p}" is a sink`);
    }
  }

  #error(message: string): KairosError {
    return new KairosError('KAIROS_ERR_TOPOLOGY', `topology ${this.#applicationId}: ${message}`);
  }
}

type StoreMap = ReadonlyMap<string, { readonly spec: StoreSpec<unknown>; readonly processors: readonly string[] }>;

function describeText(
  applicationId: string,
  nodes: ReadonlyMap<string, TopologyNode>,
  children: ReadonlyMap<string, readonly string[]>,
  stores: StoreMap,
): string {
  const lines = [`Topology: ${applicationId}`];
  for (const node of nodes.values()) {
    const kids = children.get(node.name) ?? [];
    const to = kids.length ? ` --> ${kids.join(', ')}` : '';
    if (node.kind === 'source') lines.push(`  Source: ${node.name} (topics: [${node.topics.join(', ')}])${to}`);
    else if (node.kind === 'processor') {
      lines.push(`  Processor: ${node.name} (stores: [${node.stores.join(', ')}])${to}`);
      lines.push(`    <-- ${node.parents.join(', ')}`);
      if (node.doc) lines.push(`    ${node.doc}`);
    } else lines.push(`  Sink: ${node.name} (topic: ${node.topic})`, `    <-- ${node.parents.join(', ')}`);
  }
  lines.push('Stores:');
  for (const [name, { spec }] of stores) {
    const extra =
      spec.kind === 'window' ? `, window ${spec.windowSizeMs} ms, retention ${spec.retentionMs} ms` : spec.kind === 'session' ? `, retention ${spec.retentionMs} ms` : '';
    const ttl = spec.ttlMs === undefined ? '' : `, ttl ${spec.ttlMs} ms`;
    const changelog = spec.changelog === false ? ', no changelog' : `, changelog ${applicationId}-${name}-changelog`;
    lines.push(`  ${name}: ${spec.kind}, codec ${spec.codec.name}${extra}${ttl}${changelog}`);
  }
  return lines.join('\n') + '\n';
}

function describeMermaid(nodes: ReadonlyMap<string, TopologyNode>, stores: StoreMap): string {
  const id = (s: string): string => s.replace(/[^A-Za-z0-9_]/g, '_');
  const lines = ['flowchart LR'];
  const topics = new Set<string>();
  for (const node of nodes.values()) {
    if (node.kind === 'source') {
      lines.push(`  ${id('n_' + node.name)}[/"${node.name}"/]`);
      for (const t of node.topics) {
        topics.add(t);
        lines.push(`  ${id('t_' + t)} --> ${id('n_' + node.name)}`);
      }
    } else if (node.kind === 'processor') {
      lines.push(`  ${id('n_' + node.name)}["${node.name}"]`);
      for (const p of node.parents) lines.push(`  ${id('n_' + p)} --> ${id('n_' + node.name)}`);
    } else {
      lines.push(`  ${id('n_' + node.name)}[\\"${node.name}"\\]`);
      for (const p of node.parents) lines.push(`  ${id('n_' + p)} --> ${id('n_' + node.name)}`);
      topics.add(node.topic);
      lines.push(`  ${id('n_' + node.name)} --> ${id('t_' + node.topic)}`);
    }
  }
  for (const t of topics) lines.push(`  ${id('t_' + t)}(["${t}"])`);
  for (const [name, { processors }] of stores) {
    lines.push(`  ${id('s_' + name)}[("${name}")]`);
    for (const p of processors) lines.push(`  ${id('n_' + p)} -.- ${id('s_' + name)}`);
  }
  return lines.join('\n') + '\n';
}
