/**
 * Small helpers on bitmaps (Uint32Array, bit n = word n >> 5, bit n & 31) and growable typed
 * arrays, used by save (which slots hold a live entry) and restore (staging). No allocation
 * on the per-entry paths except amortised growth.
 */

export function testBit(bits: Uint32Array, n: number): boolean {
  const w = n >>> 5;
  return w < bits.length && (bits[w]! & (1 << (n & 31))) !== 0;
}

/** Lowest set bit >= from, or -1. */
export function nextSetBit(bits: Uint32Array, from: number): number {
  if (from < 0) from = 0;
  let w = from >>> 5;
  if (w >= bits.length) return -1;
  let word = bits[w]! & (0xffffffff << (from & 31));
  while (word === 0) {
    if (++w >= bits.length) return -1;
    word = bits[w]!;
  }
  return (w << 5) + (31 - Math.clz32(word & -word));
}

/** Highest set bit <= from, or -1. */
export function prevSetBit(bits: Uint32Array, from: number): number {
  if (from < 0 || bits.length === 0) return -1;
  let w = from >>> 5;
  let word: number;
  if (w >= bits.length) {
    w = bits.length - 1;
    word = bits[w]!;
  } else {
    word = bits[w]! & (0xffffffff >>> (31 - (from & 31)));
  }
  while (word === 0) {
    if (--w < 0) return -1;
    word = bits[w]!;
  }
  return (w << 5) + (31 - Math.clz32(word));
}

/** A Uint32Array that grows by doubling. */
export class GrowableU32 {
  data: Uint32Array;
  length = 0;
  constructor(capacity = 64) {
    this.data = new Uint32Array(capacity);
  }
  push(v: number): void {
    if (this.length === this.data.length) this.grow();
    this.data[this.length++] = v;
  }
  private grow(): void {
    const next = new Uint32Array(this.data.length * 2);
    next.set(this.data);
    this.data = next;
  }
  clear(): void {
    this.length = 0;
  }
}

/** A Float64Array (exact integers up to 2^53: guest addresses) that grows by doubling. */
export class GrowableF64 {
  data: Float64Array;
  length = 0;
  constructor(capacity = 64) {
    this.data = new Float64Array(capacity);
  }
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
}

const EMPTY_WORDS = new Uint32Array(0);

/**
 * Hands out small word arrays as views of shared blocks, for bulk creation of many small
 * bitmaps (the saver's image after a restore: one per device). In V8 a typed array of more
 * than 64 bytes gets a backing store of its own, about 2 us each (measured: 1024 slices of
 * 128 bytes, 1.9 ms; the same as views, 0.06 ms). A block lives as long as any of its views,
 * so a slab is for arrays created together, not for long-lived one-by-one allocation.
 */
export class WordSlab {
  private block = EMPTY_WORDS;
  private used = 0;

  constructor(private readonly blockWords = 16384) {}

  /** A new array holding words [0, words) of `src`. */
  copyOf(src: Uint32Array, words: number): Uint32Array {
    if (words > this.block.length - this.used) {
      this.block = new Uint32Array(Math.max(this.blockWords, words));
      this.used = 0;
    }
    const view = this.block.subarray(this.used, this.used + words);
    view.set(src.subarray(0, words));
    this.used += words;
    return view;
  }
}
