/**
 * Locating table slots for the table ABI: an adapter over the ITS core's single
 * implementation of KVM's vgic_its_check_id (src/its/tables.ts locateTableSlot), which tells
 * apart why a slot cannot be located, because save treats the two cases differently (see
 * save.ts):
 * - LOCATE_OUT_OF_TABLE: the table as BASER now describes it has no slot for the id (id past
 *   the flat table or the level-1 table, level-1 entry invalid, id past the 16-bit ID space);
 * - LOCATE_NOT_IN_MEMORY: the table claims the slot but the level-1 entry or the slot itself
 *   is outside guest memory.
 * Never throws.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { LOCATE_NOT_IN_MEMORY, LOCATE_OUT_OF_TABLE, locateTableSlot } from '../tables.js';
import type { TableGeometry } from './baser.js';

export { LOCATE_NOT_IN_MEMORY, LOCATE_OUT_OF_TABLE };
/** DeviceIDs and ICIDs are 16 bits (GITS_TYPER.Devbits = 15, CIL = 0). */
export const MAX_TABLE_ID = 0xffff;
/** ABI revision 0: 8-byte DTEs, CTEs and ITEs (its commit() sets BASER.Entry_Size to match). */
const ENTRY_SIZE = 8;

/** Guest physical address of slot `id`, or LOCATE_OUT_OF_TABLE / LOCATE_NOT_IN_MEMORY. */
export function locateSlot(memory: GuestMemory, table: TableGeometry, id: number): number {
  return locateTableSlot(memory, table.type, table.indirect, table.base, table.bytes, ENTRY_SIZE, id);
}
