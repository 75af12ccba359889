import { test } from 'node:test';
import assert from 'node:assert/strict';
import avro from 'avsc';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { TOPICS, type TopicName, type TopicValue } from '../../schemas/contract.js';
import { isKairosError } from '../../src/errors.js';
import { toAvro } from '../../src/serde/avro-value.js';
import { AvroSerde, JsonSerde, avroSchemaText, scanAvro, valueSubject, type DecodeResult, type TopicSerde } from '../../src/kafka/serde.js';
import { dlqMessage, dlqTopic, errorsHeader, MAX_ERROR_HEADER_BYTES } from '../../src/kafka/dlq.js';
import { startSchemaRegistry } from '../support/schema-registry-server.js';
import { sampleOf } from '../support/samples.js';

/** One valid value per topic, using optional fields. */
const samples = Object.fromEntries((Object.keys(TOPICS) as TopicName[]).map((t) => [t, sampleOf(t)])) as { [T in TopicName]: TopicValue<T> };

const topics = Object.keys(TOPICS) as TopicName[];
const keyOf = (topic: TopicName): Buffer => Buffer.from(String((samples[topic] as Record<string, unknown>)[TOPICS[topic].keyField]));
const basket = samples['shop.basket.v1'];

function failed(r: DecodeResult): { reason: string; paths: string[]; retriable: boolean } {
  assert.equal(r.ok, false, `expected a failure, got ${JSON.stringify(r)}`);
  return r.ok ? { reason: '', paths: [], retriable: false } : { reason: r.reason, paths: r.errors.map((e) => e.path).sort(), retriable: r.retriable };
}

async function assertRoundTrips(serde: TopicSerde, check?: (topic: TopicName, bytes: Buffer) => void): Promise<void> {
  for (const topic of topics) {
    const bytes = await serde.encode(topic, samples[topic]);
    check?.(topic, bytes);
    const r = await serde.decode(topic, keyOf(topic), bytes);
    assert.ok(r.ok, `${topic}: ${JSON.stringify(r)}`);
    assert.equal(r.key, keyOf(topic).toString());
    assert.deepEqual(r.value, samples[topic], topic);
    assert.equal(r.timestamp, (samples[topic] as Record<string, unknown>)[TOPICS[topic].timestampField], topic);
  }
}

/** The failures both formats share: key, tombstone, contract, key mismatch. */
async function assertSharedRejections(serde: TopicSerde): Promise<void> {
  const value = await serde.encode('shop.basket.v1', basket);
  assert.deepEqual(failed(await serde.decode('shop.basket.v1', null, value)), { reason: 'no-key', paths: ['/key'], retriable: false });
  assert.deepEqual(failed(await serde.decode('shop.basket.v1', Buffer.alloc(0), value)), { reason: 'no-key', paths: ['/key'], retriable: false });
  assert.deepEqual(failed(await serde.decode('shop.basket.v1', Buffer.from([0xc3, 0x28]), value)), { reason: 'no-key', paths: ['/key'], retriable: false });
  assert.deepEqual(failed(await serde.decode('shop.basket.v1', Buffer.from('c2'), value)), { reason: 'key-mismatch', paths: ['/key'], retriable: false });
  const catalog = await serde.encode('shop.catalog.v1', samples['shop.catalog.v1']);
  assert.equal(failed(await serde.decode('shop.catalog.v1', Buffer.from('c1'), catalog)).reason, 'key-mismatch', 'catalog is keyed by sku');

  assert.deepEqual(failed(await serde.decode('shop.basket.v1', Buffer.from('c1'), null)), { reason: 'tombstone-not-allowed', paths: ['/value'], retriable: false });
  assert.deepEqual(await serde.decode('crm.customers.v1', Buffer.from('c1'), null), { ok: true, key: 'c1', value: null, timestamp: undefined });
  assert.equal(failed(await serde.decode('crm.customers.v1', null, null)).reason, 'no-key', 'a tombstone needs its key');

  await assert.rejects(serde.encode('shop.basket.v1', { ...basket, sku: undefined }), (err: unknown) => {
    assert.ok(isKairosError(err, 'KAIROS_ERR_SERDE'), String(err));
    assert.match(err.message, /\/sku: required for ITEM_ADDED/);
    return true;
  });
  await assert.rejects(serde.encode('shop.basket.v1', { ...basket, colour: 'red', occurredAt: -1 }), (err: unknown) => {
    assert.ok(isKairosError(err, 'KAIROS_ERR_SERDE'));
    assert.match(err.message, /\/colour/);
    assert.match(err.message, /\/occurredAt/);
    return true;
  });
  await assert.rejects(serde.encode('crm.customers.v1', null), (err: unknown) => isKairosError(err, 'KAIROS_ERR_SERDE'));
}

