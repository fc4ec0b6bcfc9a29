/** Guest physical memory: the contract and its implementations. */
export type { GuestMemory, GuestRegion } from './guest-memory.js';
export { GuestMemoryFault, GuestMemoryFrozen } from './errors.js';
export {
  GPA_LIMIT,
  GUEST_PAGE_SIZE,
  MAX_REGIONS,
  dirtyLogBytesFor,
  validateRegionTable,
  type RegionInput,
  type ValidatedRegion,
} from './region-table.js';
export { ChunkedGuestMemory, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, validateChunkSize } from './chunked-guest-memory.js';
export { ArrayBufferGuestMemory, type ArrayBufferGuestMemoryOptions } from './array-buffer-guest-memory.js';
export { EmptyGuestMemory } from './empty-guest-memory.js';
// The mapped implementation loads the native addon: import it from './mapped-guest-memory.js'
// (and './mapped-dirty-log.js') so that code using only ArrayBuffers does not need the addon.
