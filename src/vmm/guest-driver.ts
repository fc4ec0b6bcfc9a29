/**
 * A reference "guest": programs the ITS(es) and the redistributors' LPI registers through
 * MMIO, and the command queue and tables through guest RAM, in the order and with the
 * values the Linux driver uses (its-model.md section 5; drivers/irqchip/irq-gic-v3-its.c as
 * of Linux 6.1, the kernel of ../shared/traces/linux-6.1-smp4):
 *
 *  boot (per ITS)    PIDR2 check, force quiescent, BASER0..7 = 0 (reset pass); again PIDR2 +
 *                    quiescent, TYPER, IIDR, 64 KiB command queue, its_alloc_tables (page-size
 *                    probe, Indirect probe on the device table, table allocation, read-back
 *                    check), CBASER, CWRITER = 0, CTLR |= Enabled
 *  boot (LPIs)       property table (prio | GROUP1), one 64 KiB pending table per vCPU
 *  per vCPU          GICR_TYPER.PLPIS, GICR_CTLR, PROPBASER, PENDBASER, EnableLPIs, then on
 *                    each ITS MAPC + SYNC and INVALL + SYNC
 *  per device        L2 page of the device table if needed, ITT (Linux's sizing rule), LPI
 *                    block, MAPD (no SYNC)
 *  per vector        MAPTI + SYNC; unmask = property byte | Enabled, INV + SYNC; affinity
 *                    change = MOVI + SYNC (old collection); teardown = mask, DISCARD + SYNC
 *                    per vector, then MAPD V=0 and the ITT freed
 *
 * Everything the driver allocates comes from a GuestRamAllocator over guest RAM; what
 * Linux zeroes is zeroed through GuestMemory. The driver keeps the guest-kernel-side
 * bookkeeping (devices, col_map, LPI ranges), which is what a migration carries along
 * with guest RAM.
 */
import { Errno, ErrnoError } from '../util/errno.js';
import { LPI_BASE } from '../redist/types.js';
import { GuestCommandQueue, ITS_CMD_QUEUE_SZ } from './command-queue.js';
import {
  baserEncodeAddress,
  baserEntrySize,
  baserType,
  defaultMpidrAffinity,
  GIC_PIDR2_ARCH_MASK,
  GICR_CTLR,
  GICR_CTLR_ENABLE_LPIS,
  GICR_PENDBASER,
  GICR_PENDBASER_CACHEABILITY_MASK,
  GICR_PENDBASER_InnerShareable,
  GICR_PENDBASER_nC,
  GICR_PENDBASER_RaWaWb,
  GICR_PENDBASER_SHAREABILITY_MASK,
  GICR_PROPBASER,
  GICR_PROPBASER_CACHEABILITY_MASK,
  GICR_PROPBASER_IDBITS_MASK,
  GICR_PROPBASER_InnerShareable,
  GICR_PROPBASER_nC,
  GICR_PROPBASER_RaWaWb,
  GICR_PROPBASER_SHAREABILITY_MASK,
  GICR_TYPER,
  GICR_TYPER_PLPIS,
  gicrTyperAffinity,
  gicrTyperProcessorNumber,
  GITS_BASER_CACHEABILITY_MASK,
  GITS_BASER_INDIRECT,
  GITS_BASER_InnerShareable,
  GITS_BASER_NR_REGS,
  GITS_BASER_nC,
  GITS_BASER_PAGE_SIZE_MASK,
  GITS_BASER_PAGE_SIZE_SHIFT,
  GITS_BASER_PAGES_MAX,
  GITS_BASER_RaWaWb,
  GITS_BASER_SHAREABILITY_MASK,
  GITS_BASER_TYPE_DEVICE,
  GITS_BASER_TYPE_NONE,
  GITS_BASER_TYPE_SHIFT,
  GITS_BASER_ENTRY_SIZE_SHIFT,
  GITS_BASER_VALID,
  GITS_CBASER,
  GITS_CBASER_CACHEABILITY_MASK,
  GITS_CBASER_InnerShareable,
  GITS_CBASER_nC,
  GITS_CBASER_RaWaWb,
  GITS_CBASER_SHAREABILITY_MASK,
  GITS_CBASER_VALID,
  GITS_CTLR,
  GITS_CTLR_ENABLE,
  GITS_CTLR_IMDE,
  GITS_CTLR_QUIESCENT,
  GITS_CWRITER,
  GITS_IIDR,
  GITS_LVL1_ENTRY_SIZE,
  GITS_PIDR2,
  GITS_TYPER,
  gitsBaser,
  baserPageSizeField,
  LPI_PROP_DEFAULT_PRIO,
  LPI_PROP_ENABLED,
  LPI_PROP_GROUP1,
  LVL1_VALID,
  typerDevBits,
  typerIttEntrySize,
  typerPta,
} from './gic-regs.js';
import type { GuestBus } from './guest-bus.js';
import { alignUp, GuestRamAllocator, ilog2, isPowerOfTwo, roundUpPowerOfTwo } from './guest-ram-allocator.js';
import {
  buildClear,
  buildDiscard,
  buildInt,
  buildInv,
  buildInvall,
  buildMapc,
  buildMapd,
  buildMapti,
  buildMovi,
  type ItsCommandBlock,
} from './its-command.js';
import { LpiAllocator, type LpiBlock } from './lpi-allocator.js';
import { doorbell, rdBase, type VmLayout } from './vm-layout.js';