test('JsonSerde: a valid value of every topic round-trips with its key and event time', async () => {
  const serde = new JsonSerde();
  await assertRoundTrips(serde, (topic, bytes) => assert.deepEqual(JSON.parse(bytes.toString('utf8')), samples[topic]));
});

test('JsonSerde: rejects a missing key, tombstones where not allowed, invalid values and key mismatches, with reasons and paths', async () => {
  await assertSharedRejections(new JsonSerde());
});

test('JsonSerde: rejects bytes that are not UTF-8 JSON and reports every bad field of an invalid value', async () => {
  const serde = new JsonSerde();
  const k = Buffer.from('c1');
  assert.deepEqual(failed(await serde.decode('shop.basket.v1', k, Buffer.from('{"eventId": '))), { reason: 'not-json', paths: ['/value'], retriable: false });
  assert.equal(failed(await serde.decode('shop.basket.v1', k, Buffer.from([0xff, 0xfe, 0x7b]))).reason, 'not-json');
  assert.equal(failed(await serde.decode('shop.basket.v1', k, Buffer.alloc(0))).reason, 'not-json');

  const bad = { eventId: '', customerId: 'c1', occurredAt: -5, type: 'ITEM_DELETED', quantity: 1.5, unitPrice: { amount: 100, currency: 'euro' }, colour: 'red' };
  assert.deepEqual(failed(await serde.decode('shop.basket.v1', k, Buffer.from(JSON.stringify(bad)))), {
    reason: 'invalid',
    paths: ['/value/colour', '/value/eventId', '/value/occurredAt', '/value/quantity', '/value/type', '/value/unitPrice/currency'],
    retriable: false,
  });
  const noSku = { eventId: 'e', customerId: 'c1', occurredAt: 1, type: 'ITEM_ADDED' };
  assert.deepEqual(failed(await serde.decode('shop.basket.v1', k, Buffer.from(JSON.stringify(noSku)))).paths, ['/value/sku']);
  assert.deepEqual(failed(await serde.decode('shop.basket.v1', k, Buffer.from('[1,2]'))), { reason: 'invalid', paths: ['/value'], retriable: false });
  assert.deepEqual(failed(await serde.decode('shop.basket.v1', k, Buffer.from('null'))).reason, 'invalid', 'JSON null is not a tombstone');
});

