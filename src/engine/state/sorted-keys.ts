/**
 * An ordered set of strings in UTF-8 byte order (RocksDB's key order), for range scans served from memory.
 *
 * Keys live in blocks of at most BLOCK keys, each block sorted and the blocks in order (the layout of Python's
 * sortedcontainers): an insert or delete moves at most BLOCK entries, a lookup is two binary searches, and a
 * range scan walks blocks in order. Plain JS strings compare by UTF-16 code unit, which differs from UTF-8 byte
 * order only between a surrogate pair (U+10000 and up) and U+E000–U+FFFF; `compareUtf8` handles that case.
 */
const BLOCK = 512;

/** A character whose UTF-16 order may differ from its code point order against another such character. */
const HIGH = /[\ud800-\uffff]/;

/** JavaScript's own string order (UTF-16 code units). */
const compareUtf16 = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

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
  /**
   * The comparison in use. UTF-16 order differs from code point order only between two characters both at or
   * above U+D800, so while no key held has one, the engine's native string comparison is exact, also against
   * any key looked up; the first key with one switches the set to compareUtf8 for good.
   */
  #compare: (a: string, b: string) => number = compareUtf16;

  /** Builds the set from keys in any order (duplicates are kept once). */
  static from(keys: Iterable<string>): SortedKeys {
    const s = new SortedKeys();
    const unique = [...new Set(keys)];
    if (unique.some((k) => HIGH.test(k))) s.#compare = compareUtf8;
    const all = unique.sort(s.#compare);
    for (let i = 0; i < all.length; i += BLOCK) s.#blocks.push(all.slice(i, i + BLOCK));
    s.#size = all.length;
    return s;
  }

  get size(): number {
    return this.#size;
  }

  add(key: string): void {
    // The held keys have no high character, so their order is the same in both comparisons: no re-sort.
    if (this.#compare === compareUtf16 && HIGH.test(key)) this.#compare = compareUtf8;
    const blocks = this.#blocks;
    if (blocks.length === 0) {
      blocks.push([key]);
      this.#size = 1;
      return;
    }
    const b = this.#blockFor(key);
    const block = blocks[b] as string[];
    const i = lowerBound(block, key, this.#compare);
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
    const i = lowerBound(block, key, this.#compare);
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
    const compare = this.#compare;
    let i = lower === undefined || blocks.length === 0 ? 0 : lowerBound(blocks[b] as string[], lower, compare);
    for (; b < blocks.length; b++, i = 0) {
      const block = blocks[b] as string[];
      for (; i < block.length; i++) {
        const key = block[i] as string;
        if (exclusive && key === lower) continue;
        if (upper !== undefined && compare(key, upper) >= 0) return;
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
      if (this.#compare((blocks[mid] as string[])[0] as string, key) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

function lowerBound(block: readonly string[], key: string, compare: (a: string, b: string) => number): number {
  let lo = 0;
  let hi = block.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compare(block[mid] as string, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
