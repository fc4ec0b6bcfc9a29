/**
 * VirtualGic: the VM-level device API (VmDevices, ./types.ts) over vitsd's two device types,
 * mirroring KVM's device ioctls with their errno (kvm-its-abi.md 1-2, protocol.md "Devices and
 * attributes", "Guest MMIO", "MSIs", "Suspend and resume").
 *
 * - Devices: at most one vgic-v3 (the LPI part of the redistributors) and up to 16 ITSes.
 *   Device ids start at 1 and are never reused. The VM-wide LPI system is created at the
 *   vgic-v3 INIT (it needs the final vCPU count), and every ITS gets its Its instance then
 *   (or at creation when the vgic-v3 is already initialised).
 * - Suspend: state-changing requests get -EBUSY except the two save controls; guest memory
 *   is frozen (GuestMemory.freeze) for the whole suspension and thawed only while a save
 *   control runs, so once the saves returned nothing can write guest RAM until resume.
 */
import type { RestoreSummary } from '../its/abi/restore.js';
import { ItsTables } from '../its/abi/abi.js';
import { ItsTableSaver, type SaveResult } from '../its/abi/save.js';
import { Its, type ItsOptions } from '../its/its.js';
import { EmptyGuestMemory } from '../memory/empty-guest-memory.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { LpiRedistributors } from '../redist/lpi-system.js';
import { SPURIOUS_INTID, type AckResult, type LpiSystem } from '../redist/types.js';
import { Errno, ErrnoError } from '../util/errno.js';
import type { AttrDevice } from './device.js';
import { ItsDeviceNode, type ItsHost } from './its-device.js';
import {
  KVM_DEV_ARM_ITS_SAVE_TABLES,
  KVM_DEV_ARM_VGIC_GRP_CTRL,
  KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES,
  KVM_DEV_TYPE_ARM_VGIC_ITS,
  KVM_DEV_TYPE_ARM_VGIC_V3,
  KVM_MSI_VALID_DEVID,
  MAX_ITS_DEVICES,
  type VmDevices,
  type VmStats,
} from './types.js';
import { VgicV3Device, type VgicHost } from './vgic-v3-device.js';

export const MIN_VCPUS = 1;
export const MAX_VCPUS = 512;
/** Frames of the redistributor: RD_base (LPI registers) is the first 64 KiB. */
const RD_FRAME_SIZE = 0x10000;

export interface VirtualGicOptions {
  /** Initial guest memory (default: no region). */
  memory?: GuestMemory;
  /** Options of every Its created. */
  its?: ItsOptions;
  /** Clock for save/restore durations (ms). */
  now?: () => number;
}

interface Timing {
  count: number;
  lastMs: number;
}

/** Reasons an MSI was refused before reaching an ITS (GET_STATS). */
const MSI_REFUSALS = ['no_its', 'no_valid_devid', 'not_its_doorbell', 'vm_suspended', 'its_not_initialised'] as const;
const REFUSE_NO_ITS = 0;
const REFUSE_NO_DEVID = 1;
const REFUSE_NOT_DOORBELL = 2;
const REFUSE_SUSPENDED = 3;
const REFUSE_BUSY = 4;

export class VirtualGic implements VmDevices, VgicHost, ItsHost {
  private mem: GuestMemory;
  private vcpuCount = 0;
  private suspendedFlag = false;
  private nextId = 1;
  private readonly devices = new Map<number, AttrDevice>();
  private vgic: VgicV3Device | null = null;
  /** ITS devices in creation order (MMIO and MSI routing look at them in this order). */
  private readonly itsList: ItsDeviceNode[] = [];
  private lpiSystem: LpiRedistributors | null = null;
  private deliverableHook: ((vcpu: number) => void) | null = null;
  private readonly itsOptions: ItsOptions;
  private readonly now: () => number;

  private msiDelivered = 0;
  private msiDropped = 0;
  private readonly msiRefused = new Float64Array(MSI_REFUSALS.length);
  private readonly saves: Timing = { count: 0, lastMs: 0 };
  private readonly restores: Timing = { count: 0, lastMs: 0 };
  private readonly pendingSaves: Timing = { count: 0, lastMs: 0 };
  /** Result of the last ITS_SAVE_TABLES (diagnostics). */
  lastSave: SaveResult | null = null;
  /** What the last successful ITS_RESTORE_TABLES restored, with its phase timings. */
  lastRestore: RestoreSummary | null = null;

  constructor(options: VirtualGicOptions = {}) {
    this.mem = options.memory ?? new EmptyGuestMemory();
    this.itsOptions = options.its ?? {};
    this.now = options.now ?? (() => performance.now());
  }

