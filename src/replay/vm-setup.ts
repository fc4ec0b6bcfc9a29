/**
 * Creating the two devices of a replay VM (vgic-v3 LPI part + one ITS) as a VMM does with KVM,
 * and the redistributor register attribute encoding the save/restore sequence uses.
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
import type { VitsdTarget } from '../vmm/types.js';

/** QEMU virt's GIC addresses. */
export const VIRT_GICD_BASE = 0x0800_0000;
export const VIRT_ITS_BASE = 0x0808_0000;
export const VIRT_GICR_BASE = 0x080a_0000;
/** Redistributor stride (RD_base + SGI_base frames). */
export const GICR_FRAME_STRIDE = 0x2_0000;
/** GITS_TRANSLATER, the MSI doorbell, from the ITS base. */
export const ITS_DOORBELL_OFFSET = 0x1_0040;

export interface VmAddresses {
  readonly nrVcpus: number;
  readonly itsBase: number;
  readonly redistBase: number;
  readonly distBase: number;
}

export interface VmHandles {
  readonly vgicId: number;
  readonly itsId: number;
}

/**
 * SET_VCPUS, CREATE_DEVICE vgic-v3 with its addresses, INIT, then CREATE_DEVICE ITS with its
 * address, INIT: the order of protocol.md's destination sequence (the ITS exists before any
 * redistributor register is written, as in KVM).
 */
export async function createVgicAndIts(target: VitsdTarget, vm: VmAddresses): Promise<VmHandles> {
  await target.setVcpus(vm.nrVcpus);
  const vgicId = await target.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3);
  await target.setDeviceAttr(vgicId, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(KVM_VGIC_V3_ADDR_TYPE_DIST), BigInt(vm.distBase));
  await target.setDeviceAttr(vgicId, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(KVM_VGIC_V3_ADDR_TYPE_REDIST), BigInt(vm.redistBase));
  await target.setDeviceAttr(vgicId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n);
  const itsId = await target.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS);
  await target.setDeviceAttr(itsId, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(KVM_VGIC_ITS_ADDR_TYPE), BigInt(vm.itsBase));
  await target.setDeviceAttr(itsId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n);
  return { vgicId, itsId };
}

/**
 * KVM_DEV_ARM_VGIC_GRP_REDIST_REGS attribute: the vCPU's MPIDR affinity in bits 63:32
 * (Aff3 63:56, Aff2 55:48, Aff1 47:40, Aff0 39:32) and the RD_base offset in bits 31:0.
 * vCPU i has KVM's default MPIDR: Aff0 = i & 0xf, Aff1 = (i >> 4) & 0xff, Aff2 = (i >> 12) & 0xff.
 */
export function redistRegAttr(vcpu: number, offset: number): bigint {
  const aff0 = BigInt(vcpu & 0xf);
  const aff1 = BigInt((vcpu >> 4) & 0xff);
  const aff2 = BigInt((vcpu >> 12) & 0xff);
  return (aff2 << 48n) | (aff1 << 40n) | (aff0 << 32n) | BigInt(offset >>> 0);
}
