/**
 * VitsdTarget over an in-process VmDevices (src/attr): the same async surface as the wire
 * client, so the reference guest and the migration orchestrator run unchanged in unit
 * tests. KVM_SIGNAL_MSI's negative results become ErrnoError, as over the wire.
 */
import type { VmDevices } from '../attr/types.js';
import { KVM_MSI_VALID_DEVID } from '../attr/types.js';
import type { AckResult } from '../redist/types.js';
import { ErrnoError } from '../util/errno.js';
import type { VitsdTarget } from './types.js';

export class InProcessTarget implements VitsdTarget {
  constructor(readonly vm: VmDevices) {}

  async setVcpus(count: number): Promise<void> {
    this.vm.setVcpus(count);
  }
  async createDevice(type: number, test = false): Promise<number> {
    return this.vm.createDevice(type, test);
  }
  async setDeviceAttr(deviceId: number, group: number, attr: bigint, value: bigint): Promise<bigint> {
    return this.vm.setDeviceAttr(deviceId, group, attr, value);
  }
  async getDeviceAttr(deviceId: number, group: number, attr: bigint): Promise<bigint> {
    return this.vm.getDeviceAttr(deviceId, group, attr);
  }
  async hasDeviceAttr(deviceId: number, group: number, attr: bigint): Promise<void> {
    this.vm.hasDeviceAttr(deviceId, group, attr);
  }
  async mmioRead(gpa: number, size: number): Promise<bigint> {
    return this.vm.mmioRead(gpa, size);
  }
  async mmioWrite(gpa: number, size: number, value: bigint): Promise<void> {
    this.vm.mmioWrite(gpa, size, value);
  }
  async signalMsi(doorbellAddress: number, devid: number, eventid: number): Promise<number> {
    const r = this.vm.signalMsi(doorbellAddress >>> 0, Math.floor(doorbellAddress / 2 ** 32), eventid >>> 0, KVM_MSI_VALID_DEVID, devid >>> 0);
    if (r < 0) throw new ErrnoError(-r, `KVM_SIGNAL_MSI devid 0x${devid.toString(16)} event ${eventid}`);
    return r;
  }
  async ackLpi(vcpu: number, peek = false): Promise<AckResult> {
    return this.vm.ackLpi(vcpu, peek);
  }
  async suspend(): Promise<void> {
    this.vm.suspend();
  }
  async resume(): Promise<void> {
    this.vm.resume();
  }
}
