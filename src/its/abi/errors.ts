/**
 * Errors of the table ABI: a Linux errno (as KVM returns it) plus where it happened, so a VMM
 * operator can tell which table, which entry and which field of a saved image was rejected.
 */
import { ErrnoError } from '../../util/errno.js';

export class TableError extends ErrnoError {
  /** "collection table", "device table", "device table L1", "ITT of device 0x...". */
  readonly table: string;
  /** Slot index inside that table (CTE index, DeviceID, L1 index or EventID). */
  readonly index: number;
  /** Entry field at fault ("RDbase", "Size", "pINTID", "next", ...). */
  readonly field: string;
  constructor(errno: number, table: string, index: number, field: string, detail: string) {
    super(errno, `${table} entry ${index}: ${field}: ${detail}`);
    this.name = 'TableError';
    this.table = table;
    this.index = index;
    this.field = field;
  }
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
