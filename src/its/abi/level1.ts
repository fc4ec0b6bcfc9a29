/**
 * Level-1 entry of a two-level (indirect) device table (kvm-its-abi.md 3.5), as a (lo, hi)
 * pair of u32: bit 63 = valid; bits 51:16 = address of a 64 KiB level-2 page (a plain address,
 * not BASER's split encoding); other bits ignored. Written only by the guest; KVM (and vitsd)
 * never write L1 entries.
 */

/** DTEs per 64 KiB level-2 page (65536 / 8). */
export const L2_ENTRIES = 8192;
export const L2_PAGE_SIZE = 0x10000;

export const Level1Entry = {
  SIZE: 8,

  valid(hi: number): boolean {
    return hi >>> 31 === 1;
  },
  /** Level-2 page address: (e & GENMASK(51, 16)). */
  l2Addr(lo: number, hi: number): number {
    return (hi & 0xfffff) * 0x100000000 + ((lo & 0xffff0000) >>> 0);
  },
  /** Encoders exist for tests and tools (the guest writes these): valid entry for an L2 page. */
  lo(l2Addr: number): number {
    return ((l2Addr % 0x100000000) & 0xffff0000) >>> 0;
  },
  hi(l2Addr: number): number {
    return (0x80000000 | (Math.floor(l2Addr / 0x100000000) & 0xfffff)) >>> 0;
  },
} as const;
