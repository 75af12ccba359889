import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import {
  batchCrc32c,
  crc32c,
  fastProduceRequest,
  nativeCrc32cInUse,
  installProduceEncoding,
  kafkajsProduceModules,
  type ProduceRequestArgs,
  type ProduceRequestFactory,
} from '../../src/kafka/produce-encoding.js';
import { mulberry32 } from '../../src/util/prng.js';
import { startMockCluster } from '../../src/kafka/mock-cluster.js';
import { collect, produce, testKafka } from '../support/kafka.js';

const require = createRequire(import.meta.url);
// kafkajs' own modules, taken before anything installs the replacement (this file installs it last)
const { own, internals } = kafkajsProduceModules();
const kafkajsCrc32c = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (b: Buffer) => number;
const Long = internals.Long;
const fast = fastProduceRequest(own, internals);

const alphabets = ['abcdefghijklmnopqrstuvwxyz0123456789-_{}":,', 'äöüß€', 'ключ顧客', '😀'].map((a) => [...a]);

function randomString(rnd: () => number, max: number): string {
  const n = Math.floor(rnd() * max);
  let s = '';
  for (let i = 0; i < n; i++) {
    // mostly ASCII runs, some multi-byte characters
    const a = alphabets[rnd() < 0.9 ? 0 : 1 + Math.floor(rnd() * 3)]!;
    s += a[Math.floor(rnd() * a.length)];
  }
  return s;
}

function randomBytes(rnd: () => number, max: number): Buffer | string | null | undefined {
  const r = rnd();
  if (r < 0.05) return null;
  if (r < 0.08) return undefined;
  if (r < 0.5) return Buffer.from(randomString(rnd, max), 'utf8');
  return randomString(rnd, max);
}

function randomArgs(rnd: () => number): ProduceRequestArgs {
  const base = 1_733_000_000_000;
  const topics = 1 + Math.floor(rnd() * 3);
  const transactional = rnd() < 0.3;
  return {
    acks: rnd() < 0.5 ? -1 : 1,
    timeout: 30_000,
    ...(transactional ? { transactionalId: `kairos-${randomString(rnd, 12)}`, producerId: Long.fromValue(String(1000 + Math.floor(rnd() * 1e6))), producerEpoch: Math.floor(rnd() * 5) } : {}),
    topicData: Array.from({ length: topics }, (_, t) => ({
      topic: `kairos-${t}-${randomString(rnd, 30)}-changelog`,
      partitions: Array.from({ length: 1 + Math.floor(rnd() * 4) }, (_, p) => ({
        partition: p,
        ...(rnd() < 0.3 ? { firstSequence: Math.floor(rnd() * 1e6) } : {}),
        messages: Array.from({ length: Math.floor(rnd() * (rnd() < 0.05 ? 2000 : 40)) }, () => {
          const tr = rnd();
          // numbers and strings, missing ones, and different digit counts (kafkajs orders them as strings)
          const timestamp = tr < 0.1 ? undefined : tr < 0.15 ? 999_000 + Math.floor(rnd() * 2000) : tr < 0.5 ? base + Math.floor(rnd() * 1e9) : String(base + Math.floor(rnd() * 1e9));
          const hr = rnd();
          const headers =
            hr < 0.5
              ? undefined
              : hr < 0.6
                ? {}
                : Object.fromEntries(
                    Array.from({ length: 1 + Math.floor(rnd() * 4) }, (_, h) => [
                      `kairos-${h}-${randomString(rnd, 8)}`,
                      rnd() < 0.2 ? [randomString(rnd, 20), Buffer.from(randomString(rnd, 20))] : rnd() < 0.5 ? Buffer.from(randomString(rnd, 200)) : randomString(rnd, 200),
                    ]),
                  );
          return {
            key: randomBytes(rnd, 40),
            value: rnd() < 0.01 ? Buffer.alloc(70_000, 7) : randomBytes(rnd, 400),
            ...(timestamp === undefined ? {} : { timestamp }),
            ...(headers === undefined ? {} : { headers }),
          };
        }),
      })),
    })),
  } as ProduceRequestArgs;
}

