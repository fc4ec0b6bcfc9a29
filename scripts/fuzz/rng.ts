/** A small seeded PRNG (xorshift128+ on two u32 halves is overkill; mulberry32 is enough). */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }
  /** Uniform u32. */
  u32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.below(xs.length)]!;
  }
  /** An id biased toward small values and the bounds that matter (0, 2^k - 1, 2^k). */
  id(bits: number): number {
    const r = this.below(8);
    if (r < 4) return this.below(16);
    if (r === 4) return (2 ** bits - 1) >>> 0;
    if (r === 5) return (2 ** bits) >>> 0;
    if (r === 6) return this.u32();
    return this.below(2 ** Math.min(bits, 31));
  }
}
