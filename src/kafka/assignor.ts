/**
 * The 'kairos-sticky' partition assigner (DESIGN §4: "Task = partition", "Queryable state").
 *
 * - Assigns by task: partition p of every co-partitioned subscribed topic goes to the same member, so a task's
 *   inputs are consumed together.
 * - Sticky: a member keeps the tasks whose state it reports holding locally, as far as balance allows
 *   (assigned task counts differ by at most one between members); the rest go to the least loaded member, in
 *   a deterministic order (member ids sorted), preferring a member that holds a standby copy.
 * - Every member advertises its API address in its subscription userData; the leader writes the full
 *   task → API address map into every member's assignment userData, so each instance knows where each task
 *   lives and can forward queries.
 *
 * Wire layout (both are JSON inside the userData bytes of Kafka's ConsumerProtocol v0 embedded schema, which is
 * what kafkajs' AssignerProtocol encodes; the protocol version stays 0 so other tools can parse the group):
 *
 *   subscription userData  {"v":1,"api":"host:port","owned":{"<topic>":[p,...]},"standby":{"<topic>":[p,...]}}
 *                          (api omitted when the instance has none; standby omitted when empty)
 *   assignment userData    {"v":1,"hosts":["host:port",...],
 *                           "groups":[{"topics":["<topic>",...],"owners":[hostIndex|-1,...]}]}
 *                          owners[p] is the index in hosts of the API address of the member that runs task p of
 *                          the group's topics; -1 when that member advertised no address or p is unassigned.
 *
 * Kafka client code stays in src/kafka/ (DESIGN §4); the rest of the engine only needs {@link assignTasks} and
 * {@link TaskRouting}.
 */
// Before kafkajs: it replaces a kafkajs module that kafkajs takes when it loads.
import './kafkajs-preload.js';
import { AssignerProtocol } from 'kafkajs';
import type { Assignment, Cluster, GroupMember, GroupMemberAssignment, Logger, PartitionAssigner } from 'kafkajs';
import { KairosError } from '../errors.js';

export const KAIROS_ASSIGNER_NAME = 'kairos-sticky';
/** Version of Kafka's ConsumerProtocol embedded schema written around our userData (kept at 0 on purpose). */
export const KAIROS_ASSIGNER_PROTOCOL_VERSION = 0;
/** Version of the JSON inside the userData bytes. */
export const KAIROS_USERDATA_VERSION = 1;

/** topic → partitions. */
export type TopicPartitionsMap = ReadonlyMap<string, readonly number[]>;

export interface KairosAssignerOptions {
  /** The API address ("host:port") this instance answers queries on; undefined when it serves none. */
  readonly apiAddress: () => string | undefined;
  /** topic → partitions whose task state this instance holds locally (active tasks it ran, or restored). */
  readonly ownedPartitions: () => TopicPartitionsMap;
  /** topic → partitions of which this instance keeps a warm standby copy; preferred for tasks nobody owns. */
  readonly standbyOwned?: () => TopicPartitionsMap;
}

/** What a member sends in its subscription userData. */
export interface MemberUserData {
  readonly version: number;
  readonly api: string | undefined;
  readonly owned: TopicPartitionsMap;
  readonly standby: TopicPartitionsMap;
}

/** Where each task runs, decoded from an assignment's userData. Addresses are null when the owner advertised none. */
export interface TaskRouting {
  readonly version: number;
  /**
   * Task (partition number) → API address of the member running it. When all subscribed topics are
   * co-partitioned (the normal case, checked at start-up) this covers everything; otherwise it is the routing of
   * the first group (most partitions first) and {@link TaskRouting.topics} must be used.
   */
  readonly tasks: ReadonlyMap<number, string | null>;
  /** Topic → partition → API address of the member running it; right also when topics are not co-partitioned. */
  readonly topics: ReadonlyMap<string, ReadonlyMap<number, string | null>>;
}

export interface TaskMember {
  readonly memberId: string;
  /** Tasks (partition numbers) whose state the member holds locally. */
  readonly owned: readonly number[];
  /** Tasks of which the member keeps a standby copy; a tie-breaker when placing tasks nobody keeps. */
  readonly standby?: readonly number[];
}

