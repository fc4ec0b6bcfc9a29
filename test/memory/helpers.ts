/** Shared helpers of the guest-memory tests: one factory per implementation. */
import { afterEach, expect } from 'vitest';
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import type { ChunkedGuestMemory } from '../../src/memory/chunked-guest-memory.js';
import type { GuestRegion } from '../../src/memory/guest-memory.js';
import { GuestMemoryFault } from '../../src/memory/errors.js';
import { createMemfdGuestMemory } from '../../src/memory/mapped-guest-memory.js';
import { Errno } from '../../src/util/errno.js';

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

/**
 * A factory for memories of `impl` over `regions`, each closed after the test that created it
 * (registers the afterEach: call it inside a describe).
 */
export function closedAfterEach(impl: Implementation, regions: readonly GuestRegion[]): (chunkSize?: number) => ChunkedGuestMemory {
  const open: ChunkedGuestMemory[] = [];
  afterEach(() => {
    for (const mem of open.splice(0)) mem.close();
  });
  return (chunkSize) => {
    const mem = impl.create(regions, chunkSize);
    open.push(mem);
    return mem;
  };
}

/** Runs fn, expects a GuestMemoryFault (EFAULT) for exactly (address, length). */
export function expectFault(fn: () => unknown, address: number, length: number): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(GuestMemoryFault);
  const fault = caught as GuestMemoryFault;
  expect(fault.errno).toBe(Errno.EFAULT);
  expect(Object.is(fault.address, address) || (Number.isNaN(address) && Number.isNaN(fault.address))).toBe(true);
  expect(fault.length).toBe(length);
}
