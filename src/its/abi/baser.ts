/**
 * Table geometry from a GITS_BASER<n> value (kvm-its-abi.md 1.6.6 and 3.6), decoded once per
 * save or restore (cold path: BigInt allowed here, never per entry).
 */

/** GITS_BASER.Type values. */
export const BASER_TYPE_DEVICE = 1;
export const BASER_TYPE_COLLECTION = 4;
/** KVM always uses 64 KiB pages (Page_Size is forced to 64K). */
export const BASER_PAGE_SIZE = 0x10000;

export interface TableGeometry {
  readonly valid: boolean;
  readonly indirect: boolean;
  readonly type: number;
  /** Table base: (reg & GENMASK(47, 16)) | ((reg >> 12) & 0xf) << 48. */
  readonly base: number;
  /** Table bytes: (Size + 1) * 64 KiB (for an indirect table, the size of the level-1 table). */
  readonly bytes: number;
  /** Number of 8-byte slots of the (level-1) table. */
  readonly slots: number;
}

export function decodeBaser(baser: bigint): TableGeometry {
  const lo = Number(baser & 0xffffffffn);
  const hi = Number((baser >> 32n) & 0xffffffffn);
  const valid = hi >>> 31 === 1;
  const indirect = ((hi >>> 30) & 1) === 1;
  const type = (hi >>> 24) & 7;
  const base = ((lo & 0xffff0000) >>> 0) + (hi & 0xffff) * 0x100000000 + ((lo >>> 12) & 0xf) * 2 ** 48;
  const bytes = ((lo & 0xff) + 1) * BASER_PAGE_SIZE;
  return { valid, indirect, type, base, bytes, slots: bytes / 8 };
}

/** Encodes a BASER value (tests and tools; the guest programs it). PA >= 2^48 uses bits 15:12. */
export function encodeBaser(opts: {
  valid: boolean;
  indirect?: boolean;
  type: number;
  base: number;
  pages: number;
  entrySize?: number;
}): bigint {
  const base = BigInt(opts.base);
  let v = (base & 0x0000ffffffff0000n) | (((base >> 48n) & 0xfn) << 12n);
  v |= BigInt((opts.pages - 1) & 0xff);
  v |= 2n << 8n; // Page_Size 64K
  v |= 1n << 10n; // InnerShareable
  v |= 3n << 59n; // InnerCache RaWb
  v |= BigInt(((opts.entrySize ?? 8) - 1) & 0x1f) << 48n;
  v |= BigInt(opts.type & 7) << 56n;
  if (opts.indirect) v |= 1n << 62n;
  if (opts.valid) v |= 1n << 63n;
  return v;
}
