import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AssignerProtocol } from 'kafkajs';
import type { Assigner, Cluster, GroupMember, Logger, PartitionMetadata } from 'kafkajs';
import {
  assignTasks,
  decodeAssignmentUserData,
  decodeMemberAssignment,
  decodeMemberUserData,
  encodeMemberUserData,
  kairosStickyAssigner,
  KAIROS_ASSIGNER_NAME,
  type TaskMember,
  type TopicPartitionsMap,
} from '../../src/kafka/assignor.js';
import { isKairosError } from '../../src/errors.js';

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

function assertBalancedCover(result: Map<string, number[]>, partitions: readonly number[]): void {
  const all = [...result.values()].flat().sort((a, b) => a - b);
  assert.deepEqual(all, [...new Set(partitions)].sort((a, b) => a - b), 'every partition assigned exactly once');
  const sizes = [...result.values()].map((l) => l.length);
  assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `balanced: ${JSON.stringify(sizes)}`);
}

const asObject = (m: Map<string, number[]>): Record<string, number[]> => Object.fromEntries(m);

// ------------------------------------------------------------------------------------------------ assignTasks

test('assignTasks: a fresh group is spread round-robin in member id order', () => {
  const members: TaskMember[] = [
    { memberId: 'b', owned: [] },
    { memberId: 'a', owned: [] },
    { memberId: 'c', owned: [] },
  ];
  const r = assignTasks(members, range(8));
  assert.deepEqual(asObject(r), { a: [0, 3, 6], b: [1, 4, 7], c: [2, 5] });
  assertBalancedCover(r, range(8));
});

test('assignTasks: balanced for many member/partition counts, also with skewed claims', () => {
  for (let m = 1; m <= 7; m++) {
    for (const n of [0, 1, 2, 5, 12, 13, 64]) {
      const members: TaskMember[] = range(m).map((i) => ({ memberId: `m${i}`, owned: i === 0 ? range(n) : [] }));
      const r = assignTasks(members, range(n));
      assert.equal(r.size, m, 'every member appears');
      assertBalancedCover(r, range(n));
    }
  }
});

test('assignTasks: more members than partitions leaves some members idle', () => {
  const r = assignTasks(
    ['a', 'b', 'c', 'd'].map((memberId) => ({ memberId, owned: [] })),
    [0, 1],
  );
  assert.deepEqual(asObject(r), { a: [0], b: [1], c: [], d: [] });
});

test('assignTasks: no members, no partitions', () => {
  assert.equal(assignTasks([], range(4)).size, 0);
  assert.deepEqual(asObject(assignTasks([{ memberId: 'a', owned: [1] }], [])), { a: [] });
});

test('assignTasks: deterministic whatever the input order', () => {
  const members: TaskMember[] = [
    { memberId: 'x', owned: [5, 1, 9] },
    { memberId: 'a', owned: [2, 3] },
    { memberId: 'm', owned: [9, 0] },
    { memberId: 'q', owned: [] },
  ];
  const partitions = range(12);
  const expected = asObject(assignTasks(members, partitions));
  for (let i = 0; i < 20; i++) {
    const shuffled = shuffle(members, i).map((m) => ({ ...m, owned: shuffle(m.owned, i + 1) }));
    assert.deepEqual(asObject(assignTasks(shuffled, shuffle(partitions, i + 2))), expected);
  }
});

test('assignTasks: sticky when a member leaves — survivors keep everything, only the leaver’s tasks move', () => {
  const before = assignTasks(['a', 'b', 'c'].map((memberId) => ({ memberId, owned: [] })), range(12));
  const after = assignTasks(
    ['a', 'c'].map((memberId) => ({ memberId, owned: before.get(memberId) ?? [] })),
    range(12),
  );
  assertBalancedCover(after, range(12));
  for (const id of ['a', 'c']) {
    const kept = before.get(id) ?? [];
    assert.ok(kept.every((p) => after.get(id)?.includes(p)), `${id} keeps its tasks`);
  }
  assert.deepEqual(asObject(after), { a: [0, 1, 3, 6, 7, 9], c: [2, 4, 5, 8, 10, 11] });
});