// ---------------------------------------------------------------------------------------------------------------
// Pure assignment

/**
 * Assigns tasks (partition numbers) to members.
 *
 * Balanced: with N tasks and M members every member gets ⌊N/M⌋ or ⌈N/M⌉ tasks. Sticky: a member keeps the tasks
 * it owns, lowest partition first, as long as that stays within balance; a task claimed by several members goes
 * to the claimant that has kept the fewest so far (then lowest member id). Remaining tasks, in ascending order, go
 * to a member with room: first the tasks some member keeps a standby copy of (to the least loaded such member with
 * room), then the others (to the least loaded member); ties by member id. The result does not depend on the order of `members`, `owned` or `partitions`.
 *
 * Every member appears in the result (possibly with no task); partitions are sorted ascending.
 */
export function assignTasks(members: readonly TaskMember[], partitions: readonly number[]): Map<string, number[]> {
  const ids = [...new Set(members.map((m) => m.memberId))].sort(compareStrings);
  const result = new Map<string, number[]>(ids.map((id) => [id, []]));
  if (ids.length === 0) return result;

  const owners = new Map<number, string[]>(); // task → members claiming it, id order
  const standbys = new Map<number, Set<string>>();
  const seen = new Set<string>();
  for (const m of [...members].sort((a, b) => compareStrings(a.memberId, b.memberId))) {
    if (seen.has(m.memberId)) continue; // a duplicate member id: the first entry (in id order) wins
    seen.add(m.memberId);
    for (const p of new Set(m.owned)) push(owners, p, m.memberId);
    for (const p of new Set(m.standby ?? [])) {
      let s = standbys.get(p);
      if (!s) standbys.set(p, (s = new Set()));
      s.add(m.memberId);
    }
  }

  const tasks = [...new Set(partitions)].sort((a, b) => a - b);
  const base = Math.floor(tasks.length / ids.length);
  const extra = tasks.length % ids.length; // how many members get base + 1
  let big = 0; // members already at base + 1
  const load = (id: string): number => (result.get(id) as number[]).length;
  const hasRoom = (id: string): boolean => load(id) < base || (load(id) === base && big < extra);
  const give = (id: string, p: number): void => {
    const list = result.get(id) as number[];
    list.push(p);
    if (list.length === base + 1) big++;
  };
  const leastLoaded = (candidates: readonly string[]): string | undefined => {
    let best: string | undefined;
    for (const id of candidates) if (hasRoom(id) && (best === undefined || load(id) < load(best))) best = id;
    return best; // candidates are in id order, so ties go to the lowest id
  };

  // 1. Sticky: owners keep their tasks within balance.
  const unplaced: number[] = [];
  for (const p of tasks) {
    const claimant = leastLoaded(owners.get(p) ?? []);
    if (claimant === undefined) unplaced.push(p);
    else give(claimant, p);
  }
  // 2. The rest: standby holders first, then the least loaded. A member with room always exists (see the
  //    counting argument: while tasks remain, some member is below base, or fewer than `extra` are at base + 1).
  // Tasks with a standby holder are placed first, so a standby holder's room is not used up by other tasks.
  const withStandby = unplaced.filter((p) => standbys.has(p));
  const withoutStandby = unplaced.filter((p) => !standbys.has(p));
  for (const p of [...withStandby, ...withoutStandby]) {
    const standby = standbys.get(p);
    const target = (standby && leastLoaded(ids.filter((id) => standby.has(id)))) ?? leastLoaded(ids);
    if (target === undefined) throw new Error(`assignTasks: no member with room for task ${p}`); // unreachable
    give(target, p);
  }
  for (const list of result.values()) list.sort((a, b) => a - b);
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// userData codecs

export function encodeMemberUserData(data: {
  readonly api: string | undefined;
  readonly owned: TopicPartitionsMap;
  readonly standby?: TopicPartitionsMap;
}): Buffer {
  const json: { v: number; api?: string; owned: Record<string, number[]>; standby?: Record<string, number[]> } = {
    v: KAIROS_USERDATA_VERSION,
    owned: mapToRecord(data.owned),
  };
  if (data.api !== undefined && data.api !== '') json.api = data.api;
  if (data.standby && data.standby.size > 0) json.standby = mapToRecord(data.standby);
  return Buffer.from(JSON.stringify(json), 'utf8');
}

/**
 * Decodes a subscription's userData. Throws KAIROS_ERR_DECODE when it is not Kairos JSON; fields this version
 * does not understand are ignored, so newer members (v > 1) that keep `api` and `owned` are still understood.
 */
export function decodeMemberUserData(buf: Buffer): MemberUserData {
  const json = parseJsonObject(buf, 'member userData');
  const version = json['v'];
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw decodeError('member userData has no valid version', { v: version });
  }
  const api = json['api'];
  if (api !== undefined && typeof api !== 'string') throw decodeError('member userData: api is not a string', { api });
  return {
    version,
    api: api === '' ? undefined : api,
    owned: recordToMap(json['owned'], 'owned'),
    standby: recordToMap(json['standby'], 'standby'),
  };
}

