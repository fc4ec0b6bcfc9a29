/**
 * Device Table Entry, KVM table ABI rev 0 (kvm-its-abi.md 3.2), as a (lo, hi) pair of u32:
 *
 *   bit 63      V         1 = valid
 *   bits 62:49  next      DeviceID delta to the next valid DTE (0 = last), capped at 16383
 *   bits 48:5   ITT_addr  ITT physical address bits 51:8 (the ITT is 256-byte aligned)
 *   bits 4:0    Size      EventID bits - 1
 *
 * In the pair: lo = bits 31:0 = ITT_addr field bits 26:0 << 5 | Size;
 *              hi = bits 63:32 = V << 31 | next << 17 | ITT_addr field bits 43:27.
 * Pure functions, no allocation, no BigInt.
 */

const TWO_POW_27 = 0x8000000;

export const DeviceTableEntry = {
  SIZE: 8,
  /** Largest encodable next (14 bits); larger DeviceID gaps are capped to it. */
  NEXT_MAX: 0x3fff,

  /** Low word of a DTE for an ITT at ittAddr (256-byte aligned, < 2^52) with eventIdBits (1..32). */
  lo(ittAddr: number, eventIdBits: number): number {
    const field = ittAddr / 256;
    // ToInt32 keeps the low 32 bits of an integer below 2^53 exactly, so `& 0x7ffffff` is field bits 26:0.
    return (((field & 0x7ffffff) << 5) | ((eventIdBits - 1) & 0x1f)) >>> 0;
  },
  /** High word of a valid DTE (V = 1); next must already be capped to NEXT_MAX. */
  hi(next: number, ittAddr: number): number {
    const field = ittAddr / 256;
    return (0x80000000 | ((next & 0x3fff) << 17) | (Math.floor(field / TWO_POW_27) & 0x1ffff)) >>> 0;
  },

  valid(hi: number): boolean {
    return hi >>> 31 === 1;
  },
  next(hi: number): number {
    return (hi >>> 17) & 0x3fff;
  },
  ittAddr(lo: number, hi: number): number {
    return ((hi & 0x1ffff) * TWO_POW_27 + (lo >>> 5)) * 256;
  },
  /** Size field + 1: 1..32 (restore rejects > 16). */
  eventIdBits(lo: number): number {
    return (lo & 0x1f) + 1;
  },
} as const;
