/**
 * Interrupt Translation Entry, KVM table ABI rev 0 (kvm-its-abi.md 3.3), as a (lo, hi) pair of u32:
 *
 *   bits 63:48  next    EventID delta to the next valid ITE (0 = last)
 *   bits 47:16  pINTID  LPI INTID; 0 = invalid entry (there is no V bit)
 *   bits 15:0   ICID    collection ID
 *
 * In the pair: lo = pINTID bits 15:0 << 16 | ICID; hi = next << 16 | pINTID bits 31:16.
 * Pure functions, no allocation, no BigInt.
 */
export const InterruptTranslationEntry = {
  SIZE: 8,
  NEXT_MAX: 0xffff,

  lo(intid: number, icid: number): number {
    return (((intid & 0xffff) << 16) | (icid & 0xffff)) >>> 0;
  },
  hi(next: number, intid: number): number {
    return (((next & 0xffff) << 16) | (intid >>> 16)) >>> 0;
  },

  intid(lo: number, hi: number): number {
    return (hi & 0xffff) * 0x10000 + (lo >>> 16);
  },
  icid(lo: number): number {
    return lo & 0xffff;
  },
  next(hi: number): number {
    return hi >>> 16;
  },
} as const;