test('Avro serde via the official @kafkajs/confluent-schema-registry client against a local server speaking the Schema Registry REST API', async (t) => {
  const server = await startSchemaRegistry();
  t.after(() => server.close());
  const serde = new AvroSerde({ registry: { host: server.url }, register: true });
  const ids = await serde.init();

  await t.test('init registers every topic under <topic>-value (TopicNameStrategy) and remembers the ids', async () => {
    assert.deepEqual([...server.subjects().keys()].sort(), topics.map(valueSubject).sort());
    assert.equal(new Set(ids.values()).size, topics.length, 'one id per schema');
    for (const topic of topics) {
      const [v1, ...more] = server.subjects().get(valueSubject(topic)) ?? [];
      assert.equal(more.length, 0);
      assert.equal(v1?.id, ids.get(topic));
      assert.deepEqual(JSON.parse(v1?.schema ?? 'null'), JSON.parse(avroSchemaText(topic)), 'the generated schema is what was registered');
    }
    // The client checks the subject's compatibility, registers, and sets the level on first registration.
    const calls = new Set(server.requests().map((r) => `${r.method} ${r.path.replace(/\/subjects\/[^/]+|\/config\/[^/]+/, (m) => m.replace(/[^/]+$/, ':subject'))}`));
    assert.deepEqual([...calls].sort(), ['GET /config/:subject', 'POST /subjects/:subject/versions', 'PUT /config/:subject']);

    // The same schema registered again (by another instance) keeps its id and adds no version.
    const again = await new AvroSerde({ registry: { host: server.url }, register: true }).init();
    assert.deepEqual(again, ids);
    assert.ok([...server.subjects().values()].every((vs) => vs.length === 1));
    // Without register, init looks the ids up (POST /subjects/:subject) and fetches the schemas once.
    const lookedUp = await new AvroSerde({ registry: { host: server.url } }).init();
    assert.deepEqual(lookedUp, ids);
    assert.ok(server.requests().some((r) => r.method === 'POST' && r.path === `/subjects/${valueSubject('shop.basket.v1')}` && r.status === 200));
  });

  await t.test('a valid value of every topic round-trips; the bytes are magic 0 + the 4-byte schema id + Avro', async () => {
    await assertRoundTrips(serde, (topic, bytes) => {
      assert.equal(bytes[0], 0);
      assert.equal(bytes.readInt32BE(1), ids.get(topic));
    });
    // A fresh client (empty cache) fetches each writer schema by id (GET /schemas/ids/:id) and reads the same values.
    const reader = new AvroSerde({ registry: { host: server.url } });
    for (const topic of topics) {
      const r = await reader.decode(topic, keyOf(topic), await serde.encode(topic, samples[topic]));
      assert.ok(r.ok, topic);
      assert.deepEqual(r.value, samples[topic]);
    }
    assert.ok(server.requests().some((r) => r.method === 'GET' && r.path === `/schemas/ids/${ids.get('shop.orders.v1')}` && r.status === 200));
  });

  await t.test('rejects a missing key, tombstones where not allowed, invalid values and key mismatches, with reasons and paths', async () => {
    await assertSharedRejections(serde);
  });

  await t.test('rejects garbage bytes (bad-avro), unknown or foreign schema ids (unknown-schema) and contract violations (invalid)', async () => {
    const k = Buffer.from('c1');
    const basketId = ids.get('shop.basket.v1') ?? 0;
    const good = await serde.encode('shop.basket.v1', basket);
    const header = (id: number) => {
      const h = Buffer.alloc(5);
      h.writeInt32BE(id, 1);
      return h;
    };
    for (const garbage of [Buffer.from('hello world'), Buffer.from(JSON.stringify(basket)), Buffer.from([0, 0, 0]), Buffer.alloc(0)]) {
      assert.deepEqual(failed(await serde.decode('shop.basket.v1', k, garbage)), { reason: 'bad-avro', paths: ['/value'], retriable: false }, garbage.toString('hex'));
    }
    assert.equal(failed(await serde.decode('shop.basket.v1', k, good.subarray(0, good.length - 3))).reason, 'bad-avro', 'truncated');
    assert.equal(failed(await serde.decode('shop.basket.v1', k, Buffer.concat([good, Buffer.from([0])]))).reason, 'bad-avro', 'trailing data');
    assert.equal(failed(await serde.decode('shop.basket.v1', k, Buffer.concat([header(basketId), Buffer.from([0xff, 0xff, 0xff])]))).reason, 'bad-avro');

    assert.deepEqual(failed(await serde.decode('shop.basket.v1', k, Buffer.concat([header(9999), good.subarray(5)]))), { reason: 'unknown-schema', paths: ['/value'], retriable: false });
    const profile = await serde.encode('crm.customers.v1', samples['crm.customers.v1']);
    const foreign = await serde.decode('shop.basket.v1', k, profile);
    assert.equal(failed(foreign).reason, 'unknown-schema');
    assert.match(foreign.ok ? '' : (foreign.errors[0]?.message ?? ''), /io\.kairos\.v1\.CustomerProfile, not a version of io\.kairos\.v1\.BasketEvent/);

    // Valid Avro that breaks the contract: written with the registered schema by another producer.
    const raw = (topic: TopicName, value: unknown) => serde.registry.encode(ids.get(topic) ?? 0, toAvro(TOPICS[topic].schema, value));
    const noSku = await raw('shop.basket.v1', { eventId: 'e', customerId: 'c1', occurredAt: 1, type: 'ITEM_ADDED' });
    assert.deepEqual(failed(await serde.decode('shop.basket.v1', k, noSku)), { reason: 'invalid', paths: ['/value/sku'], retriable: false });
    const badFields = await raw('shop.basket.v1', { ...basket, eventId: '', unitPrice: { amount: 1, currency: 'euro' } });
    assert.deepEqual(failed(await serde.decode('shop.basket.v1', k, badFields)).paths, ['/value/eventId', '/value/unitPrice/currency']);
    const badJson = await serde.registry.encode(ids.get('crm.triggers.v1') ?? 0, { ...(toAvro(TOPICS['crm.triggers.v1'].schema, samples['crm.triggers.v1']) as object), payload: '{not json' });
    assert.deepEqual(failed(await serde.decode('crm.triggers.v1', k, badJson)), { reason: 'invalid', paths: ['/value'], retriable: false });
  });

  await t.test('reads a newer compatible writer schema registered under the subject, and the server refuses an incompatible one', async () => {
    const subject = valueSubject('shop.pageviews.v1');
    const v1 = JSON.parse(avroSchemaText('shop.pageviews.v1')) as { fields: unknown[] };
    const v2 = { ...v1, fields: [...v1.fields, { name: 'referrer', type: ['null', 'string'], default: null }] };
    const { id: v2Id } = await serde.registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(v2) }, { subject });
    assert.notEqual(v2Id, ids.get('shop.pageviews.v1'));
    assert.deepEqual(server.subjects().get(subject)?.map((v) => v.version), [1, 2]);
    const bytes = await serde.registry.encode(v2Id, { ...(toAvro(TOPICS['shop.pageviews.v1'].schema, samples['shop.pageviews.v1']) as object), referrer: 'newsletter' });
    const r = await serde.decode('shop.pageviews.v1', Buffer.from('c1'), bytes);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.value, samples['shop.pageviews.v1'], 'fields the contract does not know are dropped');

    const v3 = { ...v1, fields: [...v1.fields, { name: 'mandatory', type: 'string' }] };
    await assert.rejects(serde.registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(v3) }, { subject }), /incompatible/);
  });

  await t.test('a record claiming a huge array fails fast as bad-avro instead of allocating it', async () => {
    const id = ids.get('crm.customers.v1') ?? 0;
    // customerId "c1", updatedAt 1, timezone null, locale null, consents, then pushTokens: a block of 200 million items.
    const varLong = (n: number): number[] => {
      const out: number[] = [];
      for (let z = n * 2; ; z = Math.floor(z / 128)) {
        if (z < 128) return [...out, z];
        out.push((z % 128) | 0x80);
      }
    };
    const body = Buffer.from([4, 0x63, 0x31, 2, 0, 0, 1, 1, 1, ...varLong(200_000_000)]);
    const header = Buffer.alloc(5);
    header.writeInt32BE(id, 1);
    const started = Date.now();
    const r = await serde.decode('crm.customers.v1', Buffer.from('c1'), Buffer.concat([header, body]));
    assert.equal(failed(r).reason, 'bad-avro');
    assert.match(r.ok ? '' : (r.errors[0]?.message ?? ''), /claims 200000000 items/);
    assert.ok(Date.now() - started < 1000, 'fails in well under a second');
  });

  await t.test('decode never throws: random bytes, random bodies behind registered ids, mutated valid records', async () => {
    let seed = 42;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
    const valid = new Map<TopicName, Buffer>();
    for (const topic of topics) valid.set(topic, await serde.encode(topic, samples[topic]));
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 600; i++) {
      const topic = topics[i % topics.length] ?? 'shop.basket.v1';
      let value: Buffer;
      if (i % 3 === 0) {
        value = bytes(Math.floor(rnd() * 40));
      } else if (i % 3 === 1) {
        const header = Buffer.alloc(5);
        header.writeInt32BE(ids.get(rnd() < 0.75 ? topic : pick(topics)) ?? 1, 1);
        value = Buffer.concat([header, bytes(Math.floor(rnd() * 60))]);
      } else {
        value = Buffer.from(valid.get(topic) ?? Buffer.alloc(0));
        for (let m = 1 + Math.floor(rnd() * 3); m > 0; m--) value[5 + Math.floor(rnd() * (value.length - 5))] = Math.floor(rnd() * 256);
      }
      const r = await serde.decode(topic, keyOf(topic), value);
      const outcome = r.ok ? 'ok' : r.reason;
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    for (const expected of ['bad-avro', 'invalid', 'unknown-schema']) assert.ok((outcomes.get(expected) ?? 0) > 0, `${expected} in ${JSON.stringify([...outcomes])}`);
    assert.ok(!outcomes.has('registry-unavailable'));
  });

  await t.test('a registry outage is registry-unavailable and retriable, not the record’s fault', async () => {
    const bytes = await serde.encode('shop.orders.v1', samples['shop.orders.v1']);
    const fresh = new AvroSerde({ registry: new SchemaRegistry({ host: server.url, retry: { retries: 0 } }) });
    server.failWith(503);
    try {
      assert.deepEqual(failed(await fresh.decode('shop.orders.v1', Buffer.from('c1'), bytes)), { reason: 'registry-unavailable', paths: ['/value'], retriable: true });
    } finally {
      server.failWith(null);
    }
    assert.ok((await fresh.decode('shop.orders.v1', Buffer.from('c1'), bytes)).ok, 'decodes once the registry answers');
    // Without register, an unregistered subject is a configuration error naming it.
    const other = await startSchemaRegistry();
    try {
      await assert.rejects(new AvroSerde({ registry: { host: other.url }, topics: ['shop.basket.v1'] }).init(), (err: unknown) => {
        assert.ok(isKairosError(err, 'KAIROS_ERR_CONFIG'), String(err));
        assert.match(err.message, /shop\.basket\.v1-value/);
        return true;
      });
    } finally {
      await other.close();
    }
  });
});

