import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { lineBatches, splitLines } from '../../src/replay/lines.js';

/** What node:readline gives for these chunks (the replay's reader before lineBatches). */
async function readlineLines(chunks: readonly Buffer[]): Promise<string[]> {
  const out: string[] = [];
  for await (const line of createInterface({ input: Readable.from(chunks), crlfDelay: Infinity })) out.push(line);
  return out;
}

async function ours(chunks: readonly (Buffer | string)[]): Promise<{ lines: string[]; batches: number }> {
  const lines: string[] = [];
  let batches = 0;
  for await (const batch of lineBatches(Readable.from(chunks))) {
    batches++;
    lines.push(...batch);
  }
  return { lines, batches };
}

/** Splits `bytes` at the given positions. */
function chunked(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    if (c <= from || c >= bytes.length) continue;
    out.push(bytes.subarray(from, c));
    from = c;
  }
  out.push(bytes.subarray(from));
  return out;
}

test('lineBatches: the lines readline gives, for breaks of every kind split anywhere across chunks', async () => {
  // Seeded, so a failure repeats: \n, \r\n, lone \r, empty lines, multi-byte characters, no final break.
  let seed = 7;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const pieces = ['{"a":1}', 'é', '€', '😀', 'x', ' ', '', '\n', '\n', '\r\n', '\r', '\n\n'];
  for (let round = 0; round < 400; round++) {
    let text = '';
    const n = 1 + rnd(30);
    for (let i = 0; i < n; i++) text += pieces[rnd(pieces.length)];
    const bytes = Buffer.from(text, 'utf8');
    const cuts = Array.from({ length: rnd(6) }, () => rnd(bytes.length + 1));
    const chunks = chunked(bytes, cuts);
    const expected = await readlineLines(chunks);
    assert.deepEqual((await ours(chunks)).lines, expected, `input ${JSON.stringify(text)} cut at ${JSON.stringify(cuts)}`);
  }
});

test('lineBatches: a multi-byte character split across chunks stays whole; one batch per chunk', async () => {
  const bytes = Buffer.from('{"p":"caf\u00e9 \ud83d\ude00"}\n{"q":2}\n', 'utf8');
  const at = bytes.indexOf(0xf0) + 2; // inside the 4-byte emoji
  const { lines, batches } = await ours([bytes.subarray(0, at), bytes.subarray(at)]);
  assert.deepEqual(lines, ['{"p":"caf\u00e9 \ud83d\ude00"}', '{"q":2}']);
  assert.equal(batches, 1, 'the first chunk completes no line');
  const whole = await ours([Buffer.from('a\nb\nc')]);
  assert.deepEqual(whole.lines, ['a', 'b', 'c']);
  assert.equal(whole.batches, 2, 'the lines of the chunk, then the last line without a break');
});

test('lineBatches: string chunks, empty chunks, an empty input, a \\r\\n across chunks', async () => {
  assert.deepEqual((await ours(['a\r', '\nb', '', '\r', 'c\n'])).lines, ['a', 'b', 'c']);
  assert.deepEqual((await ours([])).lines, []);
  assert.deepEqual((await ours([Buffer.alloc(0)])).lines, []);
  assert.deepEqual((await ours(['\n'])).lines, ['']);
  assert.deepEqual((await ours(['\r', '\r', '\n'])).lines, ['', '']);
});

test('splitLines: \\n, \\r\\n and lone \\r', () => {
  assert.deepEqual(splitLines(Buffer.from('a\nb\n')), ['a', 'b']);
  assert.deepEqual(splitLines(Buffer.from('a\r\nb\rc\n\n')), ['a', 'b', 'c', '']);
  assert.deepEqual(splitLines(Buffer.from('a\nb\r\nc'), 5), ['a', 'b'], 'only up to end');
});
