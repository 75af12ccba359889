import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from 'kafkajs';
import { TaskState } from '../../../src/engine/state/task-state.js';
import { MemoryChangelog } from '../../../src/engine/state/changelog.js';
import { OUTBOX_STORE, outboxCodec, outboxSpec, type OutboxGroup } from '../../../src/engine/state/outbox.js';
import { tempDir } from '../../helpers.js';

/** Every field an output can have: null and absent key, string and Buffer bytes, repeated headers, partition 0. */
const group: OutboxGroup = [
  {
    topic: 'crm.triggers.v1',
    message: {
      key: Buffer.from('C000001'),
      value: Buffer.from(JSON.stringify({ triggerId: 't-1', note: 'Größe — 🧥' })),
      timestamp: '1730678400000',
      headers: { 'kairos-trigger-type': Buffer.from('BASKET_PRICE_DROP'), repeated: [Buffer.from('a'), Buffer.from([0, 255, 1])], empty: Buffer.alloc(0) },
    },
  },
  { topic: 'crm.trigger-audit.v1', message: { key: null, value: Buffer.from('{"auditId":"a-1"}'), partition: 0 } },
  { topic: 'shop.basket.v1.dlq', message: { key: 'C000002', value: null, partition: 300, timestamp: '1' } },
  { topic: 'crm.triggers.v1', message: { value: 'text value', headers: { list: ['x', 'y'] } } },
];

/** Trigger-like JSON values, more than 4 KiB: a group that is stored deflated. */
const big: OutboxGroup = Array.from({ length: 60 }, (_, i) => ({
  topic: i % 2 === 0 ? 'crm.triggers.v1' : 'crm.trigger-audit.v1',
  message: {
    key: Buffer.from(`C${String(i).padStart(6, '0')}`),
    value: Buffer.from(JSON.stringify({ triggerId: `t-${i}`, type: 'BASKET_ABANDONED', customerId: `C${i}`, explanation: { rule: 'items in the basket, then no basket activity and no order for inactivityGap' }, payload: { items: [{ sku: `sku-${i}`, quantity: 1 }] } })),
    timestamp: String(1730678400000 + i),
    ...(i === 7 ? { headers: { h: Buffer.from([0, 1, 2]) } } : {}),
  },
}));

/** As kafkajs would see the message: bytes as Buffers (strings are sent as UTF-8), absent key as null. */
function normalized(m: Message): unknown {
  const bytes = (v: Buffer | string): string => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v).toString('hex');
  const headers = m.headers === undefined ? undefined : Object.fromEntries(Object.entries(m.headers).map(([k, v]) => [k, Array.isArray(v) ? v.map(bytes) : v === undefined ? undefined : bytes(v)]));
  return { key: m.key === null || m.key === undefined ? null : bytes(m.key), value: m.value === null ? null : bytes(m.value), timestamp: m.timestamp, partition: m.partition, headers };
}
const view = (g: OutboxGroup): unknown => g.map((e) => ({ topic: e.topic, message: normalized(e.message) }));

test('outbox codec: the binary form gives back every output (topic, key, value, timestamp, partition, headers and repeated headers) in order', () => {
  const bytes = outboxCodec.encode(group);
  assert.equal(bytes[0], 0x01);
  assert.deepEqual(view(outboxCodec.decode(bytes)), view(group));
  // Raw bytes, not base64 in JSON: about the outputs' own size.
  const payload = group.reduce((n, e) => n + Buffer.byteLength(e.message.value ?? '') + Buffer.byteLength(e.message.key ?? ''), 0);
  assert.ok(bytes.length < payload + 200, `${bytes.length} bytes for ${payload} bytes of keys and values`);
  assert.deepEqual(outboxCodec.decode(outboxCodec.encode([])), []);
});

test('outbox codec: a group of 4 KiB or more is deflated (marker 0x02), read back equal, and refused when cut short', () => {
  const bytes = outboxCodec.encode(big);
  assert.equal(bytes[0], 0x02);
  const payload = big.reduce((n, e) => n + (e.message.value as Buffer).length, 0);
  assert.ok(payload >= 4096 && bytes.length * 4 < payload, `${bytes.length} bytes for ${payload} bytes of values`);
  assert.deepEqual(view(outboxCodec.decode(bytes)), view(big));
  assert.throws(() => outboxCodec.decode(bytes.subarray(0, bytes.length - 10)));
  // Below 4 KiB the binary form stays as it is.
  assert.equal(outboxCodec.encode(big.slice(0, 2))[0], 0x01);
});

test('outbox codec: entries earlier versions wrote (JSON, base64 bytes; one output, or a group) are read', () => {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const single = { topic: 'crm.triggers.v1', key: b64('C1'), value: b64('{"triggerId":"t"}'), timestamp: '5', headers: { h: b64('v'), l: [b64('1'), b64('2')] } };
  const old = outboxCodec.decode(Buffer.from(JSON.stringify(single)));
  assert.deepEqual(view(old), [
    { topic: 'crm.triggers.v1', message: { key: Buffer.from('C1').toString('hex'), value: Buffer.from('{"triggerId":"t"}').toString('hex'), timestamp: '5', partition: undefined, headers: { h: Buffer.from('v').toString('hex'), l: ['31', '32'] } } },
  ]);
  const grouped = { topic: '', key: null, value: null, group: [single, { topic: 'crm.trigger-audit.v1', key: null, value: b64('{}'), partition: 2 }] };
  const both = outboxCodec.decode(Buffer.from(JSON.stringify(grouped)));
  assert.deepEqual(
    both.map((e) => [e.topic, e.message.key, e.message.partition]),
    [
      ['crm.triggers.v1', Buffer.from('C1'), undefined],
      ['crm.trigger-audit.v1', null, 2],
    ],
  );
});

test('outbox codec: a truncated or padded binary entry is refused, not read short', () => {
  const bytes = outboxCodec.encode(group);
  for (const cut of [2, 10, bytes.length - 1]) assert.throws(() => outboxCodec.decode(bytes.subarray(0, cut)), RangeError, `cut at ${cut}`);
  assert.throws(() => outboxCodec.decode(Buffer.concat([bytes, Buffer.from([0])])), /after its last output/);
});

test('real RocksDB and changelog: outbox groups (binary and deflated) committed by one owner are scanned back whole by the next (a restore from the changelog alone)', async () => {
  const t = tempDir();
  const changelog = new MemoryChangelog();
  try {
    const s1 = await TaskState.open({ dir: `${t.dir}/a`, taskId: '0_0', stores: [outboxSpec], changelog });
    s1.put(OUTBOX_STORE, '00000000001', group);
    s1.put(OUTBOX_STORE, '00000000002', big);
    await s1.commit();
    await s1.close();
    // Another machine: an empty directory, restored from the changelog.
    const s2 = await TaskState.open({ dir: `${t.dir}/b`, taskId: '0_0', stores: [outboxSpec] });
    for await (const batch of changelog.read('0_0')) await s2.restore(batch);
    const entries = await s2.scan(OUTBOX_STORE);
    assert.equal(entries.length, 2);
    assert.deepEqual(view(entries[0]?.value as OutboxGroup), view(group));
    assert.deepEqual(view(entries[1]?.value as OutboxGroup), view(big), 'the deflated group');
    await s2.close();
  } finally {
    t.remove();
  }
});
