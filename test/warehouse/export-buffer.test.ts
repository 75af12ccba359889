import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KairosError } from '../../src/errors.js';
import { ExportBuffer } from '../../src/warehouse/export-buffer.js';
import { TABLES, type TableDef } from '../../src/warehouse/tables.js';
import type { RejectedRow, Warehouse, WarehouseRow } from '../../src/warehouse/warehouse.js';
import { silent } from '../support/kafka.js';

class FakeWarehouse implements Warehouse {
  readonly kind = 'ndjson';
  readonly location = 'fake';
  readonly calls: { table: string; ids: string[] }[] = [];
  failures: Error[] = [];
  refuse = new Set<string>();
  ensureTables() {
    return Promise.resolve([]);
  }
  insert(def: TableDef, rows: readonly WarehouseRow[]): Promise<RejectedRow[]> {
    this.calls.push({ table: def.tableId, ids: rows.map((r) => r.insertId) });
    const f = this.failures.shift();
    if (f) return Promise.reject(f);
    return Promise.resolve(rows.filter((r) => this.refuse.has(r.insertId)).map((r) => ({ insertId: r.insertId, reason: 'invalid', message: 'bad' })));
  }
  query() {
    return Promise.resolve([]);
  }
  tableRef(t: string) {
    return t;
  }
}

const row = (id: string): WarehouseRow => ({ insertId: id, json: { id } });

test('export buffer: bounded (full at bufferRows), requests of at most batchRows per table, positions = highest offset per partition, refused rows reported', async () => {
  const wh = new FakeWarehouse();
  const buf = new ExportBuffer<string>({ warehouse: wh, batchRows: 2, bufferRows: 5, logger: silent });
  for (let i = 0; i < 4; i++) buf.add(TABLES.triggers, row(`t${i}`), { topic: 'crm.triggers.v1', partition: i % 2, offset: String(10 + i) }, `t${i}`);
  buf.add(TABLES.deliveries, row('d0'), { topic: 'crm.deliveries.v1', partition: 0, offset: '3' }, 'd0');
  buf.advance({ topic: 'crm.deliveries.v1', partition: 0, offset: '4' }); // a dead-lettered record
  assert.equal(buf.full(), true);
  assert.equal(buf.due(), true);
  wh.refuse.add('t2');
  const r = await buf.flush();
  assert.deepEqual(wh.calls, [
    { table: 'triggers', ids: ['t0', 't1'] },
    { table: 'triggers', ids: ['t2', 't3'] },
    { table: 'deliveries', ids: ['d0'] },
  ]);
  assert.deepEqual(r.positions.map((p) => `${p.topic}/${p.partition}@${p.offset}`).sort(), ['crm.deliveries.v1/0@4', 'crm.triggers.v1/0@12', 'crm.triggers.v1/1@13']);
  assert.deepEqual(r.refused.map((x) => x.source), ['t2']);
  assert.equal(r.rows, 4);
  assert.equal(buf.size, 0);
  assert.equal(buf.pending, false);
});

test('export buffer: rows being inserted count against the bound, so memory holds at most bufferRows rows', async () => {
  const wh = new FakeWarehouse();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const insert = wh.insert.bind(wh);
  wh.insert = async (def, rows) => {
    await gate;
    return insert(def, rows);
  };
  const buf = new ExportBuffer<string>({ warehouse: wh, batchRows: 2, bufferRows: 3, logger: silent });
  buf.add(TABLES.triggers, row('a'), { topic: 't', partition: 0, offset: '1' }, 'a');
  buf.add(TABLES.triggers, row('b'), { topic: 't', partition: 0, offset: '2' }, 'b');
  const flushing = buf.flush();
  await new Promise((r) => setImmediate(r)); // the flush has taken a and b
  buf.add(TABLES.triggers, row('c'), { topic: 't', partition: 0, offset: '3' }, 'c');
  assert.equal(buf.size, 3, 'two in flight, one buffered');
  assert.equal(buf.full(), true);
  release();
  const r = await flushing;
  assert.deepEqual(r.positions, [{ topic: 't', partition: 0, offset: '2' }], 'only what was inserted may be committed');
  assert.equal(buf.size, 1);
  assert.equal(buf.full(), false);
});

test('export buffer: a retriable warehouse error is retried with the same insertIds; a schema error keeps the rows and positions for the next flush', async () => {
  const wh = new FakeWarehouse();
  const buf = new ExportBuffer<string>({ warehouse: wh, batchRows: 10, bufferRows: 10, logger: silent, retryMs: 1 });
  buf.add(TABLES.triggers, row('a'), { topic: 't', partition: 0, offset: '1' }, 'a');
  wh.failures = [new KairosError('KAIROS_ERR_WAREHOUSE', 'HTTP 503'), new KairosError('KAIROS_ERR_WAREHOUSE', 'HTTP 503')];
  let waits = 0;
  const r = await buf.flush({ onWait: () => Promise.resolve(void waits++) });
  assert.deepEqual(wh.calls.map((c) => c.ids), [['a'], ['a'], ['a']]);
  assert.ok(waits >= 2, 'heartbeats while waiting');
  assert.equal(r.positions.length, 1);

  buf.add(TABLES.triggers, row('b'), { topic: 't', partition: 0, offset: '2' }, 'b');
  wh.failures = [new KairosError('KAIROS_ERR_WAREHOUSE_SCHEMA', 'type changed')];
  await assert.rejects(buf.flush(), /type changed/);
  assert.equal(buf.size, 1, 'the row is kept, nothing may be committed');
  const again = await buf.flush();
  assert.deepEqual(again.positions, [{ topic: 't', partition: 0, offset: '2' }]);
  assert.deepEqual(wh.calls.at(-1)?.ids, ['b']);
});
