/** Shared helpers of the guest-memory tests: one factory per implementation. */
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import type { ChunkedGuestMemory } from '../../src/memory/chunked-guest-memory.js';
import type { GuestRegion } from '../../src/memory/guest-memory.js';
import { createMemfdGuestMemory } from '../../src/memory/mapped-guest-memory.js';

export interface Implementation {
  readonly name: string;
  create(regions: readonly GuestRegion[], chunkSize?: number): ChunkedGuestMemory;
}

export const implementations: readonly Implementation[] = [
  { name: 'ArrayBufferGuestMemory', create: (regions, chunkSize) => new ArrayBufferGuestMemory(regions, undefined, chunkSize ? { chunkSize } : {}) },
  { name: 'MappedGuestMemory (memfd)', create: (regions, chunkSize) => createMemfdGuestMemory(regions, chunkSize ? { chunkSize } : {}) },
];

/** Guest page numbers whose bit is set in a dirty log (bit n % 8 of byte n / 8 = page n). */
export function dirtyPages(log: Uint8Array): number[] {
  const pages: number[] = [];
  for (let i = 0; i < log.length; i++) {
    for (let b = 0; b < 8; b++) if ((log[i]! >> b) & 1) pages.push(i * 8 + b);
  }
  return pages;
}

/** Reads n bytes one by one with readU8 (independent of the multi-byte paths under test). */
export function bytesAt(mem: ChunkedGuestMemory, gpa: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(mem.readU8(gpa + i));
  return out;
}
