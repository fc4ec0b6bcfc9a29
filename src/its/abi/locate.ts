/**
 * Locating table slots, as KVM's vgic_its_check_id (kvm-its-abi.md 3.6), but telling apart why
 * a slot cannot be located, because save treats the two cases differently (see save.ts):
 * - LOCATE_OUT_OF_TABLE: the table as BASER now describes it has no slot for the id (id past
 *   the flat table or the level-1 table, level-1 entry invalid, id past the 16-bit ID space);
 * - LOCATE_NOT_IN_MEMORY: the table claims the slot but the level-1 entry or the slot itself
 *   is outside guest memory.
 * Never throws.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { TableGeometry } from './baser.js';
import { L2_ENTRIES, Level1Entry } from './level1.js';

export const LOCATE_OUT_OF_TABLE = -1;
export const LOCATE_NOT_IN_MEMORY = -2;
/** DeviceIDs and ICIDs are 16 bits (GITS_TYPER.Devbits = 15, CIL = 0). */
export const MAX_TABLE_ID = 0xffff;

const scratch = new Uint32Array(2);

/** Guest physical address of slot `id`, or LOCATE_OUT_OF_TABLE / LOCATE_NOT_IN_MEMORY. */
export function locateSlot(memory: GuestMemory, table: TableGeometry, id: number): number {
  if (id < 0 || id > MAX_TABLE_ID) return LOCATE_OUT_OF_TABLE;
  let addr: number;
  if (!table.indirect) {
    if (id >= table.slots) return LOCATE_OUT_OF_TABLE;
    addr = table.base + id * 8;
  } else {
    const idx = Math.floor(id / L2_ENTRIES);
    if (idx >= table.slots) return LOCATE_OUT_OF_TABLE;
    const l1 = table.base + idx * 8;
    if (!memory.contains(l1, 8)) return LOCATE_NOT_IN_MEMORY;
    memory.readU64Into(l1, scratch, 0);
    if (!Level1Entry.valid(scratch[1]!)) return LOCATE_OUT_OF_TABLE;
    addr = Level1Entry.l2Addr(scratch[0]!, scratch[1]!) + (id % L2_ENTRIES) * 8;
  }
  return memory.contains(addr, 8) ? addr : LOCATE_NOT_IN_MEMORY;
}
