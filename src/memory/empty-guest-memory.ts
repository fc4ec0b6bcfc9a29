/** Guest memory with no region (before SET_MEM_TABLE): every access faults, nothing is written. */
import { ChunkedGuestMemory } from './chunked-guest-memory.js';

export class EmptyGuestMemory extends ChunkedGuestMemory {
  constructor() {
    super([]);
  }
}
