/**
 * The GuestMemory contract, run against both implementations (plain ArrayBuffers and a real
 * memfd mapped MAP_SHARED through the native shim).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { GuestMemoryFault, GuestMemoryFrozen } from '../../src/memory/errors.js';
import type { ChunkedGuestMemory } from '../../src/memory/chunked-guest-memory.js';
import { EmptyGuestMemory } from '../../src/memory/empty-guest-memory.js';
import { Errno, ErrnoError } from '../../src/util/errno.js';
import { bytesAt, dirtyPages, expectFault, implementations } from './helpers.js';

for (const impl of implementations) {
  describe(impl.name, () => {
    const open: ChunkedGuestMemory[] = [];
    const create = (...args: Parameters<typeof impl.create>): ChunkedGuestMemory => {
      const mem = impl.create(...args);
      open.push(mem);
      return mem;
    };
    afterEach(() => {
      for (const mem of open.splice(0)) mem.close();
    });

    // Two regions with a hole between them: [0x1000, 0x3000) and [0x5000, 0x6000).
    const twoRegions = [
      { gpa: 0x5000, size: 0x1000 },
      { gpa: 0x1000, size: 0x2000 },
    ];

    describe('regions and contains', () => {
      it('lists the regions sorted by gpa', () => {
        const mem = create(twoRegions);
        expect(mem.regions).toEqual([
          { gpa: 0x1000, size: 0x2000 },
          { gpa: 0x5000, size: 0x1000 },
        ]);
      });

      it('contains() is true exactly for ranges inside one region', () => {
        const mem = create(twoRegions);
        expect(mem.contains(0x1000, 1)).toBe(true); // first byte
        expect(mem.contains(0x2fff, 1)).toBe(true); // last byte
        expect(mem.contains(0x1000, 0x2000)).toBe(true); // the whole region
        expect(mem.contains(0x1000, 0x2001)).toBe(false); // one past the end
        expect(mem.contains(0x0fff, 1)).toBe(false); // just below
        expect(mem.contains(0x3000, 1)).toBe(false); // just above
        expect(mem.contains(0x4000, 4)).toBe(false); // in the hole
        expect(mem.contains(0x2ffc, 0x2008)).toBe(false); // spans the hole into region 2
        expect(mem.contains(0x1000, 0)).toBe(false); // len must be >= 1
        expect(mem.contains(-1, 1)).toBe(false);
        expect(mem.contains(Number.NaN, 1)).toBe(false);
        expect(mem.contains(4096.8, 1)).toBe(false);
      });
    });

    describe('bounds', () => {
      it('reads the first and last byte of each region', () => {
        const mem = create(twoRegions);
        mem.writeU8(0x1000, 0xa1);
        mem.writeU8(0x2fff, 0xa2);
        mem.writeU8(0x5000, 0xa3);
        mem.writeU8(0x5fff, 0xa4);
        expect([mem.readU8(0x1000), mem.readU8(0x2fff), mem.readU8(0x5000), mem.readU8(0x5fff)]).toEqual([0xa1, 0xa2, 0xa3, 0xa4]);
        // the widest access that still fits at the end
        mem.writeU64(0x2ff8, 1, 2);
        expect([mem.readU64Lo(0x2ff8), mem.readU64Hi(0x2ff8)]).toEqual([1, 2]);
        expect(mem.readU32(0x2ffc)).toBe(2);
        expect(mem.readU16(0x2ffe)).toBe(0);
      });

      it('faults on accesses crossing the end of a region, for every size', () => {
        const mem = create(twoRegions);
        expectFault(() => mem.readU8(0x3000), 0x3000, 1);
        expectFault(() => mem.readU16(0x2fff), 0x2fff, 2);
        expectFault(() => mem.readU32(0x2ffd), 0x2ffd, 4);
        expectFault(() => mem.readU64Lo(0x2ff9), 0x2ff9, 8);
        expectFault(() => mem.readU64Hi(0x2ffc), 0x2ffc, 8);
        expectFault(() => mem.readU64Into(0x2ffc, new Uint32Array(2), 0), 0x2ffc, 8);
        expectFault(() => mem.readU64Big(0x5ffc), 0x5ffc, 8);
        expectFault(() => mem.readBytes(0x2f00, new Uint8Array(0x101)), 0x2f00, 0x101);
      });

      it('faults below the first region, in the hole and above the last one', () => {
        const mem = create(twoRegions);
        expectFault(() => mem.readU32(0), 0, 4);
        expectFault(() => mem.readU8(0xfff), 0xfff, 1);
        expectFault(() => mem.readU32(0x0ffe), 0x0ffe, 4); // starts before, ends inside
        expectFault(() => mem.readU32(0x4000), 0x4000, 4);
        expectFault(() => mem.readU8(0x6000), 0x6000, 1);
        expectFault(() => mem.readU64Lo(2 ** 40), 2 ** 40, 8);
      });

      it('faults on an access spanning two adjacent regions', () => {
        // [0x1000, 0x2000) and [0x2000, 0x3000): every byte is in guest memory, but not in one region
        const mem = create([
          { gpa: 0x1000, size: 0x1000 },
          { gpa: 0x2000, size: 0x1000 },
        ]);
        expect(mem.readU32(0x1ffc)).toBe(0);
        expect(mem.readU32(0x2000)).toBe(0);
        expectFault(() => mem.readU32(0x1ffe), 0x1ffe, 4);
        expectFault(() => mem.writeU64(0x1ffc, 1, 1), 0x1ffc, 8);
        expectFault(() => mem.fill(0x1800, 0x1000, 0xff), 0x1800, 0x1000);
        expect(bytesAt(mem, 0x1ff8, 16)).toEqual(new Array(16).fill(0));
      });

      it('faults on negative, NaN, infinite, fractional and huge addresses', () => {
        const mem = create(twoRegions);
        mem.readU32(0x1000); // the cache now holds region 1
        for (const gpa of [-1, -4096, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 4096.5, 4097.25, 2 ** 53, 2 ** 64, Number.MAX_VALUE]) {
          expectFault(() => mem.readU32(gpa), gpa, 4);
          expectFault(() => mem.readU8(gpa), gpa, 1);
          expectFault(() => mem.writeU32(gpa, 1), gpa, 4);
          expectFault(() => mem.writeU64(gpa, 1, 1), gpa, 8);
        }
        // an address whose offset from the cached chunk wraps modulo 2^32 must not alias it
        expectFault(() => mem.readU32(0x1000 + 2 ** 32), 0x1000 + 2 ** 32, 4);
        expectFault(() => mem.readU32(0x1000 - 2 ** 32), 0x1000 - 2 ** 32, 4);
        expect(bytesAt(mem, 0x1000, 8)).toEqual(new Array(8).fill(0));
      });

      it('a faulting write writes nothing, marks nothing and counts nothing', () => {
        const mem = create([
          { gpa: 0x1000, size: 0x1000 },
          { gpa: 0x2000, size: 0x1000 },
        ]);
        const log = new Uint8Array(1);
        mem.setDirtyLog(log);
        const faulting: Array<() => void> = [
          () => mem.writeU8(0x3000, 1),
          () => mem.writeU16(0x2fff, 0xffff),
          () => mem.writeU32(0x1ffe, 0xffffffff),
          () => mem.writeU64(0x1ffc, 0xffffffff, 0xffffffff),
          () => mem.writeU64Big(0x2ffc, -1n),
          () => mem.writeBytes(0x1ff0, new Uint8Array(0x20).fill(0xff)),
          () => mem.fill(0x2f00, 0x101, 0xff),
          () => mem.writeU32(0x0ffc, 0xffffffff),
        ];
        for (const write of faulting) expect(write).toThrow(GuestMemoryFault);
        expect(bytesAt(mem, 0x1ff0, 0x20)).toEqual(new Array(0x20).fill(0));
        expect(bytesAt(mem, 0x2ff0, 0x10)).toEqual(new Array(0x10).fill(0));
        expect(dirtyPages(log)).toEqual([]);
        expect(mem.bytesWritten).toBe(0);
      });
    });

    describe('byte order (little-endian)', () => {
      it('writes u16/u32/u64 least significant byte first', () => {
        const mem = create([{ gpa: 0x10000, size: 0x1000 }]);
        mem.writeU16(0x10000, 0xbeef);
        expect(bytesAt(mem, 0x10000, 2)).toEqual([0xef, 0xbe]);
        mem.writeU32(0x10010, 0x11223344);
        expect(bytesAt(mem, 0x10010, 4)).toEqual([0x44, 0x33, 0x22, 0x11]);
        mem.writeU64(0x10020, 0x55667788, 0x11223344); // value 0x11223344_55667788
        expect(bytesAt(mem, 0x10020, 8)).toEqual([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        mem.writeU64Big(0x10030, 0x0102030405060708n);
        expect(bytesAt(mem, 0x10030, 8)).toEqual([8, 7, 6, 5, 4, 3, 2, 1]);
      });

      it('reads back what the bytes say', () => {
        const mem = create([{ gpa: 0x10000, size: 0x1000 }]);
        mem.writeBytes(0x10100, Uint8Array.from([0x01, 0x02, 0x03, 0x04, 0xf5, 0xf6, 0xf7, 0xf8]));
        expect(mem.readU8(0x10100)).toBe(0x01);
        expect(mem.readU16(0x10100)).toBe(0x0201);
        expect(mem.readU32(0x10100)).toBe(0x04030201);
        expect(mem.readU32(0x10104)).toBe(0xf8f7f6f5); // unsigned, not negative
        expect(mem.readU64Lo(0x10100)).toBe(0x04030201);
        expect(mem.readU64Hi(0x10100)).toBe(0xf8f7f6f5);
        expect(mem.readU64Big(0x10100)).toBe(0xf8f7f6f504030201n);
        const out = new Uint32Array(4);
        mem.readU64Into(0x10100, out, 1);
        expect([...out]).toEqual([0, 0x04030201, 0xf8f7f6f5, 0]);
        expect(mem.readU32(0x10101)).toBe(0xf5040302); // unaligned
      });

      it('stores values modulo their width', () => {
        const mem = create([{ gpa: 0, size: 0x1000 }]);
        mem.writeU32(0, -1); // ToUint32(-1) = 0xffffffff
        expect(mem.readU32(0)).toBe(0xffffffff);
        mem.writeU8(8, 0x1ff);
        expect(mem.readU8(8)).toBe(0xff);
        mem.writeU64Big(16, -2n); // two's complement: 0xffff_ffff_ffff_fffe
        expect([mem.readU64Lo(16), mem.readU64Hi(16)]).toEqual([0xfffffffe, 0xffffffff]);
      });
    });

    describe('bulk access', () => {
      it('readBytes/writeBytes honour offsets and lengths', () => {
        const mem = create([{ gpa: 0x2000, size: 0x2000 }]);
        const src = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
        mem.writeBytes(0x2ffa, src, 4, 8); // bytes 5..12, spanning the page boundary at 0x3000
        expect(bytesAt(mem, 0x2ff9, 10)).toEqual([0, 5, 6, 7, 8, 9, 10, 11, 12, 0]);
        const dst = new Uint8Array(12);
        mem.readBytes(0x2ffa, dst, 2, 8);
        expect([...dst]).toEqual([0, 0, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0]);
        expect(() => mem.readBytes(0x2000, dst, 8, 8)).toThrow(RangeError); // window beyond dst
        mem.readBytes(0x9999_0000, dst, 0, 0); // zero length: nothing to check
      });

      it('fill sets every byte of the range and nothing else', () => {
        const mem = create([{ gpa: 0x2000, size: 0x2000 }]);
        mem.fill(0x2ffe, 5, 0xab);
        expect(bytesAt(mem, 0x2ffd, 7)).toEqual([0, 0xab, 0xab, 0xab, 0xab, 0xab, 0]);
      });

      it('counts bytes written on every path', () => {
        const mem = create([{ gpa: 0, size: 0x2000 }]);
        mem.writeU8(0, 1);
        mem.writeU16(2, 1);
        mem.writeU32(4, 1);
        mem.writeU64(8, 1, 1);
        mem.writeU64Big(16, 1n);
        mem.writeBytes(32, new Uint8Array(10));
        mem.fill(64, 100, 0);
        // 1 + 2 + 4 + 8 + 8 + 10 + 100
        expect(mem.bytesWritten).toBe(133);
      });
    });

    describe('chunks (a region cut into several mappings)', () => {
      // chunk size 0x2000: region [0x10000, 0x17000) is chunks [0x10000,0x12000), [0x12000,0x14000), ...
      const region = [{ gpa: 0x10000, size: 0x7000 }];

      it('accesses straddling a chunk boundary read and write every byte in place', () => {
        const mem = create(region, 0x2000);
        mem.writeU64(0x11ffc, 0x44332211, 0x88776655);
        expect(bytesAt(mem, 0x11ffc, 8)).toEqual([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        expect(mem.readU64Lo(0x11ffc)).toBe(0x44332211);
        expect(mem.readU64Hi(0x11ffc)).toBe(0x88776655);
        expect(mem.readU32(0x11ffe)).toBe(0x66554433);
        expect(mem.readU16(0x11fff)).toBe(0x5544);
        const out = new Uint32Array(2);
        mem.readU64Into(0x11ffc, out, 0);
        expect([...out]).toEqual([0x44332211, 0x88776655]);
        mem.writeU32(0x13ffe, 0xddccbbaa);
        expect(bytesAt(mem, 0x13ffe, 4)).toEqual([0xaa, 0xbb, 0xcc, 0xdd]);
        mem.writeU16(0x15fff, 0x2211);
        expect(bytesAt(mem, 0x15fff, 2)).toEqual([0x11, 0x22]);
        // bulk copies across several chunks
        const src = Uint8Array.from({ length: 0x5000 }, (_, i) => (i * 7) & 0xff);
        mem.writeBytes(0x11000, src);
        const back = new Uint8Array(0x5000);
        mem.readBytes(0x11000, back);
        expect(Buffer.from(back).equals(Buffer.from(src))).toBe(true);
        mem.fill(0x11fff, 0x4002, 0x5a); // [0x11fff, 0x16001)
        expect(bytesAt(mem, 0x11ffe, 3)).toEqual([(0xffe * 7) & 0xff, 0x5a, 0x5a]); // src[0xffe], then the fill
        expect(mem.readU8(0x16000)).toBe(0x5a); // last filled byte
        expect(mem.readU8(0x16001)).toBe(0); // beyond both the copy and the fill
      });

      it('the last, shorter chunk ends the region', () => {
        const mem = create(region, 0x2000); // last chunk [0x16000, 0x17000)
        mem.writeU32(0x16ffc, 7);
        expect(mem.readU32(0x16ffc)).toBe(7);
        expectFault(() => mem.readU32(0x16ffe), 0x16ffe, 4);
        expectFault(() => mem.writeU64(0x16ffc, 1, 1), 0x16ffc, 8);
      });
    });

    describe('freeze', () => {
      it('refuses every write while frozen, writing nothing, and allows reads', () => {
        const mem = create([{ gpa: 0x1000, size: 0x3000 }], 0x1000);
        const log = new Uint8Array(1);
        mem.setDirtyLog(log);
        mem.writeU32(0x1000, 0x12345678);
        log.fill(0);
        const before = mem.bytesWritten;
        mem.freeze();
        expect(mem.frozen).toBe(true);
        const writes: Array<() => void> = [
          () => mem.writeU8(0x1000, 0xff),
          () => mem.writeU16(0x1000, 0xffff),
          () => mem.writeU32(0x1000, 0xffffffff),
          () => mem.writeU64(0x1000, 0xffffffff, 0xffffffff),
          () => mem.writeU64(0x1ffc, 0xffffffff, 0xffffffff), // straddles two chunks
          () => mem.writeU64Big(0x1000, -1n),
          () => mem.writeBytes(0x1000, new Uint8Array(4).fill(0xff)),
          () => mem.fill(0x1000, 4, 0xff),
        ];
        for (const write of writes) {
          let caught: unknown;
          try {
            write();
          } catch (e) {
            caught = e;
          }
          expect(caught).toBeInstanceOf(GuestMemoryFrozen);
          expect((caught as GuestMemoryFrozen).errno).toBe(Errno.EBUSY);
        }
        expect(mem.readU32(0x1000)).toBe(0x12345678);
        expect(mem.readU32(0x1ffc)).toBe(0);
        expect(dirtyPages(log)).toEqual([]);
        expect(mem.bytesWritten).toBe(before);
        mem.thaw();
        expect(mem.frozen).toBe(false);
        mem.writeU32(0x1000, 1);
        expect(mem.readU32(0x1000)).toBe(1);
      });
    });

    describe('dirty log', () => {
      it('marks exactly the pages written, with the right bit of the right byte', () => {
        // Region at page 3 (0x3000): page n is bit n % 8 of byte n / 8.
        const mem = create([{ gpa: 0x3000, size: 0x10000 }]);
        const log = new Uint8Array(3); // pages 0..23; the region ends at page 0x13 = 19
        mem.setDirtyLog(log);
        mem.writeU32(0x3000, 1); // page 3 -> byte 0, bit 3
        expect([...log]).toEqual([0b0000_1000, 0, 0]);
        mem.writeU64(0x4ffc, 1, 1); // 0x4ffc..0x5003: pages 4 and 5
        expect([...log]).toEqual([0b0011_1000, 0, 0]);
        mem.writeU8(0x8fff, 1); // page 8 -> byte 1, bit 0
        mem.writeU16(0x9fff, 1); // pages 9 and 10
        expect([...log]).toEqual([0b0011_1000, 0b0000_0111, 0]);
        mem.writeBytes(0xb800, new Uint8Array(0x2000)); // 0xb800..0xd7ff: pages 11, 12, 13
        mem.fill(0x12fff, 1, 0); // page 18 -> byte 2, bit 2
        expect(dirtyPages(log)).toEqual([3, 4, 5, 8, 9, 10, 11, 12, 13, 18]);
        // reads mark nothing
        mem.readU64Lo(0x6000);
        mem.readBytes(0x7000, new Uint8Array(0x1000));
        expect(dirtyPages(log)).toEqual([3, 4, 5, 8, 9, 10, 11, 12, 13, 18]);
      });

      it('marks the second page of a page-crossing write even when the first is already dirty', () => {
        const mem = create([{ gpa: 0, size: 0x8000 }]);
        const log = new Uint8Array(1);
        mem.setDirtyLog(log);
        mem.readU8(0); // load the chunk cache: the writes below take the fast path
        const cases: Array<[write: () => void, firstPage: number]> = [
          [() => mem.writeU16(0x1fff, 0xffff), 1], // bytes 0x1fff..0x2000: pages 1, 2
          [() => mem.writeU32(0x3ffe, 0xffffffff), 3], // 0x3ffe..0x4001: pages 3, 4
          [() => mem.writeU64(0x5ff9, 1, 1), 5], // 0x5ff9..0x6000: pages 5, 6
        ];
        for (const [write, first] of cases) {
          log[0] = 1 << first; // the first page is already marked
          write();
          expect(dirtyPages(log)).toEqual([first, first + 1]);
        }
      });

      it('marks a write again after the VMM cleared the bit', () => {
        const mem = create([{ gpa: 0, size: 0x2000 }]);
        const log = new Uint8Array(1);
        mem.setDirtyLog(log);
        mem.writeU32(0x1000, 1);
        expect(log[0]).toBe(0b10);
        log[0] = 0; // the VMM collected the log
        mem.writeU32(0x1004, 2);
        expect(log[0]).toBe(0b10);
      });

      it('marks pages of writes straddling chunks and of every chunk (page shift within the log byte)', () => {
        // region at page 1; chunks of 0x2000: [0x1000,0x3000) [0x3000,0x5000) [0x5000,0x7000)
        const mem = create([{ gpa: 0x1000, size: 0x6000 }], 0x2000);
        const log = new Uint8Array(1);
        mem.setDirtyLog(log);
        mem.writeU64(0x2ffc, 1, 2); // pages 2 and 3, across the chunk boundary at 0x3000
        expect(dirtyPages(log)).toEqual([2, 3]);
        mem.writeU32(0x6ffc, 3); // page 6 in the last chunk
        expect(dirtyPages(log)).toEqual([2, 3, 6]);
        mem.writeU8(0x1000, 1); // page 1, first chunk
        expect(dirtyPages(log)).toEqual([1, 2, 3, 6]);
      });

      it('rejects a log too small to cover the highest region end', () => {
        const mem = create(twoRegions); // ends at 0x6000: pages 0..5 -> 1 byte
        expect(() => mem.setDirtyLog(new Uint8Array(0))).toThrow(ErrnoError);
        const mem2 = create([{ gpa: 0x10_0000, size: 0x1000 }]); // page 256 -> byte 32: needs 33 bytes
        let caught: unknown;
        try {
          mem2.setDirtyLog(new Uint8Array(32));
        } catch (e) {
          caught = e;
        }
        expect((caught as ErrnoError).errno).toBe(Errno.EINVAL);
        expect((caught as ErrnoError).message).toMatch(/needs 33 bytes/);
        mem2.setDirtyLog(new Uint8Array(33));
        mem2.writeU8(0x10_0000, 1);
        expect(mem2.dirtyLog![32]).toBe(1);
      });

      it('detaching the log stops marking', () => {
        const mem = create([{ gpa: 0, size: 0x1000 }]);
        const log = new Uint8Array(1);
        mem.setDirtyLog(log);
        mem.setDirtyLog(null);
        expect(mem.dirtyLog).toBeNull();
        mem.writeU32(0, 1);
        expect(log[0]).toBe(0);
      });
    });

    describe('high guest physical addresses', () => {
      it('works for regions above 4 GiB and near 2^52', () => {
        const high = 2 ** 52 - 0x2000;
        const mem = create([
          { gpa: 0x1_0000_0000, size: 0x2000 },
          { gpa: high, size: 0x2000 },
        ]);
        mem.writeU64(0x1_0000_1ff8, 0xaabbccdd, 0x11223344);
        expect(mem.readU64Big(0x1_0000_1ff8)).toBe(0x11223344aabbccddn);
        mem.writeU32(high + 0x1ffc, 0xcafef00d);
        expect(mem.readU32(high + 0x1ffc)).toBe(0xcafef00d);
        expectFault(() => mem.readU32(high + 0x1ffe), high + 0x1ffe, 4);
        expectFault(() => mem.readU32(0x1_0000_2000), 0x1_0000_2000, 4);
        expect(mem.readU32(0x1_0000_1ffc)).toBe(0x11223344);
      });
    });

    describe('close', () => {
      it('every access faults after close()', () => {
        const mem = impl.create([{ gpa: 0, size: 0x1000 }]);
        mem.writeU32(0, 5);
        mem.close();
        expect(mem.closed).toBe(true);
        expectFault(() => mem.readU32(0), 0, 4);
        expectFault(() => mem.writeU32(0, 1), 0, 4);
        expect(mem.contains(0, 1)).toBe(false);
        mem.close(); // idempotent
      });
    });
  });
}

describe('EmptyGuestMemory', () => {
  it('has no regions and every access faults', () => {
    const mem = new EmptyGuestMemory();
    expect(mem.regions).toEqual([]);
    expect(mem.contains(0, 1)).toBe(false);
    expectFault(() => mem.readU8(0), 0, 1);
    expectFault(() => mem.writeU64(0x1000, 1, 2), 0x1000, 8);
    expectFault(() => mem.readBytes(0, new Uint8Array(4)), 0, 4);
    mem.setDirtyLog(new Uint8Array(0)); // covers every (no) region
    expect(mem.bytesWritten).toBe(0);
  });
});
