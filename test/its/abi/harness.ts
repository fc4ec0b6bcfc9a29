/**
 * Test harness: a VM (VirtualGic) on ArrayBuffer guest memory, set up as a VMM and a Linux-like
 * guest would, and a guest driver that posts ITS commands through the real command queue
 * (32-byte commands in guest RAM, then a GITS_CWRITER MMIO write).
 *
 * Command words are encoded here from its-model.md 2 / kvm-its-abi.md 6.2 (u32 words W0..W7 =
 * DW0 lo, DW0 hi, ..., DW3 hi), independently of src/.
 */
import { encodeBaser } from '../../../src/its/abi/baser.js';
import { VirtualGic } from '../../../src/attr/virtual-gic.js';
import {
  KVM_DEV_ARM_ITS_RESTORE_TABLES,
  KVM_DEV_ARM_ITS_SAVE_TABLES,
  KVM_DEV_ARM_VGIC_CTRL_INIT,
  KVM_DEV_ARM_VGIC_GRP_ADDR,
  KVM_DEV_ARM_VGIC_GRP_CTRL,
  KVM_DEV_ARM_VGIC_GRP_ITS_REGS,
  KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
  KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES,
  KVM_DEV_TYPE_ARM_VGIC_ITS,
  KVM_DEV_TYPE_ARM_VGIC_V3,
  KVM_VGIC_ITS_ADDR_TYPE,
  KVM_VGIC_V3_ADDR_TYPE_DIST,
  KVM_VGIC_V3_ADDR_TYPE_REDIST,
} from '../../../src/attr/types.js';
import { ArrayBufferGuestMemory } from '../../../src/memory/array-buffer-guest-memory.js';
import type { Its } from '../../../src/its/its.js';

export const RAM_BASE = 0x4000_0000;
export const DIST_BASE = 0x0800_0000;
export const ITS_BASE = 0x0808_0000;
export const REDIST_BASE = 0x080a_0000;

export const GITS_CTLR = 0x0;
export const GITS_IIDR = 0x4;
export const GITS_CBASER = 0x80;
export const GITS_CWRITER = 0x88;
export const GITS_CREADR = 0x90;
export const GITS_BASER0 = 0x100;
export const GITS_BASER1 = 0x108;
export const GICR_CTLR = 0x0;
export const GICR_PROPBASER = 0x70;
export const GICR_PENDBASER = 0x78;

export interface Layout {
  ramSize: number;
  prop: number;
  pend: (vcpu: number) => number;
  cmdq: number;
  deviceTable: number;
  /** Level-2 pages of a two-level device table. */
  l2: (index: number) => number;
  collectionTable: number;
  itt: (devid: number) => number;
}

/**
 * Guest RAM layout: property table, pending tables, command queue, tables, then the ITTs
 * (`ittStride` bytes per device, DeviceIDs taken modulo `ittSlots`).
 */
export function defaultLayout(ramSize = 32 * 1024 * 1024, ittStride = 0x1000, ittSlots = 4096): Layout {
  return {
    ramSize,
    prop: RAM_BASE,
    pend: (v) => RAM_BASE + 0x10_0000 + v * 0x1_0000,
    cmdq: RAM_BASE + 0x20_0000,
    deviceTable: RAM_BASE + 0x21_0000,
    l2: (i) => RAM_BASE + 0x30_0000 + i * 0x1_0000,
    collectionTable: RAM_BASE + 0x22_0000,
    itt: (devid) => RAM_BASE + 0x80_0000 + (devid % ittSlots) * ittStride,
  };
}

/** 10 MiB of RAM, 2 KiB ITTs (up to 8 EventID bits), DeviceIDs modulo 1024: for property tests. */
export function smallLayout(): Layout {
  return defaultLayout(10 * 1024 * 1024, 0x800, 1024);
}

