/**
 * The VM-wide LPI part of the redistributors: GICR_* LPI registers of every vCPU, the LPI
 * namespace shared by all ITSes (KVM: dist->lpi_xa), cached LPI configuration, pending
 * latches, delivery to vCPUs and the pending-table save. KVM semantics throughout
 * (../shared/spec/kvm-its-abi.md section 2, KVM vgic-mmio-v3.c / vgic-its.c / vgic-v3.c).
 *
 * State lives in typed arrays indexed by INTID (KVM's LPI space is 16 bits), so the MSI
 * path (setPending) is O(1) and allocation-free: reference counts, targets and cached
 * configuration bytes per INTID; bitmaps (bit INTID % 32 of word INTID >> 5) for "exists",
 * "pending latch" and, per vCPU, "targets this vCPU" (so MOVALL, INVALL, the EnableLPIs sync
 * and the pending-table save work on one vCPU's LPIs, the save a 32-bit word at a time).
 * Deliverable LPIs (pending, enabled, with a target) are kept per vCPU in a DeliverableSet,
 * so an acknowledge scans only what is pending on that vCPU.
 *
 * Guest RAM faults: reads of the property/pending tables that fault are counted in
 * stats.tableReadFaults and handled as KVM does where KVM defines it:
 * - LPI creation (acquire): KVM's vgic_add_lpi fails with -EFAULT -> acquire returns false
 *   and nothing is created (also when clearing the consumed pending bit fails).
 * - Invalidation (INV, INVALL, GICR_INVLPIR/INVALLR): KVM's update_lpi_config returns early
 *   -> the cached configuration of that LPI is left unchanged.
 * - Pending-table sync on GICR_CTLR.EnableLPIs 0->1: KVM's its_sync_lpi_pending_table stops
 *   at the first faulting byte -> latches of the remaining LPIs are left unchanged. (KVM also
 *   reads, and can fault on, the bytes of LPIs that target other vCPUs; vitsd reads only the
 *   bytes it uses.)
 * - SAVE_PENDING_TABLES (a userspace request, not guest-driven) throws ErrnoError(EFAULT).
 *   vitsd checks every table span first, so a faulting save writes nothing (KVM may have
 *   written the bytes of lower INTIDs before it hits the fault).
 * Nothing guest-driven throws.
 */
import type { GuestMemory, WordWindow } from '../memory/guest-memory.js';
import { GuestMemoryFault } from '../memory/errors.js';
import { Errno, ErrnoError } from '../util/errno.js';
import { DeliverableSet, INTID_SPACE, lowestBit } from './deliverable-set.js';
import { PENDING_TABLE_BYTES, PendingTableScratch, pendingTableAccessible, writePendingTables } from './pending-table.js';
import {
  GICR_CTLR,
  GICR_CTLR_ENABLE_LPIS,
  GICR_IIDR,
  GICR_IIDR_VALUE,
  GICR_INVALLR,
  GICR_INVLPIR,
  GICR_PENDBASER,
  GICR_PROPBASER,
  GICR_SYNCR,
  GICR_TYPER,
  INITIAL_PENDBASER_VALUE,
  INITIAL_PROPBASER_VALUE,
  PENDBASER_PTZ,
  extractBytes,
  gicrTyper,
  lpiLimit,
  mpidrOf,
  pendbaserAddress,
  propbaserAddress,
  sanitisePendbaser,
  sanitisePropbaser,
  update64,
  vcpuOfMpidr,
} from './registers.js';
import {
  LPI_BASE,
  MAX_LPI_INTID_BITS,
  NO_VCPU,
  SPURIOUS_INTID,
  type AckResult,
  type LpiHooks,
  type LpiStats,
  type LpiSystem,
} from './types.js';

/** Most vCPUs a vgic-v3 has (KVM VGIC_V3_MAX_CPUS; protocol.md SET_VCPUS 1..512). */
export const MAX_VCPUS = 512;

/** Cached configuration byte: priority (7:2) and enable (0); the group bit is dropped (always Group 1). */
const CONFIG_KEEP_MASK = 0xfd;
const CONFIG_PRIORITY_MASK = 0xfc;
const CONFIG_ENABLE = 0x01;
const SPURIOUS_PRIORITY = 0xff;
/** u32 words of a bitmap over the INTID space. */
const BITMAP_WORDS = INTID_SPACE >>> 5;
const WORD_SHIFT = 11; // log2(BITMAP_WORDS): vCPU v's words start at v << WORD_SHIFT
const U32_MAX = 0xffffffff;
/** Bytes of the property table for the LPI INTID space (8192..65535); a pending table's LPI part is an eighth of it. */
const LPI_SPACE_BYTES = INTID_SPACE - LPI_BASE;

