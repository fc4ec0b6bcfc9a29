/**
 * The guest's LPI INTID allocator, as Linux's (irq-gic-v3-its.c: lpi_range_list,
 * alloc_lpi_range / free_lpi_range, its_lpi_alloc): a sorted list of free ranges starting at
 * 8192, first fit, and a request that cannot be met is halved until it fits.
 */
import { LPI_BASE } from '../redist/types.js';

interface LpiRange {
  base: number;
  span: number;
}

export interface LpiBlock {
  base: number;
  count: number;
}

export class LpiAllocator {
  private ranges: LpiRange[];
  readonly idBits: number;

  /** idBits: the guest's lpi_id_bits (LPIs are 8192 .. 2^idBits - 1). */
  constructor(idBits: number) {
    this.idBits = idBits;
    const lpis = 2 ** idBits - LPI_BASE;
    this.ranges = lpis > 0 ? [{ base: LPI_BASE, span: lpis }] : [];
  }

  private allocRange(count: number): number | null {
    for (let i = 0; i < this.ranges.length; i++) {
      const r = this.ranges[i]!;
      if (r.span >= count) {
        const base = r.base;
        r.base += count;
        r.span -= count;
        if (r.span === 0) this.ranges.splice(i, 1);
        return base;
      }
    }
    return null;
  }

  /** its_lpi_alloc: nvec LPIs if possible, else the largest halved count that fits; null if none. */
  alloc(nvec: number): LpiBlock | null {
    let n = nvec;
    while (n > 0) {
      const base = this.allocRange(n);
      if (base !== null) return { base, count: n };
      n = Math.floor(n / 2);
    }
    return null;
  }

  /** free_lpi_range: inserts and merges with neighbours. */
  free(block: LpiBlock): void {
    let i = 0;
    while (i < this.ranges.length && this.ranges[i]!.base < block.base) i++;
    this.ranges.splice(i, 0, { base: block.base, span: block.count });
    const merged: LpiRange[] = [];
    for (const r of this.ranges) {
      const last = merged[merged.length - 1];
      if (last && last.base + last.span === r.base) last.span += r.span;
      else merged.push({ ...r });
    }
    this.ranges = merged;
  }

  get freeCount(): number {
    return this.ranges.reduce((n, r) => n + r.span, 0);
  }
}