/** Linux ITS_ITT_ALIGN. */
export const ITS_ITT_ALIGN = 256;
/** LPI_PENDBASE_SZ for 16 ID bits: ALIGN(2^16 / 8, 64K). */
const SZ_64K = 0x10000;
const PAGE_SIZE = 0x1000;
/** arm64 4K-page MAX_ORDER in 6.1: the largest allocation is order MAX_ORDER - 1. */
const MAX_ORDER = 11;
/** Poll budget of force_quiescent and of the command queue (Linux: 1e6 x 1 us). */
const DEFAULT_POLL_BUDGET = 1000;

export interface GuestDriverOptions {
  /** lpi_id_bits = min(GICD_TYPER.IDbits + 1, 16); the VMM's distributor reports IDbits = 15. */
  lpiIdBits?: number;
  /** Priority byte Linux writes to every LPI's configuration (GICD_INT_DEF_PRI in 6.1). */
  lpiPriority?: number;
  pollBudget?: number;
}

/** Linux struct its_baser, for the tables this guest allocated. */
export interface GuestItsTable {
  readonly index: number;
  readonly type: number;
  /** Value read back after the final write. */
  val: bigint;
  /** Page size that stuck. */
  psz: number;
  /** Bytes allocated (PAGE_ORDER_TO_SIZE(order)). */
  bytes: number;
  gpa: number;
  indirect: boolean;
  esz: number;
}

export interface GuestCollection {
  readonly icid: number;
  /** target_address: Processor_Number << 16 (PTA = 0) or the RD's address (PTA = 1). ~0 until mapped. */
  targetAddress: bigint;
}

export interface GuestIts {
  readonly index: number;
  readonly base: number;
  typer: bigint;
  iidr: number;
  cmdQueueGpa: number;
  queue: GuestCommandQueue;
  tables: (GuestItsTable | null)[];
  /** Per vCPU: collection ICID = cpu. */
  collections: GuestCollection[];
  devices: Map<number, GuestItsDevice>;
}

export interface GuestItsDevice {
  readonly its: GuestIts;
  readonly devid: number;
  readonly nvec: number;
  readonly nrItes: number;
  /** kzalloc'd ITT block and the 256-aligned ITT address given to MAPD. */
  readonly ittAlloc: number;
  readonly ittAddr: number;
  readonly lpis: LpiBlock;
  /** col_map: the CPU of each event (-1 while not activated). */
  readonly colMap: number[];
  readonly activated: boolean[];
}

export interface GuestCpu {
  readonly index: number;
  readonly rdBase: number;
  processorNumber: number;
  pendTable: number;
  propbaser: bigint;
  pendbaser: bigint;
  lpisEnabled: boolean;
  /** Vectors activated on this CPU (its_inc_lpi_count). */
  lpiCount: number;
}

/** One mapped vector, as the guest expects the ITS to translate it. */
export interface ExpectedTranslation {
  its: number;
  doorbell: number;
  devid: number;
  eventid: number;
  intid: number;
  vcpu: number;
  enabled: boolean;
}

export class GuestItsDriver {
  readonly bus: GuestBus;
  readonly layout: VmLayout;
  readonly ram: GuestRamAllocator;
  readonly lpiIdBits: number;
  readonly lpiPriority: number;
  readonly pollBudget: number;
  readonly lpis: LpiAllocator;
  readonly itses: GuestIts[] = [];
  readonly cpus: GuestCpu[] = [];
  propTable = -1;
  /** Error/warning lines, as the kernel would print them. */
  readonly log: string[] = [];

  constructor(bus: GuestBus, layout: VmLayout, ram: GuestRamAllocator, opts: GuestDriverOptions = {}) {
    this.bus = bus;
    this.layout = layout;
    this.ram = ram;
    this.lpiIdBits = opts.lpiIdBits ?? 16;
    this.lpiPriority = opts.lpiPriority ?? LPI_PROP_DEFAULT_PRIO;
    this.pollBudget = opts.pollBudget ?? DEFAULT_POLL_BUDGET;
    this.lpis = new LpiAllocator(this.lpiIdBits);
    for (let i = 0; i < layout.nrVcpus; i++) {
      this.cpus.push({
        index: i,
        rdBase: rdBase(layout, i),
        processorNumber: -1,
        pendTable: -1,
        propbaser: 0n,
        pendbaser: 0n,
        lpisEnabled: false,
        lpiCount: 0,
      });
    }
  }