export interface LpiRedistStats extends LpiStats {
  /** Pending-table writes that faulted or were refused (frozen memory) on guest-driven paths. */
  tableWriteFaults: number;
  /** Notification hooks that threw (a daemon bug; the LPI state stays consistent). */
  hookErrors: number;
}

export interface LpiRedistributorsOptions {
  /**
   * Whether the VM has an ITS (KVM vgic_has_its): gates GICR_CTLR writes and
   * GICR_TYPER.PLPIS. Default true; resetPropbaser() (called on ITS creation) sets it.
   * Pass false to get KVM's exact behaviour for a vgic-v3 with no ITS yet.
   */
  hasIts?: boolean;
}

/** One register region of the RD_base frame (KVM struct vgic_register_region). */
interface RdRegister {
  readonly name: string;
  readonly offset: number;
  readonly length: number;
  /** Allowed access sizes: bit n set = n-byte accesses allowed (KVM VGIC_ACCESS_*). */
  readonly sizes: number;
  /** `at` = byte offset of the access inside the register. */
  read(rd: LpiRedistributors, vcpu: number, at: number, size: number): bigint;
  write(rd: LpiRedistributors, vcpu: number, at: number, size: number, value: bigint): void;
}

const SIZE_32 = 1 << 4;
const SIZE_64 = 1 << 8;

function readAsZero(): bigint {
  return 0n;
}
function writeIgnored(): void {
  /* WI */
}

export class LpiRedistributors implements LpiSystem {
  readonly nrVcpus: number;
  readonly stats: LpiRedistStats = { tableReadFaults: 0, pendingTableWrites: 0, tableWriteFaults: 0, hookErrors: 0 };

  private memory: GuestMemory;
  private readonly hooks: LpiHooks;
  private hasItsFlag: boolean;

  // ---- Registers ----
  private propbaserReg = 0n;
  /** Cached from PROPBASER: configuration table base and exclusive INTID limit. */
  private propBase = 0;
  private lpiLimitValue: number;
  private readonly pendbaserRegs: bigint[];
  /** Cached from each PENDBASER: pending table base and stored PTZ. */
  private readonly pendBases: Float64Array;
  private readonly pendPtz: Uint8Array;
  /** GICR_CTLR.EnableLPIs per vCPU. */
  private readonly ctlr: Uint8Array;

  // ---- LPIs, indexed by INTID ----
  private readonly refcounts = new Uint32Array(INTID_SPACE);
  private readonly targets = new Int16Array(INTID_SPACE).fill(NO_VCPU);
  private readonly configs = new Uint8Array(INTID_SPACE);
  /** Bit per existing LPI, for INTID-ordered walks. */
  private readonly existing = new Uint32Array(BITMAP_WORDS);
  /** Pending latch per LPI. */
  private readonly latchBits = new Uint32Array(BITMAP_WORDS);
  /** Per vCPU (BITMAP_WORDS words each): the LPIs that exist and target it. */
  private readonly targetBits: Uint32Array;
  /** targetBits of each vCPU as its own view (no allocation in the save). */
  private readonly targetViews: Uint32Array[];
  private readonly deliverable: DeliverableSet;
  /** Scratch copy of one pending table for the save. */
  private readonly saveScratch = new PendingTableScratch();

  constructor(memory: GuestMemory, nrVcpus: number, hooks: LpiHooks, options: LpiRedistributorsOptions = {}) {
    if (!Number.isInteger(nrVcpus) || nrVcpus < 1 || nrVcpus > MAX_VCPUS) {
      throw new ErrnoError(Errno.EINVAL, `invalid number of vCPUs ${nrVcpus}`);
    }
    this.memory = memory;
    this.nrVcpus = nrVcpus;
    this.hooks = hooks;
    this.hasItsFlag = options.hasIts ?? true;
    // KVM: dist->propbaser is 0 until an ITS is created (vgic_its_create sets 0x580).
    this.lpiLimitValue = lpiLimit(0n, MAX_LPI_INTID_BITS);
    // KVM vgic_v3_enable: every vCPU starts with INITIAL_PENDBASER_VALUE.
    this.pendbaserRegs = new Array<bigint>(nrVcpus).fill(INITIAL_PENDBASER_VALUE);
    this.pendBases = new Float64Array(nrVcpus);
    this.pendPtz = new Uint8Array(nrVcpus);
    this.ctlr = new Uint8Array(nrVcpus);
    this.targetBits = new Uint32Array(nrVcpus * BITMAP_WORDS);
    this.targetViews = Array.from({ length: nrVcpus }, (_, v) => this.targetBits.subarray(v << WORD_SHIFT, (v + 1) << WORD_SHIFT));
    this.deliverable = new DeliverableSet(nrVcpus);
  }

