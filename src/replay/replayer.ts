/**
 * Replays a QEMU trace of a guest driving an ITS against vitsd (any VitsdTarget) and compares,
 * event by event, what vitsd does with what QEMU did.
 *
 * Re-enacted: redistributor LPI register writes (GICR_PROPBASER, GICR_PENDBASER, GICR_CTLR) and
 * every ITS register write as guest MMIO, in trace order; before a write that made QEMU process
 * commands, those commands are placed in guest RAM at the slots QEMU read them from (from a queue
 * dump when given and matching, else encoded from the traced fields), together with the LPI
 * configuration bytes the guest must have written for the LPIs those commands (re)read, and the
 * level-1 device-table entries an indirect device table needs; every MSI as SIGNAL_MSI; every
 * LPI acknowledge (ICC_IAR1 read returning an LPI) as ACK_LPI on that vCPU.
 *
 * Compared:
 * - translations: QEMU's DTE/ITE/CTE lookup result (INTID, RDbase) or drop, against SIGNAL_MSI's
 *   status and the LPI vitsd made pending: an ACK_LPI PEEK on the expected vCPU right after the
 *   MSI must show it, unless an LPI of higher priority is (expectedly) pending there, in which
 *   case the later acknowledge, or the drain at the end, must;
 * - acknowledges: vitsd's ACK_LPI on the trace's CPU must return the trace's INTID, with the
 *   priority of its configuration byte;
 * - commands: each batch must be consumed entirely (GITS_CREADR) and, when the target reports
 *   statistics, processed without command errors;
 * - registers: reads compared on the bits both implementations define (registers.ts);
 * - pending at the end: what vitsd still has pending (drained with ACK_LPI) against what QEMU
 *   left pending (MSIs never acknowledged, such as those raised after the guest powered off).
 */
import { isErrnoError } from '../util/errno.js';
import type { AckResult } from '../redist/types.js';
import type { ParsedTrace, TraceEvent } from './qemu-trace.js';
import type { EndpointFactory, EndpointStats, ReplayEndpoint } from './endpoint.js';
import { commandWordsAt, decodeCollection, decodeTarget, encodeCommand, ITS_COMMAND_BYTES } from './its-commands.js';
import { layoutGuestRam, TABLE_PAGE, type ReplayLayout } from './guest-layout.js';
import {
  baserAddress, baserPageSize, bits, cbaserAddress, cbaserBytes, encoderInput, GICR_PROPBASER, GITS_BASER0, GITS_CBASER,
  DEFAULT_LPI_CONFIG, GITS_CREADR, GuestRegisterFile, isValid, itsReg64, lastGuestCbaser, lastGuestPropbaser, LPI_BASE, LPI_ENABLE, planReplay,
  propbaserAddress, redistReg64, type AddressRange, type CommandBatch, type ExpectedTranslation, type ReplayPlan,
} from './trace-analysis.js';
import { isVitsdRedistWrite, itsReadPolicy, redistReadPolicy, truncateToSize, type ReadPolicy } from './registers.js';
import { dumpAt, type MemoryDump } from './table-dumps.js';
import { migrateWithOrchestrator, type MigrationResult } from './migrate.js';
import {
  createVgicAndIts, GICR_FRAME_STRIDE, ITS_DOORBELL_OFFSET, VIRT_GICD_BASE, VIRT_GICR_BASE, VIRT_ITS_BASE,
  type VmAddresses, type VmHandles,
} from './vm-setup.js';
import {
  CATEGORY_NAMES, emptyReport, type Disagreement, type ReplayReport,
} from './report.js';

const SPURIOUS = 1023;
/** Bound of the end-of-run drain per vCPU (the LPI INTID space is 16 bits). */
const MAX_DRAIN = 0x1_0000;

export type MigrateFn = (src: ReplayEndpoint, handles: VmHandles, vm: VmAddresses, factory: EndpointFactory) => Promise<MigrationResult>;

export interface ReplayOptions {
  /** Fresh vitsd + guest RAM (in process or a daemon). */
  factory: EndpointFactory;
  /** ITS base address (QEMU virt: 0x08080000). */
  itsBase?: number;
  /** First redistributor (QEMU virt: 0x080a0000). */
  redistBase?: number;
  distBase?: number;
  /** vCPU count; default from the redistributors the trace touches. */
  nrVcpus?: number;
  /** The command queue read back from guest RAM (mem-cmdq.bin), from the queue base. */
  cmdq?: Uint8Array;
  /** End-of-run memory dumps (--tables DIR). */
  dumps?: readonly MemoryDump[];
  /** Migrate to a fresh target at every @@MARK line. */
  migrateAtMarks?: boolean;
  /** Migration implementation (default: the VMM's orchestrator, src/vmm/migration.ts). */
  migrate?: MigrateFn;
  /** Disagreements kept in detail (all are counted). */
  maxDetails?: number;
}