  private printk(line: string): void {
    this.log.push(line);
    this.bus.note(line);
  }

  /** kzalloc / alloc_pages with __GFP_ZERO: allocate, then zero through guest RAM. */
  private zalloc(size: number, align: number): number {
    const gpa = this.ram.alloc(size, align);
    this.bus.memory.fill(gpa, size, 0);
    return gpa;
  }
  /** alloc_pages(order): naturally aligned power-of-two block of at least one page. */
  private allocPages(bytes: number): number {
    const size = Math.max(PAGE_SIZE, roundUpPowerOfTwo(bytes));
    return this.zalloc(size, size);
  }

  // ------------------------------------------------------------------ boot

  /** Everything Linux does at boot: every ITS, the LPI tables, then every vCPU. */
  async boot(): Promise<void> {
    for (let i = 0; i < this.layout.itsBases.length; i++) await this.resetIts(this.layout.itsBases[i]!);
    for (let i = 0; i < this.layout.itsBases.length; i++) await this.probeIts(i, this.layout.itsBases[i]!);
    await this.allocateLpiTables();
    for (const cpu of this.cpus) await this.cpuInit(cpu.index);
  }

  /** its_map_one: PIDR2 architecture check then force quiescent. */
  private async mapOne(base: number): Promise<void> {
    const pidr2 = (await this.bus.readl(base + GITS_PIDR2)) & GIC_PIDR2_ARCH_MASK;
    if (pidr2 !== 0x30 && pidr2 !== 0x40) {
      this.printk(`ITS@0x${base.toString(16)}: No ITS detected, giving up`);
      throw new ErrnoError(Errno.ENODEV, `no ITS at 0x${base.toString(16)} (PIDR2 arch 0x${pidr2.toString(16)})`);
    }
    await this.forceQuiescent(base);
  }

  /** its_force_quiescent. */
  private async forceQuiescent(base: number): Promise<void> {
    let val = await this.bus.readl(base + GITS_CTLR);
    if ((val & GITS_CTLR_QUIESCENT) !== 0 && (val & GITS_CTLR_ENABLE) === 0) return;
    val &= ~(GITS_CTLR_ENABLE | GITS_CTLR_IMDE);
    await this.bus.writel(base + GITS_CTLR, val >>> 0);
    for (let budget = this.pollBudget; budget > 0; budget--) {
      val = await this.bus.readl(base + GITS_CTLR);
      if ((val & GITS_CTLR_QUIESCENT) !== 0) return;
    }
    this.printk(`ITS@0x${base.toString(16)}: Failed to quiesce, giving up`);
    throw new ErrnoError(Errno.EBUSY, `ITS at 0x${base.toString(16)} did not become quiescent`);
  }

  /** its_reset_one: quiesce and write 0 to every BASER (KVM frees all state). */
  private async resetIts(base: number): Promise<void> {
    await this.mapOne(base);
    for (let n = 0; n < GITS_BASER_NR_REGS; n++) await this.bus.writeq(base + gitsBaser(n), 0n);
  }

  /** its_probe_one (the parts that touch the ITS). */
  private async probeIts(index: number, base: number): Promise<void> {
    await this.mapOne(base);
    const typer = await this.bus.readq(base + GITS_TYPER);
    const iidr = await this.bus.readl(base + GITS_IIDR);
    const cmdQueueGpa = this.allocPages(ITS_CMD_QUEUE_SZ);
    const its: GuestIts = {
      index,
      base,
      typer,
      iidr,
      cmdQueueGpa,
      queue: new GuestCommandQueue(this.bus, index, base, cmdQueueGpa, this.pollBudget),
      tables: new Array<GuestItsTable | null>(GITS_BASER_NR_REGS).fill(null),
      collections: this.cpus.map((c) => ({ icid: c.index, targetAddress: ~0n })),
      devices: new Map(),
    };
    await this.allocTables(its);

    let cbaser = BigInt(cmdQueueGpa) | GITS_CBASER_RaWaWb | GITS_CBASER_InnerShareable | BigInt(ITS_CMD_QUEUE_SZ / 0x1000 - 1) | GITS_CBASER_VALID;
    await this.bus.writeq(base + GITS_CBASER, cbaser);
    const tmp = await this.bus.readq(base + GITS_CBASER);
    if (((tmp ^ cbaser) & GITS_CBASER_SHAREABILITY_MASK) !== 0n) {
      if ((tmp & GITS_CBASER_SHAREABILITY_MASK) === 0n) {
        cbaser &= ~(GITS_CBASER_SHAREABILITY_MASK | GITS_CBASER_CACHEABILITY_MASK);
        cbaser |= GITS_CBASER_nC;
        await this.bus.writeq(base + GITS_CBASER, cbaser);
      }
      this.printk(`ITS@0x${base.toString(16)}: using cache flushing for cmd queue`);
    }
    await this.bus.writeq(base + GITS_CWRITER, 0n);
    let ctlr = await this.bus.readl(base + GITS_CTLR);
    ctlr |= GITS_CTLR_ENABLE;
    await this.bus.writel(base + GITS_CTLR, ctlr >>> 0);
    this.itses[index] = its;
  }