  /** Replaces guest memory (SET_MEM_TABLE while suspended). Cached LPI state is kept. */
  setMemory(memory: GuestMemory): void {
    this.memory = memory;
  }

  get hasIts(): boolean {
    return this.hasItsFlag;
  }

  /** Records whether an ITS exists (KVM dist->has_its). */
  setHasIts(present: boolean): void {
    this.hasItsFlag = present;
  }

  /** KVM default MPIDR affinity of a vCPU (Aff2:Aff1:Aff0). */
  mpidrOf(vcpu: number): number {
    return mpidrOf(vcpu);
  }

  /** vCPU with that affinity (REDIST_REGS attr bits 63:32), -1 if none. */
  vcpuOfMpidr(mpidr: number): number {
    return vcpuOfMpidr(mpidr, this.nrVcpus);
  }

  // =====================================================================================
  // Registers
  // =====================================================================================

  private static readonly REGISTERS: readonly RdRegister[] = [
    {
      name: 'GICR_CTLR', offset: GICR_CTLR, length: 4, sizes: SIZE_32,
      // IR = CES = 0 (KVM implementation revision < 3), RWP = 0 (everything is synchronous).
      read: (rd, vcpu) => BigInt(rd.ctlr[vcpu]!),
      write: (rd, vcpu, _at, _size, value) => rd.writeCtlr(vcpu, (value & BigInt(GICR_CTLR_ENABLE_LPIS)) !== 0n),
    },
    {
      name: 'GICR_IIDR', offset: GICR_IIDR, length: 4, sizes: SIZE_32,
      read: () => BigInt(GICR_IIDR_VALUE),
      write: writeIgnored,
    },
    {
      name: 'GICR_TYPER', offset: GICR_TYPER, length: 8, sizes: SIZE_32 | SIZE_64,
      read: (rd, vcpu, at, size) => extractBytes(gicrTyper(vcpu, rd.nrVcpus, rd.hasItsFlag), at & 7, size),
      write: writeIgnored,
    },
    {
      name: 'GICR_PROPBASER', offset: GICR_PROPBASER, length: 8, sizes: SIZE_32 | SIZE_64,
      read: (rd, _vcpu, at, size) => extractBytes(rd.propbaserReg, at & 7, size),
      write: (rd, vcpu, at, size, value) => rd.writePropbaser(vcpu, at, size, value),
    },
    {
      name: 'GICR_PENDBASER', offset: GICR_PENDBASER, length: 8, sizes: SIZE_32 | SIZE_64,
      // PTZ is write-only for the guest: KVM hides it on reads.
      read: (rd, vcpu, at, size) => extractBytes(rd.pendbaserRegs[vcpu]! & ~PENDBASER_PTZ, at & 7, size),
      write: (rd, vcpu, at, size, value) => rd.writePendbaser(vcpu, at, size, value),
    },
    {
      name: 'GICR_INVLPIR', offset: GICR_INVLPIR, length: 8, sizes: SIZE_32 | SIZE_64,
      read: readAsZero,
      // Upper half is for vPEs (unsupported): KVM drops it; also dropped while EnableLPIs = 0.
      write: (rd, vcpu, at, _size, value) => {
        if ((at & 4) !== 0 || rd.ctlr[vcpu] === 0) return;
        rd.invalidate(Number(value & 0xffffffffn));
      },
    },
    {
      name: 'GICR_INVALLR', offset: GICR_INVALLR, length: 8, sizes: SIZE_32 | SIZE_64,
      read: readAsZero,
      write: (rd, vcpu, at) => {
        if ((at & 4) !== 0 || rd.ctlr[vcpu] === 0) return;
        rd.invalidateAll(vcpu);
      },
    },
    {
      name: 'GICR_SYNCR', offset: GICR_SYNCR, length: 4, sizes: SIZE_32,
      read: readAsZero, // never busy: invalidations complete synchronously
      write: writeIgnored,
    },
  ];

  private static findRegister(offset: number): RdRegister | undefined {
    for (const reg of LpiRedistributors.REGISTERS) {
      if (offset >= reg.offset && offset < reg.offset + reg.length) return reg;
    }
    return undefined;
  }

  /** KVM check_region: a 1/4/8-byte access of a width the register allows, naturally aligned. */
  private static accessAllowed(reg: RdRegister, offset: number, size: number): boolean {
    if (size !== 1 && size !== 4 && size !== 8) return false;
    return (reg.sizes & (1 << size)) !== 0 && offset % size === 0;
  }

