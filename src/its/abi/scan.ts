/**
 * KVM's scan_its_table (kvm-its-abi.md 3.8), iterative and bounded: walks 8-byte entries of a
 * region from `startId`, letting `visit` decide how many entries to advance (0 = the last
 * entry was found: stop). Includes the 2022 exit-condition fix (Linux 6.1, "Fix exit condition
 * in scan_its_table()"): a step that would reach or pass the end of the region stops the walk
 * with "ran off the end" instead of wrapping the remaining length. Every iteration advances at
 * least one entry, so a walk reads at most len / 8 entries.
 *
 * Entries are read through a TableReader: a small window copied from guest memory with one
 * bounds check, so that a walk costs one typed-array load per entry. A read fault happens
 * exactly where KVM's would: only an entry the walk actually reaches must be in guest memory.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { Errno } from '../../util/errno.js';
import { TableError, hex } from './errors.js';

/** Result of a walk: the last entry was found / the walk ran off the end of the region. */
export const SCAN_LAST_FOUND = 0;
export const SCAN_RAN_OFF = 1;

/** Returns the number of entries to advance (>= 1), or 0 when this was the last entry. Throws TableError. */
export type EntryVisitor = (id: number, lo: number, hi: number) => number;

/** Bytes copied per window refill (512 entries). */
const WINDOW = 4096;

/** Read-only cursor over 8-byte table entries of guest memory, with a read-ahead window. */
export class TableReader {
  private readonly bytes = new Uint8Array(WINDOW);
  /** The window: an entry at offset off (from at()) is getUint32(off, true), getUint32(off + 4, true). */
  readonly view = new DataView(this.bytes.buffer);
  private memory: GuestMemory | null = null;
  private winStart = 0;
  private winEnd = 0;
  /** The entry loaded by the last successful load(). */
  lo = 0;
  hi = 0;

  /** Starts reading `memory` (drops the window: call it again whenever guest memory may have changed). */
  reset(memory: GuestMemory): void {
    this.memory = memory;
    this.winStart = 0;
    this.winEnd = 0;
  }

  /**
   * Loads the entry at gpa into lo/hi. `ahead` is how many bytes from gpa belong to the table
   * being walked (the window never reads past them). False when the entry is outside guest memory.
   */
  load(gpa: number, ahead: number): boolean {
    let off = gpa - this.winStart;
    if (off < 0 || gpa + 8 > this.winEnd) {
      if (!this.fill(gpa, ahead)) return false;
      off = 0;
    }
    this.lo = this.view.getUint32(off, true);
    this.hi = this.view.getUint32(off + 4, true);
    return true;
  }

  /**
   * Offset in `view` of the entry at gpa (reading ahead as load() does), or -1 when the entry
   * is outside guest memory. For per-entry loops that read the two words themselves.
   */
  at(gpa: number, ahead: number): number {
    const off = gpa - this.winStart;
    if (off >= 0 && gpa + 8 <= this.winEnd) return off;
    return this.fill(gpa, ahead) ? 0 : -1;
  }

  private fill(gpa: number, ahead: number): boolean {
    const memory = this.memory!;
    let n = Math.min(WINDOW, Math.max(8, ahead - (ahead % 8)));
    if (!memory.contains(gpa, n)) {
      // The table runs out of guest memory somewhere ahead: read entry by entry from here.
      if (n === 8 || !memory.contains(gpa, 8)) return false;
      n = 8;
    }
    memory.readBytes(gpa, this.bytes, 0, n);
    this.winStart = gpa;
    this.winEnd = gpa + n;
    return true;
  }
}

export function scanTable(
  reader: TableReader,
  base: number,
  len: number,
  startId: number,
  table: string,
  visit: EntryVisitor,
): number {
  let gpa = base;
  let id = startId;
  let remaining = len;
  for (;;) {
    if (!reader.load(gpa, remaining)) {
      throw new TableError(Errno.EFAULT, table, id, 'entry', `GPA ${hex(gpa)} is outside guest memory`);
    }
    const step = visit(id, reader.lo, reader.hi);
    if (step === 0) return SCAN_LAST_FOUND;
    const bytes = step * 8;
    if (bytes >= remaining) return SCAN_RAN_OFF;
    id += step;
    gpa += bytes;
    remaining -= bytes;
  }
}

/** 16 hex digits of an entry, for messages. */
export function entryHex(lo: number, hi: number): string {
  return `0x${(hi >>> 0).toString(16).padStart(8, '0')}${(lo >>> 0).toString(16).padStart(8, '0')}`;
}
