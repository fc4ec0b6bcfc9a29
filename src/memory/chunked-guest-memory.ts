/**
 * The one implementation of the GuestMemory contract, over "chunks": contiguous byte ranges
 * of guest physical memory each backed by one DataView (an ArrayBuffer for unit tests, an
 * mmapped file window for the daemon). A region is cut into chunks of a fixed size because
 * one Node ArrayBuffer over external memory holds at most 4 GiB - 4096 bytes.
 *
 * Hot paths (readU32, readU64Lo/Hi/Into, writeU32, writeU64 and the u8/u16 forms) check the
 * chunk of the previous access with plain number comparisons against fields and then touch
 * the DataView directly: no allocation, no BigInt, no lookup. Everything else (another chunk,
 * an access straddling two chunks, a fault, a frozen write) goes through a slow path that
 * looks the address up among at most 8 regions and reloads the cache.
 *
 * Dirty log: after every write, the bit of each 4 KiB page touched is set with Atomics.or,
 * skipped when the bit already reads set. A set bit means the VMM has not collected the page
 * yet; it collects (atomic exchange) before it copies, so it will copy the new data. (The data
 * store and the bit load are not fenced: on x86 the store may become visible just after the
 * load, so a VMM that collected and copied the page inside that window would copy it again
 * only at its next write. The final pass after SUSPEND is not affected: the reply, sent after
 * the last write, goes through a system call with locked instructions, which drains stores.)
 * Each chunk keeps a view of the log bytes that cover it and the bit index of its first page,
 * so the hot path computes the bit with 32-bit integer arithmetic.
 *
 * Measured, not worth it (memory_rw_vs_dataview, Node 20, x86_64): a Uint32Array view for
 * aligned u32/u64 accesses, a shared all-ones log instead of the null check, one limit field
 * for all aligned sizes, and dropping the bytesWritten counter all left the ratio unchanged
 * (within noise, 1.8-1.9). What the ratio pays for is the number of loads per access while
 * the data loads miss the cache: with no dirty-bit test at all it is 1.31-1.35, and the one
 * byte load of the test (L1-resident) is ~0.45 of it; one such load after each store of the
 * bare DataView loop slows that loop by ~33% too.
 */
import { Errno, ErrnoError } from '../util/errno.js';
import { GuestMemoryFault, GuestMemoryFrozen } from './errors.js';
import type { GuestMemory, GuestRegion, WordWindow } from './guest-memory.js';
import { GUEST_PAGE_SIZE, dirtyLogBytesFor } from './region-table.js';

/** Default chunk size: 2 GiB (below Node's 4 GiB cap on one external ArrayBuffer). */
export const DEFAULT_CHUNK_SIZE = 2 ** 31;
/** Largest chunk: offsets inside a chunk must be int32 for the hot paths' `| 0` check. */
export const MAX_CHUNK_SIZE = 2 ** 31;

/** A chunk size must be a positive multiple of 4 KiB of at most 2^31 bytes. */
export function validateChunkSize(chunkSize: number): number {
  if (!Number.isInteger(chunkSize) || chunkSize <= 0 || chunkSize % GUEST_PAGE_SIZE !== 0 || chunkSize > MAX_CHUNK_SIZE) {
    throw new RangeError(`chunk size ${chunkSize} must be a positive multiple of 4096 up to ${MAX_CHUNK_SIZE}`);
  }
  return chunkSize;
}

/** What a subclass provides for one region: its chunks in address order. */
export interface RegionBacking {
  readonly gpa: number;
  readonly size: number;
  /** Every chunk but the last is exactly chunkSize bytes long. */
  readonly chunkSize: number;
  /** Views over [gpa + k * chunkSize, min(gpa + (k + 1) * chunkSize, gpa + size)). */
  readonly chunks: readonly DataView[];
}

interface Chunk {
  readonly start: number;
  readonly end: number;
  readonly length: number;
  readonly view: DataView;
  readonly bytes: Uint8Array;
  /** u32 view of the chunk (created on first wordWindow; null when the chunk is not 4-byte aligned). */
  words: Uint32Array | null | undefined;
  /** Dirty-log bytes covering this chunk (null without a log) and the bit of its first page. */
  log: Uint8Array | null;
  logView: DataView | null;
  logShift: number;
}