interface TranslationRecord {
  readonly expected: ExpectedTranslation;
  readonly line: number;
  readonly phase: string;
  state: 'agree' | 'disagree' | 'deferred' | 'unverified' | 'no-expectation';
}

const key = (intid: number, vcpu: number): string => `${intid}:${vcpu}`;
const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

export async function replayQemuTrace(trace: ParsedTrace, options: ReplayOptions): Promise<ReplayReport> {
  return new Replayer(trace, options).run();
}

class Replayer {
  private readonly plan: ReplayPlan;
  private readonly vm: VmAddresses;
  private readonly layout: ReplayLayout;
  private readonly report: ReplayReport;
  private readonly maxDetails: number;
  private readonly cmdqDump: Uint8Array | undefined;
  private readonly l1Dump: MemoryDump | undefined;

  private endpoint!: ReplayEndpoint;
  private handles!: VmHandles;
  private statsBaseline: EndpointStats | undefined;
  private phase = 'boot';
  private readonly itsRegs = new GuestRegisterFile();
  private readonly redistRegs = new GuestRegisterFile();
  /** QEMU's pending LPIs per vCPU (what vitsd should have pending). */
  private readonly expectedPending: Array<Set<number>>;
  /** Configuration byte of each LPI as last written (what vitsd should have cached). */
  private readonly config = new Map<number, number>();
  private readonly defaultConfig: (intid: number) => number;
  /** Translations whose LPI was hidden behind another pending one, by (intid, vcpu). */
  private readonly deferred = new Map<string, TranslationRecord[]>();
  private scratchNext: number;
  private readonly scratchEnd: number;
  private readonly cmdWords = new Uint32Array(8);
  private readonly dumpWords = new Uint32Array(8);
  private readonly cmdBytes = new Uint8Array(ITS_COMMAND_BYTES);

  constructor(trace: ParsedTrace, private readonly options: ReplayOptions) {
    const events = trace.events;
    const propbaser = lastGuestPropbaser(events);
    const propDump = propbaser !== undefined ? dumpAt(options.dumps ?? [], propbaserAddress(propbaser)) : undefined;
    this.plan = planReplay(events, { finalConfig: propDump?.bytes });
    this.maxDetails = options.maxDetails ?? 100;
    this.vm = {
      nrVcpus: options.nrVcpus ?? this.plan.nrVcpus,
      itsBase: options.itsBase ?? VIRT_ITS_BASE,
      redistBase: options.redistBase ?? VIRT_GICR_BASE,
      distBase: options.distBase ?? VIRT_GICD_BASE,
    };
    const cbaser = lastGuestCbaser(events);
    this.cmdqDump = options.cmdq ?? (cbaser !== undefined ? dumpAt(options.dumps ?? [], cbaserAddress(cbaser))?.bytes : undefined);
    this.l1Dump = this.findL1Dump(events);

    const ranges: AddressRange[] = [...this.plan.ranges];
    if (this.l1Dump) {
      for (const l2 of l1Targets(this.l1Dump.bytes)) ranges.push({ gpa: l2, size: TABLE_PAGE, what: 'device table level 2 (dump)' });
    }
    // one 64 KiB level-2 page per 8192 DeviceIDs at most (8-byte DTEs, 64 KiB ITS pages)
    const l2Needed = new Set(this.plan.mappedDeviceIds.map((d) => Math.floor(d / 8192))).size;
    this.layout = layoutGuestRam(ranges, l2Needed * TABLE_PAGE);
    this.scratchNext = this.layout.scratch.gpa;
    this.scratchEnd = this.layout.scratch.gpa + this.layout.scratch.size;

    this.expectedPending = Array.from({ length: this.vm.nrVcpus }, () => new Set<number>());
    const finalConfig = propDump?.bytes;
    this.defaultConfig = (intid) => {
      const i = intid - LPI_BASE;
      return finalConfig && i >= 0 && i < finalConfig.length ? finalConfig[i]! : DEFAULT_LPI_CONFIG | LPI_ENABLE;
    };
    this.report = emptyReport();
    this.report.trace = {
      lines: trace.lines, events: events.length, marks: this.plan.counts.marks, nrVcpus: this.vm.nrVcpus,
      skippedEvents: Object.values(trace.skipped).reduce((a, b) => a + b, 0),
      malformedEvents: Object.values(trace.malformed).reduce((a, b) => a + b, 0),
      orphanCommands: this.plan.orphanCommands, orphanTableEvents: this.plan.orphanTableEvents,
    };
    this.report.memory = { regions: this.layout.regions.map((r) => ({ gpa: r.gpa, size: r.size })), bytes: this.layout.bytes };
    this.report.categories.translations.total = this.plan.counts.translations;
    this.report.categories.acks.total = this.plan.counts.lpiAcks;
    this.report.categories.commands.total = this.plan.counts.commands + this.plan.orphanCommands;
  }

