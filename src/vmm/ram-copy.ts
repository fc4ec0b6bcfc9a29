/**
 * Guest RAM transfer between two GuestMemory objects with the same region table (the
 * source VM's RAM file and the destination's): a full pass, and a pass over the pages
 * marked in a dirty log (protocol.md "Memory": bit n % 8 of byte n / 8 is 4 KiB page n).
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import { Errno, ErrnoError } from '../util/errno.js';

export const PAGE_SIZE = 4096;
const COPY_CHUNK = 1 << 20;

export interface CopyStats {
  pages: number;
  bytes: number;
}

/** Throws EINVAL unless dst holds every region of src at the same guest addresses. */
export function checkSameLayout(src: GuestMemory, dst: GuestMemory): void {
  for (const r of src.regions) {
    if (!dst.contains(r.gpa, r.size)) {
      throw new ErrnoError(Errno.EINVAL, `destination RAM lacks [0x${r.gpa.toString(16)}, 0x${(r.gpa + r.size).toString(16)})`);
    }
  }
}

/** Copies every region. */
export function copyAllRam(src: GuestMemory, dst: GuestMemory, onChunk?: (done: number, total: number) => void): CopyStats {
  checkSameLayout(src, dst);
  const buf = new Uint8Array(COPY_CHUNK);
  const total = src.regions.reduce((n, r) => n + r.size, 0);
  let done = 0;
  for (const r of src.regions) {
    for (let off = 0; off < r.size; off += COPY_CHUNK) {
      const len = Math.min(COPY_CHUNK, r.size - off);
      src.readBytes(r.gpa + off, buf, 0, len);
      dst.writeBytes(r.gpa + off, buf, 0, len);
      done += len;
      onChunk?.(done, total);
    }
  }
  return { pages: Math.ceil(done / PAGE_SIZE), bytes: done };
}

/**
 * Atomically clears the dirty log (each byte read-and-zeroed, so a concurrent atomic OR by
 * the daemon is never lost) and returns how many bits were set.
 */
export function clearDirtyLog(log: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < log.length; i++) {
    if (log[i] !== 0) n += popcount8(Atomics.exchange(log, i, 0));
  }
  return n;
}

/** Number of bits set. */
export function countDirtyPages(log: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < log.length; i++) if (log[i] !== 0) n += popcount8(log[i]!);
  return n;
}

/** Guest page numbers marked in the log, ascending. */
export function dirtyPageList(log: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < log.length; i++) {
    const b = log[i]!;
    if (b === 0) continue;
    for (let bit = 0; bit < 8; bit++) if (b & (1 << bit)) out.push(i * 8 + bit);
  }
  return out;
}

/**
 * Copies the pages marked in the log that lie in source RAM, clearing their bits as it goes.
 * Pages outside every region are cleared and skipped (nothing to copy).
 */
export function copyDirtyPages(src: GuestMemory, dst: GuestMemory, log: Uint8Array): CopyStats {
  checkSameLayout(src, dst);
  const page = new Uint8Array(PAGE_SIZE);
  let pages = 0;
  for (let i = 0; i < log.length; i++) {
    if (log[i] === 0) continue;
    const bits = Atomics.exchange(log, i, 0);
    for (let bit = 0; bit < 8; bit++) {
      if ((bits & (1 << bit)) === 0) continue;
      const gpa = (i * 8 + bit) * PAGE_SIZE;
      if (!src.contains(gpa, PAGE_SIZE)) continue;
      src.readBytes(gpa, page, 0, PAGE_SIZE);
      dst.writeBytes(gpa, page, 0, PAGE_SIZE);
      pages++;
    }
  }
  return { pages, bytes: pages * PAGE_SIZE };
}

/** First differing page of two memories with the same layout, or -1 (tests, `vitsctl migrate --verify`). */
export function firstDifferentPage(a: GuestMemory, b: GuestMemory): number {
  checkSameLayout(a, b);
  const pa = new Uint8Array(PAGE_SIZE);
  const pb = new Uint8Array(PAGE_SIZE);
  for (const r of a.regions) {
    for (let off = 0; off < r.size; off += PAGE_SIZE) {
      a.readBytes(r.gpa + off, pa, 0, PAGE_SIZE);
      b.readBytes(r.gpa + off, pb, 0, PAGE_SIZE);
      if (!Buffer.from(pa.buffer).equals(Buffer.from(pb.buffer))) return r.gpa + off;
    }
  }
  return -1;
}

function popcount8(b: number): number {
  let n = 0;
  for (let x = b & 0xff; x !== 0; x &= x - 1) n++;
  return n;
}
