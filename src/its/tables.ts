/**
 * Geometry of the guest-RAM tables described by GITS_BASER<n> and GITS_CBASER, and
 * `locateEntry`, KVM's vgic_its_check_id (kvm-its-abi.md 1.6.4, 1.6.6, 3.5, 3.6).
 *
 * All addresses are guest physical addresses as JS numbers (52-bit PA space: exact).
 * Nothing here throws on guest-controlled values.
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import { BASER_TYPE_COLLECTION, BASER_TYPE_DEVICE, ITS_TABLE_PAGE } from './constants.js';
import type { LocateEntry } from './table-state.js';

const TWO_POW_32 = 0x1_0000_0000;
/** Size of a level-1 entry of a two-level table (GITS_LVL1_ENTRY_SIZE). */
export const LVL1_ENTRY_SIZE = 8;

/** Low and high 32-bit halves of a u64 register value. */
function lo32(v: bigint): number {
  return Number(v & 0xffff_ffffn);
}
function hi32(v: bigint): number {
  return Number((v >> 32n) & 0xffff_ffffn);
}

/** A GITS_BASER value decoded once (KVM decodes it on every check; we cache it). */
export interface BaserGeometry {
  /** Type field (58:56): 1 device, 4 collection, anything else "no table". */
  readonly type: number;
  readonly valid: boolean;
  readonly indirect: boolean;
  /** Entry_Size + 1, in bytes. */
  readonly entrySize: number;
  /** Table base: PA[47:16] from bits 47:16, PA[51:48] from bits 15:12 (64 KiB page format). */
  readonly base: number;
  /** (Size + 1) * 64 KiB: the flat table, or the level-1 table when indirect. */
  readonly tableBytes: number;
}

/** GITS_BASER address decode: `(reg & GENMASK(47,16)) | ((reg >> 12) & 0xf) << 48`. */
export function baserAddress(baser: bigint): number {
  const lo = lo32(baser);
  const hi = hi32(baser);
  const pa51to48 = (lo >>> 12) & 0xf;
  return ((hi & 0xffff) + pa51to48 * 0x10000) * TWO_POW_32 + ((lo & 0xffff_0000) >>> 0);
}

/** Bytes covered by a GITS_BASER: (Size + 1) pages of 64 KiB (KVM supports only 64 KiB pages). */
export function baserTableBytes(baser: bigint): number {
  return ((lo32(baser) & 0xff) + 1) * ITS_TABLE_PAGE;
}

export function decodeBaser(baser: bigint): BaserGeometry {
  const hi = hi32(baser);
  return {
    type: (hi >>> 24) & 7,
    valid: (hi >>> 31) === 1,
    indirect: ((hi >>> 30) & 1) === 1,
    entrySize: ((hi >>> 16) & 0x1f) + 1,
    base: baserAddress(baser),
    tableBytes: baserTableBytes(baser),
  };
}

/** GITS_CBASER_ADDRESS: bits 51:12. */
export function cbaserAddress(cbaser: bigint): number {
  const lo = lo32(cbaser);
  const hi = hi32(cbaser);
  return (hi & 0xfffff) * TWO_POW_32 + ((lo & 0xffff_f000) >>> 0);
}

/** ITS_CMD_BUFFER_SIZE: (Size + 1) * 4 KiB. */
export function cmdQueueBytes(cbaser: bigint): number {
  return ((lo32(cbaser) & 0xff) + 1) * 4096;
}

/**
 * vgic_its_check_id on a pre-decoded BASER. Returns the entry's guest physical address or
 * -1. Reads the level-1 entry of a two-level table from guest memory; never throws.
 */
export function locateEntryIn(memory: GuestMemory, g: BaserGeometry, id: number): number {
  if (!Number.isInteger(id) || id < 0) return -1;
  if (g.type === BASER_TYPE_DEVICE) {
    if (id > 0xffff) return -1;
  } else if (g.type === BASER_TYPE_COLLECTION) {
    if (id >= 0x10000) return -1;
  } else {
    return -1;
  }
  const esz = g.entrySize;
  let addr: number;
  if (!g.indirect) {
    if (id >= Math.floor(g.tableBytes / esz)) return -1;
    addr = g.base + id * esz;
  } else {
    const perPage = Math.floor(ITS_TABLE_PAGE / esz);
    const index = Math.floor(id / perPage);
    if (index >= g.tableBytes / LVL1_ENTRY_SIZE) return -1;
    const l1Addr = g.base + index * LVL1_ENTRY_SIZE;
    if (!memory.contains(l1Addr, LVL1_ENTRY_SIZE)) return -1;
    let l1Lo: number;
    let l1Hi: number;
    try {
      l1Lo = memory.readU64Lo(l1Addr);
      l1Hi = memory.readU64Hi(l1Addr);
    } catch {
      return -1;
    }
    if ((l1Hi >>> 31) === 0) return -1; // L1 entry not valid
    // GENMASK(51, 16): a plain 64 KiB aligned address (not the BASER split encoding).
    const l2 = (l1Hi & 0xfffff) * TWO_POW_32 + ((l1Lo & 0xffff_0000) >>> 0);
    addr = l2 + (id % perPage) * esz;
  }
  return memory.contains(addr, esz) ? addr : -1;
}

/** The contract's LocateEntry (table-state.ts): decodes the BASER value, then locates. */
export const locateEntry: LocateEntry = (memory, baser, id) => {
  try {
    return locateEntryIn(memory, decodeBaser(baser), id);
  } catch {
    return -1;
  }
};