  private async writeBaser(its: GuestIts, n: number, val: bigint): Promise<bigint> {
    await this.bus.writeq(its.base + gitsBaser(n), val);
    return this.bus.readq(its.base + gitsBaser(n));
  }

  /** its_alloc_tables. */
  private async allocTables(its: GuestIts): Promise<void> {
    let shr = GITS_BASER_InnerShareable;
    let cache = GITS_BASER_RaWaWb;
    for (let n = 0; n < GITS_BASER_NR_REGS; n++) {
      const val = await this.bus.readq(its.base + gitsBaser(n));
      const type = baserType(val);
      if (type === GITS_BASER_TYPE_NONE) continue;
      const psz = await this.probeBaserPsz(its, n);
      if (psz === 0) {
        this.printk(`ITS@0x${its.base.toString(16)}: BASER${n} page size probe failed`);
        throw new ErrnoError(Errno.ENXIO, `ITS@0x${its.base.toString(16)}: no page size sticks in GITS_BASER${n}`);
      }
      let bytes = Math.max(PAGE_SIZE, psz); // PAGE_ORDER_TO_SIZE(get_order(psz))
      let indirect = false;
      if (type === GITS_BASER_TYPE_DEVICE) {
        const r = await this.parseIndirectBaser(its, n, psz, bytes, typerDevBits(its.typer));
        indirect = r.indirect;
        bytes = r.bytes;
      }
      const table = await this.setupBaser(its, n, type, psz, bytes, indirect, cache, shr);
      its.tables[n] = table;
      cache = table.val & GITS_BASER_CACHEABILITY_MASK;
      shr = table.val & GITS_BASER_SHAREABILITY_MASK;
    }
  }

  /** its_probe_baser_psz: 64K, then 16K, then 4K; returns 0 when none sticks. */
  private async probeBaserPsz(its: GuestIts, n: number): Promise<number> {
    for (const psz of [0x10000, 0x4000, 0x1000]) {
      let val = await this.bus.readq(its.base + gitsBaser(n));
      val &= ~GITS_BASER_PAGE_SIZE_MASK;
      const gpsz = baserPageSizeField(psz);
      val |= gpsz << GITS_BASER_PAGE_SIZE_SHIFT;
      const back = await this.writeBaser(its, n, val);
      if ((back & GITS_BASER_PAGE_SIZE_MASK) >> GITS_BASER_PAGE_SIZE_SHIFT === gpsz) return psz;
    }
    return 0;
  }

  /** its_parse_indirect_baser: probes Indirect when a flat table would exceed 2 pages. */
  private async parseIndirectBaser(its: GuestIts, n: number, psz: number, bytesIn: number, idsIn: number): Promise<{ indirect: boolean; bytes: number }> {
    const tmp = await this.bus.readq(its.base + gitsBaser(n));
    let esz = baserEntrySize(tmp);
    let ids = idsIn;
    let indirect = false;
    if (esz * 2 ** ids > psz * 2) {
      // The transient probe value: Valid = 0, Page_Size = 4K, PA = 0 (as Linux writes it).
      const back = await this.writeBaser(its, n, GITS_BASER_InnerShareable | GITS_BASER_RaWaWb | GITS_BASER_INDIRECT);
      indirect = (back & GITS_BASER_INDIRECT) !== 0n;
      if (indirect) {
        ids -= ilog2(psz / esz);
        esz = GITS_LVL1_ENTRY_SIZE;
      }
    }
    let bytes = Math.max(Math.max(PAGE_SIZE, roundUpPowerOfTwo(esz * 2 ** ids)), bytesIn);
    const maxBytes = PAGE_SIZE * 2 ** (MAX_ORDER - 1);
    if (bytes > maxBytes) {
      this.printk(`ITS@0x${its.base.toString(16)}: Device Table too large, reduce ids ${ids}->${ilog2(maxBytes / esz)}`);
      bytes = maxBytes;
    }
    return { indirect, bytes };
  }