test('assignTasks: sticky when a member joins — the fewest tasks move to the newcomer', () => {
  const before = assignTasks(['a', 'b'].map((memberId) => ({ memberId, owned: [] })), range(12));
  const after = assignTasks(
    [
      { memberId: 'a', owned: before.get('a') ?? [] },
      { memberId: 'b', owned: before.get('b') ?? [] },
      { memberId: 'c', owned: [] },
    ],
    range(12),
  );
  assertBalancedCover(after, range(12));
  let moved = 0;
  for (const [id, tasks] of after) moved += tasks.filter((p) => !(before.get(id) ?? []).includes(p)).length;
  assert.equal(moved, 4, 'exactly the newcomer’s share moves');
  assert.deepEqual(after.get('c')?.length, 4);
  for (const id of ['a', 'b']) assert.ok((after.get(id) ?? []).every((p) => before.get(id)?.includes(p)));
});

test('assignTasks: a restarted member (new member id) gets its state back through its claims', () => {
  const r = assignTasks(
    [
      { memberId: 'a-new', owned: [1, 4] },
      { memberId: 'b', owned: [0, 2] },
      { memberId: 'c', owned: [3, 5] },
    ],
    range(6),
  );
  assert.deepEqual(asObject(r), { 'a-new': [1, 4], b: [0, 2], c: [3, 5] });
});

test('assignTasks: stickiness yields to balance; claims beyond the share are redistributed', () => {
  const r = assignTasks(
    [
      { memberId: 'a', owned: range(7) },
      { memberId: 'b', owned: [] },
    ],
    range(7),
  );
  assert.deepEqual(asObject(r), { a: [0, 1, 2, 3], b: [4, 5, 6] });
});

test('assignTasks: a task claimed by two members goes to the one that kept fewer, then lowest id', () => {
  const r = assignTasks(
    [
      { memberId: 'b', owned: [0, 1] },
      { memberId: 'a', owned: [1, 2] },
    ],
    range(4),
  );
  // 0 → b (only claimant); 1 → a (a kept 0 so far, b kept 1); 2 → a; 3 → b (least loaded).
  assert.deepEqual(asObject(r), { a: [1, 2], b: [0, 3] });
});

test('assignTasks: tasks nobody owns prefer a member with a standby copy', () => {
  const r = assignTasks(
    [
      { memberId: 'a', owned: [0] },
      { memberId: 'b', owned: [1] },
      { memberId: 'c', owned: [], standby: [3] },
    ],
    range(4),
  );
  assert.deepEqual(asObject(r), { a: [0, 2], b: [1], c: [3] });
});

test('assignTasks: property — balanced, complete, and each member keeps min(share, uncontested claims)', () => {
  let seed = 42;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let round = 0; round < 300; round++) {
    const n = Math.floor(rnd() * 40);
    const m = 1 + Math.floor(rnd() * 6);
    const owner = range(n).map(() => (rnd() < 0.8 ? Math.floor(rnd() * (m + 1)) : -1)); // m → owner left
    const members: TaskMember[] = range(m).map((i) => ({ memberId: `m${i}`, owned: range(n).filter((p) => owner[p] === i) }));
    const r = assignTasks(members, range(n));
    assertBalancedCover(r, range(n));
    const base = Math.floor(n / m);
    for (const mem of members) {
      const kept = (r.get(mem.memberId) ?? []).filter((p) => mem.owned.includes(p)).length;
      assert.ok(kept >= Math.min(base, mem.owned.length), `round ${round}: ${mem.memberId} kept ${kept}`);
    }
  }
});

// ------------------------------------------------------------------------------------------------ kafkajs level

interface Warn {
  message: string;
  extra: object | undefined;
}