interface RoutingGroupJson {
  topics: string[];
  owners: number[];
}

function encodeAssignmentUserData(groups: readonly { topics: readonly string[]; owners: readonly (string | undefined)[] }[]): Buffer {
  const hosts = [...new Set(groups.flatMap((g) => g.owners).filter((a): a is string => a !== undefined))].sort(compareStrings);
  const index = new Map(hosts.map((h, i) => [h, i]));
  const json: { v: number; hosts: string[]; groups: RoutingGroupJson[] } = {
    v: KAIROS_USERDATA_VERSION,
    hosts,
    groups: groups.map((g) => ({
      topics: [...g.topics],
      owners: Array.from(g.owners, (a) => (a === undefined ? -1 : (index.get(a) ?? -1))),
    })),
  };
  return Buffer.from(JSON.stringify(json), 'utf8');
}

/**
 * Decodes the routing the leader put in an assignment's userData (the `userData` of
 * `AssignerProtocol.MemberAssignment.decode(...)`). Returns undefined for empty userData (an assignment made by
 * another assigner); throws KAIROS_ERR_DECODE when it is malformed.
 */
export function decodeAssignmentUserData(buf: Buffer): TaskRouting | undefined {
  if (buf.length === 0) return undefined;
  const json = parseJsonObject(buf, 'assignment userData');
  const version = json['v'];
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw decodeError('assignment userData has no valid version', { v: version });
  }
  const hosts = json['hosts'];
  if (!Array.isArray(hosts) || !hosts.every((h): h is string => typeof h === 'string')) {
    throw decodeError('assignment userData: hosts is not a string array', {});
  }
  const groups = json['groups'];
  if (!Array.isArray(groups)) throw decodeError('assignment userData: groups is not an array', {});
  const topics = new Map<string, Map<number, string | null>>();
  let tasks: Map<number, string | null> | undefined;
  for (const g of groups) {
    if (!isRecord(g)) throw decodeError('assignment userData: a group is not an object', {});
    const gTopics = g['topics'];
    const gOwners = g['owners'];
    if (!Array.isArray(gTopics) || !gTopics.every((t): t is string => typeof t === 'string')) {
      throw decodeError('assignment userData: group topics is not a string array', {});
    }
    if (!Array.isArray(gOwners) || !gOwners.every((o): o is number => Number.isInteger(o))) {
      throw decodeError('assignment userData: group owners is not an integer array', {});
    }
    const byTask = new Map<number, string | null>();
    gOwners.forEach((o, p) => byTask.set(p, o >= 0 && o < hosts.length ? (hosts[o] as string) : null));
    tasks ??= byTask;
    for (const t of gTopics) topics.set(t, byTask);
  }
  return { version, tasks: tasks ?? new Map(), topics };
}

/**
 * Decodes a whole member assignment (e.g. a `memberAssignment` from `consumer.describeGroup()`): the kafkajs
 * topic → partitions assignment and the Kairos routing. Returns null for an empty buffer.
 */
export function decodeMemberAssignment(buf: Buffer): { assignment: Assignment; routing: TaskRouting | undefined } | null {
  const decoded = AssignerProtocol.MemberAssignment.decode(buf);
  if (decoded === null) return null;
  // kafkajs returns null userData for a null bytes field (length -1) even though its type says Buffer.
  const userData = decoded.userData as Buffer | null;
  return { assignment: decoded.assignment, routing: userData ? decodeAssignmentUserData(userData) : undefined };
}

