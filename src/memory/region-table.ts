/**
 * Validation of a guest memory region table (SET_MEM_TABLE, protocol.md "Memory").
 *
 * Values may arrive as numbers or as bigints (a u64 off the wire); anything that does not fit
 * the rules is an ErrnoError(EINVAL) whose message names the region index and the problem.
 */
import { Errno, ErrnoError } from '../util/errno.js';

/** Most regions in one table (vhost-user's limit; protocol.md: nregions 1..8). */
export const MAX_REGIONS = 8;
/** Granule of gpa, size and mmap offset (and of the dirty log). */
export const GUEST_PAGE_SIZE = 4096;
/** Guest physical addresses end below 2^52 (the GIC's 52-bit PA space). */
export const GPA_LIMIT = 2 ** 52;

/** One region as given by a caller (mmapOffset and fd only for file-backed memory). */
export interface RegionInput {
  readonly gpa: number | bigint;
  readonly size: number | bigint;
  readonly mmapOffset?: number | bigint;
}

/** A region after validation: exact numbers, and its position in the input table. */
export interface ValidatedRegion {
  readonly gpa: number;
  readonly size: number;
  readonly mmapOffset: number;
  /** Index in the table as given (fds of SET_MEM_TABLE come in this order). */
  readonly index: number;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

function invalid(message: string): ErrnoError {
  return new ErrnoError(Errno.EINVAL, message);
}

/** A non-negative integer below 2^53 as a number, or an EINVAL naming the field. */
function exactField(value: number | bigint | undefined, index: number, field: string): number {
  if (value === undefined) return 0;
  if (typeof value === 'bigint') {
    if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
      const shown = value < 0n ? `-0x${(-value).toString(16)}` : `0x${value.toString(16)}`;
      throw invalid(`region ${index}: ${field} ${shown} is out of range (must be below 2^53)`);
    }
    return Number(value);
  }
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(`region ${index}: ${field} ${String(value)} is not a non-negative integer below 2^53`);
  }
  return value;
}

/**
 * Checks a region table and returns it sorted by gpa: 1..8 regions; gpa, size and mmap offset
 * 4 KiB aligned; size > 0; every region ends at or below 2^52; no two regions overlap.
 */
export function validateRegionTable(regions: readonly RegionInput[]): ValidatedRegion[] {
  if (regions.length === 0) throw invalid('region table is empty (at least 1 region)');
  if (regions.length > MAX_REGIONS) throw invalid(`region table has ${regions.length} regions (at most ${MAX_REGIONS})`);
  const out: ValidatedRegion[] = regions.map((r, index) => {
    const gpa = exactField(r.gpa, index, 'guest_phys_addr');
    const size = exactField(r.size, index, 'memory_size');
    const mmapOffset = exactField(r.mmapOffset, index, 'mmap_offset');
    if (size === 0) throw invalid(`region ${index}: memory_size is 0`);
    if (gpa % GUEST_PAGE_SIZE !== 0) throw invalid(`region ${index}: guest_phys_addr ${hex(gpa)} is not 4 KiB aligned`);
    if (size % GUEST_PAGE_SIZE !== 0) throw invalid(`region ${index}: memory_size ${hex(size)} is not a multiple of 4 KiB`);
    if (mmapOffset % GUEST_PAGE_SIZE !== 0) {
      throw invalid(`region ${index}: mmap_offset ${hex(mmapOffset)} is not 4 KiB aligned`);
    }
    if (gpa >= GPA_LIMIT || size > GPA_LIMIT - gpa) {
      throw invalid(`region ${index}: [${hex(gpa)}, ${hex(gpa)} + ${hex(size)}) ends beyond 2^52`);
    }
    if (mmapOffset > Number.MAX_SAFE_INTEGER - size) {
      throw invalid(`region ${index}: mmap_offset ${hex(mmapOffset)} + memory_size ${hex(size)} is beyond 2^53`);
    }
    return { gpa, size, mmapOffset, index };
  });
  out.sort((a, b) => a.gpa - b.gpa);
  for (let i = 1; i < out.length; i++) {
    const prev = out[i - 1]!;
    const cur = out[i]!;
    if (cur.gpa < prev.gpa + prev.size) {
      throw invalid(
        `regions ${prev.index} and ${cur.index} overlap: [${hex(prev.gpa)}, ${hex(prev.gpa + prev.size)}) ` +
          `and [${hex(cur.gpa)}, ${hex(cur.gpa + cur.size)})`,
      );
    }
  }
  return out;
}

/** Bytes a dirty log needs to cover guest physical addresses below `end` (one bit per 4 KiB page). */
export function dirtyLogBytesFor(end: number): number {
  return Math.ceil(Math.ceil(end / GUEST_PAGE_SIZE) / 8);
}