export interface VmOptions {
  nrVcpus?: number;
  layout?: Layout;
  /** Device table: flat with `devicePages` pages, or two-level with an L1 of `devicePages` pages. */
  indirect?: boolean;
  devicePages?: number;
  collectionPages?: number;
  memory?: ArrayBufferGuestMemory;
  /** Set PROPBASER/PENDBASER/EnableLPIs and enable the ITS (default true). */
  program?: boolean;
}

export class TestVm {
  readonly vm: VirtualGic;
  readonly memory: ArrayBufferGuestMemory;
  readonly layout: Layout;
  readonly nrVcpus: number;
  vgicId = 0;
  itsId = 0;
  /** Next command slot offset (the guest's copy of GITS_CWRITER). */
  cwriter = 0;

  constructor(opts: VmOptions = {}) {
    this.layout = opts.layout ?? defaultLayout();
    this.nrVcpus = opts.nrVcpus ?? 4;
    this.memory = opts.memory ?? new ArrayBufferGuestMemory([{ gpa: RAM_BASE, size: this.layout.ramSize }]);
    this.vm = new VirtualGic({ memory: this.memory });
    this.createDevices();
    if (opts.program !== false) {
      this.programRedistributors();
      this.programIts(opts);
    }
  }

  get its(): Its {
    return this.vm.itsOf(this.itsId)!;
  }