  // =====================================================================================
  // Memory and vCPUs
  // =====================================================================================

  get memory(): GuestMemory {
    return this.mem;
  }

  setMemory(memory: GuestMemory): void {
    if (this.vgic?.initialized === true && !this.suspendedFlag) {
      throw new ErrnoError(Errno.EBUSY, 'guest memory can only be replaced before the vgic-v3 INIT or while suspended');
    }
    if (this.suspendedFlag) memory.freeze();
    this.mem = memory;
    this.lpiSystem?.setMemory(memory);
    for (const node of this.itsList) node.its?.setMemory(memory);
  }

  get nrVcpus(): number {
    return this.vcpuCount;
  }

  setVcpus(count: number): void {
    if (!Number.isInteger(count) || count < MIN_VCPUS || count > MAX_VCPUS) {
      throw new ErrnoError(Errno.EINVAL, `vCPU count ${count} is outside ${MIN_VCPUS}..${MAX_VCPUS}`);
    }
    if (this.suspendedFlag) throw new ErrnoError(Errno.EBUSY, 'SET_VCPUS: the VM is suspended');
    if (this.vgic?.initialized === true) throw new ErrnoError(Errno.EBUSY, 'SET_VCPUS: the vgic-v3 is already initialised');
    this.vcpuCount = count;
  }

  /** The VM-wide LPI system (null before the vgic-v3 INIT). */
  get lpis(): LpiRedistributors | null {
    return this.lpiSystem;
  }

  // =====================================================================================
  // Devices
  // =====================================================================================

  createDevice(type: number, test: boolean): number {
    if (this.suspendedFlag) throw new ErrnoError(Errno.EBUSY, 'CREATE_DEVICE: the VM is suspended');
    if (type === KVM_DEV_TYPE_ARM_VGIC_V3) {
      if (this.vgic !== null) throw new ErrnoError(Errno.EEXIST, 'a vgic-v3 already exists');
      if (test) return 0;
      const dev = new VgicV3Device(this.nextId++, this);
      this.vgic = dev;
      this.devices.set(dev.id, dev);
      return dev.id;
    }
    if (type === KVM_DEV_TYPE_ARM_VGIC_ITS) {
      if (this.vgic === null) throw new ErrnoError(Errno.ENODEV, 'an ITS needs a vgic-v3 first');
      if (this.itsList.length >= MAX_ITS_DEVICES) throw new ErrnoError(Errno.ENOSPC, `at most ${MAX_ITS_DEVICES} ITS devices per VM`);
      if (test) return 0;
      const node = new ItsDeviceNode(this.nextId++, this);
      this.itsList.push(node);
      this.devices.set(node.id, node);
      // KVM vgic_its_create: the VM-wide GICR_PROPBASER goes back to its initial value.
      this.lpiSystem?.resetPropbaser();
      if (this.lpiSystem !== null) this.instantiate(node, this.lpiSystem);
      return node.id;
    }
    throw new ErrnoError(Errno.ENODEV, `unknown device type ${type}`);
  }

  private device(deviceId: number): AttrDevice {
    const dev = this.devices.get(deviceId);
    if (dev === undefined) throw new ErrnoError(Errno.EBADF, `no device with id ${deviceId}`);
    return dev;
  }

  setDeviceAttr(deviceId: number, group: number, attr: bigint, value: bigint): bigint {
    const dev = this.device(deviceId);
    if (this.suspendedFlag && !isSaveControl(dev, group, attr)) {
      throw new ErrnoError(Errno.EBUSY, `SET_DEVICE_ATTR on ${dev.name}: the VM is suspended`);
    }
    return dev.setAttr(group, attr, value);
  }

  getDeviceAttr(deviceId: number, group: number, attr: bigint): bigint {
    return this.device(deviceId).getAttr(group, attr);
  }

  hasDeviceAttr(deviceId: number, group: number, attr: bigint): void {
    this.device(deviceId).hasAttr(group, attr);
  }

  /** The Its behind an ITS device id (tests, tools); null before the vgic-v3 INIT. */
  itsOf(deviceId: number): Its | null {
    const dev = this.device(deviceId);
    if (!(dev instanceof ItsDeviceNode)) throw new ErrnoError(Errno.EINVAL, `device ${deviceId} is not an ITS`);
    return dev.its;
  }

  /** The table ABI runner of an ITS device (tests, tools). */
  tablesOf(deviceId: number): ItsTables | null {
    const dev = this.device(deviceId);
    return dev instanceof ItsDeviceNode ? dev.tables : null;
  }

  // ---- VgicHost ----