  private findL1Dump(events: readonly TraceEvent[]): MemoryDump | undefined {
    if (!this.options.dumps) return undefined;
    const regs = new GuestRegisterFile();
    let baser0: bigint | undefined;
    for (const e of events) {
      if (e.kind === 'its_write' && itsReg64(e.offset) === GITS_BASER0) {
        const v = regs.write('b0', e.offset - GITS_BASER0, e.size, e.data);
        if (isValid(v) && bits(v, 62, 62) === 1) baser0 = v;
      }
    }
    if (baser0 === undefined) return undefined;
    return dumpAt(this.options.dumps, baserAddress(baser0, baserPageSize(baser0)));
  }

  async run(): Promise<ReplayReport> {
    const setupStart = performance.now();
    this.endpoint = await this.options.factory(this.layout.regions);
    this.report.target = this.endpoint.description;
    let loopStart = performance.now();
    try {
      this.handles = await createVgicAndIts(this.endpoint.target, this.vm);
      this.statsBaseline = await this.readStats();
      this.report.timing.setupSeconds = (performance.now() - setupStart) / 1000;
      loopStart = performance.now();
      const events = this.plan.events;
      for (let i = 0; i < events.length; i++) {
        try {
          await this.step(i, events[i]!);
        } catch (err) {
          // a target that fails outside the compared operations (memory, bookkeeping)
          this.disagree('replay', events[i]!.line, `replaying ${events[i]!.kind} failed: ${errText(err)}`, false);
        }
      }
      await this.drainAndCompare();
      for (let i = 0; i < this.plan.orphanCommands; i++) {
        this.disagree('commands', 0, 'a processed command had no ITS register write after it on its thread: not replayed');
      }
    } finally {
      await this.endpoint.close();
    }
    const seconds = (performance.now() - loopStart) / 1000;
    const events = this.plan.events.length;
    Object.assign(this.report.timing, { seconds, events, eventsPerSecond: events / Math.max(seconds, 1e-9) });
    this.finish();
    return this.report;
  }

  // ---- per event ----

  private async step(i: number, e: TraceEvent): Promise<void> {
    switch (e.kind) {
      case 'its_write':
        return this.itsWrite(i, e.offset, e.size, e.data, e.line);
      case 'its_read':
        return this.itsRead(e.offset, e.size, e.data, e.line);
      case 'redist_write':
        return this.redistWrite(e.cpu, e.offset, e.size, e.data, e.line);
      case 'redist_read':
        return this.redistRead(e.cpu, e.offset, e.size, e.data, e.line);
      case 'its_translation_write':
        return this.translation(i, e.line);
      case 'icc_iar1_read':
        if (e.value >= LPI_BASE && e.value !== SPURIOUS) return this.acknowledge(e.cpu, e.value, e.line);
        return;
      case 'mark':
        this.phase = e.phase;
        if (this.options.migrateAtMarks) await this.migrate(e.line);
        return;
      default:
        return;
    }
  }

  private async itsWrite(i: number, offset: number, size: number, data: bigint, line: number): Promise<void> {
    const reg = itsReg64(offset);
    if (reg !== undefined) this.itsRegs.write(String(reg), offset - reg, size, data);
    const batch = this.plan.batches.get(i);
    if (batch) this.prepareBatch(batch);
    try {
      await this.endpoint.target.mmioWrite(this.vm.itsBase + offset, size, data);
      this.report.registers.writesApplied++;
    } catch (err) {
      this.report.registers.writeErrors++;
      this.disagree('registers', line, `ITS write ${hex(offset)} <- ${hex(data)} (size ${size}) failed: ${errText(err)}`);
    }
    if (batch) await this.checkBatch(batch, line);
  }

  private async itsRead(offset: number, size: number, qemu: bigint, line: number): Promise<void> {
    await this.compareRead(itsReadPolicy(offset, size), this.vm.itsBase + offset, size, qemu, line);
  }