async function bytesOf(factory: ProduceRequestFactory, args: ProduceRequestArgs): Promise<Buffer> {
  return Buffer.from((await factory(args).encode()).buffer);
}

/** Messages without a timestamp take "now": the same for both encoders while `fn` runs. */
async function withFixedNow(fn: () => Promise<void>): Promise<void> {
  const realNow = Date.now;
  Date.now = () => 1_733_500_000_123;
  try {
    await fn();
  } finally {
    Date.now = realNow;
  }
}

test('produce requests: the one-pass encoder writes the bytes kafkajs 2.2.4 writes, for 300 random requests', () =>
  withFixedNow(async () => {
    const rnd = mulberry32(16);
    let records = 0;
    for (let i = 0; i < 300; i++) {
      const args = randomArgs(rnd);
      records += args.topicData.reduce((n, td) => n + td.partitions.reduce((m, p) => m + p.messages.length, 0), 0);
      const a = fast(args);
      const b = own(args);
      assert.deepEqual({ apiKey: a.apiKey, apiVersion: a.apiVersion, apiName: a.apiName, expects: a.expectResponse() }, { apiKey: b.apiKey, apiVersion: b.apiVersion, apiName: b.apiName, expects: b.expectResponse() });
      const mine = await bytesOf(fast, args);
      const theirs = await bytesOf(own, args);
      if (!mine.equals(theirs)) {
        let at = 0;
        while (mine[at] === theirs[at]) at++;
        assert.fail(`request ${i}: ${mine.length} vs ${theirs.length} bytes, first difference at ${at}`);
      }
    }
    assert.ok(records > 5_000, `${records} records`);
  }));

test('produce requests: what kafkajs encodes otherwise (compression, null header values, numeric keys) goes to its own encoder', async () => {
  const msg = { key: 'k', value: 'v', timestamp: '1733000000000' };
  const compressed = { acks: -1, timeout: 1000, compression: 1, topicData: [{ topic: 't', partitions: [{ partition: 0, messages: [msg, msg] }] }] };
  assert.ok((await bytesOf(fast, compressed)).equals(await bytesOf(own, compressed)));
  for (const odd of [{ ...msg, headers: { h: null } }, { ...msg, key: 42 }, { ...msg, headers: null }, { ...msg, timestamp: 'soon' }]) {
    const args = { acks: -1, timeout: 1000, topicData: [{ topic: 't', partitions: [{ partition: 0, messages: [odd] }] }] } as unknown as ProduceRequestArgs;
    const theirs = await own(args).encode().then((e) => Buffer.from(e.buffer), (e: unknown) => e);
    const mine = await fast(args).encode().then((e) => Buffer.from(e.buffer), (e: unknown) => e);
    if (Buffer.isBuffer(theirs)) assert.ok(Buffer.isBuffer(mine) && mine.equals(theirs), JSON.stringify(odd));
    else assert.equal(String(mine), String(theirs), JSON.stringify(odd));
  }
});

test('crc32c (slicing by 8) equals kafkajs crc32C at every length and offset', () => {
  const rnd = mulberry32(3);
  const buf = Buffer.from(Array.from({ length: 5000 }, () => Math.floor(rnd() * 256)));
  for (let n = 0; n < 70; n++) for (const start of [0, 1, 3, 7]) assert.equal(crc32c(buf, start, start + n), kafkajsCrc32c(buf.subarray(start, start + n)), `length ${n} at ${start}`);
  assert.equal(crc32c(buf), kafkajsCrc32c(buf));
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283); // the CRC-32C check value
});

