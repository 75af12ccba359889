/**
 * CPU per record of encoding a produce request: kafkajs 2.2.4's own encoder (the baseline) vs the one-pass
 * encoder Kairos installs in its place (src/kafka/produce-encoding.ts), on the same request, in the same
 * process, alternating, median of --runs. The request looks like a commit's changelog batch: --topics topics ×
 * --partitions partitions × --records records, keys like customer ids, JSON values of --value-bytes bytes, no
 * headers. Also checks that both give the same bytes.
 *
 *   npx tsx load-tests/produce-encoding.ts [--topics 6] [--partitions 4] [--records 100] [--value-bytes 300]
 *                                          [--requests 400] [--runs 3]
 *
 * Prints one JSON line at the end: {"bench":"produce-encoding", …, "ratio": one-pass µs ÷ kafkajs µs}.
 */
import { parseArgs } from 'node:util';
import { fastProduceRequest, kafkajsProduceModules, type ProduceRequestArgs, type ProduceRequestFactory } from '../src/kafka/produce-encoding.js';
import { median, parseCount } from './lib/common.js';

const { values } = parseArgs({
  options: {
    topics: { type: 'string' },
    partitions: { type: 'string' },
    records: { type: 'string' },
    'value-bytes': { type: 'string' },
    requests: { type: 'string' },
    runs: { type: 'string' },
  },
});
const topics = parseCount('--topics', values.topics, 6);
const partitions = parseCount('--partitions', values.partitions, 4);
const records = parseCount('--records', values.records, 100);
const valueBytes = parseCount('--value-bytes', values['value-bytes'], 300);
const requests = parseCount('--requests', values.requests, 400);
const runs = parseCount('--runs', values.runs, 3);

const { own, internals } = kafkajsProduceModules();
const onePass = fastProduceRequest(own, internals);

const value = JSON.stringify({ customerId: 'C0001234', items: [{ sku: 'P000123-M', quantity: 1, unitPrice: { amount: 4999, currency: 'EUR' } }], pad: '' });
const padded = Buffer.from(value.replace('"pad":""', `"pad":"${'x'.repeat(Math.max(0, valueBytes - value.length))}"`));
const args: ProduceRequestArgs = {
  acks: -1,
  timeout: 30_000,
  topicData: Array.from({ length: topics }, (_, t) => ({
    topic: `kairos-store-${t}-changelog`,
    partitions: Array.from({ length: partitions }, (_, p) => ({
      partition: p,
      messages: Array.from({ length: records }, (_, i) => ({ key: `C${String(i * partitions + p).padStart(7, '0')}`, value: padded, timestamp: String(1_733_000_000_000 + i) })),
    })),
  })),
};
const perRequest = topics * partitions * records;

async function cpuPerRecordUs(factory: ProduceRequestFactory): Promise<number> {
  for (let i = 0; i < Math.min(50, requests); i++) await factory(args).encode();
  const t0 = process.cpuUsage();
  for (let i = 0; i < requests; i++) await factory(args).encode();
  const used = process.cpuUsage(t0);
  return (used.user + used.system) / (requests * perRequest);
}

const mine = Buffer.from((await onePass(args).encode()).buffer);
const theirs = Buffer.from((await own(args).encode()).buffer);
if (!mine.equals(theirs)) throw new Error('the one-pass encoder and kafkajs disagree on this request');

const base: number[] = [];
const after: number[] = [];
for (let r = 0; r < runs; r++) {
  base.push(await cpuPerRecordUs(own));
  after.push(await cpuPerRecordUs(onePass));
  console.error(`run ${r + 1}/${runs}: kafkajs ${base[r]!.toFixed(2)} µs, one-pass ${after[r]!.toFixed(2)} µs CPU per record`);
}
const b = median(base);
const a = median(after);
console.log(`produce request of ${perRequest} records (${topics} topics × ${partitions} partitions × ${records}, ${padded.length}-byte values, ${theirs.length} bytes), same bytes from both`);
console.log(`CPU per record, median of ${runs}: kafkajs 2.2.4 ${b.toFixed(2)} µs, one-pass ${a.toFixed(2)} µs → ${(a / b).toFixed(3)} of kafkajs`);
console.log(JSON.stringify({ bench: 'produce-encoding', records: perRequest, requestBytes: theirs.length, kafkajsUs: Number(b.toFixed(3)), onePassUs: Number(a.toFixed(3)), ratio: Number((a / b).toFixed(4)) }));