  /** True when `offset` of the RD_base frame is a register vitsd implements (else the VMM's: -ENXIO). */
  static isImplementedOffset(offset: number): boolean {
    return LpiRedistributors.findRegister(offset) !== undefined;
  }

  /** Name of the register at `offset`, or null (diagnostics). */
  static registerName(offset: number): string | null {
    return LpiRedistributors.findRegister(offset)?.name ?? null;
  }

  mmioRead(vcpu: number, offset: number, size: number): bigint | null {
    this.checkVcpu(vcpu);
    const reg = LpiRedistributors.findRegister(offset);
    if (reg === undefined) return null;
    // A width or alignment the register does not take is RAZ/WI, as KVM.
    if (!LpiRedistributors.accessAllowed(reg, offset, size)) return 0n;
    return reg.read(this, vcpu, offset - reg.offset, size);
  }

  mmioWrite(vcpu: number, offset: number, size: number, value: bigint): boolean {
    this.checkVcpu(vcpu);
    const reg = LpiRedistributors.findRegister(offset);
    if (reg === undefined) return false;
    if (!LpiRedistributors.accessAllowed(reg, offset, size)) return true;
    reg.write(this, vcpu, offset - reg.offset, size, value & ((1n << BigInt(size * 8)) - 1n));
    return true;
  }

  get propbaser(): bigint {
    return this.propbaserReg;
  }

  /** GICR_PENDBASER as the guest and userspace read it (PTZ reads as 0). */
  pendbaser(vcpu: number): bigint {
    this.checkVcpu(vcpu);
    return this.pendbaserRegs[vcpu]! & ~PENDBASER_PTZ;
  }

  lpisEnabled(vcpu: number): boolean {
    return this.validVcpu(vcpu) && this.ctlr[vcpu] !== 0;
  }

  resetPropbaser(): void {
    // KVM vgic_its_create: has_its = true and propbaser = INITIAL_PROPBASER_VALUE.
    this.hasItsFlag = true;
    this.setPropbaserReg(INITIAL_PROPBASER_VALUE);
  }

  private setPropbaserReg(value: bigint): void {
    this.propbaserReg = value;
    this.propBase = propbaserAddress(value);
    this.lpiLimitValue = lpiLimit(value, MAX_LPI_INTID_BITS);
  }

  private writePropbaser(vcpu: number, at: number, size: number, value: bigint): void {
    // "Storing a value with LPIs already enabled is undefined": KVM ignores it.
    if (this.ctlr[vcpu] !== 0) return;
    this.setPropbaserReg(sanitisePropbaser(update64(this.propbaserReg, at, size, value)));
  }

  private writePendbaser(vcpu: number, at: number, size: number, value: bigint): void {
    if (this.ctlr[vcpu] !== 0) return;
    const reg = sanitisePendbaser(update64(this.pendbaserRegs[vcpu]!, at, size, value));
    this.pendbaserRegs[vcpu] = reg;
    this.pendBases[vcpu] = pendbaserAddress(reg);
    this.pendPtz[vcpu] = (reg & PENDBASER_PTZ) !== 0n ? 1 : 0;
  }

  /** KVM vgic_mmio_write_v3r_ctlr (only EnableLPIs matters). */
  private writeCtlr(vcpu: number, enable: boolean): void {
    if (!this.hasItsFlag) return;
    if (!enable) {
      if (this.ctlr[vcpu] === 0) return;
      // KVM vgic_flush_pending_lpis takes the LPIs off this vCPU's queues but keeps their
      // pending latches (they are still saved by SAVE_PENDING_TABLES). Here delivery is
      // gated by EnableLPIs, so clearing the bit is the flush.
      this.ctlr[vcpu] = 0;
      this.enableChanged(vcpu, false);
      return;
    }
    if (this.ctlr[vcpu] !== 0) return;
    // KVM vgic_enable_lpis: with PTZ = 0, latch every existing LPI targeting this vCPU
    // from its pending table (bits are read, not cleared).
    if (this.pendPtz[vcpu] === 0) this.syncPendingTable(vcpu);
    this.ctlr[vcpu] = 1;
    this.enableChanged(vcpu, true);
    if (this.deliverable.count(vcpu) > 0) this.notify(vcpu);
  }