test('scanAvro accepts exactly the bytes avsc writes for every topic', () => {
  for (const topic of topics) {
    const type = avro.Type.forSchema(JSON.parse(avroSchemaText(topic)) as avro.Schema);
    const buf = type.toBuffer(toAvro(TOPICS[topic].schema, samples[topic]));
    scanAvro(type, buf);
    assert.throws(() => scanAvro(type, buf.subarray(0, buf.length - 1)), topic);
    assert.throws(() => scanAvro(type, Buffer.concat([buf, Buffer.from([0])])), /trailing data/);
  }
});

test('dlqTopic and dlqMessage: the original bytes and headers are kept, the failure and origin are added as headers', () => {
  assert.equal(dlqTopic('shop.basket.v1'), 'shop.basket.v1.dlq');
  const key = Buffer.from('c1');
  const value = Buffer.from([0xff, 0x00, 0x7b]);
  const headers = { traceparent: Buffer.from('00-abc-01'), 'kairos-error-reason': 'stale', multi: [Buffer.from('a'), 'b'] };
  const errors = [{ path: '/value/sku', message: 'required for ITEM_ADDED' }];
  const m = dlqMessage({ topic: 'shop.basket.v1', partition: 3, offset: '9007199254740993', key, value, headers, timestamp: '1700000000000' }, { reason: 'invalid', errors }, 1_700_000_123_456);
  assert.equal(m.key, key, 'the same key bytes');
  assert.equal(m.value, value, 'the same value bytes');
  assert.equal(m.timestamp, '1700000123456');
  assert.deepEqual(m.headers, {
    traceparent: headers.traceparent,
    multi: headers.multi,
    'kairos-error-reason': 'invalid',
    'kairos-error': JSON.stringify(errors),
    'kairos-original-topic': 'shop.basket.v1',
    'kairos-original-partition': '3',
    'kairos-original-offset': '9007199254740993',
    'kairos-original-timestamp': '1700000000000',
    'kairos-failed-at': '1700000123456',
  });
  assert.deepEqual(headers['kairos-error-reason'], 'stale', 'the original headers object is not modified');

  const nulls = dlqMessage({ topic: 't', partition: 0, offset: '0', key: null, value: null, timestamp: 5 }, { reason: 'no-key', errors: [] }, 6);
  assert.equal(nulls.key, null);
  assert.equal(nulls.value, null);
  assert.equal(nulls.headers?.['kairos-error'], '[]');
  const proto = dlqMessage({ topic: 't', partition: 0, offset: '0', key: null, value: null, timestamp: 5, headers: JSON.parse('{"__proto__": "x"}') as Record<string, string> }, { reason: 'r', errors: [] }, 6);
  assert.equal(Object.getPrototypeOf(proto.headers), Object.prototype);
  assert.equal(Object.getOwnPropertyDescriptor(proto.headers, '__proto__')?.value, 'x');
});

test('the kairos-error header stays valid JSON within 8 KB however many and however long the errors', () => {
  const many = Array.from({ length: 2000 }, (_, i) => ({ path: `/value/items/${i}/sku`, message: `sku s${i} appears twice in the order — ünïcödé` }));
  const h = errorsHeader(many);
  assert.ok(Buffer.byteLength(h) <= MAX_ERROR_HEADER_BYTES, String(Buffer.byteLength(h)));
  const parsed = JSON.parse(h) as { path: string; message: string }[];
  assert.deepEqual(parsed[0], many[0]);
  const last = parsed[parsed.length - 1];
  assert.equal(last?.path, '');
  assert.equal(last?.message, `… ${many.length - (parsed.length - 1)} more errors`);

  const long = errorsHeader([{ path: '/value', message: 'x'.repeat(100_000) }]);
  assert.ok(Buffer.byteLength(long) <= MAX_ERROR_HEADER_BYTES);
  assert.equal((JSON.parse(long) as { message: string }[])[0]?.message.length, 1024);
});
