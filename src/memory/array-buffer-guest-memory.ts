/**
 * Guest memory backed by plain ArrayBuffers: the unit-test double of the daemon's mapped
 * memory, with the same code paths (same base class, same chunking, same dirty log).
 */
import { ChunkedGuestMemory, DEFAULT_CHUNK_SIZE, validateChunkSize, type RegionBacking } from './chunked-guest-memory.js';
import type { GuestRegion } from './guest-memory.js';
import { validateRegionTable } from './region-table.js';

export interface ArrayBufferGuestMemoryOptions {
  /**
   * Chunk size (multiple of 4 KiB). Small values let tests exercise accesses that straddle
   * two chunks without gigabytes of memory.
   */
  readonly chunkSize?: number;
}

export class ArrayBufferGuestMemory extends ChunkedGuestMemory {
  /** The buffer of each region, in the order of `regions` (sorted by gpa). */
  readonly buffers: readonly ArrayBuffer[];

  /**
   * @param regions region table (validated: see validateRegionTable)
   * @param buffers optional existing buffers, one per region in the order given, each at
   *   least as large as its region; new zero-filled buffers otherwise
   */
  constructor(regions: readonly GuestRegion[], buffers?: readonly ArrayBuffer[], options: ArrayBufferGuestMemoryOptions = {}) {
    const chunkSize = validateChunkSize(options.chunkSize ?? DEFAULT_CHUNK_SIZE);
    const table = validateRegionTable(regions);
    if (buffers !== undefined && buffers.length !== regions.length) {
      throw new RangeError(`${buffers.length} buffer(s) for ${regions.length} region(s)`);
    }
    const sortedBuffers: ArrayBuffer[] = [];
    const backing: RegionBacking[] = table.map((r) => {
      const buffer = buffers?.[r.index] ?? new ArrayBuffer(r.size);
      if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < r.size) {
        throw new RangeError(`buffer of region ${r.index} is smaller than the region (${r.size} bytes)`);
      }
      sortedBuffers.push(buffer);
      const chunks: DataView[] = [];
      for (let off = 0; off < r.size; off += chunkSize) chunks.push(new DataView(buffer, off, Math.min(chunkSize, r.size - off)));
      return { gpa: r.gpa, size: r.size, chunkSize, chunks };
    });
    super(backing);
    this.buffers = Object.freeze(sortedBuffers);
  }
}