  /** its_setup_baser: allocate, compose, write, read back; adopt shareability or fail. */
  private async setupBaser(its: GuestIts, n: number, type: number, psz: number, bytesIn: number, indirect: boolean, cacheIn: bigint, shrIn: bigint): Promise<GuestItsTable> {
    const cur = await this.bus.readq(its.base + gitsBaser(n));
    const esz = baserEntrySize(cur);
    let bytes = bytesIn;
    let allocPages = bytes / psz;
    if (allocPages > GITS_BASER_PAGES_MAX) {
      this.printk(`ITS@0x${its.base.toString(16)}: BASER${n} too large, reduce ITS pages ${allocPages}->${GITS_BASER_PAGES_MAX}`);
      allocPages = GITS_BASER_PAGES_MAX;
      bytes = Math.max(PAGE_SIZE, roundUpPowerOfTwo(GITS_BASER_PAGES_MAX * psz));
    }
    const gpa = this.allocPages(bytes);
    let cache = cacheIn;
    let shr = shrIn;
    // Linux retries while only the shareability differs; bounded here (it converges in one step).
    for (let attempt = 0; attempt < 4; attempt++) {
      let val =
        baserEncodeAddress(gpa) |
        (BigInt(type) << GITS_BASER_TYPE_SHIFT) |
        (BigInt(esz - 1) << GITS_BASER_ENTRY_SIZE_SHIFT) |
        BigInt(allocPages - 1) |
        cache |
        shr |
        GITS_BASER_VALID;
      if (indirect) val |= GITS_BASER_INDIRECT;
      val |= baserPageSizeField(psz) << GITS_BASER_PAGE_SIZE_SHIFT;
      const tmp = await this.writeBaser(its, n, val);
      if (((val ^ tmp) & GITS_BASER_SHAREABILITY_MASK) !== 0n) {
        shr = tmp & GITS_BASER_SHAREABILITY_MASK;
        if (shr === 0n) cache = GITS_BASER_nC;
        continue;
      }
      if (val !== tmp) {
        this.printk(`ITS@0x${its.base.toString(16)}: BASER${n} doesn't stick: ${hex(val)} ${hex(tmp)}`);
        this.ram.freeAt(gpa);
        throw new ErrnoError(Errno.ENXIO, `GITS_BASER${n} doesn't stick: wrote ${hex(val)}, read ${hex(tmp)}`);
      }
      // Linux prints PAGE_ORDER_TO_SIZE(order) / esz, whatever the indirection.
      const entries = bytes / esz;
      this.printk(
        `ITS@0x${its.base.toString(16)}: allocated ${entries} ${type === GITS_BASER_TYPE_DEVICE ? 'Devices' : 'Interrupt Collections'} @${gpa.toString(16)} (${indirect ? 'indirect' : 'flat'}, esz ${esz}, psz ${psz / 1024}K, shr ${Number(shr >> 10n)})`,
      );
      return { index: n, type, val: tmp, psz, bytes, gpa, indirect, esz };
    }
    throw new ErrnoError(Errno.ENXIO, `GITS_BASER${n}: shareability never settled`);
  }

  /** allocate_lpi_tables: property table (prio | GROUP1, disabled) and one pending table per CPU. */
  private async allocateLpiTables(): Promise<void> {
    // Linux first checks whether LPIs are already enabled on the boot CPU (kexec).
    const ctlr = await this.bus.readl(this.cpus[0]!.rdBase + GICR_CTLR);
    if ((ctlr & GICR_CTLR_ENABLE_LPIS) !== 0) this.printk('GICv3: CPU0: LPIs already enabled at boot');
    const propSize = alignUp(2 ** this.lpiIdBits, SZ_64K);
    this.propTable = this.allocPages(propSize);
    this.bus.memory.fill(this.propTable, propSize, this.lpiPriority | LPI_PROP_GROUP1);
    const pendSize = alignUp(2 ** this.lpiIdBits / 8, SZ_64K);
    for (const cpu of this.cpus) cpu.pendTable = this.allocPages(pendSize);
  }

