/**
 * An ordered set of strings in UTF-8 byte order (RocksDB's key order), for range scans served from memory.
 *
 * Keys live in blocks of at most BLOCK keys, each block sorted and the blocks in order (the layout of Python's
 * sortedcontainers): an insert or delete moves at most BLOCK entries, a lookup is two binary searches, and a
 * range scan walks blocks in order. Plain JS strings compare by UTF-16 code unit, which differs from UTF-8 byte
 * order only between a surrogate pair (U+10000 and up) and U+E000–U+FFFF; `compareUtf8` handles that case.
 */
const BLOCK = 512;

/** Compares two strings as their UTF-8 encodings would compare byte by byte (= code point order). */
export function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate (U+D800–U+DFFF, part of a code point ≥ U+10000) sorts after U+E000–U+FFFF in code point order.
    if (x >= 0xd800 && y >= 0xd800) {
      const xs = x <= 0xdfff;
      const ys = y <= 0xdfff;
      if (xs !== ys) return xs ? 1 : -1;
    }
    return x - y;
  }
  return a.length - b.length;
}

export class SortedKeys {
  readonly #blocks: string[][] = [];
  #size = 0;

  /** Builds the set from keys in any order (duplicates are kept once). */
  static from(keys: Iterable<string>): SortedKeys {
    const s = new SortedKeys();
    const all = [...new Set(keys)].sort(compareUtf8);
    for (let i = 0; i < all.length; i += BLOCK) s.#blocks.push(all.slice(i, i + BLOCK));
    s.#size = all.length;
    return s;
  }

  get size(): number {
    return this.#size;
  }

  add(key: string): void {
    const blocks = this.#blocks;
    if (blocks.length === 0) {
      blocks.push([key]);
      this.#size = 1;
      return;
    }
    const b = this.#blockFor(key);
    const block = blocks[b] as string[];
    const i = lowerBound(block, key);
    if (i < block.length && block[i] === key) return;
    block.splice(i, 0, key);
    this.#size++;
    if (block.length > BLOCK * 2) blocks.splice(b + 1, 0, block.splice(BLOCK));
  }

  delete(key: string): void {
    const blocks = this.#blocks;
    if (blocks.length === 0) return;
    const b = this.#blockFor(key);
    const block = blocks[b] as string[];
    const i = lowerBound(block, key);
    if (i >= block.length || block[i] !== key) return;
    block.splice(i, 1);
    this.#size--;
    if (block.length === 0) blocks.splice(b, 1);
  }

  /**
   * Keys k with lower ≤ k (or lower < k when `exclusive`) and k < upper (no bound when undefined), in order;
   * the callback returns false to stop.
   */
  forRange(lower: string | undefined, exclusive: boolean, upper: string | undefined, each: (key: string) => boolean): void {
    const blocks = this.#blocks;
    let b = lower === undefined || blocks.length === 0 ? 0 : this.#blockFor(lower);
    let i = lower === undefined || blocks.length === 0 ? 0 : lowerBound(blocks[b] as string[], lower);
    for (; b < blocks.length; b++, i = 0) {
      const block = blocks[b] as string[];
      for (; i < block.length; i++) {
        const key = block[i] as string;
        if (exclusive && key === lower) continue;
        if (upper !== undefined && compareUtf8(key, upper) >= 0) return;
        if (!each(key)) return;
      }
    }
  }

  /** Index of the block that holds `key` or would: the last block whose first key ≤ key (0 if none). */
  #blockFor(key: string): number {
    const blocks = this.#blocks;
    let lo = 0;
    let hi = blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (compareUtf8((blocks[mid] as string[])[0] as string, key) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

function lowerBound(block: readonly string[], key: string): number {
  let lo = 0;
  let hi = block.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareUtf8(block[mid] as string, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
