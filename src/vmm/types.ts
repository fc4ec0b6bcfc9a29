/**
 * What a VMM-side component (the reference guest driver, the trace replayer, the migration
 * orchestrator) needs from "a vitsd": the VM-level device API of src/attr/types.ts, reached
 * either in process (a VirtualGic object) or over the wire (src/client). Methods are async so
 * both fit; errors are ErrnoError (errno + message) in both cases.
 */
import type { AckResult } from '../redist/types.js';

export interface VitsdTarget {
  setVcpus(count: number): Promise<void>;
  createDevice(type: number, test?: boolean): Promise<number>;
  setDeviceAttr(deviceId: number, group: number, attr: bigint, value: bigint): Promise<bigint>;
  getDeviceAttr(deviceId: number, group: number, attr: bigint): Promise<bigint>;
  hasDeviceAttr(deviceId: number, group: number, attr: bigint): Promise<void>;
  mmioRead(gpa: number, size: number): Promise<bigint>;
  mmioWrite(gpa: number, size: number, value: bigint): Promise<void>;
  /** KVM_SIGNAL_MSI: 1 delivered, 0 dropped; throws ErrnoError for negative statuses. */
  signalMsi(doorbell: number, devid: number, eventid: number): Promise<number>;
  ackLpi(vcpu: number, peek?: boolean): Promise<AckResult>;
  suspend(): Promise<void>;
  resume(): Promise<void>;
}

// Guest RAM on the VMM side is a GuestMemory (src/memory) over the same shared file the
// daemon maps: one guest-memory interface for both sides.