// ---------------------------------------------------------------------------------------------------------------
// kafkajs assigner

interface DecodedMember {
  readonly memberId: string;
  readonly topics: ReadonlySet<string>;
  readonly api: string | undefined;
  readonly owned: TopicPartitionsMap;
  readonly standby: TopicPartitionsMap;
}

/** A kafkajs PartitionAssigner named 'kairos-sticky'. Pass it as `partitionAssigners: [kairosStickyAssigner(...)]`. */
export function kairosStickyAssigner(opts: KairosAssignerOptions): PartitionAssigner {
  return ({ cluster, groupId, logger }) => ({
    name: KAIROS_ASSIGNER_NAME,
    version: KAIROS_ASSIGNER_PROTOCOL_VERSION,

    protocol({ topics }) {
      const userData = encodeMemberUserData({
        api: opts.apiAddress(),
        owned: opts.ownedPartitions(),
        standby: opts.standbyOwned?.() ?? new Map(),
      });
      return {
        name: KAIROS_ASSIGNER_NAME,
        metadata: AssignerProtocol.MemberMetadata.encode({ version: KAIROS_ASSIGNER_PROTOCOL_VERSION, topics, userData }),
      };
    },

    assign({ members, topics }): Promise<GroupMemberAssignment[]> {
      return Promise.resolve(assignGroup({ cluster, groupId, logger, members, topics }));
    },
  });
}

