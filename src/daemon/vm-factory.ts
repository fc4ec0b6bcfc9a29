/**
 * Makes the VM-level devices the daemon serves: src/attr's VirtualGic. Async so that the
 * CLI can load it (and what it pulls in) lazily, after argument parsing.
 */
import { VirtualGic } from '../attr/virtual-gic.js';
import type { VmDevices } from '../attr/types.js';

export async function createVmDevices(): Promise<VmDevices> {
  return new VirtualGic();
}
