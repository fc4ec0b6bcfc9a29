/**
 * Finding out what a daemon holds, through the protocol only (a reconnecting tool does not
 * know the device ids): which device ids exist (an unknown id gets -EBADF), which of them is
 * the vgic-v3 and which are ITSes (HAS_DEVICE_ATTR GRP_ADDR/KVM_VGIC_ITS_ADDR_TYPE), their
 * addresses, and the number of vCPUs (a redistributor register of a vCPU out of range gets
 * -EINVAL).
 */
import {
  KVM_DEV_ARM_VGIC_GRP_ADDR,
  KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
  KVM_VGIC_ITS_ADDR_TYPE,
  KVM_VGIC_V3_ADDR_TYPE_DIST,
  KVM_VGIC_V3_ADDR_TYPE_REDIST,
} from '../../attr/types.js';
import type { VitsdClient } from '../../client/client.js';
import { isVitsdError } from '../../client/errors.js';
import { Errno } from '../../util/errno.js';
import { GICR_CTLR, redistRegAttr } from '../../vmm/gic-regs.js';
import type { GicDevices } from '../../vmm/gic-setup.js';
import type { VmLayout } from '../../vmm/vm-layout.js';

/** Device ids probed (17 devices at most exist; ids are small). */
const MAX_PROBED_ID = 64;
const ADDR_UNDEF = 0xffffffffffffffffn;

export interface DiscoveredVm {
  devices: GicDevices;
  distBase: number;
  redistBase: number;
  itsBases: number[];
  nrVcpus: number;
}

async function classify(client: VitsdClient, id: number): Promise<'none' | 'its' | 'vgic'> {
  try {
    await client.hasDeviceAttr(id, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(KVM_VGIC_ITS_ADDR_TYPE));
    return 'its';
  } catch (e) {
    if (isVitsdError(e) && e.errno === Errno.EBADF) return 'none';
    if (isVitsdError(e)) return 'vgic';
    throw e;
  }
}

async function vcpuExists(client: VitsdClient, vgic: number, vcpu: number): Promise<boolean> {
  try {
    await client.getDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(vcpu, GICR_CTLR));
    return true;
  } catch (e) {
    if (isVitsdError(e) && (e.errno === Errno.EINVAL || e.errno === Errno.ENXIO)) return false;
    throw e;
  }
}

export async function discoverVm(client: VitsdClient): Promise<DiscoveredVm> {
  const kinds = await Promise.all(Array.from({ length: MAX_PROBED_ID }, (_, id) => classify(client, id)));
  const vgics = kinds.flatMap((k, id) => (k === 'vgic' ? [id] : []));
  const itsIds = kinds.flatMap((k, id) => (k === 'its' ? [id] : []));
  if (vgics.length !== 1) throw new Error(`the daemon holds ${vgics.length} vgic-v3 device(s); expected one (has a VM been set up?)`);
  const vgic = vgics[0]!;
  const itsBases: number[] = [];
  for (const id of itsIds) itsBases.push(Number(await client.getDeviceAttr(id, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(KVM_VGIC_ITS_ADDR_TYPE))));
  const addr = async (type: number): Promise<bigint> => {
    try {
      return await client.getDeviceAttr(vgic, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(type));
    } catch (e) {
      if (isVitsdError(e)) return ADDR_UNDEF;
      throw e;
    }
  };
  const dist = await addr(KVM_VGIC_V3_ADDR_TYPE_DIST);
  const redist = await addr(KVM_VGIC_V3_ADDR_TYPE_REDIST);
  // Largest n with vCPU n-1 present, by bisection over 1..512.
  let lo = 0;
  let hi = 512;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (await vcpuExists(client, vgic, mid - 1)) lo = mid;
    else hi = mid - 1;
  }
  if (lo === 0) throw new Error('the daemon reports no vCPU');
  return {
    devices: { vgic, its: itsIds },
    distBase: dist === ADDR_UNDEF ? 0 : Number(dist),
    redistBase: redist === ADDR_UNDEF ? 0 : Number(redist),
    itsBases,
    nrVcpus: lo,
  };
}

/** The layout of a discovered VM (RAM comes from the caller). */
export function layoutOf(d: DiscoveredVm, ram: { base: number; size: number }): VmLayout {
  return { distBase: d.distBase, redistBase: d.redistBase, itsBases: d.itsBases, ramBase: ram.base, ramSize: ram.size, nrVcpus: d.nrVcpus };
}