function assignGroup(args: {
  cluster: Pick<Cluster, 'findTopicPartitionMetadata'>;
  groupId: string;
  logger: Logger;
  members: readonly GroupMember[];
  topics: readonly string[];
}): GroupMemberAssignment[] {
  const { cluster, groupId, logger } = args;
  const members = args.members.map((m) => decodeMember(m, groupId, logger)).sort((a, b) => compareStrings(a.memberId, b.memberId));
  if (members.length === 0) return [];

  // Topics: the leader's subscription plus any a member subscribes to. kafkajs refreshed the leader's metadata
  // before calling assign; a topic it has no metadata for is skipped with a warning.
  const allTopics = [...new Set([...args.topics, ...members.flatMap((m) => [...m.topics])])].sort(compareStrings);
  // Group topics that can be assigned by task: same partition count and same subscribers.
  const groups = new Map<string, { count: number; subscribers: DecodedMember[]; topics: string[]; partitions: Set<number> }>();
  for (const topic of allTopics) {
    const partitions = cluster.findTopicPartitionMetadata(topic).map((m) => m.partitionId);
    if (partitions.length === 0) {
      logger.warn('kairos-sticky: no partition metadata for a subscribed topic; it is not assigned', { groupId, topic });
      continue;
    }
    // kafkajs' leader always passes its own topics; a member that sent no topics list is treated as subscribing all.
    const subscribers = members.filter((m) => m.topics.size === 0 || m.topics.has(topic));
    if (subscribers.length === 0) continue;
    const key = `${partitions.length}\u0000${subscribers.map((m) => m.memberId).join('\u0000')}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { count: partitions.length, subscribers, topics: [], partitions: new Set() }));
    g.topics.push(topic);
    for (const p of partitions) g.partitions.add(p);
  }
  const ordered = [...groups.values()].sort((a, b) => b.count - a.count || compareStrings(a.topics[0] as string, b.topics[0] as string));
  if (ordered.length > 1) {
    logger.warn('kairos-sticky: subscribed topics are not co-partitioned (or members subscribe different topics); assigning each group by task separately', {
      groupId,
      groups: ordered.map((g) => ({ topics: g.topics, partitions: g.count, members: g.subscribers.length })),
    });
  }

  const assignments = new Map<string, Record<string, number[]>>(members.map((m) => [m.memberId, {}]));
  const routing: { topics: string[]; owners: (string | undefined)[] }[] = [];
  const apiOf = new Map(members.map((m) => [m.memberId, m.api]));
  for (const g of ordered) {
    const partitions = [...g.partitions];
    const taskMembers = g.subscribers.map((m) => ({
      memberId: m.memberId,
      owned: unionFor(m.owned, g.topics),
      standby: unionFor(m.standby, g.topics),
    }));
    const byMember = assignTasks(taskMembers, partitions);
    const owners: (string | undefined)[] = new Array<string | undefined>(Math.max(-1, ...partitions) + 1).fill(undefined);
    for (const [memberId, tasks] of byMember) {
      if (tasks.length === 0) continue;
      const a = assignments.get(memberId) as Record<string, number[]>;
      for (const topic of g.topics) a[topic] = [...tasks];
      for (const p of tasks) owners[p] = apiOf.get(memberId);
    }
    routing.push({ topics: g.topics, owners });
  }

  const userData = encodeAssignmentUserData(routing);
  return members.map((m) => ({
    memberId: m.memberId,
    memberAssignment: AssignerProtocol.MemberAssignment.encode({
      version: KAIROS_ASSIGNER_PROTOCOL_VERSION,
      assignment: assignments.get(m.memberId) as Record<string, number[]>,
      userData,
    }),
  }));
}

/** Decodes a member's metadata; one member with bad userData must not block the group, so it just claims nothing. */
function decodeMember(m: GroupMember, groupId: string, logger: Logger): DecodedMember {
  const empty: DecodedMember = { memberId: m.memberId, topics: new Set(), api: undefined, owned: new Map(), standby: new Map() };
  let meta: ReturnType<typeof AssignerProtocol.MemberMetadata.decode>;
  try {
    meta = AssignerProtocol.MemberMetadata.decode(m.memberMetadata);
  } catch (cause) {
    logger.warn('kairos-sticky: undecodable member metadata; the member claims no tasks', { groupId, memberId: m.memberId, error: String(cause) });
    return empty;
  }
  if (meta === null) return empty;
  const topics = new Set(meta.topics);
  // kafkajs decodes a null bytes field as null although its type says Buffer.
  const userData = meta.userData as Buffer | null;
  if (!userData || userData.length === 0) {
    logger.warn('kairos-sticky: member sent no userData; it claims no tasks and advertises no API address', { groupId, memberId: m.memberId });
    return { ...empty, topics };
  }
  try {
    const d = decodeMemberUserData(userData);
    return { memberId: m.memberId, topics, api: d.api, owned: d.owned, standby: d.standby };
  } catch (cause) {
    logger.warn('kairos-sticky: undecodable member userData; the member claims no tasks', { groupId, memberId: m.memberId, error: String(cause) });
    return { ...empty, topics };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// helpers

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function unionFor(byTopic: TopicPartitionsMap, topics: readonly string[]): number[] {
  const s = new Set<number>();
  for (const t of topics) for (const p of byTopic.get(t) ?? []) s.add(p);
  return [...s].sort((a, b) => a - b);
}

function mapToRecord(map: TopicPartitionsMap): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const topic of [...map.keys()].sort(compareStrings)) {
    const partitions = [...new Set(map.get(topic) ?? [])].filter((p) => Number.isInteger(p) && p >= 0).sort((a, b) => a - b);
    if (partitions.length > 0) out[topic] = partitions;
  }
  return out;
}

function recordToMap(value: unknown, field: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  if (value === undefined) return out;
  if (!isRecord(value)) throw decodeError(`member userData: ${field} is not an object`, {});
  for (const [topic, partitions] of Object.entries(value)) {
    if (!Array.isArray(partitions) || !partitions.every((p): p is number => Number.isInteger(p) && (p as number) >= 0)) {
      throw decodeError(`member userData: ${field}.${topic} is not a partition array`, {});
    }
    out.set(topic, partitions);
  }
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseJsonObject(buf: Buffer, what: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(buf.toString('utf8'));
  } catch (cause) {
    throw new KairosError('KAIROS_ERR_DECODE', `${what} is not valid JSON`, { cause, details: { bytes: buf.length } });
  }
  if (!isRecord(json)) throw decodeError(`${what} is not a JSON object`, {});
  return json;
}

function decodeError(message: string, details: Record<string, unknown>): KairosError {
  return new KairosError('KAIROS_ERR_DECODE', message, { details });
}