function fakeLogger(warnings: Warn[]): Logger {
  const logger: Logger = {
    info: () => undefined,
    error: () => undefined,
    debug: () => undefined,
    warn: (message, extra) => void warnings.push({ message, extra }),
    namespace: () => logger,
    setLogLevel: () => undefined,
  };
  return logger;
}

function fakeCluster(partitionCounts: Record<string, number>): Cluster {
  const partial: Pick<Cluster, 'findTopicPartitionMetadata'> = {
    findTopicPartitionMetadata: (topic: string): PartitionMetadata[] =>
      range(partitionCounts[topic] ?? 0).map((partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 1, replicas: [1], isr: [1] })),
  };
  return partial as unknown as Cluster;
}

interface Instance {
  memberId: string;
  api: string | undefined;
  owned: TopicPartitionsMap;
  standby?: TopicPartitionsMap;
}

function makeAssigner(inst: Instance, cluster: Cluster, warnings: Warn[]): Assigner {
  return kairosStickyAssigner({
    apiAddress: () => inst.api,
    ownedPartitions: () => inst.owned,
    ...(inst.standby ? { standbyOwned: () => inst.standby as TopicPartitionsMap } : {}),
  })({ cluster, groupId: 'kairos-app', logger: fakeLogger(warnings) });
}

/** Runs a join/sync round the way kafkajs does: every member's protocol(), then the leader's assign(). */
async function rebalance(instances: Instance[], topics: string[], counts: Record<string, number>, warnings: Warn[] = []) {
  const cluster = fakeCluster(counts);
  const assigners = instances.map((i) => makeAssigner(i, cluster, warnings));
  const members: GroupMember[] = instances.map((inst, k) => {
    const state = (assigners[k] as Assigner).protocol({ topics });
    assert.equal(state.name, KAIROS_ASSIGNER_NAME);
    return { memberId: inst.memberId, memberMetadata: state.metadata };
  });
  const leader = assigners[0] as Assigner;
  const out = await leader.assign({ members, topics });
  return new Map(
    out.map(({ memberId, memberAssignment }) => {
      const decoded = AssignerProtocol.MemberAssignment.decode(memberAssignment);
      assert.ok(decoded);
      return [memberId, { assignment: decoded.assignment, routing: decodeAssignmentUserData(decoded.userData), raw: memberAssignment }];
    }),
  );
}

test('assigner: name, version and the subscription metadata layout', () => {
  const warnings: Warn[] = [];
  const assigner = makeAssigner(
    { memberId: 'a', api: '10.0.0.1:8080', owned: new Map([['orders', [3, 1]], ['empty', []]]), standby: new Map([['orders', [2]]]) },
    fakeCluster({}),
    warnings,
  );
  assert.equal(assigner.name, 'kairos-sticky');
  assert.equal(assigner.version, 0);
  const state = assigner.protocol({ topics: ['orders', 'carts'] });
  const meta = AssignerProtocol.MemberMetadata.decode(state.metadata);
  assert.ok(meta);
  assert.equal(meta.version, 0);
  assert.deepEqual(meta.topics, ['orders', 'carts']);
  assert.deepEqual(JSON.parse(meta.userData.toString('utf8')), { v: 1, api: '10.0.0.1:8080', owned: { orders: [1, 3] }, standby: { orders: [2] } });
  const back = decodeMemberUserData(meta.userData);
  assert.equal(back.api, '10.0.0.1:8080');
  assert.deepEqual([...back.owned], [['orders', [1, 3]]]);
  assert.deepEqual([...back.standby], [['orders', [2]]]);
});

test('assigner: member userData without an API address omits it', () => {
  const buf = encodeMemberUserData({ api: undefined, owned: new Map() });
  assert.deepEqual(JSON.parse(buf.toString('utf8')), { v: 1, owned: {} });
  assert.equal(decodeMemberUserData(buf).api, undefined);
});

