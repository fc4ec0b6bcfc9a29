/**
 * Guest physical memory as the ITS core sees it.
 *
 * Every table the ITS uses (command queue, device table, ITTs, collection table, LPI
 * configuration and pending tables) lives in guest RAM. All access goes through this one
 * interface so that the core runs unchanged on a plain ArrayBuffer (unit tests) and on the
 * VMM's shared-memory file mapped MAP_SHARED (the daemon).
 *
 * Conventions:
 * - Guest physical addresses (GPAs) are JS numbers (exact up to 2^53; the GIC's 52-bit PA
 *   space fits).
 * - All multi-byte values are little-endian.
 * - u64 values are handled as (lo, hi) u32 pairs on hot paths: no BigInt, no allocation.
 * - Any access that is not entirely inside one region throws GuestMemoryFault (errno
 *   EFAULT, carries the address) and writes nothing.
 * - While frozen, every write throws GuestMemoryFrozen and writes nothing.
 * - Every write (any path) sets the dirty-log bit of each 4 KiB page it touches, when a
 *   dirty log is attached.
 */
export interface GuestRegion {
  /** First guest physical address of the region (4 KiB aligned). */
  readonly gpa: number;
  /** Size in bytes (4 KiB multiple, > 0). */
  readonly size: number;
}

/** See GuestMemory.wordWindow. */
export interface WordWindow {
  readonly words: Uint32Array;
  /** Index in `words` of the word at the requested GPA. */
  readonly index: number;
}

export interface GuestMemory {
  /** The region table, sorted by gpa. */
  readonly regions: readonly GuestRegion[];

  /** True when [gpa, gpa+len) lies entirely inside one region (len >= 1). Never throws. */
  contains(gpa: number, len: number): boolean;

  readU8(gpa: number): number;
  readU16(gpa: number): number;
  readU32(gpa: number): number;
  /** Low 32 bits of the u64 at gpa. */
  readU64Lo(gpa: number): number;
  /** High 32 bits of the u64 at gpa. */
  readU64Hi(gpa: number): number;
  /**
   * Reads the u64 at gpa into out[index] (low word) and out[index + 1] (high word).
   * One bounds check for both halves; no allocation.
   */
  readU64Into(gpa: number, out: Uint32Array, index: number): void;
  /** Convenience for cold paths (registers, tools). */
  readU64Big(gpa: number): bigint;
  /** Copies len bytes at gpa into dst[dstOffset..]. */
  readBytes(gpa: number, dst: Uint8Array, dstOffset?: number, len?: number): void;
  /**
   * Zero-copy bulk read of little-endian u32 words (table walks): when [gpa, gpa + len) lies
   * in one backing view, gpa is 4-byte aligned and the host is little-endian, returns a
   * Uint32Array over that view and the index of the word at gpa; else null (use readBytes or
   * readU64Into). The array aliases guest RAM, which the guest may change at any time: read
   * each word once, never write through it, do not keep it beyond the synchronous call.
   */
  wordWindow(gpa: number, len: number): WordWindow | null;
  /**
   * The same for writing (bulk table saves): null also while frozen. After writing through
   * it, the caller must call wroteWindow for the bytes written (dirty log, byte count): the
   * dirty bits are set after the data, as on every other write path.
   */
  writableWordWindow(gpa: number, len: number): WordWindow | null;
  /** Records a write of [gpa, gpa + len) made through a writable word window (throws GuestMemoryFault outside a region). */
  wroteWindow(gpa: number, len: number): void;

  writeU8(gpa: number, value: number): void;
  writeU16(gpa: number, value: number): void;
  writeU32(gpa: number, value: number): void;
  writeU64(gpa: number, lo: number, hi: number): void;
  writeU64Big(gpa: number, value: bigint): void;
  writeBytes(gpa: number, src: Uint8Array, srcOffset?: number, len?: number): void;
  /** Sets len bytes at gpa to byte. */
  fill(gpa: number, len: number, byte: number): void;

  /**
   * Attaches the vhost-user style dirty log: bit (n % 8) of byte (n / 8) is 4 KiB guest page
   * n (GPA n * 4096). Must cover every region (throws ErrnoError EINVAL otherwise). null
   * detaches.
   */
  setDirtyLog(log: Uint8Array | null): void;
  readonly dirtyLog: Uint8Array | null;

  /** After freeze(), every write throws GuestMemoryFrozen until thaw(). */
  freeze(): void;
  thaw(): void;
  readonly frozen: boolean;

  /** Bytes written since creation (all paths), for statistics. */
  readonly bytesWritten: number;

  /** Releases mappings (mapped implementation); the object must not be used afterwards. */
  close(): void;
}
