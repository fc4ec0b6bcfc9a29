/**
 * An in-memory stand-in for VmDevices, for unit tests of dispatch only (the integration
 * tests use src/attr's real one). Its behaviour is deliberately simple and predictable:
 *
 * - createDevice: type 7 once (-EEXIST after), type 8 only after 7 (-ENODEV), else -ENODEV.
 * - set/getDeviceAttr keep values in a map; group 4 attr 0 is INIT; group 99 throws a
 *   TypeError (a "bug", for the internal-error path); unknown device -EBADF.
 * - hasDeviceAttr: groups 0..8 exist, others -ENXIO.
 * - mmioRead returns gpa + size; gpa 0xdead000 is -ENXIO.
 * - signalMsi: -EBUSY suspended; -EINVAL without VALID_DEVID; -ENODEV without an ITS;
 *   delivered (1) when data is even, dropped (0) when odd; devid 0xbad -> -EINVAL.
 *   A delivery makes vcpu (devid % nrVcpus) deliverable and calls the hook.
 * - ackLpi returns intid 8192 + vcpu, priority 0xa0, and clears deliverability.
 */
import {
  KVM_DEV_TYPE_ARM_VGIC_ITS,
  KVM_DEV_TYPE_ARM_VGIC_V3,
  type VmDevices,
  type VmStats,
} from '../../../src/attr/types.js';
import { EmptyGuestMemory } from '../../../src/memory/empty-guest-memory.js';
import type { GuestMemory } from '../../../src/memory/guest-memory.js';
import type { AckResult } from '../../../src/redist/types.js';
import { Errno, ErrnoError } from '../../../src/util/errno.js';

export class FakeVm implements VmDevices {
  memory: GuestMemory = new EmptyGuestMemory();
  nrVcpus = 0;
  suspended = false;
  initialised = false;
  readonly devices = new Map<number, number>(); // id -> type
  readonly attrs = new Map<string, bigint>();
  readonly deliverable = new Set<number>();
  readonly calls: string[] = [];
  private hook: ((vcpu: number) => void) | null = null;
  private nextId = 1;
  readonly stats: VmStats = {
    msiDelivered: 0,
    msiDropped: 0,
    msiDroppedByReason: {},
    commands: { total: 0 },
    commandErrors: {},
    saves: { count: 0, lastMs: 0 },
    restores: { count: 0, lastMs: 0 },
    pendingSaves: { count: 0, lastMs: 0 },
  };

  get hasState(): boolean {
    return this.devices.size > 0 || this.memory.regions.length > 0;
  }

  setMemory(memory: GuestMemory): void {
    if (this.initialised && !this.suspended) throw new ErrnoError(Errno.EBUSY, 'devices initialised');
    this.calls.push(`setMemory(${memory.regions.length})`);
    this.memory = memory;
  }

  setVcpus(count: number): void {
    if (this.initialised || this.suspended) throw new ErrnoError(Errno.EBUSY, 'after INIT');
    this.nrVcpus = count;
  }

  createDevice(type: number, test: boolean): number {
    if (this.suspended) throw new ErrnoError(Errno.EBUSY, 'suspended');
    const hasV3 = [...this.devices.values()].includes(KVM_DEV_TYPE_ARM_VGIC_V3);
    if (type === KVM_DEV_TYPE_ARM_VGIC_V3) {
      if (hasV3) throw new ErrnoError(Errno.EEXIST, 'second vgic-v3');
    } else if (type === KVM_DEV_TYPE_ARM_VGIC_ITS) {
      if (!hasV3) throw new ErrnoError(Errno.ENODEV, 'ITS before vgic-v3');
    } else {
      throw new ErrnoError(Errno.ENODEV, `type ${type}`);
    }
    if (test) return 0;
    const id = this.nextId++;
    this.devices.set(id, type);
    return id;
  }

  private device(id: number): number {
    const type = this.devices.get(id);
    if (type === undefined) throw new ErrnoError(Errno.EBADF, `device ${id}`);
    return type;
  }

  setDeviceAttr(deviceId: number, group: number, attr: bigint, value: bigint): bigint {
    this.device(deviceId);
    if (group === 99) throw new TypeError('fake bug in a device handler');
    if (this.suspended && group !== 4) throw new ErrnoError(Errno.EBUSY, 'suspended');
    this.calls.push(`set(${deviceId},${group},${attr},${value})`);
    if (group === 4) {
      if (attr === 0n) this.initialised = true;
      return 0n;
    }
    this.attrs.set(`${deviceId}/${group}/${attr}`, value);
    return value;
  }

  getDeviceAttr(deviceId: number, group: number, attr: bigint): bigint {
    this.device(deviceId);
    return this.attrs.get(`${deviceId}/${group}/${attr}`) ?? 0n;
  }

  hasDeviceAttr(deviceId: number, group: number, attr: bigint): void {
    this.device(deviceId);
    if (group > 8) throw new ErrnoError(Errno.ENXIO, `group ${group}`);
  }

  mmioRead(gpa: number, size: number): bigint {
    if (gpa === 0xdead000) throw new ErrnoError(Errno.ENXIO, 'nothing there');
    return BigInt(gpa) + BigInt(size);
  }

  mmioWrite(gpa: number, size: number, value: bigint): void {
    if (gpa === 0xdead000) throw new ErrnoError(Errno.ENXIO, 'nothing there');
    if (this.suspended) throw new ErrnoError(Errno.EBUSY, 'suspended');
    this.calls.push(`mmioWrite(0x${gpa.toString(16)},${size},0x${value.toString(16)})`);
  }

  signalMsi(addressLo: number, addressHi: number, data: number, flags: number, devid: number): number {
    if (this.suspended) return -Errno.EBUSY;
    if ((flags & 1) === 0 || devid === 0xbad) return -Errno.EINVAL;
    if (![...this.devices.values()].includes(KVM_DEV_TYPE_ARM_VGIC_ITS)) return -Errno.ENODEV;
    if ((data & 1) === 1) {
      this.stats.msiDropped++;
      return 0;
    }
    this.stats.msiDelivered++;
    const vcpu = this.nrVcpus > 0 ? devid % this.nrVcpus : 0;
    if (!this.deliverable.has(vcpu)) {
      this.deliverable.add(vcpu);
      this.hook?.(vcpu);
    }
    return 1;
  }

  ackLpi(vcpu: number, peek: boolean): AckResult {
    if (vcpu >= this.nrVcpus) throw new ErrnoError(Errno.EINVAL, `vcpu ${vcpu}`);
    if (!this.deliverable.has(vcpu)) return { intid: 1023, priority: 0xff };
    if (!peek) {
      if (this.suspended) throw new ErrnoError(Errno.EBUSY, 'suspended');
      this.deliverable.delete(vcpu);
    }
    return { intid: 8192 + vcpu, priority: 0xa0 };
  }

  setDeliverableHook(hook: ((vcpu: number) => void) | null): void {
    this.hook = hook;
  }

  hasDeliverable(vcpu: number): boolean {
    return this.deliverable.has(vcpu);
  }

  suspend(): void {
    this.suspended = true;
  }

  resume(): void {
    this.suspended = false;
  }
}