  /**
   * KVM its_sync_lpi_pending_table: every LPI targeting this vCPU (INTID order) gets
   * pending = its bit in this vCPU's table (each byte read once). Stops at the first
   * faulting read, as KVM. Runs while EnableLPIs is still 0, so it notifies nothing itself.
   */
  private syncPendingTable(vcpu: number): void {
    const base = this.pendBases[vcpu]!;
    const words = vcpu << WORD_SHIFT;
    let lastByteOffset = -1;
    let pendmask = 0;
    for (let w = LPI_BASE >>> 5; w < BITMAP_WORDS; w++) {
      let bits = this.targetBits[words + w]!;
      while (bits !== 0) {
        const intid = (w << 5) | lowestBit(bits);
        bits &= bits - 1;
        const byteOffset = intid >>> 3;
        if (byteOffset !== lastByteOffset) {
          pendmask = this.readGuestByte(base + byteOffset);
          if (pendmask < 0) return;
          lastByteOffset = byteOffset;
        }
        this.setLatchQuietly(intid, (pendmask >>> (intid & 7)) & 1);
      }
    }
  }

  // =====================================================================================
  // LPI lifecycle
  // =====================================================================================

  isValidLpi(intid: number): boolean {
    return Number.isInteger(intid) && intid >= LPI_BASE && intid < this.lpiLimitValue;
  }

  acquire(intid: number, target: number): boolean {
    if (!inLpiSpace(intid)) return false;
    if (target !== NO_VCPU && !this.validVcpu(target)) return false;
    const rc = this.refcounts[intid]!;
    if (rc !== 0) {
      if (rc === U32_MAX) return false;
      this.refcounts[intid] = rc + 1;
      return true;
    }
    // KVM vgic_add_lpi: configuration byte first, then the pending bit of the target.
    const config = this.readGuestByte(this.propBase + (intid - LPI_BASE));
    if (config < 0) return false;
    let pending = 0;
    if (target !== NO_VCPU) {
      // KVM vgic_v3_lpi_sync_pending_status: a set bit is consumed (cleared in RAM).
      const addr = this.pendBases[target]! + (intid >>> 3);
      const byte = this.readGuestByte(addr);
      if (byte < 0) return false;
      const bit = 1 << (intid & 7);
      if ((byte & bit) !== 0) {
        if (!this.writeGuestByte(addr, byte & ~bit)) return false;
        pending = 1;
      }
    }
    this.create(intid, target, config, pending, 1);
    return true;
  }

  /** Records a new LPI (its guest bytes already read) with `refs` references. */
  private create(intid: number, target: number, config: number, pending: number, refs: number): void {
    const w = intid >>> 5;
    const bit = 1 << (intid & 31);
    this.refcounts[intid] = refs;
    this.targets[intid] = target;
    this.configs[intid] = config & CONFIG_KEEP_MASK;
    this.existing[w]! |= bit;
    if (pending !== 0) this.latchBits[w]! |= bit;
    else this.latchBits[w]! &= ~bit;
    if (target !== NO_VCPU) {
      this.targetBits[(target << WORD_SHIFT) + w]! |= bit;
      if (pending !== 0 && (config & CONFIG_ENABLE) !== 0) this.addDeliverable(target, intid);
    }
  }

  acquireMany(intid: number, target: number, count: number): boolean {
    if (!(count >= 1 && count <= U32_MAX) || count % 1 !== 0 || !inLpiSpace(intid)) return false;
    // The same rule as acquire, also for an LPI that exists (whose target stays as it is).
    if (target !== NO_VCPU && !this.validVcpu(target)) return false;
    const rc = this.refcounts[intid]!;
    if (rc === 0) {
      if (!this.acquire(intid, target)) return false;
      this.refcounts[intid] = count;
      return true;
    }
    if (count > U32_MAX - rc) return false;
    this.refcounts[intid] = rc + count;
    return true;
  }

  acquireStaged(ids: Uint32Array, count: number, targets: Int32Array, refs: Uint32Array): boolean {
    if (!(count >= 0 && count <= ids.length)) return false;
    // The LPI part of the property table and of each vCPU's pending table, in place, when each
    // lies in one backing view of guest memory (else null: those LPIs take acquireMany).
    const prop = this.memory.wordWindow(this.propBase, LPI_SPACE_BYTES);
    const pend: (WordWindow | null)[] = [];
    for (let v = 0; v < this.nrVcpus; v++) pend.push(this.memory.wordWindow(this.pendBases[v]! + LPI_BASE / 8, LPI_SPACE_BYTES / 8));
    for (let i = 0; i < count; i++) {
      const intid = ids[i]!;
      const target = inLpiSpace(intid) ? targets[intid]! : NO_VCPU;
      const n = inLpiSpace(intid) ? refs[intid]! : 0;
      if (!this.acquireStagedOne(intid, target, n, prop, target >= 0 && target < pend.length ? pend[target]! : null)) {
        for (let j = 0; j < i; j++) this.releaseMany(ids[j]!, refs[ids[j]!]!);
        return false;
      }
    }
    return true;
  }