  initLpis(): void {
    const lpis = new LpiRedistributors(this.mem, this.vcpuCount, {
      onDeliverable: (vcpu) => this.deliverableHook?.(vcpu),
    }, { hasIts: this.itsList.length > 0 });
    if (this.itsList.length > 0) lpis.resetPropbaser();
    this.lpiSystem = lpis;
    for (const node of this.itsList) this.instantiate(node, lpis);
  }

  savePendingTables(): void {
    const lpis = this.lpiSystem;
    if (lpis === null) throw new ErrnoError(Errno.ENXIO, 'SAVE_PENDING_TABLES: the vgic-v3 is not initialised');
    const t0 = this.now();
    this.thawed(() => lpis.savePendingTables());
    this.pendingSaves.count++;
    this.pendingSaves.lastMs = this.now() - t0;
  }

  // ---- ItsHost ----

  private instantiate(node: ItsDeviceNode, lpis: LpiSystem): void {
    const its = new Its(this.mem, lpis, this.itsOptions);
    node.its = its;
    node.tables = new ItsTables(its, new ItsTableSaver());
  }

  saveTables(node: ItsDeviceNode): SaveResult {
    const tables = node.tables!;
    const t0 = this.now();
    const r = this.thawed(() => tables.save());
    this.saves.count++;
    this.saves.lastMs = this.now() - t0;
    this.lastSave = r;
    return r;
  }

  restoreTables(node: ItsDeviceNode): RestoreSummary {
    const tables = node.tables!;
    const t0 = this.now();
    const r = tables.restore();
    this.restores.count++;
    this.restores.lastMs = this.now() - t0;
    this.lastRestore = r;
    return r;
  }

  resetIts(node: ItsDeviceNode): void {
    node.its!.reset();
  }

  /** Runs a save control with guest memory writable if the VM is suspended (frozen again after). */
  private thawed<T>(fn: () => T): T {
    if (!this.suspendedFlag) return fn();
    this.mem.thaw();
    try {
      return fn();
    } finally {
      this.mem.freeze();
    }
  }

  // =====================================================================================
  // Guest MMIO
  // =====================================================================================

  mmioRead(gpa: number, size: number): bigint {
    checkMmioSize(size);
    for (let i = 0; i < this.itsList.length; i++) {
      const node = this.itsList[i]!;
      if (node.contains(gpa)) {
        if (node.its === null) throw new ErrnoError(Errno.ENXIO, `MMIO read at 0x${gpa.toString(16)}: ${node.name} is not initialised`);
        return node.its.mmioRead(gpa - node.base, size);
      }
    }
    const rd = this.rdFrame(gpa);
    if (rd !== null) {
      const value = this.lpiSystem!.mmioRead(rd.vcpu, rd.offset, size);
      if (value !== null) return value;
    }
    throw new ErrnoError(Errno.ENXIO, `no vitsd register at 0x${gpa.toString(16)}`);
  }

  mmioWrite(gpa: number, size: number, value: bigint): void {
    checkMmioSize(size);
    if (this.suspendedFlag) throw new ErrnoError(Errno.EBUSY, 'MMIO write: the VM is suspended');
    for (let i = 0; i < this.itsList.length; i++) {
      const node = this.itsList[i]!;
      if (node.contains(gpa)) {
        if (node.its === null) throw new ErrnoError(Errno.ENXIO, `MMIO write at 0x${gpa.toString(16)}: ${node.name} is not initialised`);
        node.its.mmioWrite(gpa - node.base, size, value);
        return;
      }
    }
    const rd = this.rdFrame(gpa);
    if (rd !== null && this.lpiSystem!.mmioWrite(rd.vcpu, rd.offset, size, value)) return;
    throw new ErrnoError(Errno.ENXIO, `no vitsd register at 0x${gpa.toString(16)}`);
  }

  /** RD_base frame (vCPU, offset) of gpa, null elsewhere (SGI frames, before INIT). */
  private rdFrame(gpa: number): { vcpu: number; offset: number } | null {
    const rd = this.vgic?.rdFrameOf(gpa) ?? null;
    if (rd === null || rd.offset >= RD_FRAME_SIZE || this.lpiSystem === null) return null;
    return rd;
  }

  // =====================================================================================
  // MSIs (hot path: no allocation)
  // =====================================================================================