test('assigner: co-partitioned topics give task p of every topic to one member, with routing for all', async () => {
  const instances: Instance[] = [
    { memberId: 'm-b', api: 'b:8080', owned: new Map() },
    { memberId: 'm-a', api: 'a:8080', owned: new Map() },
    { memberId: 'm-c', api: 'c:8080', owned: new Map() },
  ];
  const topics = ['orders', 'carts', 'catalog-by-customer'];
  const result = await rebalance(instances, topics, { orders: 6, carts: 6, 'catalog-by-customer': 6 });
  assert.deepEqual([...result.keys()].sort(), ['m-a', 'm-b', 'm-c']);
  const expected: Record<string, number[]> = { 'm-a': [0, 3], 'm-b': [1, 4], 'm-c': [2, 5] };
  for (const [memberId, { assignment }] of result) {
    for (const t of topics) assert.deepEqual(assignment[t], expected[memberId], `${memberId} ${t}`);
  }
  const routing = result.get('m-a')?.routing;
  assert.ok(routing);
  assert.equal(routing.version, 1);
  assert.deepEqual(
    [...routing.tasks],
    [
      [0, 'a:8080'],
      [1, 'b:8080'],
      [2, 'c:8080'],
      [3, 'a:8080'],
      [4, 'b:8080'],
      [5, 'c:8080'],
    ],
  );
  assert.deepEqual([...routing.topics.keys()].sort(), [...topics].sort());
  assert.equal(routing.topics.get('carts')?.get(4), 'b:8080');
  // Every member receives the same routing.
  for (const { routing: r } of result.values()) assert.deepEqual(r, routing);
  // The assignment userData layout.
  const raw = AssignerProtocol.MemberAssignment.decode(result.get('m-b')?.raw ?? Buffer.alloc(0));
  assert.ok(raw);
  assert.equal(raw.version, 0);
  assert.deepEqual(JSON.parse(raw.userData.toString('utf8')), {
    v: 1,
    hosts: ['a:8080', 'b:8080', 'c:8080'],
    groups: [{ topics: ['carts', 'catalog-by-customer', 'orders'], owners: [0, 1, 2, 0, 1, 2] }],
  });
});

test('assigner: owned partitions advertised in metadata keep tasks in place across a rebalance', async () => {
  const counts = { orders: 4, carts: 4 };
  const topics = ['orders', 'carts'];
  const round1 = await rebalance(
    [
      { memberId: 'a', api: 'a:1', owned: new Map() },
      { memberId: 'b', api: 'b:1', owned: new Map() },
    ],
    topics,
    counts,
  );
  const ownedOf = (id: string): TopicPartitionsMap => new Map(Object.entries(round1.get(id)?.assignment ?? {}));
  // b restarts with a new member id and reports the state it still has on disk; c joins empty.
  const round2 = await rebalance(
    [
      { memberId: 'c', api: 'c:1', owned: new Map() },
      { memberId: 'b2', api: 'b:1', owned: ownedOf('b') },
      { memberId: 'a', api: 'a:1', owned: ownedOf('a') },
    ],
    topics,
    counts,
  );
  const b = round1.get('b')?.assignment['orders'] ?? [];
  const b2 = round2.get('b2')?.assignment['orders'] ?? [];
  assert.ok(b2.length >= 1 && b2.every((p) => b.includes(p)), 'b keeps tasks it holds state for');
  const a = round1.get('a')?.assignment['orders'] ?? [];
  const a2 = round2.get('a')?.assignment['orders'] ?? [];
  assert.ok(a2.length >= 1 && a2.every((p) => a.includes(p)));
  const sizes = [...round2.values()].map((r) => (r.assignment['orders'] ?? []).length);
  assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1);
  for (const r of round2.values()) assert.deepEqual(r.assignment['carts'], r.assignment['orders']);
});

