import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sumMetric } from '../../load-tests/lib/common.js';

const TEXT = [
  '# HELP kairos_records_processed_total Records processed',
  '# TYPE kairos_records_processed_total counter',
  'kairos_records_processed_total{topic="shop.basket.v1",partition="0"} 5',
  'kairos_records_processed_total{topic="shop.basket.v1",partition="1"} 7',
  'kairos_records_processed_total{topic="kairos-basket-price-drop.by-sku-repartition",partition="0"} 11',
  'kairos_records_processed_total_extra 100',
  'kairos_group_membership_lost_total 1',
].join('\n');

test('sumMetric: every series of a metric, or those with the given label values; not a metric whose name only starts alike', () => {
  assert.equal(sumMetric(TEXT, 'kairos_records_processed_total'), 23);
  assert.equal(sumMetric(TEXT, 'kairos_records_processed_total', { topic: 'shop.basket.v1' }), 12);
  assert.equal(sumMetric(TEXT, 'kairos_records_processed_total', { topic: 'shop.basket.v1', partition: '1' }), 7);
  assert.equal(sumMetric(TEXT, 'kairos_records_processed_total', { topic: 'shop.orders.v1' }), 0);
  assert.equal(sumMetric(TEXT, 'kairos_group_membership_lost_total'), 1);
  assert.equal(sumMetric(TEXT, 'kairos_group_membership_lost_total', { topic: 'x' }), 0);
});