  /** acquireMany(intid, target, n), reading the LPI's bytes through the windows when both are there. */
  private acquireStagedOne(intid: number, target: number, n: number, prop: WordWindow | null, pend: WordWindow | null): boolean {
    if (!inLpiSpace(intid) || this.refcounts[intid] !== 0 || prop === null || (target !== NO_VCPU && pend === null)) {
      return this.acquireMany(intid, target, n);
    }
    if (!(n >= 1 && n <= U32_MAX) || n % 1 !== 0 || (target !== NO_VCPU && !this.validVcpu(target))) return false;
    const at = intid - LPI_BASE;
    const config = (prop.words[prop.index + (at >>> 2)]! >>> ((at & 3) << 3)) & 0xff;
    if (pend !== null) {
      const byteAt = (intid >>> 3) - LPI_BASE / 8;
      const byte = (pend.words[pend.index + (byteAt >>> 2)]! >>> ((byteAt & 3) << 3)) & 0xff;
      // A set pending bit is consumed (a guest RAM write): the general path does that.
      if ((byte & (1 << (intid & 7))) !== 0) return this.acquireMany(intid, target, n);
    }
    this.create(intid, target, config, 0, n);
    return true;
  }

  releaseMany(intid: number, count: number): void {
    if (!inLpiSpace(intid) || !(count >= 1) || count % 1 !== 0) return;
    const rc = this.refcounts[intid]!;
    if (rc === 0) return;
    if (count < rc) {
      this.refcounts[intid] = rc - count;
      return;
    }
    this.refcounts[intid] = 1;
    this.release(intid);
  }

  release(intid: number): void {
    if (!inLpiSpace(intid)) return;
    const rc = this.refcounts[intid]!;
    if (rc === 0) return;
    if (rc > 1) {
      this.refcounts[intid] = rc - 1;
      return;
    }
    const w = intid >>> 5;
    const keep = ~(1 << (intid & 31));
    const target = this.targets[intid]!;
    if (target !== NO_VCPU) {
      this.deliverable.remove(target, intid);
      this.targetBits[(target << WORD_SHIFT) + w]! &= keep;
    }
    this.refcounts[intid] = 0;
    this.targets[intid] = NO_VCPU;
    this.configs[intid] = 0;
    this.existing[w]! &= keep;
    this.latchBits[w]! &= keep;
  }

  exists(intid: number): boolean {
    return inLpiSpace(intid) && this.refcounts[intid] !== 0;
  }

  refcount(intid: number): number {
    return inLpiSpace(intid) ? this.refcounts[intid]! : 0;
  }

  target(intid: number): number {
    return inLpiSpace(intid) && this.refcounts[intid] !== 0 ? this.targets[intid]! : NO_VCPU;
  }

  setTarget(intid: number, vcpu: number): void {
    if (!this.exists(intid)) return;
    if (vcpu !== NO_VCPU && !this.validVcpu(vcpu)) return;
    this.retarget(intid, vcpu);
  }

  moveAll(from: number, to: number): void {
    if (!this.validVcpu(from) || !this.validVcpu(to) || from === to) return;
    const words = from << WORD_SHIFT;
    for (let w = LPI_BASE >>> 5; w < BITMAP_WORDS; w++) {
      let bits = this.targetBits[words + w]!; // a copy: retarget() clears these bits
      while (bits !== 0) {
        const intid = (w << 5) | lowestBit(bits);
        bits &= bits - 1;
        this.retarget(intid, to);
      }
    }
  }

  /** Moves an existing LPI; its pending state follows (a deliverable LPI notifies its new vCPU). */
  private retarget(intid: number, vcpu: number): void {
    const old = this.targets[intid]!;
    if (old === vcpu) return;
    const w = intid >>> 5;
    const bit = 1 << (intid & 31);
    this.targets[intid] = vcpu;
    if (old !== NO_VCPU) this.targetBits[(old << WORD_SHIFT) + w]! &= ~bit;
    if (vcpu !== NO_VCPU) this.targetBits[(vcpu << WORD_SHIFT) + w]! |= bit;
    if ((this.latchBits[w]! & bit) === 0 || (this.configs[intid]! & CONFIG_ENABLE) === 0) return;
    if (old !== NO_VCPU) this.deliverable.remove(old, intid);
    if (vcpu !== NO_VCPU) this.addDeliverable(vcpu, intid);
  }