test('assigner: topics with different partition counts are assigned per group, with a warning', async () => {
  const warnings: Warn[] = [];
  const result = await rebalance(
    [
      { memberId: 'a', api: 'a:1', owned: new Map() },
      { memberId: 'b', api: undefined, owned: new Map() },
    ],
    ['orders', 'carts', 'catalog'],
    { orders: 4, carts: 4, catalog: 2 },
    warnings,
  );
  assert.ok(warnings.some((w) => w.message.includes('not co-partitioned')));
  assert.deepEqual(result.get('a')?.assignment, { carts: [0, 2], orders: [0, 2], catalog: [0] });
  assert.deepEqual(result.get('b')?.assignment, { carts: [1, 3], orders: [1, 3], catalog: [1] });
  const routing = result.get('b')?.routing;
  assert.ok(routing);
  // The larger group comes first; b advertised no API address.
  assert.deepEqual([...routing.tasks], [
    [0, 'a:1'],
    [1, null],
    [2, 'a:1'],
    [3, null],
  ]);
  assert.deepEqual([...(routing.topics.get('catalog') ?? [])], [
    [0, 'a:1'],
    [1, null],
  ]);
});

test('assigner: a member with undecodable userData still gets tasks, claims none, and is reported', async () => {
  const warnings: Warn[] = [];
  const cluster = fakeCluster({ orders: 3 });
  const good = makeAssigner({ memberId: 'a', api: 'a:1', owned: new Map([['orders', [0, 1, 2]]]) }, cluster, warnings);
  const members: GroupMember[] = [
    { memberId: 'a', memberMetadata: good.protocol({ topics: ['orders'] }).metadata },
    {
      memberId: 'z',
      memberMetadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics: ['orders'], userData: Buffer.from('not json') }),
    },
  ];
  const out = await good.assign({ members, topics: ['orders'] });
  const byId = new Map(out.map((o) => [o.memberId, decodeMemberAssignment(o.memberAssignment)]));
  assert.deepEqual(byId.get('a')?.assignment, { orders: [0, 1] });
  assert.deepEqual(byId.get('z')?.assignment, { orders: [2] });
  assert.equal(byId.get('z')?.routing?.tasks.get(2), null);
  assert.ok(warnings.some((w) => w.message.includes('undecodable member userData')));
});

test('assigner: no members, unknown topics', async () => {
  const warnings: Warn[] = [];
  const assigner = makeAssigner({ memberId: 'a', api: 'a:1', owned: new Map() }, fakeCluster({}), warnings);
  assert.deepEqual(await assigner.assign({ members: [], topics: ['orders'] }), []);
  const out = await assigner.assign({ members: [{ memberId: 'a', memberMetadata: assigner.protocol({ topics: ['gone'] }).metadata }], topics: ['gone'] });
  assert.equal(out.length, 1);
  assert.deepEqual(decodeMemberAssignment(out[0]?.memberAssignment ?? Buffer.alloc(0))?.assignment, {});
  assert.ok(warnings.some((w) => w.message.includes('no partition metadata')));
});

test('decodeAssignmentUserData: empty is undefined, malformed is KAIROS_ERR_DECODE', () => {
  assert.equal(decodeAssignmentUserData(Buffer.alloc(0)), undefined);
  for (const bad of ['nope', '[]', '{"v":0}', '{"v":1,"hosts":[1],"groups":[]}', '{"v":1,"hosts":[],"groups":[{"topics":["t"],"owners":["x"]}]}']) {
    assert.throws(
      () => decodeAssignmentUserData(Buffer.from(bad)),
      (e: unknown) => isKairosError(e, 'KAIROS_ERR_DECODE'),
      bad,
    );
  }
  assert.throws(
    () => decodeMemberUserData(Buffer.from('{"v":1,"owned":{"t":[-1]}}')),
    (e: unknown) => isKairosError(e, 'KAIROS_ERR_DECODE'),
  );
});

// ------------------------------------------------------------------------------------------------ helpers

function shuffle<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed + 1;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 16807) % 2147483647;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}