  private async redistWrite(cpu: number, offset: number, size: number, data: bigint, line: number): Promise<void> {
    if (!isVitsdRedistWrite(offset, size) || cpu >= this.vm.nrVcpus) {
      this.report.registers.vmmOwned++;
      return;
    }
    const reg = redistReg64(offset);
    if (reg !== undefined) this.redistRegs.write(`${cpu}:${reg}`, offset - reg, size, data);
    try {
      await this.endpoint.target.mmioWrite(this.redistGpa(cpu, offset), size, data);
      this.report.registers.writesApplied++;
    } catch (err) {
      this.report.registers.writeErrors++;
      this.disagree('registers', line, `GICR${cpu} write ${hex(offset)} <- ${hex(data)} failed: ${errText(err)}`);
    }
  }

  private async redistRead(cpu: number, offset: number, size: number, qemu: bigint, line: number): Promise<void> {
    const policy = redistReadPolicy(offset, size);
    if (policy === undefined || cpu >= this.vm.nrVcpus) {
      this.report.registers.vmmOwned++;
      return;
    }
    await this.compareRead({ ...policy, name: `${policy.name}[${cpu}]` }, this.redistGpa(cpu, offset), size, qemu, line);
  }

  private redistGpa(cpu: number, offset: number): number {
    return this.vm.redistBase + cpu * GICR_FRAME_STRIDE + offset;
  }

  private async compareRead(policy: ReadPolicy, gpa: number, size: number, qemu: bigint, line: number): Promise<void> {
    let ours: bigint;
    try {
      ours = truncateToSize(await this.endpoint.target.mmioRead(gpa, size), size);
    } catch (err) {
      this.report.registers.readsCompared++;
      this.report.registers.readsDisagree++;
      this.disagree('registers', line, `${policy.name} read failed: ${errText(err)}`);
      return;
    }
    qemu = truncateToSize(qemu, size);
    const baseName = policy.name.replace(/\[\d+\]$/, '');
    if (policy.mask === 0n) {
      this.report.registers.readsInformational++;
      if (ours !== qemu) this.informational(baseName, line, qemu, ours, policy.note);
      return;
    }
    this.report.registers.readsCompared++;
    if ((ours & policy.mask) !== (qemu & policy.mask)) {
      this.report.registers.readsDisagree++;
      this.disagree('registers', line, `${policy.name}: QEMU ${hex(qemu)}, vitsd ${hex(ours)} (compared bits ${hex(policy.mask)})`);
      return;
    }
    this.report.registers.readsAgree++;
    if (ours !== qemu) this.informational(baseName, line, qemu, ours, policy.note);
  }

  private informational(name: string, line: number, qemu: bigint, ours: bigint, note: string): void {
    const info = this.report.registers.differencesByDesign;
    const prev = info[name];
    if (prev) prev.count++;
    else info[name] = { count: 1, firstLine: line, qemu: hex(qemu), vitsd: hex(ours), note };
  }

  // ---- commands ----

  /** What the guest wrote to RAM before the write that made QEMU run `batch`. */
  private prepareBatch(batch: CommandBatch): void {
    const mem = this.endpoint.memory;
    const propbaser = this.propbaser();
    if (propbaser !== undefined) {
      const base = propbaserAddress(propbaser);
      for (const [intid, byte] of batch.configWrites) {
        const gpa = base + intid - LPI_BASE;
        if (mem.contains(gpa, 1)) {
          mem.writeU8(gpa, byte);
          this.config.set(intid, byte);
          this.report.configBytesWritten++;
        }
      }
    }
    const cbaser = this.itsRegs.get(String(GITS_CBASER));
    if (cbaser === undefined) return;
    const qbase = cbaserAddress(cbaser);
    const qbytes = cbaserBytes(cbaser);
    for (const c of batch.commands) {
      if (c.name === 'MAPD') this.ensureDeviceTableL1(c.fields.deviceId ?? 0);
      const offset = (c.slot * ITS_COMMAND_BYTES) % qbytes;
      if (!mem.contains(qbase + offset, ITS_COMMAND_BYTES)) continue;
      this.encodeSlot(c, offset);
      mem.writeBytes(qbase + offset, this.cmdBytes, 0, ITS_COMMAND_BYTES);
    }
  }