  /**
   * Next existing LPI with INTID >= from, or -1. Lets callers walk LPIs in INTID order
   * without a callback; removing LPIs during the walk is safe.
   */
  nextLpi(from: number): number {
    if (from < LPI_BASE) from = LPI_BASE;
    if (from >= INTID_SPACE) return -1;
    let w = from >>> 5;
    let bits = this.existing[w]! & (-1 << (from & 31));
    while (bits === 0) {
      if (++w >= BITMAP_WORDS) return -1;
      bits = this.existing[w]!;
    }
    return (w << 5) | lowestBit(bits);
  }

  forEachLpi(fn: (intid: number) => void): void {
    for (let intid = this.nextLpi(LPI_BASE); intid >= 0; intid = this.nextLpi(intid + 1)) fn(intid);
  }

  clearAllLpis(): void {
    this.refcounts.fill(0);
    this.targets.fill(NO_VCPU);
    this.configs.fill(0);
    this.existing.fill(0);
    this.latchBits.fill(0);
    this.targetBits.fill(0);
    this.deliverable.clear();
  }

  // =====================================================================================
  // Pending state (hot path: no allocation, O(1))
  // =====================================================================================

  setPending(intid: number): void {
    if (!inLpiSpace(intid) || this.refcounts[intid] === 0) return;
    const w = intid >>> 5;
    const bit = 1 << (intid & 31);
    const word = this.latchBits[w]!;
    if ((word & bit) !== 0) return;
    this.latchBits[w] = word | bit;
    const target = this.targets[intid]!;
    if (target !== NO_VCPU && (this.configs[intid]! & CONFIG_ENABLE) !== 0) this.addDeliverable(target, intid);
  }

  clearPending(intid: number): void {
    if (!inLpiSpace(intid) || this.refcounts[intid] === 0) return;
    const w = intid >>> 5;
    const bit = 1 << (intid & 31);
    const word = this.latchBits[w]!;
    if ((word & bit) === 0) return;
    this.latchBits[w] = word & ~bit;
    const target = this.targets[intid]!;
    if (target !== NO_VCPU) this.deliverable.remove(target, intid);
  }

  isPending(intid: number): boolean {
    return inLpiSpace(intid) && this.refcounts[intid] !== 0 && this.latched(intid);
  }

  private latched(intid: number): boolean {
    return (this.latchBits[intid >>> 5]! & (1 << (intid & 31))) !== 0;
  }

  /** Sets the latch of an existing LPI without notifying (used while EnableLPIs is 0). */
  private setLatchQuietly(intid: number, pending: number): void {
    if ((pending !== 0) === this.latched(intid)) return;
    if (pending !== 0) this.latchBits[intid >>> 5]! |= 1 << (intid & 31);
    else this.latchBits[intid >>> 5]! &= ~(1 << (intid & 31));
    const target = this.targets[intid]!;
    if (target === NO_VCPU || (this.configs[intid]! & CONFIG_ENABLE) === 0) return;
    if (pending !== 0) this.deliverable.add(target, intid);
    else this.deliverable.remove(target, intid);
  }

  // =====================================================================================
  // Configuration cache
  // =====================================================================================

  invalidate(intid: number): void {
    if (!this.exists(intid)) return;
    const byte = this.readGuestByte(this.propBase + (intid - LPI_BASE));
    if (byte < 0) return; // KVM update_lpi_config: keep the cached configuration
    const wasEnabled = this.configs[intid]! & CONFIG_ENABLE;
    this.configs[intid] = byte & CONFIG_KEEP_MASK;
    const isEnabled = byte & CONFIG_ENABLE;
    const target = this.targets[intid]!;
    if (wasEnabled === isEnabled || !this.latched(intid) || target === NO_VCPU) return;
    if (isEnabled !== 0) this.addDeliverable(target, intid);
    else this.deliverable.remove(target, intid);
  }

  invalidateAll(vcpu: number): void {
    if (!this.validVcpu(vcpu)) return;
    const words = vcpu << WORD_SHIFT;
    for (let w = LPI_BASE >>> 5; w < BITMAP_WORDS; w++) {
      let bits = this.targetBits[words + w]!;
      while (bits !== 0) {
        const intid = (w << 5) | lowestBit(bits);
        bits &= bits - 1;
        this.invalidate(intid);
      }
    }
  }

  priority(intid: number): number {
    return this.exists(intid) ? this.configs[intid]! & CONFIG_PRIORITY_MASK : 0;
  }

  enabled(intid: number): boolean {
    return this.exists(intid) && (this.configs[intid]! & CONFIG_ENABLE) !== 0;
  }

  // =====================================================================================
  // Delivery
  // =====================================================================================

  hasDeliverable(vcpu: number): boolean {
    return this.validVcpu(vcpu) && this.ctlr[vcpu] !== 0 && this.deliverable.count(vcpu) > 0;
  }

