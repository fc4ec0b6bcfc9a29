/**
 * Migration of a replay VM to a fresh vitsd. The default is the VMM's migration orchestrator
 * (src/vmm/migration.ts, `migrateWithOrchestrator`); `migrateDirect` is this module's own
 * minimal implementation of the same sequence (protocol.md "Suspend and resume",
 * kvm-its-abi.md section 5), kept as an independent cross-check of the orchestrator:
 *
 * source:      SUSPEND, SAVE_PENDING_TABLES (vgic-v3), ITS_SAVE_TABLES, GET of the ITS
 *              registers and of each redistributor's GICR_CTLR/PROPBASER/PENDBASER, copy guest RAM
 * destination: (memory table attached by the factory) SET_VCPUS, vgic-v3 + addresses + INIT,
 *              ITS + address + INIT, per vCPU GICR_PROPBASER, GICR_PENDBASER then GICR_CTLR,
 *              ITS registers in KVM's restore order (IIDR, BASER<n>, CBASER, CREADR, CWRITER),
 *              ITS_RESTORE_TABLES, GITS_CTLR last; then the VM runs (RESUME).
 */
import {
  KVM_DEV_ARM_ITS_RESTORE_TABLES,
  KVM_DEV_ARM_ITS_SAVE_TABLES,
  KVM_DEV_ARM_VGIC_GRP_CTRL,
  KVM_DEV_ARM_VGIC_GRP_ITS_REGS,
  KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
  KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES,
} from '../attr/types.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { migrate } from '../vmm/migration.js';
import type { VmLayout } from '../vmm/vm-layout.js';
import type { EndpointFactory, ReplayEndpoint } from './endpoint.js';
import { createVgicAndIts, redistRegAttr, type VmAddresses, type VmHandles } from './vm-setup.js';

const GITS_CTLR = 0x0;
const GITS_IIDR = 0x4;
const GITS_CBASER = 0x80;
const GITS_CWRITER = 0x88;
const GITS_CREADR = 0x90;
const GITS_BASER = (n: number): number => 0x100 + 8 * n;
const GICR_CTLR = 0x0;
const GICR_PROPBASER = 0x70;
const GICR_PENDBASER = 0x78;

/** Register state read from the source after the saves. */
export interface SavedVgicState {
  readonly its: ReadonlyMap<number, bigint>;
  readonly redist: ReadonlyArray<{ ctlr: bigint; propbaser: bigint; pendbaser: bigint }>;
}

export interface MigrationResult {
  readonly endpoint: ReplayEndpoint;
  readonly handles: VmHandles;
  /** Wall time of the whole migration (ms). */
  readonly ms: number;
  readonly bytesCopied: number;
}

/** Copy chunk: bounded temporary allocation for large guests. */
const COPY_CHUNK = 1 << 20;

async function getRedist64(src: ReplayEndpoint, vgicId: number, vcpu: number, offset: number): Promise<bigint> {
  const lo = await src.target.getDeviceAttr(vgicId, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(vcpu, offset));
  const hi = await src.target.getDeviceAttr(vgicId, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(vcpu, offset + 4));
  return (lo & 0xffff_ffffn) | ((hi & 0xffff_ffffn) << 32n);
}

async function setRedist64(dst: ReplayEndpoint, vgicId: number, vcpu: number, offset: number, value: bigint): Promise<void> {
  await dst.target.setDeviceAttr(vgicId, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(vcpu, offset), value & 0xffff_ffffn);
  await dst.target.setDeviceAttr(vgicId, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(vcpu, offset + 4), (value >> 32n) & 0xffff_ffffn);
}

/** Source half: suspend, save the tables into guest RAM, read the registers. */
export async function saveSource(src: ReplayEndpoint, handles: VmHandles, nrVcpus: number): Promise<SavedVgicState> {
  const t = src.target;
  await t.suspend();
  await t.setDeviceAttr(handles.vgicId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES), 0n);
  await t.setDeviceAttr(handles.itsId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_ITS_SAVE_TABLES), 0n);
  const its = new Map<number, bigint>();
  for (const off of [GITS_CTLR, GITS_IIDR, GITS_CBASER, GITS_CREADR, GITS_CWRITER, ...Array.from({ length: 8 }, (_, n) => GITS_BASER(n))]) {
    its.set(off, await t.getDeviceAttr(handles.itsId, KVM_DEV_ARM_VGIC_GRP_ITS_REGS, BigInt(off)));
  }
  const redist: Array<{ ctlr: bigint; propbaser: bigint; pendbaser: bigint }> = [];
  for (let v = 0; v < nrVcpus; v++) {
    const ctlr = await t.getDeviceAttr(handles.vgicId, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(v, GICR_CTLR));
    redist.push({
      ctlr: ctlr & 0xffff_ffffn,
      propbaser: await getRedist64(src, handles.vgicId, v, GICR_PROPBASER),
      pendbaser: await getRedist64(src, handles.vgicId, v, GICR_PENDBASER),
    });
  }
  return { its, redist };
}