  createDevices(): void {
    const vm = this.vm;
    vm.setVcpus(this.nrVcpus);
    this.vgicId = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_V3, false);
    vm.setDeviceAttr(this.vgicId, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(KVM_VGIC_V3_ADDR_TYPE_DIST), BigInt(DIST_BASE));
    vm.setDeviceAttr(this.vgicId, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(KVM_VGIC_V3_ADDR_TYPE_REDIST), BigInt(REDIST_BASE));
    vm.setDeviceAttr(this.vgicId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n);
    this.itsId = vm.createDevice(KVM_DEV_TYPE_ARM_VGIC_ITS, false);
    vm.setDeviceAttr(this.itsId, KVM_DEV_ARM_VGIC_GRP_ADDR, BigInt(KVM_VGIC_ITS_ADDR_TYPE), BigInt(ITS_BASE));
    vm.setDeviceAttr(this.itsId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_VGIC_CTRL_INIT), 0n);
  }

  /** 32-bit REDIST_REGS access (vCPU i < 16 has MPIDR i). */
  setRedist(vcpu: number, offset: number, value: number): void {
    this.vm.setDeviceAttr(this.vgicId, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, (BigInt(vcpu) << 32n) | BigInt(offset), BigInt(value >>> 0));
  }
  getRedist(vcpu: number, offset: number): number {
    return Number(this.vm.getDeviceAttr(this.vgicId, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, (BigInt(vcpu) << 32n) | BigInt(offset)));
  }
  setRedist64(vcpu: number, offset: number, value: number): void {
    this.setRedist(vcpu, offset, value % 0x1_0000_0000);
    this.setRedist(vcpu, offset + 4, Math.floor(value / 0x1_0000_0000));
  }

  setItsReg(offset: number, value: bigint): void {
    this.vm.setDeviceAttr(this.itsId, KVM_DEV_ARM_VGIC_GRP_ITS_REGS, BigInt(offset), value);
  }
  getItsReg(offset: number): bigint {
    return this.vm.getDeviceAttr(this.itsId, KVM_DEV_ARM_VGIC_GRP_ITS_REGS, BigInt(offset));
  }

  programRedistributors(): void {
    const L = this.layout;
    // Configuration bytes: priority 0xa0, enabled (bit 0), group 1 (bit 1).
    this.memory.fill(L.prop, 0x1_0000 - 0x2000, 0xa3);
    for (let v = 0; v < this.nrVcpus; v++) {
      this.setRedist64(v, GICR_PROPBASER, L.prop + 15); // IDbits 15: 16-bit INTIDs
      this.setRedist64(v, GICR_PENDBASER, L.pend(v));
      this.setRedist(v, GICR_CTLR, 1);
    }
  }

  deviceBaser(opts: VmOptions = {}): bigint {
    return encodeBaser({ valid: true, indirect: opts.indirect ?? false, type: 1, base: this.layout.deviceTable, pages: opts.devicePages ?? 1 });
  }
  collectionBaser(opts: VmOptions = {}): bigint {
    return encodeBaser({ valid: true, type: 4, base: this.layout.collectionTable, pages: opts.collectionPages ?? 1 });
  }

  programIts(opts: VmOptions = {}): void {
    this.setItsReg(GITS_BASER0, this.deviceBaser(opts));
    this.setItsReg(GITS_BASER1, this.collectionBaser(opts));
    this.setItsReg(GITS_CBASER, (1n << 63n) | BigInt(this.layout.cmdq) | 15n); // 16 x 4 KiB = 64 KiB
    this.setItsReg(GITS_CTLR, 1n);
    this.cwriter = 0;
  }

  /** Writes an L1 entry of a two-level device table (the guest's job). */
  setL1(index: number, l2: number | null): void {
    const addr = this.layout.deviceTable + index * 8;
    if (l2 === null) this.memory.writeU64(addr, 0, 0);
    else this.memory.writeU64(addr, l2 % 0x1_0000_0000, (Math.floor(l2 / 0x1_0000_0000) | 0x8000_0000) >>> 0);
  }

  // ---- Commands (W0..W7 = DW0.lo, DW0.hi, DW1.lo, DW1.hi, DW2.lo, DW2.hi, DW3.lo, DW3.hi) ----

  command(w: readonly number[]): void {
    const at = this.layout.cmdq + this.cwriter;
    for (let i = 0; i < 8; i++) this.memory.writeU32(at + i * 4, (w[i] ?? 0) >>> 0);
    this.cwriter = (this.cwriter + 32) % 0x1_0000;
    this.vm.mmioWrite(ITS_BASE + GITS_CWRITER, 8, BigInt(this.cwriter));
  }
  /** MAPD: DW0[63:32] DeviceID, DW1[4:0] Size = bits - 1, DW2[51:8] ITT_addr, DW2[63] V. */
  mapd(devid: number, bits: number, itt: number, valid = true): void {
    this.command([0x08, devid, bits - 1, 0, itt % 0x1_0000_0000 & ~0xff, Math.floor(itt / 0x1_0000_0000) | (valid ? 0x8000_0000 : 0)]);
  }
  /** MAPC: DW2[15:0] ICID, DW2[47:16] RDbase (processor number), DW2[63] V. */
  mapc(icid: number, target: number, valid = true): void {
    this.command([0x09, 0, 0, 0, ((target & 0xffff) << 16) | icid, (target >>> 16) | (valid ? 0x8000_0000 : 0)]);
  }
  /** MAPTI: DW1[31:0] EventID, DW1[63:32] pINTID, DW2[15:0] ICID. */
  mapti(devid: number, eventid: number, intid: number, icid: number): void {
    this.command([0x0a, devid, eventid, intid, icid, 0]);
  }
  mapi(devid: number, eventid: number, icid: number): void {
    this.command([0x0b, devid, eventid, 0, icid, 0]);
  }
  movi(devid: number, eventid: number, icid: number): void {
    this.command([0x01, devid, eventid, 0, icid, 0]);
  }
  discard(devid: number, eventid: number): void {
    this.command([0x0f, devid, eventid]);
  }
  int(devid: number, eventid: number): void {
    this.command([0x03, devid, eventid]);
  }
  clear(devid: number, eventid: number): void {
    this.command([0x04, devid, eventid]);
  }
  inv(devid: number, eventid: number): void {
    this.command([0x0c, devid, eventid]);
  }
  invall(icid: number): void {
    this.command([0x0d, 0, 0, 0, icid, 0]);
  }
  sync(): void {
    this.command([0x05]);
  }

  // ---- Controls ----

  saveTables(): void {
    this.vm.setDeviceAttr(this.itsId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_ITS_SAVE_TABLES), 0n);
  }
  restoreTables(): void {
    this.vm.setDeviceAttr(this.itsId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_ITS_RESTORE_TABLES), 0n);
  }
  savePendingTables(): void {
    this.vm.setDeviceAttr(this.vgicId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES), 0n);
  }

  readU64(gpa: number): bigint {
    return this.memory.readU64Big(gpa);
  }
}