  /** its_cpu_init: redist_disable_lpis, its_cpu_init_lpis, its_cpu_init_collections. */
  async cpuInit(index: number): Promise<void> {
    const cpu = this.cpu(index);
    const rd = cpu.rdBase;
    const typer = await this.bus.readq(rd + GICR_TYPER);
    if ((typer & GICR_TYPER_PLPIS) === 0n) {
      this.printk(`CPU${index}: LPIs not supported`);
      throw new ErrnoError(Errno.ENXIO, `CPU${index}: GICR_TYPER.PLPIS = 0`);
    }
    if (gicrTyperAffinity(typer) !== defaultMpidrAffinity(index)) {
      throw new ErrnoError(Errno.ENXIO, `CPU${index}: redistributor affinity 0x${gicrTyperAffinity(typer).toString(16)} is not this CPU's`);
    }
    cpu.processorNumber = gicrTyperProcessorNumber(typer);
    // redist_disable_lpis, then its_cpu_init_lpis, each read GICR_CTLR.
    const ctlr = await this.bus.readl(rd + GICR_CTLR);
    if ((ctlr & GICR_CTLR_ENABLE_LPIS) !== 0) this.printk(`CPU${index}: LPIs already enabled`);
    await this.bus.readl(rd + GICR_CTLR);

    // PROPBASER
    let val = BigInt(this.propTable) | GICR_PROPBASER_InnerShareable | GICR_PROPBASER_RaWaWb | (BigInt(this.lpiIdBits - 1) & GICR_PROPBASER_IDBITS_MASK);
    await this.bus.writeq(rd + GICR_PROPBASER, val);
    let tmp = await this.bus.readq(rd + GICR_PROPBASER);
    if (((tmp ^ val) & GICR_PROPBASER_SHAREABILITY_MASK) !== 0n) {
      if ((tmp & GICR_PROPBASER_SHAREABILITY_MASK) === 0n) {
        val &= ~(GICR_PROPBASER_SHAREABILITY_MASK | GICR_PROPBASER_CACHEABILITY_MASK);
        val |= GICR_PROPBASER_nC;
        await this.bus.writeq(rd + GICR_PROPBASER, val);
      }
      this.printk('GIC: using cache flushing for LPI property table');
    }
    cpu.propbaser = val;

    // PENDBASER
    val = BigInt(cpu.pendTable) | GICR_PENDBASER_InnerShareable | GICR_PENDBASER_RaWaWb;
    await this.bus.writeq(rd + GICR_PENDBASER, val);
    tmp = await this.bus.readq(rd + GICR_PENDBASER);
    if ((tmp & GICR_PENDBASER_SHAREABILITY_MASK) === 0n) {
      val &= ~(GICR_PENDBASER_SHAREABILITY_MASK | GICR_PENDBASER_CACHEABILITY_MASK);
      val |= GICR_PENDBASER_nC;
      await this.bus.writeq(rd + GICR_PENDBASER, val);
    }
    cpu.pendbaser = val;

    // Enable LPIs
    const c = await this.bus.readl(rd + GICR_CTLR);
    await this.bus.writel(rd + GICR_CTLR, (c | GICR_CTLR_ENABLE_LPIS) >>> 0);
    cpu.lpisEnabled = true;

    for (const its of this.itses) await this.cpuInitCollection(its, cpu);
  }

  /** its_cpu_init_collection: MAPC + SYNC, INVALL + SYNC. */
  private async cpuInitCollection(its: GuestIts, cpu: GuestCpu): Promise<void> {
    let target: bigint;
    if (typerPta(await this.bus.readq(its.base + GITS_TYPER))) {
      target = BigInt(cpu.rdBase);
    } else {
      const t = await this.bus.readq(cpu.rdBase + GICR_TYPER);
      target = BigInt(gicrTyperProcessorNumber(t)) << 16n;
    }
    const col = its.collections[cpu.index]!;
    col.targetAddress = target;
    await this.send(its, buildMapc(col.icid, target, true), target);
    await this.send(its, buildInvall(col.icid), target);
  }

  private async send(its: GuestIts, cmd: ItsCommandBlock, syncTarget: bigint | null): Promise<void> {
    const ok = await its.queue.post(cmd, syncTarget);
    if (!ok) this.printk(`ITS@0x${its.base.toString(16)}: ITS cmd failed`);
  }

  // ------------------------------------------------------------------ devices

  its(index: number): GuestIts {
    const its = this.itses[index];
    if (!its) throw new ErrnoError(Errno.ENODEV, `no ITS ${index} was probed`);
    return its;
  }

  cpu(index: number): GuestCpu {
    const cpu = this.cpus[index];
    if (!cpu) throw new ErrnoError(Errno.EINVAL, `no CPU ${index}`);
    return cpu;
  }

  private deviceTable(its: GuestIts): GuestItsTable | null {
    return its.tables.find((t) => t !== null && t.type === GITS_BASER_TYPE_DEVICE) ?? null;
  }

  /** its_alloc_device_table / its_alloc_table_entry: range check, L2 page on demand. */
  private allocDeviceTableEntry(its: GuestIts, devid: number): boolean {
    const table = this.deviceTable(its);
    if (!table) return ilog2(Math.max(devid, 1)) < typerDevBits(its.typer);
    const esz = baserEntrySize(table.val);
    if (!table.indirect) return devid < table.bytes / esz;
    const idx = Math.floor(devid / (table.psz / esz));
    if (idx >= table.bytes / GITS_LVL1_ENTRY_SIZE) return false;
    const l1 = table.gpa + idx * GITS_LVL1_ENTRY_SIZE;
    if (this.bus.memory.readU64Big(l1) === 0n) {
      const page = this.allocPages(table.psz);
      this.bus.memory.writeU64Big(l1, BigInt(page) | LVL1_VALID);
    }
    return true;
  }

