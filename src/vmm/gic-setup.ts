/**
 * What a VMM does to create the interrupt controller, in KVM's and QEMU's order
 * (protocol.md "A destination runs"; kvm-its-abi.md 1): SET_VCPUS, the vgic-v3 with its
 * distributor and redistributor addresses, INIT; then each ITS with its address, INIT.
 */
import {
  KVM_DEV_ARM_VGIC_CTRL_INIT,
  KVM_DEV_ARM_VGIC_GRP_ADDR,
  KVM_DEV_ARM_VGIC_GRP_CTRL,
  KVM_DEV_TYPE_ARM_VGIC_ITS,
  KVM_DEV_TYPE_ARM_VGIC_V3,
  KVM_VGIC_ITS_ADDR_TYPE,
  KVM_VGIC_V3_ADDR_TYPE_DIST,
  KVM_VGIC_V3_ADDR_TYPE_REDIST,
} from '../attr/types.js';
import type { VitsdTarget } from './types.js';
import type { VmLayout } from './vm-layout.js';

export interface GicDevices {
  /** Device id of the vgic-v3 (LPI part). */
  readonly vgic: number;
  /** Device id of each ITS, in layout order. */
  readonly its: readonly number[];
}

export async function createVgic(target: VitsdTarget, layout: VmLayout): Promise<number> {
  await target.setVcpus(layout.nrVcpus);
  const vgic = await target.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3);
  await target.setDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(KVM_VGIC_V3_ADDR_TYPE_DIST), BigInt(layout.distBase));
  await target.setDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(KVM_VGIC_V3_ADDR_TYPE_REDIST), BigInt(layout.redistBase));
  await target.setDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n);
  return vgic;
}

export async function createIts(target: VitsdTarget, base: number): Promise<number> {
  const its = await target.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS);
  await target.setDeviceAttr(its, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(KVM_VGIC_ITS_ADDR_TYPE), BigInt(base));
  await target.setDeviceAttr(its, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n);
  return its;
}

/** Creates the vgic-v3 and every ITS of the layout. Guest memory must already be set. */
export async function createGic(target: VitsdTarget, layout: VmLayout): Promise<GicDevices> {
  const vgic = await createVgic(target, layout);
  const its: number[] = [];
  for (const base of layout.itsBases) its.push(await createIts(target, base));
  return { vgic, its };
}
