/**
 * Where the ITS writes into its guest-RAM tables outside SAVE_TABLES: KVM zeroes the DTE
 * when MAPD unmaps a device and the ITE when DISCARD frees one (the 2024 fix; kvm-its-abi.md
 * 3.9, 6.3). The byte format belongs to the table ABI (src/its/abi/), which may install its
 * own writer; the default one zeroes the 8-byte slot.
 *
 * A writer reports a failure by throwing; the ITS counts it ("dte_write_fault",
 * "ite_write_fault") and carries on, as KVM ignores the command's result.
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import { GuestMemoryFault } from '../memory/errors.js';
import { ABI_ENTRY_SIZE } from './constants.js';
import { locateEntryIn, type BaserGeometry } from './tables.js';

export interface ItsTableWriter {
  /** Writes the "no device" DTE for devid (called after the device was freed). */
  clearDeviceEntry(devid: number): void;
  /** Writes the "no event" ITE for (devid, eventid) (called after the ITE was freed; the device is still mapped). */
  clearEventEntry(devid: number, eventid: number): void;
}

/** What the default writer needs from the ITS. */
export interface TableWriterHost {
  readonly memory: GuestMemory;
  readonly deviceTableGeometry: BaserGeometry;
  /** ITT address of a mapped device, or -1. */
  deviceIttAddr(devid: number): number;
}

/** Zeroes the 8-byte slot located as KVM locates it; every address is checked first. */
export class ZeroingTableWriter implements ItsTableWriter {
  constructor(private readonly host: TableWriterHost) {}

  clearDeviceEntry(devid: number): void {
    const memory = this.host.memory;
    const addr = locateEntryIn(memory, this.host.deviceTableGeometry, devid);
    if (addr < 0) throw new GuestMemoryFault(0, ABI_ENTRY_SIZE, `DTE write for device ${devid}`);
    memory.writeU64(addr, 0, 0);
  }

  clearEventEntry(devid: number, eventid: number): void {
    const memory = this.host.memory;
    const itt = this.host.deviceIttAddr(devid);
    const addr = itt + eventid * ABI_ENTRY_SIZE;
    if (itt < 0 || !memory.contains(addr, ABI_ENTRY_SIZE)) throw new GuestMemoryFault(Math.max(addr, 0), ABI_ENTRY_SIZE, 'ITE write');
    memory.writeU64(addr, 0, 0);
  }
}