  /** its_pci_msi_prepare's vector count: a power of two, at least 32 for DeviceID 0. */
  static pciMsiNvec(devid: number, requested: number): number {
    const minnvec = devid === 0 ? 32 : 1;
    return Math.max(minnvec, roundUpPowerOfTwo(requested));
  }

  /** its_create_device + MAPD (no SYNC). nvec must be a power of two (Linux WARNs and rounds). */
  async createDevice(itsIndex: number, devid: number, nvecIn: number): Promise<GuestItsDevice> {
    const its = this.its(itsIndex);
    if (its.devices.has(devid)) throw new ErrnoError(Errno.EEXIST, `device 0x${devid.toString(16)} already exists on ITS${itsIndex}`);
    if (!this.allocDeviceTableEntry(its, devid)) throw new ErrnoError(Errno.ENOMEM, `DeviceID 0x${devid.toString(16)} does not fit the device table`);
    const nvec = isPowerOfTwo(nvecIn) ? nvecIn : roundUpPowerOfTwo(nvecIn);
    const nrItes = Math.max(2, nvec);
    let sz = nrItes * typerIttEntrySize(its.typer);
    sz = Math.max(sz, ITS_ITT_ALIGN) + ITS_ITT_ALIGN - 1;
    const ittAlloc = this.zalloc(sz, 8);
    const ittAddr = alignUp(ittAlloc, ITS_ITT_ALIGN);
    const lpis = this.lpis.alloc(nvec);
    if (!lpis) {
      this.ram.freeAt(ittAlloc);
      throw new ErrnoError(Errno.ENOSPC, `no LPIs left for ${nvec} vectors`);
    }
    const dev: GuestItsDevice = {
      its,
      devid,
      nvec: lpis.count,
      nrItes,
      ittAlloc,
      ittAddr,
      lpis,
      colMap: new Array<number>(lpis.count).fill(-1),
      activated: new Array<boolean>(lpis.count).fill(false),
    };
    its.devices.set(devid, dev);
    await this.send(its, buildMapd(devid, ilog2(nrItes) - 1, ittAddr, true), null);
    return dev;
  }

  device(itsIndex: number, devid: number): GuestItsDevice {
    const dev = this.its(itsIndex).devices.get(devid);
    if (!dev) throw new ErrnoError(Errno.ENOENT, `no device 0x${devid.toString(16)} on ITS${itsIndex}`);
    return dev;
  }

  private checkEvent(dev: GuestItsDevice, event: number): void {
    if (!Number.isInteger(event) || event < 0 || event >= dev.nvec) {
      throw new ErrnoError(Errno.EINVAL, `event ${event} out of range for device 0x${dev.devid.toString(16)} (${dev.nvec} vectors)`);
    }
  }

  /** its_select_cpu: the least loaded online CPU (lowest index on ties). */
  private selectCpu(): number {
    let best = 0;
    for (const c of this.cpus) if (c.lpiCount < this.cpus[best]!.lpiCount) best = c.index;
    return best;
  }

  private collectionOf(dev: GuestItsDevice, event: number): GuestCollection {
    return dev.its.collections[dev.colMap[event]!]!;
  }

  /** its_irq_domain_activate: bind to a CPU, MAPTI + SYNC. */
  async activate(dev: GuestItsDevice, event: number, cpuIndex?: number): Promise<void> {
    this.checkEvent(dev, event);
    if (dev.activated[event]) return;
    const cpu = cpuIndex ?? this.selectCpu();
    this.cpu(cpu).lpiCount++;
    dev.colMap[event] = cpu;
    dev.activated[event] = true;
    const col = this.collectionOf(dev, event);
    await this.send(dev.its, buildMapti(dev.devid, event, dev.lpis.base + event, col.icid), col.targetAddress);
  }

  /** The configuration byte of an LPI in the property table. */
  propertyByteAddress(intid: number): number {
    return this.propTable + (intid - LPI_BASE);
  }

  /** lpi_write_config + INV + SYNC (no DirectLPI: GICR_CTLR.IR = 0, GICR_TYPER.DirectLPI = 0). */
  private async lpiUpdateConfig(dev: GuestItsDevice, event: number, clr: number, set: number): Promise<void> {
    this.checkEvent(dev, event);
    const addr = this.propertyByteAddress(dev.lpis.base + event);
    let cfg = this.bus.memory.readU8(addr);
    cfg &= ~clr;
    cfg |= set | LPI_PROP_GROUP1;
    this.bus.memory.writeU8(addr, cfg & 0xff);
    const col = this.collectionOf(dev, event);
    await this.send(dev.its, buildInv(dev.devid, event), col.targetAddress);
  }