  /**
   * The command bytes for a traced command, into cmdBytes. A queue dump holds each slot's LAST
   * content (a queue that wrapped was overwritten) and the fields QEMU does not trace (INVALL's
   * ICID, SYNC's RDbase): its slot is used when it re-encodes to the same words as the traced
   * fields with those two taken from it; otherwise the command is encoded from the trace.
   */
  private encodeSlot(c: CommandBatch['commands'][number], offset: number): void {
    const dump = this.cmdqDump;
    const dv = new DataView(this.cmdBytes.buffer);
    if (dump && offset + ITS_COMMAND_BYTES <= dump.length) {
      const real = commandWordsAt(dump, offset, this.dumpWords);
      encodeCommand(this.cmdWords, c.opcode, c.name, { fields: c.fields, icid: decodeCollection(real), rdbase: decodeTarget(real) });
      if (this.cmdWords.every((w, i) => w === real[i])) {
        for (let w = 0; w < 8; w++) dv.setUint32(w * 4, real[w]!, true);
        this.report.commandSource.fromDump++;
        return;
      }
      this.report.commandSource.dumpMismatches++;
    }
    encodeCommand(this.cmdWords, c.opcode, c.name, encoderInput(c));
    for (let w = 0; w < 8; w++) dv.setUint32(w * 4, this.cmdWords[w]!, true);
    this.report.commandSource.encoded++;
  }

