/**
 * GuestMemory.wordWindow / writableWordWindow / wroteWindow (the zero-copy table walk and
 * table save paths), run against both implementations (plain ArrayBuffers and a real memfd
 * mapped MAP_SHARED). Expected values come from the independent single-access paths
 * (writeU8/readU8/readU32) and from page arithmetic done here (page n = GPA n * 4096; bit
 * n % 8 of byte n / 8 of the dirty log).
 */
import { describe, expect, it } from 'vitest';
import type { ChunkedGuestMemory } from '../../src/memory/chunked-guest-memory.js';
import type { WordWindow } from '../../src/memory/guest-memory.js';
import { dirtyLogBytesFor } from '../../src/memory/region-table.js';
import { closedAfterEach, dirtyPages, expectFault, implementations } from './helpers.js';

/** Two regions with a hole: [0x10000, 0x18000) (8 pages) and [0x20000, 0x22000) (2 pages). */
const REGIONS = [
  { gpa: 0x10000, size: 0x8000 },
  { gpa: 0x20000, size: 0x2000 },
];
const R0_END = 0x18000;
const R1_END = 0x22000;
/** Small chunks: region 0 is cut into 4 chunks of 8 KiB (boundaries 0x12000, 0x14000, 0x16000). */
const CHUNK = 0x2000;

/** A byte pattern that differs at every offset: byte at GPA g = (g * 7 + (g >>> 8)) & 0xff. */
function patternByte(gpa: number): number {
  return (gpa * 7 + (gpa >>> 8)) & 0xff;
}

function fillPattern(mem: ChunkedGuestMemory): void {
  for (const r of mem.regions) for (let g = r.gpa; g < r.gpa + r.size; g++) mem.writeU8(g, patternByte(g));
}

/** The u32 at gpa as the guest sees it: little-endian bytes of the pattern, computed here. */
function patternU32(gpa: number): number {
  return (patternByte(gpa) | (patternByte(gpa + 1) << 8) | (patternByte(gpa + 2) << 16) | (patternByte(gpa + 3) << 24)) >>> 0;
}

function mustWindow(w: WordWindow | null): WordWindow {
  expect(w).not.toBeNull();
  return w!;
}