/** Copies every region of `from` into `to` (same region table). Returns bytes copied. */
export function copyGuestRam(from: GuestMemory, to: GuestMemory): number {
  const buf = new Uint8Array(Math.min(COPY_CHUNK, from.regions.reduce((m, r) => Math.max(m, r.size), 0)));
  let total = 0;
  for (const r of from.regions) {
    for (let off = 0; off < r.size; off += buf.length) {
      const n = Math.min(buf.length, r.size - off);
      from.readBytes(r.gpa + off, buf, 0, n);
      to.writeBytes(r.gpa + off, buf, 0, n);
      total += n;
    }
  }
  return total;
}

/** Destination half, on a fresh endpoint whose memory already holds the copied RAM. */
export async function restoreDestination(dst: ReplayEndpoint, vm: VmAddresses, saved: SavedVgicState): Promise<VmHandles> {
  const t = dst.target;
  const handles = await createVgicAndIts(t, vm);
  for (let v = 0; v < vm.nrVcpus; v++) {
    const r = saved.redist[v]!;
    await setRedist64(dst, handles.vgicId, v, GICR_PROPBASER, r.propbaser);
    await setRedist64(dst, handles.vgicId, v, GICR_PENDBASER, r.pendbaser);
    await t.setDeviceAttr(handles.vgicId, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, redistRegAttr(v, GICR_CTLR), r.ctlr);
  }
  const setIts = (off: number): Promise<bigint> => t.setDeviceAttr(handles.itsId, KVM_DEV_ARM_VGIC_GRP_ITS_REGS, BigInt(off), saved.its.get(off) ?? 0n);
  await setIts(GITS_IIDR);
  for (let n = 0; n < 8; n++) await setIts(GITS_BASER(n));
  await setIts(GITS_CBASER);
  await setIts(GITS_CREADR);
  await setIts(GITS_CWRITER);
  await t.setDeviceAttr(handles.itsId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_ITS_RESTORE_TABLES), 0n);
  await setIts(GITS_CTLR);
  await t.resume();
  return handles;
}

/**
 * Migrates the VM of `src` to a fresh endpoint from `factory` and closes the source.
 * On failure the source is left suspended and open (the caller decides), the destination closed.
 */
export async function migrateDirect(src: ReplayEndpoint, handles: VmHandles, vm: VmAddresses, factory: EndpointFactory): Promise<MigrationResult> {
  const t0 = performance.now();
  const saved = await saveSource(src, handles, vm.nrVcpus);
  const dst = await factory(src.memory.regions);
  let dstHandles: VmHandles;
  let bytesCopied: number;
  try {
    bytesCopied = copyGuestRam(src.memory, dst.memory);
    dstHandles = await restoreDestination(dst, vm, saved);
  } catch (e) {
    await dst.close();
    throw e;
  }
  await src.close();
  return { endpoint: dst, handles: dstHandles, ms: performance.now() - t0, bytesCopied };
}

/**
 * Migration through src/vmm/migration.ts: the replay's source and a fresh destination from
 * `factory` (its memory table is already attached), no dirty log, so all RAM is copied in the
 * downtime.
 */
export async function migrateWithOrchestrator(src: ReplayEndpoint, handles: VmHandles, vm: VmAddresses, factory: EndpointFactory): Promise<MigrationResult> {
  const t0 = performance.now();
  const regions = src.memory.regions;
  const layout: VmLayout = {
    distBase: vm.distBase,
    redistBase: vm.redistBase,
    itsBases: [vm.itsBase],
    ramBase: regions[0]?.gpa ?? 0,
    ramSize: regions.reduce((n, r) => n + r.size, 0),
    nrVcpus: vm.nrVcpus,
  };
  const dst = await factory(regions);
  try {
    const r = await migrate(
      { target: src.target, memory: src.memory, devices: { vgic: handles.vgicId, its: [handles.itsId] }, dirtyLog: null },
      { target: dst.target, memory: dst.memory, attachMemory: async () => {} },
      { layout, precopy: false },
    );
    await src.close();
    return {
      endpoint: dst,
      handles: { vgicId: r.destinationDevices.vgic, itsId: r.destinationDevices.its[0]! },
      ms: performance.now() - t0,
      bytesCopied: r.ram.finalPassBytes,
    };
  } catch (e) {
    await dst.close();
    throw e;
  }
}
