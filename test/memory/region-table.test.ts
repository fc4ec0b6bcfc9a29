import { describe, expect, it } from 'vitest';
import { Errno, ErrnoError } from '../../src/util/errno.js';
import { GPA_LIMIT, dirtyLogBytesFor, validateRegionTable, type RegionInput } from '../../src/memory/region-table.js';

function rejects(regions: readonly RegionInput[], message: RegExp): void {
  let caught: unknown;
  try {
    validateRegionTable(regions);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(ErrnoError);
  expect((caught as ErrnoError).errno).toBe(Errno.EINVAL);
  expect((caught as ErrnoError).message).toMatch(message);
}

describe('validateRegionTable', () => {
  it('accepts a valid table and returns it sorted by gpa with the original indices', () => {
    const table = validateRegionTable([
      { gpa: 0x8000_0000, size: 0x1000, mmapOffset: 0x2000 },
      { gpa: 0x4000_0000, size: 0x4000_0000 }, // ends exactly where the first begins: no overlap
    ]);
    expect(table).toEqual([
      { gpa: 0x4000_0000, size: 0x4000_0000, mmapOffset: 0, index: 1 },
      { gpa: 0x8000_0000, size: 0x1000, mmapOffset: 0x2000, index: 0 },
    ]);
  });

  it('accepts u64 fields given as bigints', () => {
    const table = validateRegionTable([{ gpa: 0x1_0000_0000n, size: 0x2000n, mmapOffset: 0x1000n }]);
    expect(table[0]).toEqual({ gpa: 2 ** 32, size: 0x2000, mmapOffset: 0x1000, index: 0 });
  });

  it('accepts a region that ends exactly at 2^52', () => {
    expect(validateRegionTable([{ gpa: GPA_LIMIT - 0x1000, size: 0x1000 }])[0]!.gpa).toBe(2 ** 52 - 4096);
  });

  it('rejects an empty table and more than 8 regions', () => {
    rejects([], /empty/);
    const nine = Array.from({ length: 9 }, (_, i) => ({ gpa: i * 0x1000, size: 0x1000 }));
    rejects(nine, /9 regions.*at most 8/);
    expect(validateRegionTable(nine.slice(0, 8))).toHaveLength(8);
  });

  it('names the region and the field that is misaligned', () => {
    rejects([{ gpa: 0, size: 0x1000 }, { gpa: 0x10800, size: 0x1000 }], /region 1: guest_phys_addr 0x10800 is not 4 KiB aligned/);
    rejects([{ gpa: 0, size: 0x1800 }], /region 0: memory_size 0x1800 is not a multiple of 4 KiB/);
    rejects([{ gpa: 0, size: 0x1000, mmapOffset: 0x10 }], /region 0: mmap_offset 0x10 is not 4 KiB aligned/);
  });

  it('rejects a zero size', () => {
    rejects([{ gpa: 0x1000, size: 0 }], /region 0: memory_size is 0/);
  });

  it('rejects negative, fractional, NaN and too-large values', () => {
    rejects([{ gpa: -4096, size: 0x1000 }], /region 0: guest_phys_addr -4096 is not a non-negative integer/);
    rejects([{ gpa: 0, size: 4096.5 }], /region 0: memory_size 4096.5/);
    rejects([{ gpa: Number.NaN, size: 0x1000 }], /region 0: guest_phys_addr NaN/);
    rejects([{ gpa: 0n, size: 0x1000n, mmapOffset: 1n << 60n }], /region 0: mmap_offset 0x1000000000000000 is out of range/);
    rejects([{ gpa: -1n, size: 0x1000n }], /region 0: guest_phys_addr -0x1 is out of range/);
  });

  it('rejects a region that wraps beyond 2^52', () => {
    // 2^52 - 4096 + 8192 = 2^52 + 4096 > 2^52
    rejects([{ gpa: GPA_LIMIT - 0x1000, size: 0x2000 }], /region 0: .* ends beyond 2\^52/);
    rejects([{ gpa: 0, size: 0x1000 }, { gpa: GPA_LIMIT, size: 0x1000 }], /region 1: .* ends beyond 2\^52/);
  });

  it('rejects overlapping regions, naming both', () => {
    // [0x1000, 0x3000) and [0x2000, 0x3000) share the page at 0x2000
    rejects([{ gpa: 0x2000, size: 0x1000 }, { gpa: 0x10000, size: 0x1000 }, { gpa: 0x1000, size: 0x2000 }], /regions 2 and 0 overlap: \[0x1000, 0x3000\) and \[0x2000, 0x3000\)/);
    rejects([{ gpa: 0x1000, size: 0x1000 }, { gpa: 0x1000, size: 0x1000 }], /regions 0 and 1 overlap/);
  });
});

describe('dirtyLogBytesFor', () => {
  it('is one bit per 4 KiB page, rounded up to whole bytes', () => {
    expect(dirtyLogBytesFor(0)).toBe(0);
    expect(dirtyLogBytesFor(4096)).toBe(1); // page 0 -> byte 0
    expect(dirtyLogBytesFor(8 * 4096)).toBe(1); // pages 0..7 -> byte 0
    expect(dirtyLogBytesFor(9 * 4096)).toBe(2); // page 8 -> byte 1
    expect(dirtyLogBytesFor(2 ** 32)).toBe(2 ** 32 / 4096 / 8); // 131072
  });
});
