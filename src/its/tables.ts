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

/** Why locateSlot found no slot: the table (as BASER now describes it) has none for the id. */
export const LOCATE_OUT_OF_TABLE = -1;
/** Why locateSlot found no slot: the table claims it, but the L1 entry or the slot is outside guest memory. */
export const LOCATE_NOT_IN_MEMORY = -2;

/**
 * THE implementation of KVM's vgic_its_check_id (kvm-its-abi.md 3.6), used by the commands
 * (through locateEntryIn) and by the table ABI (src/its/abi/locate.ts): the guest physical
 * address of entry `id` of a table, or why there is none: LOCATE_OUT_OF_TABLE (id not an ID
 * of that table type, past the flat table or the level-1 table, or its level-1 entry
 * invalid) or LOCATE_NOT_IN_MEMORY (level-1 entry or slot outside guest memory). Reads the
 * level-1 entry of a two-level table from guest memory; never throws; no allocation.
 */
export function locateTableSlot(
  memory: GuestMemory,
  type: number,
  indirect: boolean,
  base: number,
  tableBytes: number,
  entrySize: number,
  id: number,
): number {
  if (!Number.isInteger(id) || id < 0) return LOCATE_OUT_OF_TABLE;
  // DeviceIDs and ICIDs are 16 bits (GITS_TYPER.Devbits = 15, CIL = 0).
  if ((type !== BASER_TYPE_DEVICE && type !== BASER_TYPE_COLLECTION) || id > 0xffff) return LOCATE_OUT_OF_TABLE;
  let addr: number;
  if (!indirect) {
    if (id >= Math.floor(tableBytes / entrySize)) return LOCATE_OUT_OF_TABLE;
    addr = base + id * entrySize;
  } else {
    const perPage = Math.floor(ITS_TABLE_PAGE / entrySize);
    const index = Math.floor(id / perPage);
    if (index >= tableBytes / LVL1_ENTRY_SIZE) return LOCATE_OUT_OF_TABLE;
    const l1Addr = base + index * LVL1_ENTRY_SIZE;
    if (!memory.contains(l1Addr, LVL1_ENTRY_SIZE)) return LOCATE_NOT_IN_MEMORY;
    let l1Lo: number;
    let l1Hi: number;
    try {
      l1Lo = memory.readU64Lo(l1Addr);
      l1Hi = memory.readU64Hi(l1Addr);
    } catch {
      return LOCATE_NOT_IN_MEMORY;
    }
    if ((l1Hi >>> 31) === 0) return LOCATE_OUT_OF_TABLE; // L1 entry not valid
    // GENMASK(51, 16): a plain 64 KiB aligned address (not the BASER split encoding).
    const l2 = (l1Hi & 0xfffff) * TWO_POW_32 + ((l1Lo & 0xffff_0000) >>> 0);
    addr = l2 + (id % perPage) * entrySize;
  }
  return memory.contains(addr, entrySize) ? addr : LOCATE_NOT_IN_MEMORY;
}

/** locateTableSlot on a pre-decoded BASER (entry size from its Entry_Size field). */
export function locateSlotIn(memory: GuestMemory, g: BaserGeometry, id: number): number {
  return locateTableSlot(memory, g.type, g.indirect, g.base, g.tableBytes, g.entrySize, id);
}

/** vgic_its_check_id on a pre-decoded BASER: the entry's guest physical address, or -1 (whatever the reason). */
export function locateEntryIn(memory: GuestMemory, g: BaserGeometry, id: number): number {
  const addr = locateSlotIn(memory, g, id);
  return addr < 0 ? -1 : addr;
}

/** The contract's LocateEntry (table-state.ts): decodes the BASER value, then locates. */
export const locateEntry: LocateEntry = (memory, baser, id) => {
  try {
    return locateEntryIn(memory, decodeBaser(baser), id);
  } catch {
    return -1;
  }
};
