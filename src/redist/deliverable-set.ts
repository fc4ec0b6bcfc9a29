/**
 * Per-vCPU sets of "pending and enabled" LPIs, for O(1) updates and an acknowledge scan
 * proportional to what is pending on one vCPU.
 *
 * Layout (one allocation each, no per-operation allocation):
 * - words: vCPU v owns WORDS_PER_VCPU u32 words; bit (intid % 32) of word (intid >> 5) is
 *   INTID `intid`.
 * - summary: vCPU v owns SUMMARY_PER_VCPU u32 words; bit (w % 32) of summary word (w >> 5)
 *   is set iff word w is non-zero. A scan visits only non-zero words.
 * - counts: number of members per vCPU.
 */

/** KVM's LPI INTID space is 16 bits. */
export const INTID_SPACE = 1 << 16;
const WORDS_PER_VCPU = INTID_SPACE >>> 5; // 2048
const SUMMARY_PER_VCPU = WORDS_PER_VCPU >>> 5; // 64
const WORD_SHIFT = 11; // log2(WORDS_PER_VCPU)
const SUMMARY_SHIFT = 6; // log2(SUMMARY_PER_VCPU)

/** Index (0..31) of the lowest set bit of a non-zero u32. */
export function lowestBit(x: number): number {
  return 31 - Math.clz32(x & -x);
}

export class DeliverableSet {
  private readonly words: Uint32Array;
  private readonly summary: Uint32Array;
  private readonly counts: Int32Array;

  constructor(readonly nrVcpus: number) {
    this.words = new Uint32Array(nrVcpus * WORDS_PER_VCPU);
    this.summary = new Uint32Array(nrVcpus * SUMMARY_PER_VCPU);
    this.counts = new Int32Array(nrVcpus);
  }

  count(vcpu: number): number {
    return this.counts[vcpu]!;
  }

  has(vcpu: number, intid: number): boolean {
    return (this.words[(vcpu << WORD_SHIFT) + (intid >>> 5)]! & (1 << (intid & 31))) !== 0;
  }

  /** Adds intid to vcpu's set; returns the member count before the add (unchanged count if present). */
  add(vcpu: number, intid: number): number {
    const w = intid >>> 5;
    const idx = (vcpu << WORD_SHIFT) + w;
    const bit = 1 << (intid & 31);
    const old = this.words[idx]!;
    const before = this.counts[vcpu]!;
    if ((old & bit) !== 0) return before;
    this.words[idx] = old | bit;
    if (old === 0) this.summary[(vcpu << SUMMARY_SHIFT) + (w >>> 5)]! |= 1 << (w & 31);
    this.counts[vcpu] = before + 1;
    return before;
  }

  /** Removes intid from vcpu's set (no-op when absent). */
  remove(vcpu: number, intid: number): void {
    const w = intid >>> 5;
    const idx = (vcpu << WORD_SHIFT) + w;
    const bit = 1 << (intid & 31);
    const old = this.words[idx]!;
    if ((old & bit) === 0) return;
    const now = old & ~bit;
    this.words[idx] = now;
    if (now === 0) this.summary[(vcpu << SUMMARY_SHIFT) + (w >>> 5)]! &= ~(1 << (w & 31));
    this.counts[vcpu]!--;
  }

  /**
   * Member of vcpu's set with the lowest key(intid), ties to the lowest INTID; -1 when empty.
   * Visits members in INTID order and stops early when key reaches `floor`.
   */
  findMin(vcpu: number, key: Uint8Array, mask: number, floor: number): number {
    if (this.counts[vcpu] === 0) return -1;
    const wordBase = vcpu << WORD_SHIFT;
    const sumBase = vcpu << SUMMARY_SHIFT;
    let best = -1;
    let bestKey = Infinity;
    for (let s = 0; s < SUMMARY_PER_VCPU; s++) {
      let sum = this.summary[sumBase + s]!;
      while (sum !== 0) {
        const sb = lowestBit(sum);
        sum &= sum - 1;
        const w = (s << 5) | sb;
        let bits = this.words[wordBase + w]!;
        while (bits !== 0) {
          const b = lowestBit(bits);
          bits &= bits - 1;
          const intid = (w << 5) | b;
          const k = key[intid]! & mask;
          if (k < bestKey) {
            bestKey = k;
            best = intid;
            if (k <= floor) return best;
          }
        }
      }
    }
    return best;
  }

  /** Empties every set. */
  clear(): void {
    this.words.fill(0);
    this.summary.fill(0);
    this.counts.fill(0);
  }
}
