/**
 * Collection Table Entry, KVM table ABI rev 0 (kvm-its-abi.md 3.4), as a (lo, hi) pair of u32:
 *
 *   bit 63      V       1 = valid; the first V = 0 entry ends the table on restore
 *   bits 62:52  RES0    written 0, ignored on restore
 *   bits 51:16  RDBase  KVM writes the 32-bit target (vCPU id, or 0xffffffff for a collection
 *                       that exists but was never mapped) at bits 47:16 and reads back
 *                       (u32)(e >> 16): bits 51:48 are ignored on restore
 *   bits 15:0   ICID
 *
 * In the pair: lo = target bits 15:0 << 16 | ICID; hi = V << 31 | target bits 31:16.
 * Pure functions, no allocation, no BigInt.
 */

/** RDBase value of an existing but unmapped collection (KVM COLLECTION_NOT_MAPPED). */
export const CTE_TARGET_NOT_MAPPED = 0xffffffff;

export const CollectionTableEntry = {
  SIZE: 8,

  /** target: vCPU id (0..2^32-2) or CTE_TARGET_NOT_MAPPED. */
  lo(target: number, icid: number): number {
    return (((target & 0xffff) << 16) | (icid & 0xffff)) >>> 0;
  },
  hi(target: number): number {
    return (0x80000000 | (target >>> 16)) >>> 0;
  },

  valid(hi: number): boolean {
    return hi >>> 31 === 1;
  },
  /** (u32)(e >> 16), as KVM reads it. */
  target(lo: number, hi: number): number {
    return (hi & 0xffff) * 0x10000 + (lo >>> 16);
  },
  icid(lo: number): number {
    return lo & 0xffff;
  },
} as const;