  signalMsi(addressLo: number, addressHi: number, data: number, flags: number, devid: number): number {
    const list = this.itsList;
    if (list.length === 0) return this.refuse(REFUSE_NO_ITS, Errno.ENODEV);
    // KVM vgic_msi_to_its: VALID_DEVID first, then the doorbell must be in an ITS frame.
    if ((flags & KVM_MSI_VALID_DEVID) === 0) return this.refuse(REFUSE_NO_DEVID, Errno.EINVAL);
    const address = (addressHi >>> 0) * 0x100000000 + (addressLo >>> 0);
    let node: ItsDeviceNode | null = null;
    for (let i = 0; i < list.length; i++) {
      if (list[i]!.contains(address)) {
        node = list[i]!;
        break;
      }
    }
    if (node === null) return this.refuse(REFUSE_NOT_DOORBELL, Errno.EINVAL);
    if (this.suspendedFlag) return this.refuse(REFUSE_SUSPENDED, Errno.EBUSY);
    // Before the vgic-v3 INIT the ITS cannot have been enabled: -EBUSY, as a disabled ITS.
    if (node.its === null) return this.refuse(REFUSE_BUSY, Errno.EBUSY);
    const r = node.its.signalMsi(devid >>> 0, data >>> 0);
    // Negative results (-EBUSY) are counted by the ITS under their reason.
    if (r === 1) this.msiDelivered++;
    else if (r === 0) this.msiDropped++;
    return r;
  }

  private refuse(reason: number, errno: number): number {
    this.msiRefused[reason]!++;
    return -errno;
  }

  // =====================================================================================
  // LPI delivery
  // =====================================================================================

  ackLpi(vcpu: number, peek: boolean): AckResult {
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.vcpuCount) {
      throw new ErrnoError(Errno.EINVAL, `ACK_LPI: vCPU ${vcpu} out of range (${this.vcpuCount} vCPUs)`);
    }
    if (this.suspendedFlag && !peek) throw new ErrnoError(Errno.EBUSY, 'ACK_LPI: the VM is suspended');
    if (this.lpiSystem === null) return { intid: SPURIOUS_INTID, priority: 0xff };
    return this.lpiSystem.ack(vcpu, peek);
  }

  setDeliverableHook(hook: ((vcpu: number) => void) | null): void {
    this.deliverableHook = hook;
  }

  hasDeliverable(vcpu: number): boolean {
    if (this.lpiSystem === null || !Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.vcpuCount) return false;
    return this.lpiSystem.hasDeliverable(vcpu);
  }

  // =====================================================================================
  // Suspend / resume
  // =====================================================================================

  suspend(): void {
    if (this.suspendedFlag) return;
    this.suspendedFlag = true;
    this.mem.freeze();
  }

  resume(): void {
    if (!this.suspendedFlag) return;
    this.suspendedFlag = false;
    this.mem.thaw();
  }

  get suspended(): boolean {
    return this.suspendedFlag;
  }

  get hasState(): boolean {
    return this.devices.size > 0 || this.mem.regions.length > 0;
  }

  // =====================================================================================
  // Statistics
  // =====================================================================================

  get stats(): VmStats {
    const droppedByReason: Record<string, number> = {};
    const commands: Record<string, number> = {};
    const commandErrors: Record<string, number> = {};
    const add = (into: Record<string, number>, from: Record<string, number> | undefined): void => {
      if (from === undefined) return;
      for (const [k, v] of Object.entries(from)) if (v !== 0) into[k] = (into[k] ?? 0) + v;
    };
    for (const node of this.itsList) {
      if (node.its === null) continue;
      const s = node.its.stats as { commands: Record<string, number>; commandErrors: Record<string, number>; msiDroppedByReason?: Record<string, number> };
      add(commands, s.commands);
      add(commandErrors, s.commandErrors);
      add(droppedByReason, s.msiDroppedByReason);
    }
    MSI_REFUSALS.forEach((reason, i) => {
      if (this.msiRefused[i]! !== 0) droppedByReason[reason] = (droppedByReason[reason] ?? 0) + this.msiRefused[i]!;
    });
    return {
      msiDelivered: this.msiDelivered,
      msiDropped: this.msiDropped,
      msiDroppedByReason: droppedByReason,
      commands,
      commandErrors,
      saves: { ...this.saves },
      restores: { ...this.restores },
      pendingSaves: { ...this.pendingSaves },
    };
  }
}

function isSaveControl(dev: AttrDevice, group: number, attr: bigint): boolean {
  if (group !== KVM_DEV_ARM_VGIC_GRP_CTRL) return false;
  if (dev.type === KVM_DEV_TYPE_ARM_VGIC_ITS) return attr === BigInt(KVM_DEV_ARM_ITS_SAVE_TABLES);
  return dev.type === KVM_DEV_TYPE_ARM_VGIC_V3 && attr === BigInt(KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES);
}

function checkMmioSize(size: number): void {
  if (size !== 1 && size !== 2 && size !== 4 && size !== 8) throw new ErrnoError(Errno.EINVAL, `MMIO length ${size} is not 1, 2, 4 or 8`);
}