  unmask(dev: GuestItsDevice, event: number): Promise<void> {
    return this.lpiUpdateConfig(dev, event, 0, LPI_PROP_ENABLED);
  }

  mask(dev: GuestItsDevice, event: number): Promise<void> {
    return this.lpiUpdateConfig(dev, event, LPI_PROP_ENABLED, 0);
  }

  /** Activates and unmasks every vector of a device (request_irq on all of them). */
  async enableAll(dev: GuestItsDevice, cpuOf?: (event: number) => number): Promise<void> {
    for (let e = 0; e < dev.nvec; e++) {
      await this.activate(dev, e, cpuOf?.(e));
      await this.unmask(dev, e);
    }
  }

  /** its_set_affinity: MOVI + SYNC (to the old collection) only if the CPU changes. */
  async setAffinity(dev: GuestItsDevice, event: number, cpuIndex: number): Promise<void> {
    this.checkEvent(dev, event);
    this.cpu(cpuIndex);
    if (!dev.activated[event]) throw new ErrnoError(Errno.EINVAL, `event ${event} of device 0x${dev.devid.toString(16)} is not active`);
    const prev = dev.colMap[event]!;
    if (prev === cpuIndex) return;
    const oldCol = this.collectionOf(dev, event);
    const newCol = dev.its.collections[cpuIndex]!;
    await this.send(dev.its, buildMovi(dev.devid, event, newCol.icid), oldCol.targetAddress);
    this.cpu(prev).lpiCount--;
    this.cpu(cpuIndex).lpiCount++;
    dev.colMap[event] = cpuIndex;
  }

  /** irq_retrigger / set pending: INT + SYNC. */
  async retrigger(dev: GuestItsDevice, event: number): Promise<void> {
    this.checkEvent(dev, event);
    await this.send(dev.its, buildInt(dev.devid, event), this.collectionOf(dev, event).targetAddress);
  }

  /** irq_set_irqchip_state(PENDING, false): CLEAR + SYNC. */
  async clearPending(dev: GuestItsDevice, event: number): Promise<void> {
    this.checkEvent(dev, event);
    await this.send(dev.its, buildClear(dev.devid, event), this.collectionOf(dev, event).targetAddress);
  }

  /** its_irq_domain_deactivate: DISCARD + SYNC. */
  async deactivate(dev: GuestItsDevice, event: number): Promise<void> {
    this.checkEvent(dev, event);
    if (!dev.activated[event]) return;
    const col = this.collectionOf(dev, event);
    await this.send(dev.its, buildDiscard(dev.devid, event), col.targetAddress);
    this.cpu(dev.colMap[event]!).lpiCount--;
    dev.activated[event] = false;
    dev.colMap[event] = -1;
  }

  /** Driver unbind: mask + DISCARD + SYNC per vector, free the LPIs, MAPD V=0, free the ITT. */
  async teardownDevice(dev: GuestItsDevice): Promise<void> {
    for (let e = 0; e < dev.nvec; e++) {
      if (!dev.activated[e]) continue;
      await this.mask(dev, e);
      await this.deactivate(dev, e);
    }
    this.lpis.free(dev.lpis);
    await this.send(dev.its, buildMapd(dev.devid, ilog2(dev.nrItes) - 1, dev.ittAddr, false), null);
    this.ram.freeAt(dev.ittAlloc);
    dev.its.devices.delete(dev.devid);
  }

  // ------------------------------------------------------------------ expectations

  /** Every active vector as the guest believes the ITS maps it. */
  expectedTranslations(): ExpectedTranslation[] {
    const out: ExpectedTranslation[] = [];
    for (const its of this.itses) {
      for (const dev of [...its.devices.values()].sort((a, b) => a.devid - b.devid)) {
        for (let e = 0; e < dev.nvec; e++) {
          if (!dev.activated[e]) continue;
          const intid = dev.lpis.base + e;
          const cfg = this.bus.memory.readU8(this.propertyByteAddress(intid));
          out.push({
            its: its.index,
            doorbell: doorbell(its.base),
            devid: dev.devid,
            eventid: e,
            intid,
            vcpu: dev.colMap[e]!,
            enabled: (cfg & LPI_PROP_ENABLED) !== 0,
          });
        }
      }
    }
    return out;
  }

  /** Which (ITS, device, event) owns an INTID, or null. */
  ownerOf(intid: number): { its: number; devid: number; eventid: number } | null {
    for (const its of this.itses) {
      for (const dev of its.devices.values()) {
        if (intid >= dev.lpis.base && intid < dev.lpis.base + dev.lpis.count) return { its: its.index, devid: dev.devid, eventid: intid - dev.lpis.base };
      }
    }
    return null;
  }
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}