  /** Number of pending, enabled LPIs targeting vcpu (whatever its EnableLPIs). */
  pendingEnabledCount(vcpu: number): number {
    return this.validVcpu(vcpu) ? this.deliverable.count(vcpu) : 0;
  }

  ack(vcpu: number, peek: boolean): AckResult {
    this.checkVcpu(vcpu);
    if (this.ctlr[vcpu] === 0) return { intid: SPURIOUS_INTID, priority: SPURIOUS_PRIORITY };
    const intid = this.deliverable.findMin(vcpu, this.configs, CONFIG_PRIORITY_MASK, 0);
    if (intid < 0) return { intid: SPURIOUS_INTID, priority: SPURIOUS_PRIORITY };
    const priority = this.configs[intid]! & CONFIG_PRIORITY_MASK;
    if (!peek) {
      // LPIs have no active state: acknowledging clears pending.
      this.latchBits[intid >>> 5]! &= ~(1 << (intid & 31));
      this.deliverable.remove(vcpu, intid);
      // protocol.md: a non-PEEK ack that leaves another deliverable LPI re-arms the notify fd.
      if (this.deliverable.count(vcpu) > 0) this.notify(vcpu);
    }
    return { intid, priority };
  }

  /** Adds a deliverable LPI; notifies on the vCPU's 0 -> 1 transition while EnableLPIs = 1. */
  private addDeliverable(vcpu: number, intid: number): void {
    if (this.deliverable.add(vcpu, intid) === 0 && this.ctlr[vcpu] !== 0) this.notify(vcpu);
  }

  private notify(vcpu: number): void {
    try {
      this.hooks.onDeliverable(vcpu);
    } catch {
      this.stats.hookErrors++;
    }
  }

  private enableChanged(vcpu: number, enabled: boolean): void {
    try {
      this.hooks.onEnableLpisChanged?.(vcpu, enabled);
    } catch {
      this.stats.hookErrors++;
    }
  }

  // =====================================================================================
  // Save
  // =====================================================================================

  /**
   * KVM vgic_v3_save_pending_tables: in the table of each LPI's target vCPU, its bit is set
   * to its pending latch, for every LPI that has a target. Bits of LPIs that do not exist or
   * have no target are not touched; INTIDs < 8192 (the first 1 KiB) never are; only pages
   * holding a byte whose content changes are written (see pending-table.ts: the same guest
   * bytes and dirty pages as KVM's byte-by-byte walk).
   * Throws ErrnoError(EFAULT) (GuestMemoryFault), before writing anything, when a byte it
   * needs is outside guest RAM; GuestMemoryFrozen (EBUSY) if memory is frozen and a byte
   * must change.
   */
  savePendingTables(): void {
    for (let v = 0; v < this.nrVcpus; v++) {
      const base = this.pendBases[v]!;
      if (!pendingTableAccessible(this.memory, base, this.targetViews[v]!)) {
        this.stats.tableReadFaults++;
        throw new GuestMemoryFault(base, PENDING_TABLE_BYTES, `pending table read (vCPU ${v})`);
      }
    }
    writePendingTables(this.memory, this.pendBases, this.targetViews, this.latchBits, this.saveScratch, this.stats);
  }

  // =====================================================================================
  // Helpers
  // =====================================================================================

  private validVcpu(vcpu: number): boolean {
    return Number.isInteger(vcpu) && vcpu >= 0 && vcpu < this.nrVcpus;
  }

  /** VMM-facing entry points reject a bad vCPU index (protocol.md: -EINVAL). */
  private checkVcpu(vcpu: number): void {
    if (!this.validVcpu(vcpu)) throw new ErrnoError(Errno.EINVAL, `vCPU ${vcpu} out of range (0..${this.nrVcpus - 1})`);
  }

  /** One byte of a guest table, or -1 (counted) when it is outside guest RAM. */
  private readGuestByte(gpa: number): number {
    try {
      return this.memory.readU8(gpa);
    } catch {
      this.stats.tableReadFaults++;
      return -1;
    }
  }

  /** Writes one byte of a guest table; false (counted) on a fault or frozen memory. */
  private writeGuestByte(gpa: number, value: number): boolean {
    try {
      this.memory.writeU8(gpa, value);
      this.stats.pendingTableWrites++;
      return true;
    } catch {
      this.stats.tableWriteFaults++;
      return false;
    }
  }
}

/** An INTID that can name an LPI at all (independent of PROPBASER.IDbits). */
function inLpiSpace(intid: number): boolean {
  return intid >= LPI_BASE && intid < INTID_SPACE && (intid | 0) === intid;
}