for (const impl of implementations) {
  describe(`${impl.name}: wordWindow`, () => {
    const create = closedAfterEach(impl, REGIONS);

    it('words[index + k] is the little-endian u32 at gpa + 4k (default chunk size)', () => {
      const mem = create();
      fillPattern(mem);
      for (const [gpa, len] of [[0x10000, 0x8000], [0x10ffc, 16], [0x17ff0, 16], [0x20000, 0x2000], [0x21ffc, 4]] as const) {
        const w = mustWindow(mem.wordWindow(gpa, len));
        for (let k = 0; k < len / 4; k++) {
          const got = w.words[w.index + k]!;
          expect(got).toBe(patternU32(gpa + 4 * k));
          expect(got).toBe(mem.readU32(gpa + 4 * k));
        }
      }
      // A spot check of the arithmetic: GPA 0x10004 -> 0x10004 * 7 = 0x7001c, + (0x10004 >>> 8 = 0x100)
      // = 0x7011c -> byte 0x1c; the next three bytes add 7 each: 0x23, 0x2a, 0x31 -> u32 0x312a231c.
      expect([0x10004, 0x10005, 0x10006, 0x10007].map(patternByte)).toEqual([0x1c, 0x23, 0x2a, 0x31]);
      expect(mem.readU32(0x10004)).toBe(0x312a231c);
    });

    it('with small chunks, the window of a range inside one chunk indexes that chunk', () => {
      const mem = create(CHUNK);
      fillPattern(mem);
      // Chunk 2 of region 0 is [0x14000, 0x16000): the word at 0x14abc is its word 0xabc / 4.
      for (const [gpa, len] of [[0x14abc, 8], [0x14000, CHUNK], [0x15ff8, 8], [0x10000, 4], [0x16000, CHUNK]] as const) {
        const w = mustWindow(mem.wordWindow(gpa, len));
        for (let k = 0; k < len / 4; k++) expect(w.words[w.index + k]).toBe(patternU32(gpa + 4 * k));
      }
      // Two ranges in the same chunk share its array; their indices differ by their distance / 4.
      const a = mustWindow(mem.wordWindow(0x14000, 4));
      const b = mustWindow(mem.wordWindow(0x14abc, 4));
      expect(b.words).toBe(a.words);
      expect(b.index - a.index).toBe(0xabc / 4);
    });

    it('is null for an unaligned gpa', () => {
      const mem = create();
      for (const gpa of [0x10001, 0x10002, 0x10003, 0x10006, 0x20001]) expect(mem.wordWindow(gpa, 8)).toBeNull();
      expect(mem.wordWindow(0x10004, 8)).not.toBeNull(); // its aligned neighbour is fine
    });

    it('is null outside every region and across the end of a region', () => {
      const mem = create();
      expect(mem.wordWindow(0x0, 4)).toBeNull(); // below region 0
      expect(mem.wordWindow(0xfffc, 8)).toBeNull(); // starts below region 0, ends inside
      expect(mem.wordWindow(R0_END, 4)).toBeNull(); // in the hole
      expect(mem.wordWindow(0x1c000, 4)).toBeNull(); // in the hole
      expect(mem.wordWindow(R0_END - 4, 8)).toBeNull(); // crosses region 0's end by 4 bytes
      expect(mem.wordWindow(R0_END - 4, 4)).not.toBeNull(); // the last word fits
      expect(mem.wordWindow(0x10000, 0x8004)).toBeNull(); // the whole region plus one word
      expect(mem.wordWindow(0x17000, R1_END - 0x17000)).toBeNull(); // spans the hole into region 1
      expect(mem.wordWindow(R1_END - 4, 8)).toBeNull(); // crosses the last region's end
      expect(mem.wordWindow(R1_END, 4)).toBeNull(); // above everything
      expect(mem.wordWindow(-4, 8)).toBeNull();
      expect(mem.wordWindow(Number.NaN, 4)).toBeNull();
    });

    it('is null for a range crossing a chunk boundary (small chunks), a view on either side of it', () => {
      const mem = create(CHUNK);
      expect(mem.wordWindow(0x11ffc, 8)).toBeNull(); // 4 bytes in chunk 0, 4 in chunk 1
      expect(mem.wordWindow(0x10000, CHUNK + 4)).toBeNull(); // chunk 0 and one word of chunk 1
      expect(mem.wordWindow(0x13000, 0x2000)).toBeNull(); // [0x13000, 0x15000) straddles 0x14000
      expect(mem.wordWindow(0x10000, 0x8000)).toBeNull(); // the whole region: 4 chunks
      expect(mem.wordWindow(0x11ffc, 4)).not.toBeNull(); // last word of chunk 0
      expect(mem.wordWindow(0x12000, 4)).not.toBeNull(); // first word of chunk 1
      // The same ranges in one 2 GiB chunk are views.
      const big = create();
      expect(big.wordWindow(0x11ffc, 8)).not.toBeNull();
      expect(big.wordWindow(0x13000, 0x2000)).not.toBeNull();
    });

    it('is null after close()', () => {
      const mem = create();
      expect(mem.wordWindow(0x10000, 16)).not.toBeNull();
      mem.close();
      expect(mem.wordWindow(0x10000, 16)).toBeNull();
      expect(mem.writableWordWindow(0x10000, 16)).toBeNull();
    });
  });

  describe(`${impl.name}: writableWordWindow and wroteWindow`, () => {
    const create = closedAfterEach(impl, REGIONS);

    it('is null while frozen and a view again after thaw', () => {
      const mem = create();
      expect(mem.writableWordWindow(0x10000, 64)).not.toBeNull();
      mem.freeze();
      expect(mem.writableWordWindow(0x10000, 64)).toBeNull();
      expect(mem.wordWindow(0x10000, 64)).not.toBeNull(); // reading stays possible
      mem.thaw();
      expect(mem.writableWordWindow(0x10000, 64)).not.toBeNull();
    });

    it('is null where wordWindow is null (unaligned, outside, across a chunk)', () => {
      const mem = create(CHUNK);
      expect(mem.writableWordWindow(0x10002, 4)).toBeNull();
      expect(mem.writableWordWindow(R0_END - 4, 8)).toBeNull();
      expect(mem.writableWordWindow(0x11ffc, 8)).toBeNull();
    });

    it('writes through it land in guest memory, little-endian, at the requested GPA', () => {
      for (const chunkSize of [undefined, CHUNK]) {
        const mem = create(chunkSize);
        const gpa = 0x14ff8; // crosses a 4 KiB page inside chunk 2 (small chunks)
        const w = mustWindow(mem.writableWordWindow(gpa, 16));
        w.words[w.index] = 0x11223344;
        w.words[w.index + 1] = 0xa5a6a7a8;
        w.words[w.index + 2] = 0xdeadbeef;
        w.words[w.index + 3] = 0x01020304;
        expect(mem.readU32(gpa)).toBe(0x11223344);
        expect(mem.readU32(gpa + 4)).toBe(0xa5a6a7a8);
        expect(mem.readU32(gpa + 8)).toBe(0xdeadbeef);
        expect(mem.readU32(gpa + 12)).toBe(0x01020304);
        // Little-endian: least significant byte first.
        expect([mem.readU8(gpa), mem.readU8(gpa + 1), mem.readU8(gpa + 2), mem.readU8(gpa + 3)]).toEqual([0x44, 0x33, 0x22, 0x11]);
        // Neighbours untouched.
        expect(mem.readU32(gpa - 4)).toBe(0);
        expect(mem.readU32(gpa + 16)).toBe(0);
      }
    });

    it('wroteWindow sets exactly the dirty bits of the pages covered', () => {
      for (const chunkSize of [undefined, CHUNK]) {
        const mem = create(chunkSize);
        const log = new Uint8Array(dirtyLogBytesFor(R1_END)); // pages 0..0x21 -> 34 bits -> 5 bytes
        expect(log.length).toBe(5);
        mem.setDirtyLog(log);
        // A write through the window is invisible to the log until wroteWindow.
        const w = mustWindow(mem.writableWordWindow(0x10ffc, 8));
        w.words[w.index] = 1;
        w.words[w.index + 1] = 2;
        expect(dirtyPages(log)).toEqual([]);
        // [0x10ffc, 0x11004) touches pages 0x10 and 0x11.
        mem.wroteWindow(0x10ffc, 8);
        expect(dirtyPages(log)).toEqual([0x10, 0x11]);
        // Bits of page 0x10 (byte 2, bit 0) and 0x11 (byte 2, bit 1).
        expect(log[2]).toBe(0b11);

        log.fill(0);
        // [0x15000, 0x18000): pages 0x15, 0x16, 0x17 (21..23: byte 2, bits 5..7).
        mem.wroteWindow(0x15000, 0x3000);
        expect(dirtyPages(log)).toEqual([0x15, 0x16, 0x17]);
        expect(log[2]).toBe(0b1110_0000);

        log.fill(0);
        // [0x17ff8, 0x17ffc) inside one page; then region 1 [0x20000, 0x22000): pages 0x20, 0x21 (byte 4).
        mem.wroteWindow(0x17ff8, 4);
        mem.wroteWindow(0x20000, 0x2000);
        expect(dirtyPages(log)).toEqual([0x17, 0x20, 0x21]);
        expect([...log]).toEqual([0, 0, 0b1000_0000, 0, 0b11]);

        log.fill(0);
        // A range of 1 byte at the very last byte of a page marks that page only.
        mem.wroteWindow(0x13fff, 1);
        expect(dirtyPages(log)).toEqual([0x13]);
      }
    });

    it('wroteWindow adds the length to bytesWritten (0: nothing)', () => {
      const mem = create();
      const before = mem.bytesWritten;
      mem.wroteWindow(0x10000, 0x1234);
      expect(mem.bytesWritten - before).toBe(0x1234);
      mem.wroteWindow(0x20000, 8);
      expect(mem.bytesWritten - before).toBe(0x1234 + 8);
      mem.wroteWindow(0x20000, 0);
      expect(mem.bytesWritten - before).toBe(0x1234 + 8);
    });

    it('wroteWindow throws GuestMemoryFault outside guest memory, marking and counting nothing', () => {
      const mem = create();
      const log = new Uint8Array(dirtyLogBytesFor(R1_END));
      mem.setDirtyLog(log);
      const before = mem.bytesWritten;
      expectFault(() => mem.wroteWindow(0x0, 8), 0x0, 8); // below
      expectFault(() => mem.wroteWindow(R0_END - 8, 16), R0_END - 8, 16); // across region 0's end
      expectFault(() => mem.wroteWindow(0x1c000, 4), 0x1c000, 4); // in the hole
      expectFault(() => mem.wroteWindow(0x17000, R1_END - 0x17000), 0x17000, R1_END - 0x17000); // spans the hole
      expectFault(() => mem.wroteWindow(R1_END, 8), R1_END, 8); // above
      expect(mem.bytesWritten).toBe(before);
      expect(dirtyPages(log)).toEqual([]);
    });
  });
}
