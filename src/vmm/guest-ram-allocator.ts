/**
 * A simple allocator of guest physical memory for the reference guest: first fit over a
 * sorted free list, with power-of-two alignment. It stands in for the guest kernel's page
 * allocator (alloc_pages of order n is naturally aligned to its size) and kmalloc.
 *
 * The allocator only hands out addresses; zeroing (Linux's __GFP_ZERO / kzalloc) is done
 * by the caller through GuestMemory, so the writes show up in the dirty log like a guest's.
 */
import { Errno, ErrnoError } from '../util/errno.js';

interface FreeRange {
  start: number;
  end: number; // exclusive
}

export interface Allocation {
  readonly gpa: number;
  readonly size: number;
}

export class GuestRamAllocator {
  private free: FreeRange[];
  private readonly live = new Map<number, number>(); // gpa -> size
  readonly base: number;
  readonly size: number;

  constructor(base: number, size: number) {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(size) || base < 0 || size <= 0) {
      throw new ErrnoError(Errno.EINVAL, `bad allocator range 0x${base.toString(16)}+0x${size.toString(16)}`);
    }
    this.base = base;
    this.size = size;
    this.free = [{ start: base, end: base + size }];
  }

  /** Allocates size bytes aligned to align (a power of two). Throws ENOMEM when nothing fits. */
  alloc(size: number, align = 8): number {
    if (!(size > 0) || !Number.isSafeInteger(size)) throw new ErrnoError(Errno.EINVAL, `bad allocation size ${size}`);
    if (!isPowerOfTwo(align)) throw new ErrnoError(Errno.EINVAL, `alignment ${align} is not a power of two`);
    for (let i = 0; i < this.free.length; i++) {
      const r = this.free[i]!;
      const start = alignUp(r.start, align);
      if (start + size > r.end) continue;
      const pieces: FreeRange[] = [];
      if (start > r.start) pieces.push({ start: r.start, end: start });
      if (start + size < r.end) pieces.push({ start: start + size, end: r.end });
      this.free.splice(i, 1, ...pieces);
      this.live.set(start, size);
      return start;
    }
    throw new ErrnoError(Errno.ENOMEM, `guest RAM exhausted: no ${size} bytes aligned to ${align}`);
  }

  /** Returns an allocation made by alloc(). */
  freeAt(gpa: number): void {
    const size = this.live.get(gpa);
    if (size === undefined) throw new ErrnoError(Errno.EINVAL, `0x${gpa.toString(16)} was not allocated`);
    this.live.delete(gpa);
    let i = 0;
    while (i < this.free.length && this.free[i]!.start < gpa) i++;
    this.free.splice(i, 0, { start: gpa, end: gpa + size });
    // Coalesce with neighbours.
    const merged: FreeRange[] = [];
    for (const r of this.free) {
      const last = merged[merged.length - 1];
      if (last && last.end === r.start) last.end = r.end;
      else merged.push({ ...r });
    }
    this.free = merged;
  }

  /** Bytes currently handed out. */
  get used(): number {
    let n = 0;
    for (const s of this.live.values()) n += s;
    return n;
  }

  allocations(): Allocation[] {
    return [...this.live.entries()].sort((a, b) => a[0] - b[0]).map(([gpa, size]) => ({ gpa, size }));
  }
}

export function alignUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}

export function isPowerOfTwo(n: number): boolean {
  return n > 0 && Number.isInteger(Math.log2(n));
}

export function roundUpPowerOfTwo(n: number): number {
  if (n <= 1) return 1;
  return 2 ** Math.ceil(Math.log2(n));
}

/** Linux ilog2 for positive integers. */
export function ilog2(n: number): number {
  return Math.floor(Math.log2(n));
}
