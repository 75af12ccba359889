/**
 * The lines of a byte stream, split as `node:readline` splits them with `crlfDelay: Infinity`: `\n`, `\r\n` or a
 * lone `\r` ends a line (a `\r\n` split across two chunks is one break), and what follows the last break is a
 * line when it is not empty. Without readline: each line's bytes are decoded as UTF-8 on their own (found with
 * Buffer.indexOf), and the lines of a chunk are handed out together, one await per chunk. A break byte never
 * occurs inside a multi-byte UTF-8 sequence, so a character split across chunks stays whole. Each line is a
 * string of its own, not a slice of one decoded chunk, so nothing taken from a line can keep a whole chunk in
 * memory.
 *
 * Against readline over the same 100,000-line file (16 MB), in one process, warm: splitting 40–50 against
 * 135–140 ms; with the replay's decode and fingerprint per line 230–260 against 360–390 ms; and the replay
 * allocates 45 MB less (readline's line regex, string decoder, and an event, a promise and an iterator result per
 * line; load-tests/README.md, *Twenty-first session*).
 */

const LF = 0x0a;
const CR = 0x0d;

/** Lines of `input` (Buffers or strings), in batches: every line completed by one chunk. */
export async function* lineBatches(input: AsyncIterable<Buffer | string>): AsyncGenerator<string[], void, undefined> {
  let rest: Buffer | undefined;
  // The last chunk ended with \r: a \n that starts the next one completes that break.
  let afterCR = false;
  for await (const chunk of input) {
    let data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    if (data.length === 0) continue;
    if (afterCR) {
      afterCR = false;
      if (data[0] === LF) data = data.subarray(1);
    }
    if (rest !== undefined) {
      data = Buffer.concat([rest, data]);
      rest = undefined;
    }
    const cut = Math.max(data.lastIndexOf(LF), data.lastIndexOf(CR));
    if (cut < 0) {
      rest = Buffer.from(data);
      continue;
    }
    const batch = splitLines(data, cut + 1);
    if (data[cut] === CR && cut === data.length - 1) afterCR = true;
    if (cut + 1 < data.length) rest = Buffer.from(data.subarray(cut + 1));
    yield batch;
  }
  if (rest !== undefined && rest.length > 0) yield [rest.toString('utf8')];
}

/** The lines of `data[0, end)`, which ends with a break. */
export function splitLines(data: Buffer, end = data.length): string[] {
  const lines: string[] = [];
  let pos = 0;
  const cr = data.indexOf(CR);
  if (cr < 0 || cr >= end) {
    for (let nl = data.indexOf(LF); nl >= 0 && nl < end; nl = data.indexOf(LF, pos)) {
      lines.push(data.toString('utf8', pos, nl));
      pos = nl + 1;
    }
    return lines;
  }
  for (let i = 0; i < end; i++) {
    const c = data[i];
    if (c !== LF && c !== CR) continue;
    lines.push(data.toString('utf8', pos, i));
    if (c === CR && i + 1 < end && data[i + 1] === LF) i++;
    pos = i + 1;
  }
  return lines;
}