  private propbaser(): bigint | undefined {
    for (let cpu = 0; cpu < this.vm.nrVcpus; cpu++) {
      const v = this.redistRegs.get(`${cpu}:${GICR_PROPBASER}`);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  /**
   * An indirect device table needs a valid level-1 entry for the DeviceID before MAPD (Linux
   * allocates the level-2 page when it creates the device). The entry is laid out for the table
   * geometry vitsd reports (its BASER0 page size and entry size), since that ITS reads it.
   */
  private ensureDeviceTableL1(devid: number): void {
    const guest = this.itsRegs.get(String(GITS_BASER0));
    if (guest === undefined || !isValid(guest) || bits(guest, 62, 62) === 0) return;
    const mem = this.endpoint.memory;
    const pageSize = 0x1_0000; // KVM-like ITS: 64 KiB pages; the guest's L2 pages are that big too
    const esz = 8;
    const l1 = baserAddress(guest, baserPageSize(guest));
    const l1Bytes = (bits(guest, 7, 0) + 1) * baserPageSize(guest);
    const index = Math.floor(devid / (pageSize / esz));
    if (index * 8 >= l1Bytes || !mem.contains(l1 + index * 8, 8)) return;
    if ((mem.readU64Hi(l1 + index * 8) >>> 31) === 1) return;
    let l2: number | undefined;
    if (this.l1Dump && index * 8 + 8 <= this.l1Dump.bytes.length) {
      const dv = new DataView(this.l1Dump.bytes.buffer, this.l1Dump.bytes.byteOffset, this.l1Dump.bytes.byteLength);
      const hi = dv.getUint32(index * 8 + 4, true);
      if (hi >>> 31 === 1) l2 = l1EntryAddress(dv.getUint32(index * 8, true), hi);
    }
    if (l2 === undefined || !mem.contains(l2, pageSize)) {
      if (this.scratchNext + pageSize > this.scratchEnd) return;
      l2 = this.scratchNext;
      this.scratchNext += pageSize;
    }
    mem.writeU64(l1 + index * 8, l2 % 2 ** 32 >>> 0, (Math.floor(l2 / 2 ** 32) | 0x8000_0000) >>> 0);
    this.report.deviceTableL1Entries++;
  }

  private async checkBatch(batch: CommandBatch, line: number): Promise<void> {
    const cmds = batch.commands;
    const cbaser = this.itsRegs.get(String(GITS_CBASER));
    const problems: string[] = [];
    if (cbaser !== undefined && cmds.length > 0) {
      const expectCreadr = ((cmds[cmds.length - 1]!.slot + 1) * ITS_COMMAND_BYTES) % cbaserBytes(cbaser);
      try {
        const creadr = Number((await this.endpoint.target.mmioRead(this.vm.itsBase + GITS_CREADR, 8)) & 0xfffe0n);
        if (creadr !== expectCreadr) problems.push(`GITS_CREADR ${hex(creadr)} after the write, QEMU consumed up to ${hex(expectCreadr)}`);
      } catch (err) {
        problems.push(`GITS_CREADR read failed: ${errText(err)}`);
      }
    }
    const stats = await this.readStats();
    if (stats && this.statsBaseline) {
      const errors = countDelta(stats.commandErrors, this.statsBaseline.commandErrors);
      const done = countDelta(stats.commands, this.statsBaseline.commands);
      if (Object.keys(errors).length > 0) problems.push(`vitsd command errors: ${JSON.stringify(errors)}`);
      const expected: Record<string, number> = {};
      for (const c of cmds) expected[c.name] = (expected[c.name] ?? 0) + 1;
      for (const [name, n] of Object.entries(expected)) {
        if (name !== 'UNKNOWN' && (done[name] ?? 0) !== n) problems.push(`vitsd processed ${done[name] ?? 0} ${name}, QEMU ${n}`);
      }
      this.statsBaseline = stats;
    }
    const cat = this.report.categories.commands;
    if (problems.length === 0) cat.agree += cmds.length;
    else {
      cat.disagree += cmds.length;
      this.disagree('commands', line, `batch of ${cmds.map((c) => `${c.name}@${c.slot}`).join(', ')}: ${problems.join('; ')}`, false);
    }
    for (const c of cmds) for (const p of c.effects.pending) this.applyPendingEffect(p);
    this.report.batches++;
  }

  private applyPendingEffect(p: CommandBatch['commands'][number]['effects']['pending'][number]): void {
    const pend = this.expectedPending;
    const inRange = (v: number): boolean => v >= 0 && v < pend.length;
    switch (p.op) {
      case 'set':
        if (inRange(p.rd)) pend[p.rd]!.add(p.intid);
        break;
      case 'clear':
        if (inRange(p.rd) && pend[p.rd]!.delete(p.intid)) this.unverifiable(p.intid, p.rd, 'its pending LPI was discarded before it could be observed');
        break;
      case 'move':
        if (inRange(p.from) && inRange(p.to) && pend[p.from]!.delete(p.intid)) {
          pend[p.to]!.add(p.intid);
          this.moveDeferred(p.intid, p.from, p.to);
        }
        break;
      case 'moveAll':
        if (inRange(p.from) && inRange(p.to)) {
          for (const intid of pend[p.from]!) {
            pend[p.to]!.add(intid);
            this.moveDeferred(intid, p.from, p.to);
          }
          pend[p.from]!.clear();
        }
        break;
    }
  }

  private moveDeferred(intid: number, from: number, to: number): void {
    const list = this.deferred.get(key(intid, from));
    if (!list) return;
    this.deferred.delete(key(intid, from));
    const dest = this.deferred.get(key(intid, to)) ?? [];
    dest.push(...list);
    this.deferred.set(key(intid, to), dest);
  }

  private unverifiable(intid: number, vcpu: number, why: string): void {
    const list = this.deferred.get(key(intid, vcpu));
    if (!list) return;
    this.deferred.delete(key(intid, vcpu));
    for (const r of list) {
      r.state = 'unverified';
      this.disagree('translations', r.line, `MSI dev ${hex(r.expected.deviceId)} event ${r.expected.eventId} -> LPI ${hex(intid)} on cpu ${vcpu}: ${why}`);
    }
  }

  // ---- MSIs and acknowledges ----

  private async translation(i: number, line: number): Promise<void> {
    const expected = this.plan.translations.get(i)!;
    const rec: TranslationRecord = { expected, line, phase: this.phase, state: 'agree' };
    let status: number;
    try {
      status = await this.endpoint.target.signalMsi(this.vm.itsBase + ITS_DOORBELL_OFFSET, expected.deviceId, expected.eventId);
    } catch (err) {
      status = isErrnoError(err) ? -err.errno : -1;
    }
    const what = `MSI dev ${hex(expected.deviceId)} event ${expected.eventId}`;
    const cat = this.report.categories.translations;
    if (expected.outcome === 'unknown') {
      rec.state = 'no-expectation';
      this.report.translationDetail.noExpectation++;
      return;
    }
    if (expected.outcome === 'dropped') {
      if (status === 0) {
        cat.agree++;
        this.report.translationDetail.droppedBoth++;
      } else {
        rec.state = 'disagree';
        this.disagree('translations', line, `${what}: QEMU dropped it (${expected.reason}), vitsd status ${status}`);
      }
      return;
    }
    const { intid, rdbase } = expected;
    if (status !== 1) {
      rec.state = 'disagree';
      this.disagree('translations', line, `${what}: QEMU -> LPI ${hex(intid)} on cpu ${rdbase}, vitsd status ${status}`);
      return;
    }
    if (rdbase < 0 || rdbase >= this.vm.nrVcpus) {
      rec.state = 'disagree';
      this.disagree('translations', line, `${what}: QEMU targets RDbase ${rdbase}, outside the ${this.vm.nrVcpus} vCPUs`);
      return;
    }
    const pending = this.expectedPending[rdbase]!;
    if (pending.has(intid)) this.report.translationDetail.coalesced++;
    pending.add(intid);
    const expectedTop = this.bestDeliverable(pending);
    let peek: AckResult;
    try {
      peek = await this.endpoint.target.ackLpi(rdbase, true);
    } catch (err) {
      rec.state = 'disagree';
      this.disagree('translations', line, `${what}: ACK_LPI PEEK on cpu ${rdbase} failed: ${errText(err)}`);
      return;
    }
    if (peek.intid === intid) {
      cat.agree++;
      this.report.translationDetail.verifiedByPeek++;
    } else if (peek.intid === expectedTop) {
      rec.state = 'deferred';
      const k = key(intid, rdbase);
      const list = this.deferred.get(k) ?? [];
      list.push(rec);
      this.deferred.set(k, list);
    } else {
      rec.state = 'disagree';
      this.disagree('translations', line, `${what}: QEMU -> LPI ${hex(intid)} on cpu ${rdbase}; vitsd's top pending LPI on cpu ${rdbase} is ${peek.intid === SPURIOUS ? 'none' : hex(peek.intid)}, expected ${expectedTop === SPURIOUS ? 'none' : hex(expectedTop)}`);
    }
  }

  /** Highest-priority deliverable LPI in `set` by the configuration bytes (lowest priority value, then INTID). */
  private bestDeliverable(set: ReadonlySet<number>): number {
    let best = SPURIOUS;
    let bestPrio = 0x100;
    for (const intid of set) {
      const byte = this.configOf(intid);
      if ((byte & 1) === 0) continue;
      const prio = byte & 0xfc;
      if (prio < bestPrio || (prio === bestPrio && intid < best)) {
        best = intid;
        bestPrio = prio;
      }
    }
    return best;
  }

  private configOf(intid: number): number {
    return this.config.get(intid) ?? this.defaultConfig(intid);
  }

  private resolveDeferred(intid: number, vcpu: number, how: 'ack' | 'drain'): void {
    const list = this.deferred.get(key(intid, vcpu));
    if (!list) return;
    this.deferred.delete(key(intid, vcpu));
    for (const r of list) {
      r.state = 'agree';
      this.report.categories.translations.agree++;
      if (how === 'ack') this.report.translationDetail.verifiedByAck++;
      else this.report.translationDetail.verifiedByDrain++;
    }
  }

  private async acknowledge(cpu: number, intid: number, line: number): Promise<void> {
    const cat = this.report.categories.acks;
    if (cpu >= this.vm.nrVcpus) {
      cat.disagree++;
      this.disagree('acks', line, `cpu ${cpu} acknowledged LPI ${hex(intid)}: no such vCPU`, false);
      return;
    }
    let ack: AckResult;
    try {
      ack = await this.endpoint.target.ackLpi(cpu, false);
    } catch (err) {
      cat.disagree++;
      this.disagree('acks', line, `ACK_LPI on cpu ${cpu} failed: ${errText(err)}`, false);
      return;
    }
    this.expectedPending[cpu]!.delete(intid);
    if (ack.intid !== intid) {
      cat.disagree++;
      const hint = ack.intid !== SPURIOUS && this.expectedPending[cpu]!.has(ack.intid) ? ' (both pending: acknowledge order differs)' : '';
      this.disagree('acks', line, `cpu ${cpu}: QEMU acknowledged LPI ${hex(intid)}, vitsd gave ${ack.intid === SPURIOUS ? 'none' : hex(ack.intid)}${hint}`, false);
      if (ack.intid !== SPURIOUS) this.resolveDeferred(ack.intid, cpu, 'ack');
      return;
    }
    this.resolveDeferred(intid, cpu, 'ack');
    const prio = this.configOf(intid) & 0xfc;
    if (ack.priority !== prio) {
      cat.disagree++;
      this.disagree('acks', line, `cpu ${cpu} LPI ${hex(intid)}: vitsd priority ${hex(ack.priority)}, configuration byte says ${hex(prio)}`, false);
      return;
    }
    cat.agree++;
  }

  /** End of trace: what vitsd still has pending must be what QEMU left pending. */
  private async drainAndCompare(): Promise<void> {
    const cat = this.report.categories.pendingAtEnd;
    for (let v = 0; v < this.vm.nrVcpus; v++) {
      const expected = [...this.expectedPending[v]!].filter((i) => (this.configOf(i) & 1) === 1).sort((a, b) => a - b);
      const drained: number[] = [];
      try {
        for (let n = 0; n < MAX_DRAIN; n++) {
          const ack = await this.endpoint.target.ackLpi(v, false);
          if (ack.intid === SPURIOUS) break;
          drained.push(ack.intid);
        }
      } catch (err) {
        cat.disagree++;
        this.disagree('pendingAtEnd', 0, `ACK_LPI on cpu ${v} failed while draining: ${errText(err)}`, false);
      }
      drained.sort((a, b) => a - b);
      for (const intid of drained) this.resolveDeferred(intid, v, 'drain');
      cat.total += Math.max(expected.length, drained.length);
      const exp = new Set(expected);
      const got = new Set(drained);
      for (const i of expected) if (got.has(i)) cat.agree++;
      const missing = expected.filter((i) => !got.has(i));
      const extra = drained.filter((i) => !exp.has(i));
      cat.disagree += Math.max(missing.length, extra.length);
      if (missing.length + extra.length > 0) {
        this.disagree('pendingAtEnd', 0, `cpu ${v}: QEMU left pending [${expected.map(hex).join(', ')}], vitsd [${drained.map(hex).join(', ')}]`, false);
      }
      this.report.pendingAtEnd.push({ vcpu: v, expected: expected.map(hex), vitsd: drained.map(hex) });
    }
    for (const [k, list] of this.deferred) {
      const [intid, vcpu] = k.split(':').map(Number) as [number, number];
      for (const r of list) {
        r.state = 'unverified';
        this.disagree('translations', r.line, `MSI dev ${hex(r.expected.deviceId)} event ${r.expected.eventId} -> LPI ${hex(intid)} on cpu ${vcpu}: never seen pending in vitsd`);
      }
    }
    this.deferred.clear();
  }

  // ---- migration ----

  private async migrate(line: number): Promise<void> {
    const migrate = this.options.migrate ?? migrateWithOrchestrator;
    try {
      const r = await migrate(this.endpoint, this.handles, this.vm, this.options.factory);
      this.endpoint = r.endpoint;
      this.handles = r.handles;
      this.statsBaseline = await this.readStats();
      this.report.migrations.count++;
      this.report.migrations.totalMs += r.ms;
      this.report.migrations.bytesCopied += r.bytesCopied;
      this.report.migrations.phases.push(this.phase);
    } catch (err) {
      this.report.migrations.failures++;
      this.disagree('migrations', line, `migration at @@MARK ${this.phase} failed: ${errText(err)}`, false);
      // continue on the source if it is still usable
      try {
        await this.endpoint.target.resume();
      } catch {
        /* nothing more to do */
      }
    }
  }

  // ---- bookkeeping ----

  private async readStats(): Promise<EndpointStats | undefined> {
    if (!this.endpoint.stats) return undefined;
    try {
      return await this.endpoint.stats();
    } catch {
      return undefined;
    }
  }

  /** Records a disagreement; `count` false when the caller already counted it in its category. */
  private disagree(category: Disagreement['category'], line: number, message: string, count = true): void {
    if (count && (category === 'translations' || category === 'acks' || category === 'commands')) {
      this.report.categories[category].disagree++;
    }
    this.report.disagreementCount++;
    if (this.report.disagreements.length < this.maxDetails) this.report.disagreements.push({ category, line, phase: this.phase, message });
  }

  private finish(): void {
    const r = this.report;
    const reg = r.registers;
    r.categories.registers.total = reg.readsCompared + reg.writesApplied + reg.writeErrors;
    r.categories.registers.agree = reg.readsAgree + reg.writesApplied;
    r.categories.registers.disagree = reg.readsDisagree + reg.writeErrors;
    r.ok = r.disagreementCount === 0 && CATEGORY_NAMES.every((n) => r.categories[n].disagree === 0)
      && r.categories.translations.agree === r.categories.translations.total - r.translationDetail.noExpectation
      && r.categories.acks.agree === r.categories.acks.total
      && r.categories.commands.agree === r.categories.commands.total;
  }
}

function countDelta(now: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(now)) {
    if (k === 'total') continue;
    const d = v - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Level-2 page addresses of the valid entries of a level-1 device table dump. */
function l1Targets(bytes: Uint8Array): number[] {
  const out: number[] = [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let off = 0; off + 8 <= bytes.length; off += 8) {
    const hi = dv.getUint32(off + 4, true);
    if (hi >>> 31 === 0) continue;
    out.push(l1EntryAddress(dv.getUint32(off, true), hi));
  }
  return out;
}

/** Level-1 entry: Valid bit 63, level-2 page PA in bits 51:16 (64 KiB aligned here). */
function l1EntryAddress(lo: number, hi: number): number {
  return (hi & 0xfffff) * 2 ** 32 + ((lo & 0xffff_0000) >>> 0);
}

