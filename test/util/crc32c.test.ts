import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bytesFingerprint, crc32c, nativeCrc32cInUse } from '../../src/util/crc32c.js';

test('bytesFingerprint: the CRC-32C of the bytes, a string counted as its UTF-8 encoding, the same natively and in JavaScript', (t) => {
  t.diagnostic(`native CRC-32C in use: ${nativeCrc32cInUse}`);
  assert.equal(bytesFingerprint(Buffer.from('123456789')), 0xe3069283); // the CRC-32C check value
  assert.equal(bytesFingerprint('123456789'), 0xe3069283);
  for (const text of ['', 'a', '{"eventId":"E1","customerId":"C1"}', 'Größe 🧥 \u0000 \u2028', 'x'.repeat(1000)]) {
    const bytes = Buffer.from(text, 'utf8');
    assert.equal(bytesFingerprint(text), crc32c(bytes), JSON.stringify(text));
    assert.equal(bytesFingerprint(bytes), crc32c(bytes));
    assert.equal(bytesFingerprint(new Uint8Array(bytes)), crc32c(bytes));
  }
  // One byte changed: another fingerprint.
  assert.notEqual(bytesFingerprint('{"quantity":1}'), bytesFingerprint('{"quantity":2}'));
});