/** A copy of guest RAM in a fresh memory object. */
export function copyMemory(src: ArrayBufferGuestMemory): ArrayBufferGuestMemory {
  return new ArrayBufferGuestMemory(
    src.regions.map((r) => ({ gpa: r.gpa, size: r.size })),
    src.buffers.map((b) => b.slice(0)),
  );
}

/** Saved register state of the source, as a VMM reads it after the saves (protocol.md). */
export interface SavedRegs {
  its: Record<string, bigint>;
  redist: { propbaser: number[]; pendbaser: number[]; ctlr: number }[];
}

export function readSavedRegs(t: TestVm): SavedRegs {
  const its: Record<string, bigint> = {};
  for (const [name, off] of [
    ['CTLR', GITS_CTLR], ['IIDR', GITS_IIDR], ['CBASER', GITS_CBASER], ['CREADR', GITS_CREADR], ['CWRITER', GITS_CWRITER],
    ['BASER0', GITS_BASER0], ['BASER1', GITS_BASER1],
  ] as const) {
    its[name] = t.getItsReg(off);
  }
  const redist = [];
  for (let v = 0; v < t.nrVcpus; v++) {
    redist.push({
      propbaser: [t.getRedist(v, GICR_PROPBASER), t.getRedist(v, GICR_PROPBASER + 4)],
      pendbaser: [t.getRedist(v, GICR_PENDBASER), t.getRedist(v, GICR_PENDBASER + 4)],
      ctlr: t.getRedist(v, GICR_CTLR),
    });
  }
  return { its, redist };
}

/**
 * Destination: a fresh VM on `memory` (a copy of the source's RAM), devices created in the
 * protocol's order, then the registers and tables restored in KVM's order: redistributors
 * (PROPBASER, PENDBASER, then GICR_CTLR), IIDR, BASERs, CBASER, CREADR, CWRITER,
 * RESTORE_TABLES, CTLR.
 */
export function restoreInto(memory: ArrayBufferGuestMemory, regs: SavedRegs, opts: VmOptions = {}): TestVm {
  const t = new TestVm({ ...opts, memory, program: false });
  regs.redist.forEach((r, v) => {
    t.setRedist(v, GICR_PROPBASER, r.propbaser[0]!);
    t.setRedist(v, GICR_PROPBASER + 4, r.propbaser[1]!);
    t.setRedist(v, GICR_PENDBASER, r.pendbaser[0]!);
    t.setRedist(v, GICR_PENDBASER + 4, r.pendbaser[1]!);
  });
  regs.redist.forEach((r, v) => t.setRedist(v, GICR_CTLR, r.ctlr));
  t.setItsReg(GITS_IIDR, regs.its.IIDR!);
  t.setItsReg(GITS_BASER0, regs.its.BASER0!);
  t.setItsReg(GITS_BASER1, regs.its.BASER1!);
  t.setItsReg(GITS_CBASER, regs.its.CBASER!);
  t.setItsReg(GITS_CREADR, regs.its.CREADR!);
  t.setItsReg(GITS_CWRITER, regs.its.CWRITER!);
  t.restoreTables();
  t.setItsReg(GITS_CTLR, regs.its.CTLR!);
  t.cwriter = Number(regs.its.CWRITER!);
  return t;
}