const EMPTY_VIEW = new DataView(new ArrayBuffer(0));
/** Scratch for accesses that straddle two chunks (single-threaded, used synchronously). */
const scratchBytes = new Uint8Array(8);
const scratchView = new DataView(scratchBytes.buffer);
const scratchWords = new Uint32Array(2);

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

const WRITE = true;
const READ = false;

/**
 * The same number, as an int32 when it is one: V8 then keeps the cache fields as small
 * integers and the hot paths in 32-bit integer arithmetic (a value computed in floating point
 * would make the field, and every check against it, floating point).
 */
function smallIntIfPossible(n: number): number {
  return n >= 0 && n <= 0x7fffffff ? n | 0 : n;
}

/** Sets the dirty bits of the pages of [off, off + len) of a chunk (len >= 1). */
function markChunkPages(log: Uint8Array, shift: number, off: number, len: number): void {
  let q = (off >>> 12) + shift;
  const last = ((off + len - 1) >>> 12) + shift;
  for (;;) {
    const i = q >>> 3;
    const bit = 1 << (q & 7);
    if ((log[i]! & bit) === 0) Atomics.or(log, i, bit);
    if (q === last) return;
    q++;
  }
}

function checkWindow(array: Uint8Array, offset: number, len: number, what: string): void {
  if (!(array instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
  if (!Number.isInteger(offset) || !Number.isInteger(len) || offset < 0 || len < 0 || offset + len > array.length) {
    throw new RangeError(`${what}: window [${offset}, ${offset} + ${len}) is outside its ${array.length} bytes`);
  }
}

export abstract class ChunkedGuestMemory implements GuestMemory {
  // ---- cache: the chunk of the previous access (hot paths read only these) ----
  private cStart = 0;
  /** Highest offset in the cached chunk at which a 1-, 4- or 8-byte read fits (-1: none). */
  private cLim1 = -1;
  private cLim4 = -1;
  private cLim8 = -1;
  /** The same for writes: -1 while frozen, so that every write falls to the slow path. */
  private cWLim1 = -1;
  private cWLim4 = -1;
  private cWLim8 = -1;
  private cView: DataView = EMPTY_VIEW;
  private cLog: Uint8Array | null = null;
  /** The same bytes as a DataView: the hot check reads one byte with fewer loads. */
  private cLogView: DataView | null = null;
  private cLogShift = 0;
  private written = 0;

  // ---- tables ----
  readonly regions: readonly GuestRegion[];
  private rStart: number[];
  private rEnd: number[];
  private rChunkSize: number[];
  private rFirstChunk: number[];
  private chunks: Chunk[];
  private log: Uint8Array | null = null;
  private isFrozen = false;
  private isClosed = false;

  protected constructor(backing: readonly RegionBacking[]) {
    const sorted = [...backing].sort((a, b) => a.gpa - b.gpa);
    this.regions = Object.freeze(sorted.map((r) => Object.freeze({ gpa: r.gpa, size: r.size })));
    this.rStart = sorted.map((r) => r.gpa);
    this.rEnd = sorted.map((r) => r.gpa + r.size);
    this.rChunkSize = sorted.map((r) => r.chunkSize);
    this.rFirstChunk = [];
    this.chunks = [];
    for (const r of sorted) {
      this.rFirstChunk.push(this.chunks.length);
      const expected = Math.ceil(r.size / r.chunkSize);
      if (r.chunks.length !== expected) {
        throw new Error(`internal: region at 0x${r.gpa.toString(16)} has ${r.chunks.length} chunks, expected ${expected}`);
      }
      r.chunks.forEach((view, k) => {
        const start = smallIntIfPossible(r.gpa + k * r.chunkSize);
        const length = smallIntIfPossible(Math.min(r.chunkSize, r.size - k * r.chunkSize));
        if (view.byteLength !== length) {
          throw new Error(`internal: chunk ${k} of region at 0x${r.gpa.toString(16)} is ${view.byteLength} bytes, expected ${length}`);
        }
        const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
        this.chunks.push({ start, end: start + length, length, view, bytes, words: undefined, log: null, logView: null, logShift: 0 });
      });
    }
  }

  // ---------------------------------------------------------------------------------------
  // lookup and cache

  /** Index of the region holding all of [gpa, gpa + len), or -1. Never throws. */
  private regionOf(gpa: number, len: number): number {
    if (typeof gpa !== 'number' || !Number.isInteger(gpa) || gpa < 0 || !Number.isInteger(len) || len < 1) return -1;
    const starts = this.rStart;
    for (let r = 0; r < starts.length; r++) {
      if (gpa >= starts[r]! && gpa < this.rEnd[r]!) return gpa + len <= this.rEnd[r]! ? r : -1;
    }
    return -1;
  }

  private chunkAt(region: number, gpa: number): Chunk {
    const k = Math.floor((gpa - this.rStart[region]!) / this.rChunkSize[region]!);
    return this.chunks[this.rFirstChunk[region]! + k]!;
  }

  private load(c: Chunk): void {
    this.cStart = c.start;
    this.cLim1 = c.length - 1;
    this.cLim4 = c.length - 4;
    this.cLim8 = c.length - 8;
    this.cView = c.view;
    this.cLog = c.log;
    this.cLogView = c.logView;
    this.cLogShift = c.logShift;
    this.loadWriteLimits();
  }

  private loadWriteLimits(): void {
    this.cWLim1 = this.isFrozen ? -1 : this.cLim1;
    this.cWLim4 = this.isFrozen ? -1 : this.cLim4;
    this.cWLim8 = this.isFrozen ? -1 : this.cLim8;
  }

  private invalidate(): void {
    this.cStart = 0;
    this.cLim1 = -1;
    this.cLim4 = -1;
    this.cLim8 = -1;
    this.cWLim1 = -1;
    this.cWLim4 = -1;
    this.cWLim8 = -1;
    this.cView = EMPTY_VIEW;
    this.cLog = null;
    this.cLogView = null;
    this.cLogShift = 0;
  }

  /**
   * Slow path of a fixed-size access. Throws GuestMemoryFault when [gpa, gpa + len) is not
   * inside one region, GuestMemoryFrozen for a write while frozen (nothing is written in
   * either case). Returns true when the access lies in one chunk, which is now the cached
   * one; false when it straddles two chunks: a read has then been gathered into
   * scratchBytes, a write (already encoded into scratchBytes) is left to scatter().
   */
  private prepare(gpa: number, len: number, write: boolean): boolean {
    const r = this.regionOf(gpa, len);
    if (r < 0) throw new GuestMemoryFault(gpa, len, write ? 'write' : 'read');
    if (write && this.isFrozen) throw new GuestMemoryFrozen(gpa, len);
    const c = this.chunkAt(r, gpa);
    if (gpa + len <= c.end) {
      this.load(c);
      return true;
    }
    if (!write) {
      for (let i = 0; i < len; i++) {
        const ci = this.chunkAt(r, gpa + i);
        scratchBytes[i] = ci.bytes[gpa + i - ci.start]!;
      }
    }
    return false;
  }

  /** Writes scratchBytes[0..len) at gpa across chunks (after prepare() returned false). */
  private scatter(gpa: number, len: number): void {
    const r = this.regionOf(gpa, len);
    for (let i = 0; i < len; i++) {
      const ci = this.chunkAt(r, gpa + i);
      ci.bytes[gpa + i - ci.start] = scratchBytes[i]!;
    }
    this.written += len;
    this.markRange(gpa, len);
  }

  /** Sets the dirty bits of every page of [gpa, gpa + len) (any path; len >= 1). */
  private markRange(gpa: number, len: number): void {
    const log = this.log;
    if (log === null) return;
    const first = Math.floor(gpa / GUEST_PAGE_SIZE);
    const last = Math.floor((gpa + len - 1) / GUEST_PAGE_SIZE);
    let p = first;
    while (p <= last) {
      const i = Math.floor(p / 8);
      const bitFirst = p - i * 8;
      const bitLast = Math.min(7, last - i * 8);
      // bits bitFirst..bitLast of byte i
      const mask = ((0xff << bitFirst) & (0xff >> (7 - bitLast))) & 0xff;
      if ((log[i]! & mask) !== mask) Atomics.or(log, i, mask);
      p = (i + 1) * 8;
    }
  }

  // ---------------------------------------------------------------------------------------
  // reads

  contains(gpa: number, len: number): boolean {
    return this.regionOf(gpa, len) >= 0;
  }

  // Each hot method is its fast path plus one call: small enough for TurboFan to inline
  // several of them into a caller's loop.

  readU8(gpa: number): number {
    const d = gpa - this.cStart;
    const off = d | 0;
    if (off === d && off >= 0 && off <= this.cLim1) return this.cView.getUint8(off);
    return this.readSlow(gpa, 1);
  }

  readU16(gpa: number): number {
    const d = gpa - this.cStart;
    const off = d | 0;
    if (off === d && off >= 0 && off < this.cLim1) return this.cView.getUint16(off, true);
    return this.readSlow(gpa, 2);
  }

  readU32(gpa: number): number {
    const d = gpa - this.cStart;
    const off = d | 0;
    if (off === d && off >= 0 && off <= this.cLim4) return this.cView.getUint32(off, true);
    return this.readSlow(gpa, 4);
  }

  readU64Lo(gpa: number): number {
    const d = gpa - this.cStart;
    const off = d | 0;
    if (off === d && off >= 0 && off <= this.cLim8) return this.cView.getUint32(off, true);
    return this.readSlow(gpa, 8);
  }

  readU64Hi(gpa: number): number {
    const d = gpa - this.cStart;
    const off = d | 0;
    if (off === d && off >= 0 && off <= this.cLim8) return this.cView.getUint32(off + 4, true);
    this.readSlow(gpa, 8);
    return scratchView.getUint32(4, true);
  }

  readU64Into(gpa: number, out: Uint32Array, index: number): void {
    const d = gpa - this.cStart;
    const off = d | 0;
    if (off === d && off >= 0 && off <= this.cLim8) {
      const view = this.cView;
      out[index] = view.getUint32(off, true);
      out[index + 1] = view.getUint32(off + 4, true);
      return;
    }
    out[index] = this.readSlow(gpa, 8);
    out[index + 1] = scratchView.getUint32(4, true);
  }

  /**
   * Slow path of a read of len (1, 2, 4 or 8) bytes: faults, or reloads the cache, or
   * gathers bytes across two chunks. The value is left in scratchBytes (all len bytes) and
   * returned decoded as u8/u16/u32 (for 8: the low word).
   */
  private readSlow(gpa: number, len: number): number {
    if (this.prepare(gpa, len, READ)) {
      const off = gpa - this.cStart;
      for (let i = 0; i < len; i++) scratchBytes[i] = this.cView.getUint8(off + i);
    }
    return len === 1 ? scratchBytes[0]! : len === 2 ? scratchView.getUint16(0, true) : scratchView.getUint32(0, true);
  }

  readU64Big(gpa: number): bigint {
    this.readU64Into(gpa, scratchWords, 0);
    return (BigInt(scratchWords[1]!) << 32n) | BigInt(scratchWords[0]!);
  }

  readBytes(gpa: number, dst: Uint8Array, dstOffset = 0, len = dst.length - dstOffset): void {
    checkWindow(dst, dstOffset, len, 'readBytes destination');
    if (len === 0) return;
    const r = this.regionOf(gpa, len);
    if (r < 0) throw new GuestMemoryFault(gpa, len, 'read');
    let done = 0;
    while (done < len) {
      const c = this.chunkAt(r, gpa + done);
      const off = gpa + done - c.start;
      const n = Math.min(len - done, c.length - off);
      dst.set(c.bytes.subarray(off, off + n), dstOffset + done);
      done += n;
    }
  }

  wordWindow(gpa: number, len: number): WordWindow | null {
    if (!HOST_LITTLE_ENDIAN || gpa % 4 !== 0) return null;
    const r = this.regionOf(gpa, len);
    if (r < 0) return null;
    const c = this.chunkAt(r, gpa);
    if (gpa + len > c.end) return null;
    if (c.words === undefined) {
      c.words = c.bytes.byteOffset % 4 === 0 ? new Uint32Array(c.bytes.buffer, c.bytes.byteOffset, c.length >>> 2) : null;
    }
    if (c.words === null || c.words.length === 0) return null; // (a detached buffer: a closed mapping)
    // `| 0`: exact (a chunk is at most 2 GiB and gpa is 4-byte aligned), and an int32 for V8:
    // computed from float fields the index would be a heap number, and so would every index
    // the caller derives from it (measured: the full save's encode loop ~20% slower).
    return { words: c.words, index: ((gpa - c.start) / 4) | 0 };
  }

  writableWordWindow(gpa: number, len: number): WordWindow | null {
    return this.isFrozen ? null : this.wordWindow(gpa, len);
  }

  wroteWindow(gpa: number, len: number): void {
    if (len === 0) return;
    if (this.regionOf(gpa, len) < 0) throw new GuestMemoryFault(gpa, len, 'write');
    this.written += len;
    this.markRange(gpa, len);
  }

  // ---------------------------------------------------------------------------------------
  // writes

  // Write fast paths read every field they need before the data store: after a store V8
  // re-validates `this` before each further field load, which costs more than the loads.

  writeU8(gpa: number, value: number): void {
    const d = gpa - this.cStart;
    const off = d | 0;
    if (off === d && off >= 0 && off <= this.cWLim1) {
      const logView = this.cLogView;
      const q = (off >>> 12) + this.cLogShift;
      this.written += 1;
      this.cView.setUint8(off, value);
      if (logView !== null && (logView.getUint8(q >>> 3) & (1 << (q & 7))) === 0) this.markCachedPages(off, 1);
      return;
    }
    scratchBytes[0] = value;
    this.writeSlow(gpa, 1);
  }

  writeU16(gpa: number, value: number): void {
    const d = gpa - this.cStart;
    const off = d | 0;
    if (off === d && off >= 0 && off < this.cWLim1) {
      const logView = this.cLogView;
      const q = (off >>> 12) + this.cLogShift;
      this.written += 2;
      this.cView.setUint16(off, value, true);
      if (logView !== null && ((logView.getUint8(q >>> 3) & (1 << (q & 7))) === 0 || (off & 4095) > 4094)) {
        this.markCachedPages(off, 2);
      }
      return;
    }
    scratchView.setUint16(0, value, true);
    this.writeSlow(gpa, 2);
  }

  writeU32(gpa: number, value: number): void {
    const d = gpa - this.cStart;
    const off = d | 0;
    if (off === d && off >= 0 && off <= this.cWLim4) {
      const logView = this.cLogView;
      const q = (off >>> 12) + this.cLogShift;
      this.written += 4;
      this.cView.setUint32(off, value, true);
      // Inline only the common case: the page's bit is already set and the write stays in it.
      if (logView !== null && ((logView.getUint8(q >>> 3) & (1 << (q & 7))) === 0 || (off & 4095) > 4092)) {
        this.markCachedPages(off, 4);
      }
      return;
    }
    scratchView.setUint32(0, value, true);
    this.writeSlow(gpa, 4);
  }

  writeU64(gpa: number, lo: number, hi: number): void {
    const d = gpa - this.cStart;
    const off = d | 0;
    if (off === d && off >= 0 && off <= this.cWLim8) {
      const logView = this.cLogView;
      const q = (off >>> 12) + this.cLogShift;
      const view = this.cView;
      this.written += 8;
      view.setUint32(off, lo, true);
      view.setUint32(off + 4, hi, true);
      if (logView !== null && ((logView.getUint8(q >>> 3) & (1 << (q & 7))) === 0 || (off & 4095) > 4088)) {
        this.markCachedPages(off, 8);
      }
      return;
    }
    scratchView.setUint32(0, lo, true);
    scratchView.setUint32(4, hi, true);
    this.writeSlow(gpa, 8);
  }

  /** Dirty bits of [off, off + len) of the cached chunk (the rare part of the fast paths). */
  private markCachedPages(off: number, len: number): void {
    const log = this.cLog;
    if (log !== null) markChunkPages(log, this.cLogShift, off, len);
  }

  /**
   * Slow path of a write of len bytes already encoded in scratchBytes: faults or refuses
   * (frozen) before writing anything, else writes them (in one chunk or across two) and
   * marks the pages dirty.
   */
  private writeSlow(gpa: number, len: number): void {
    if (this.prepare(gpa, len, WRITE)) {
      const off = gpa - this.cStart;
      for (let i = 0; i < len; i++) this.cView.setUint8(off + i, scratchBytes[i]!);
      this.written += len;
      this.markRange(gpa, len);
    } else {
      this.scatter(gpa, len);
    }
  }

  /** Writes value modulo 2^64 (a negative bigint is stored in two's complement). */
  writeU64Big(gpa: number, value: bigint): void {
    const v = BigInt.asUintN(64, value);
    this.writeU64(gpa, Number(v & 0xffffffffn), Number(v >> 32n));
  }

  writeBytes(gpa: number, src: Uint8Array, srcOffset = 0, len = src.length - srcOffset): void {
    checkWindow(src, srcOffset, len, 'writeBytes source');
    if (len === 0) return;
    const r = this.beginBulkWrite(gpa, len);
    let done = 0;
    while (done < len) {
      const c = this.chunkAt(r, gpa + done);
      const off = gpa + done - c.start;
      const n = Math.min(len - done, c.length - off);
      c.bytes.set(src.subarray(srcOffset + done, srcOffset + done + n), off);
      done += n;
    }
    this.written += len;
    this.markRange(gpa, len);
  }

  fill(gpa: number, len: number, byte: number): void {
    if (!Number.isInteger(len) || len < 0) throw new RangeError(`fill: length ${len} is not a non-negative integer`);
    if (len === 0) return;
    const r = this.beginBulkWrite(gpa, len);
    let done = 0;
    while (done < len) {
      const c = this.chunkAt(r, gpa + done);
      const off = gpa + done - c.start;
      const n = Math.min(len - done, c.length - off);
      c.bytes.fill(byte & 0xff, off, off + n);
      done += n;
    }
    this.written += len;
    this.markRange(gpa, len);
  }

  private beginBulkWrite(gpa: number, len: number): number {
    const r = this.regionOf(gpa, len);
    if (r < 0) throw new GuestMemoryFault(gpa, len, 'write');
    if (this.isFrozen) throw new GuestMemoryFrozen(gpa, len);
    return r;
  }

  // ---------------------------------------------------------------------------------------
  // dirty log, freeze, stats, close

  setDirtyLog(log: Uint8Array | null): void {
    if (log === null) {
      this.log = null;
      for (const c of this.chunks) {
        c.log = null;
        c.logView = null;
        c.logShift = 0;
      }
      this.invalidate();
      return;
    }
    if (!(log instanceof Uint8Array)) throw new TypeError('dirty log must be a Uint8Array or null');
    const end = this.rEnd.length > 0 ? Math.max(...this.rEnd) : 0;
    const needed = dirtyLogBytesFor(end);
    if (log.length < needed) {
      throw new ErrnoError(
        Errno.EINVAL,
        `dirty log of ${log.length} byte(s) covers guest memory up to 0x${(log.length * 8 * GUEST_PAGE_SIZE).toString(16)}, ` +
          `but regions end at 0x${end.toString(16)} (needs ${needed} bytes)`,
      );
    }
    this.log = log;
    for (const c of this.chunks) {
      const firstPage = c.start / GUEST_PAGE_SIZE;
      const lastPage = Math.ceil(c.end / GUEST_PAGE_SIZE) - 1;
      const firstByte = Math.floor(firstPage / 8);
      c.log = log.subarray(firstByte, Math.floor(lastPage / 8) + 1);
      c.logView = new DataView(c.log.buffer, c.log.byteOffset, c.log.byteLength);
      c.logShift = firstPage - firstByte * 8;
    }
    this.invalidate();
  }

  get dirtyLog(): Uint8Array | null {
    return this.log;
  }

  freeze(): void {
    this.isFrozen = true;
    this.loadWriteLimits();
  }

  thaw(): void {
    this.isFrozen = false;
    this.loadWriteLimits();
  }

  get frozen(): boolean {
    return this.isFrozen;
  }

  get bytesWritten(): number {
    return this.written;
  }

  /** True once close() ran; every access then faults. */
  get closed(): boolean {
    return this.isClosed;
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.invalidate();
    this.rStart = [];
    this.rEnd = [];
    this.rChunkSize = [];
    this.rFirstChunk = [];
    this.chunks = [];
    this.log = null;
    this.releaseBacking();
  }

  /** Releases what backs the chunks (mappings, fds); called once by close(). */
  protected releaseBacking(): void {}
}
