import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GuestRamAllocator, alignUp, ilog2, roundUpPowerOfTwo } from '../../src/vmm/guest-ram-allocator.js';
import { LpiAllocator } from '../../src/vmm/lpi-allocator.js';

describe('GuestRamAllocator', () => {
  it('hands out aligned, disjoint blocks inside its range and reuses freed space', () => {
    const a = new GuestRamAllocator(0x4000_0000, 0x10_0000); // 1 MiB at 1 GiB
    const q = a.alloc(0x10000, 0x10000);
    expect(q).toBe(0x4000_0000);
    const small = a.alloc(511, 8);
    expect(small).toBe(0x4001_0000);
    const big = a.alloc(0x10000, 0x10000);
    // 0x40010000..0x400101ff is taken: the next 64K-aligned block starts at 0x40020000
    expect(big).toBe(0x4002_0000);
    a.freeAt(q);
    expect(a.alloc(0x8000, 0x8000)).toBe(0x4000_0000);
    expect(() => a.alloc(0x100000, 0x1000)).toThrow(/exhausted/);
  });

  it('property: allocations never overlap and stay in range', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ size: fc.integer({ min: 1, max: 5000 }), alignLog: fc.integer({ min: 0, max: 14 }), free: fc.boolean() }), { maxLength: 60 }), (ops) => {
        const base = 0x1000;
        const a = new GuestRamAllocator(base, 1 << 20);
        const live: { gpa: number; size: number }[] = [];
        for (const op of ops) {
          let gpa: number;
          try {
            gpa = a.alloc(op.size, 2 ** op.alignLog);
          } catch {
            continue;
          }
          expect(gpa % 2 ** op.alignLog).toBe(0);
          expect(gpa).toBeGreaterThanOrEqual(base);
          expect(gpa + op.size).toBeLessThanOrEqual(base + (1 << 20));
          for (const l of live) expect(gpa + op.size <= l.gpa || l.gpa + l.size <= gpa).toBe(true);
          live.push({ gpa, size: op.size });
          if (op.free && live.length > 1) {
            const victim = live.shift()!;
            a.freeAt(victim.gpa);
          }
        }
      }),
    );
  });

  it('helpers', () => {
    expect(alignUp(0x101, 0x100)).toBe(0x200);
    expect(roundUpPowerOfTwo(5)).toBe(8);
    expect(roundUpPowerOfTwo(1)).toBe(1);
    expect(ilog2(8192)).toBe(13);
  });
});

describe('LpiAllocator (Linux its_lpi_alloc)', () => {
  it('first fit from 8192, halving a request that does not fit', () => {
    // 2^14 - 8192 = 8192 LPIs available
    const l = new LpiAllocator(14);
    expect(l.alloc(4)).toEqual({ base: 8192, count: 4 });
    expect(l.alloc(32)).toEqual({ base: 8196, count: 32 });
    const rest = l.freeCount; // 8192 - 36 = 8156
    expect(rest).toBe(8156);
    // 8192 does not fit: halved to 4096, which does
    expect(l.alloc(8192)).toEqual({ base: 8228, count: 4096 });
    l.free({ base: 8192, count: 4 });
    expect(l.alloc(2)).toEqual({ base: 8192, count: 2 });
  });

  it('freed neighbours merge back into one range', () => {
    const l = new LpiAllocator(14);
    const a = l.alloc(16)!;
    const b = l.alloc(16)!;
    l.free(a);
    l.free(b);
    expect(l.alloc(8192)).toEqual({ base: 8192, count: 8192 });
  });
});