test('batchCrc32c (the CPU instruction through @node-rs/crc32) equals kafkajs crc32C at every length and offset', (t) => {
  // Its prebuilt binary covers the platforms CI and deployments run on; elsewhere the JavaScript version is used.
  if (process.platform === 'linux' && process.arch === 'x64') assert.ok(nativeCrc32cInUse, '@node-rs/crc32 did not load: record batch checksums fall back to JavaScript');
  else t.diagnostic(`native CRC-32C in use: ${nativeCrc32cInUse}`);
  const rnd = mulberry32(5);
  const buf = Buffer.from(Array.from({ length: 70_000 }, () => Math.floor(rnd() * 256)));
  for (let n = 0; n < 70; n++) for (const start of [0, 1, 3, 7]) assert.equal(batchCrc32c(buf, start, start + n), kafkajsCrc32c(buf.subarray(start, start + n)), `length ${n} at ${start}`);
  for (const [start, end] of [[0, buf.length], [13, 65_549], [4096, 4097]] as const) assert.equal(batchCrc32c(buf, start, end), kafkajsCrc32c(buf.subarray(start, end)));
  assert.equal(batchCrc32c(Buffer.from('123456789'), 0, 9), 0xe3069283);
});

test('installed: kafkajs sends its produce requests through the one-pass encoder, and a mock cluster takes them', async (t) => {
  assert.equal(installProduceEncoding(), 'installed');
  assert.equal(installProduceEncoding(), 'installed');
  const v7 = require('kafkajs/src/protocol/requests/produce/v7/request.js') as ProduceRequestFactory;
  const args = randomArgs(mulberry32(5));
  assert.equal(v7(args).apiVersion, 7);
  // kafkajs' framing (header, then size prefix) of the one-pass payload: the same bytes as of its own
  const frame = require('kafkajs/src/protocol/request.js') as (r: { correlationId: number; clientId: string; request: ReturnType<ProduceRequestFactory> }) => Promise<{ buffer: Buffer }>;
  await withFixedNow(async () => {
    assert.ok((await bytesOf(v7, args)).equals(await bytesOf(own, args)));
    const mine = await frame({ correlationId: 7, clientId: 'kairos-test', request: v7(args) });
    const theirs = await frame({ correlationId: 7, clientId: 'kairos-test', request: { ...own(args), apiVersion: 7 } });
    assert.ok(Buffer.from(mine.buffer).equals(Buffer.from(theirs.buffer)));
    assert.ok(mine.buffer.byteOffset > 0 && theirs.buffer.byteOffset === 0, 'framed in the room in front of the payload, not copied');
    // a payload framed twice: the second framing copies, the first keeps its bytes
    const payload = await v7(args).encode();
    type Writer = { writeInt16(v: number): Writer; writeEncoder(e: unknown): Writer; readonly buffer: Buffer };
    const writer = (): Writer => new internals.Encoder() as unknown as Writer;
    const first = writer().writeInt16(1).writeEncoder(payload);
    const firstBytes = Buffer.from(first.buffer);
    const second = writer().writeInt16(2).writeEncoder(payload);
    assert.ok(Buffer.from(first.buffer).equals(firstBytes));
    assert.ok(second.buffer.subarray(2).equals(firstBytes.subarray(2)));
    assert.equal(second.buffer.readInt16BE(0), 2);
  });

  const cluster = await startMockCluster();
  t.after(() => cluster.stop());
  const kafka = testKafka(cluster.brokers);
  const sent = Array.from({ length: 500 }, (_, i) => ({ key: `c${i}`, value: `{"n":${i},"s":"ä${'x'.repeat(i)}"}`, headers: { h: `v${i}` }, timestamp: String(1_733_000_000_000 + i) }));
  await produce(kafka, 'enc', sent);
  const got = await collect(kafka, ['enc'], (all) => all.length >= sent.length);
  const byKey = new Map(got.map(({ message: m }) => [m.key!.toString(), { value: m.value!.toString(), header: String(m.headers?.['h']), timestamp: m.timestamp }]));
  for (const m of sent) assert.deepEqual(byKey.get(m.key), { value: m.value, header: m.headers.h, timestamp: m.timestamp });
});
