import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextOffset, offsetBefore } from '../../src/util/offsets.js';

test('offsets: next and before agree with BigInt arithmetic on both sides of 2^53 and up to int64', () => {
  const samples = ['0', '9', '41', '999999999999999', '1000000000000000', '9007199254740991', '9007199254740992', '9007199254740993', '9223372036854775806'];
  for (const a of samples) {
    assert.equal(nextOffset(a), (BigInt(a) + 1n).toString(), `next of ${a}`);
    for (const b of samples) assert.equal(offsetBefore(a, b), BigInt(a) < BigInt(b), `${a} < ${b}`);
  }
});
