/**
 * Contract of the VM-level device API that mirrors KVM's device ioctls
 * (KVM_CREATE_DEVICE, KVM_{SET,GET,HAS}_DEVICE_ATTR, KVM_SIGNAL_MSI) plus what a split
 * device needs (guest MMIO, LPI acknowledge, suspend). The daemon maps wire requests
 * (../shared/spec/protocol.md) one for one onto this; tests drive it in process.
 *
 * Every method throws ErrnoError with KVM's errno on a userspace error; signalMsi returns
 * KVM_SIGNAL_MSI's result instead (1, 0 or negative errno) because it is a hot path.
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import type { AckResult } from '../redist/types.js';

export const KVM_DEV_TYPE_ARM_VGIC_V3 = 7;
export const KVM_DEV_TYPE_ARM_VGIC_ITS = 8;
export const KVM_CREATE_DEVICE_TEST = 1;

export const KVM_DEV_ARM_VGIC_GRP_ADDR = 0;
export const KVM_DEV_ARM_VGIC_GRP_DIST_REGS = 1;
export const KVM_DEV_ARM_VGIC_GRP_NR_IRQS = 3;
export const KVM_DEV_ARM_VGIC_GRP_CTRL = 4;
export const KVM_DEV_ARM_VGIC_GRP_REDIST_REGS = 5;
export const KVM_DEV_ARM_VGIC_GRP_ITS_REGS = 8;

export const KVM_VGIC_V3_ADDR_TYPE_DIST = 2;
export const KVM_VGIC_V3_ADDR_TYPE_REDIST = 3;
export const KVM_VGIC_ITS_ADDR_TYPE = 4;
export const KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION = 5;

export const KVM_DEV_ARM_VGIC_CTRL_INIT = 0;
export const KVM_DEV_ARM_ITS_SAVE_TABLES = 1;
export const KVM_DEV_ARM_ITS_RESTORE_TABLES = 2;
export const KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES = 3;
export const KVM_DEV_ARM_ITS_CTRL_RESET = 4;

export const KVM_MSI_VALID_DEVID = 1;
/** 16 ITS devices at most per VM (protocol.md: a 17th gets -ENOSPC). */
export const MAX_ITS_DEVICES = 16;
/** Redistributor stride: RD_base + SGI_base frames. */
export const GICR_STRIDE = 0x20000;

export interface VmStats {
  msiDelivered: number;
  msiDropped: number;
  msiDroppedByReason: Record<string, number>;
  commands: Record<string, number>;
  commandErrors: Record<string, number>;
  saves: { count: number; lastMs: number };
  restores: { count: number; lastMs: number };
  pendingSaves: { count: number; lastMs: number };
}

export interface VmDevices {
  /** Guest memory now in use (an empty region table before SET_MEM_TABLE). */
  readonly memory: GuestMemory;
  /** Replaces guest memory (SET_MEM_TABLE); -EBUSY unless no device is initialised or the VM is suspended. */
  setMemory(memory: GuestMemory): void;

  /** SET_VCPUS: number of redistributors (1..512); -EBUSY after the vgic-v3 INIT. */
  setVcpus(count: number): void;
  readonly nrVcpus: number;

  /** KVM_CREATE_DEVICE: returns the new device id; with test only checks (returns 0). */
  createDevice(type: number, test: boolean): number;
  setDeviceAttr(deviceId: number, group: number, attr: bigint, value: bigint): bigint;
  getDeviceAttr(deviceId: number, group: number, attr: bigint): bigint;
  hasDeviceAttr(deviceId: number, group: number, attr: bigint): void;

  /** Guest MMIO at a guest physical address; -ENXIO when no vitsd register lives there. */
  mmioRead(gpa: number, size: number): bigint;
  mmioWrite(gpa: number, size: number, value: bigint): void;

  /** KVM_SIGNAL_MSI: 1 delivered, 0 dropped, negative errno. Hot path: no allocation. */
  signalMsi(addressLo: number, addressHi: number, data: number, flags: number, devid: number): number;

  ackLpi(vcpu: number, peek: boolean): AckResult;
  /** Called when vcpu gains a deliverable LPI (the daemon writes its notify fd). */
  setDeliverableHook(hook: ((vcpu: number) => void) | null): void;
  hasDeliverable(vcpu: number): boolean;

  /** SUSPEND/RESUME (protocol.md "Suspend and resume"). */
  suspend(): void;
  resume(): void;
  readonly suspended: boolean;

  /** True when any device exists or memory is set (HELLO's `resumed`). */
  readonly hasState: boolean;
  readonly stats: VmStats;
}
