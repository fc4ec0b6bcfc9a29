/**
 * One emulated GICv3 ITS with the behaviour of Linux KVM's vgic-its, register for register
 * and command for command (kvm-its-abi.md 1.5-1.7, 3.6, 6; its-model.md 1, 2, 4).
 *
 * - Registers: ./registers.ts (ItsRegisterFile).
 * - Commands: ./command-queue.ts + ./commands/* (one decoder and handler per command).
 * - Translation state: ./translation.ts (typed arrays, O(1) lookup).
 * - LPIs (refcount, target, pending, configuration): the VM-wide LpiSystem.
 *
 * Guest-driven paths (MMIO, commands, MSIs) never throw. Userspace register access throws
 * ErrnoError as KVM fails the ioctl.
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import type { LpiSystem } from '../redist/types.js';
import { Errno } from '../util/errno.js';
import { CommandProcessor } from './command-queue.js';
import { vcpuOf, type CommandContext } from './commands/context.js';
import { CMD_OK, E_DTE_WRITE_FAULT, E_INTERNAL, E_ITE_WRITE_FAULT } from './commands/errors.js';
import { ItsRegisterFile, type RegisterEffects } from './registers.js';
import type { ItsChangeListener, ItsTableState, StagedEvents } from './table-state.js';
import { ZeroingTableWriter, type ItsTableWriter, type TableWriterHost } from './table-writer.js';
import type { BaserGeometry } from './tables.js';
import {
  ADD_EXISTS, ADD_OK, COLLECTION_ABSENT, LOOKUP_EVENT_OUT_OF_RANGE, LOOKUP_UNMAPPED_DEVICE, TranslationState,
} from './translation.js';
import type { DropReason, ItsDevice, ItsStats } from './types.js';

export interface ItsOptions {
  /**
   * Cap on event pages (256 events each) this ITS may allocate; a MAPTI/MAPI beyond it is
   * dropped and counted as "ENOMEM". Default 16384 (4M events).
   */
  maxEventPages?: number;
  /** Writer for the DTE/ITE zeroing of MAPD V=0 and DISCARD (default: ZeroingTableWriter). */
  tableWriter?: ItsTableWriter;
}

/** Drop reasons, in the order of the internal counters. */
const DROP_REASONS: readonly DropReason[] = [
  'its_disabled', 'unmapped_device', 'event_out_of_range', 'unmapped_event', 'unmapped_collection', 'no_vcpu', 'lpis_disabled',
];
const DROP_ITS_DISABLED = 0;
const DROP_UNMAPPED_DEVICE = 1;
const DROP_EVENT_OUT_OF_RANGE = 2;
const DROP_UNMAPPED_EVENT = 3;
const DROP_UNMAPPED_COLLECTION = 4;
const DROP_NO_VCPU = 5;
const DROP_LPIS_DISABLED = 6;

/** The command handlers' view of an Its. */
class ItsCommandContext implements CommandContext {
  constructor(private readonly its: Its) {}
  get state(): TranslationState {
    return this.its.translation;
  }
  get lpis(): LpiSystem {
    return this.its.lpis;
  }
  get memory(): GuestMemory {
    return this.its.memory;
  }
  get deviceTable(): BaserGeometry {
    return this.its.registers.deviceTable;
  }
  get collectionTable(): BaserGeometry {
    return this.its.registers.collectionTable;
  }
  clearDeviceEntry(devid: number): number {
    try {
      this.its.tableWriter.clearDeviceEntry(devid);
      return CMD_OK;
    } catch {
      return E_DTE_WRITE_FAULT;
    }
  }
  clearEventEntry(devid: number, eventid: number): number {
    try {
      this.its.tableWriter.clearEventEntry(devid, eventid);
      return CMD_OK;
    } catch {
      return E_ITE_WRITE_FAULT;
    }
  }
}

export class Its implements ItsDevice, ItsTableState, TableWriterHost {
  private mem: GuestMemory;
  readonly lpis: LpiSystem;
  readonly registers: ItsRegisterFile;
  readonly translation: TranslationState;
  private readonly processor: CommandProcessor;
  private writer: ItsTableWriter;
  private listener: ItsChangeListener | null = null;
  private msiDelivered = 0;
  private readonly msiDrops = new Float64Array(DROP_REASONS.length);

  constructor(memory: GuestMemory, lpis: LpiSystem, options: ItsOptions = {}) {
    this.mem = memory;
    this.lpis = lpis;
    this.translation = new TranslationState(lpis, options.maxEventPages);
    const effects: RegisterEffects = {
      processCommands: () => this.processor.process(),
      baserWritten: (n, valid) => this.baserWritten(n, valid),
      abiSelected: () => this.listener?.allChanged(),
    };
    this.registers = new ItsRegisterFile(effects);
    this.processor = new CommandProcessor(this.registers, new ItsCommandContext(this));
    this.writer = options.tableWriter ?? new ZeroingTableWriter(this);
  }

  // ---- Memory and hooks ----

  get memory(): GuestMemory {
    return this.mem;
  }

  /** SET_MEM_TABLE: later accesses use the new memory; translation state is kept. */
  setMemory(memory: GuestMemory): void {
    this.mem = memory;
  }

  get tableWriter(): ItsTableWriter {
    return this.writer;
  }

  /** Installs the table ABI's writer for the DTE/ITE zeroing (null: back to the default). */
  setTableWriter(writer: ItsTableWriter | null): void {
    this.writer = writer ?? new ZeroingTableWriter(this);
  }

  setChangeListener(listener: ItsChangeListener | null): void {
    this.listener = listener;
    this.translation.listener = listener;
  }

  // ---- Registers ----

  get enabled(): boolean {
    return this.registers.enabled;
  }
  get baserDevice(): bigint {
    return this.registers.baserDevice;
  }
  get baserCollection(): bigint {
    return this.registers.baserCollection;
  }
  get abiRevision(): number {
    return this.registers.abiRevision;
  }
  get deviceTableGeometry(): BaserGeometry {
    return this.registers.deviceTable;
  }

  mmioRead(offset: number, size: number): bigint {
    try {
      return this.registers.mmioRead(offset, size);
    } catch {
      this.processor.count(E_INTERNAL);
      return 0n;
    }
  }

  mmioWrite(offset: number, size: number, value: bigint): void {
    try {
      this.registers.mmioWrite(offset, size, value);
    } catch {
      this.processor.count(E_INTERNAL);
    }
  }

  getReg(offset: number): bigint {
    return this.registers.getReg(offset);
  }

  setReg(offset: number, value: bigint): void {
    this.registers.setReg(offset, value);
  }

  hasReg(offset: number): void {
    this.registers.hasReg(offset);
  }

  private baserWritten(n: number, valid: boolean): void {
    if (!valid) {
      if (n === 0) this.translation.clearDevices();
      else this.translation.clearCollections();
    }
    this.listener?.allChanged();
  }

  /** KVM_DEV_ARM_ITS_CTRL_RESET (kvm-its-abi.md 1.7). Guest RAM is not touched. */
  reset(): void {
    this.registers.reset();
    this.translation.clearDevices();
    this.translation.clearCollections();
    this.listener?.allChanged();
  }

  // ---- MSIs (hot path: no allocation) ----

  /** KVM_SIGNAL_MSI (vgic_its_resolve_lpi + vgic_its_trigger_msi). */
  signalMsi(devid: number, eventid: number): number {
    if (!this.registers.enabled) {
      this.msiDrops[DROP_ITS_DISABLED]!++;
      return -Errno.EBUSY;
    }
    const t = this.translation;
    const slot = t.lookup(devid, eventid);
    if (slot < 0) {
      this.msiDrops[slot === LOOKUP_UNMAPPED_DEVICE ? DROP_UNMAPPED_DEVICE : slot === LOOKUP_EVENT_OUT_OF_RANGE ? DROP_EVENT_OUT_OF_RANGE : DROP_UNMAPPED_EVENT]!++;
      return 0;
    }
    // The vCPU checked is the collection's (KVM); the LPI is made pending wherever it targets.
    const ite = t.ites[slot]!;
    const vcpu = t.orphanCount !== 0 && t.isOrphan(slot) ? COLLECTION_ABSENT : t.collTarget[ite >>> 16]!;
    if (vcpu < 0) {
      this.msiDrops[DROP_UNMAPPED_COLLECTION]!++;
      return 0;
    }
    const lpis = this.lpis;
    if (vcpu >= lpis.nrVcpus) {
      this.msiDrops[DROP_NO_VCPU]!++;
      return 0;
    }
    if (!lpis.lpisEnabled(vcpu)) {
      this.msiDrops[DROP_LPIS_DISABLED]!++;
      return -Errno.EBUSY;
    }
    lpis.setPending(ite & 0xffff);
    this.msiDelivered++;
    return 1;
  }

  translate(devid: number, eventid: number): number {
    return this.translation.translate(devid, eventid);
  }

  get stats(): ItsStats {
    const byReason = {} as Record<DropReason, number>;
    let dropped = 0;
    DROP_REASONS.forEach((r, i) => {
      byReason[r] = this.msiDrops[i]!;
      dropped += this.msiDrops[i]!;
    });
    return {
      commands: this.processor.commandStats(),
      commandErrors: this.processor.errorStats(),
      msiDelivered: this.msiDelivered,
      msiDropped: dropped,
      msiDroppedByReason: byReason,
    };
  }

  // ---- ItsTableState (used by the table ABI) ----

  forEachDevice(fn: (devid: number, ittAddr: number, eventIdBits: number) => void): void {
    this.translation.forEachDevice(fn);
  }
  forEachEvent(devid: number, fn: (eventid: number, intid: number, icid: number) => void): void {
    this.translation.forEachEvent(devid, fn);
  }
  forEachCollection(fn: (icid: number, target: number) => void): void {
    this.translation.forEachCollection(fn);
  }
  deviceCount(): number {
    return this.translation.deviceCount;
  }
  eventCount(): number {
    return this.translation.eventCount;
  }
  hasCollection(icid: number): boolean {
    return this.translation.hasCollection(icid);
  }
  /** target: a vCPU id or COLLECTION_NOT_MAPPED. No-op when the collection exists. */
  addCollection(icid: number, target: number): void {
    this.translation.addCollection(icid, target);
  }
  hasDevice(devid: number): boolean {
    return this.translation.isDeviceMapped(devid);
  }
  /** Replaces an existing device with that ID (its ITEs are freed). eventIdBits must be 1..16. */
  addDevice(devid: number, ittAddr: number, eventIdBits: number): void {
    this.translation.mapDevice(devid, ittAddr, eventIdBits);
  }
  /**
   * False (nothing changed) when the device is not mapped, the EventID is out of its range,
   * the collection does not exist, the event-page cap is reached or the LPI could not be
   * created (guest RAM fault). An existing ITE for (devid, eventid) is left as it is (true).
   */
  addEvent(devid: number, eventid: number, intid: number, icid: number): boolean {
    const target = this.translation.collectionTarget(icid);
    if (target === COLLECTION_ABSENT || icid >= 0x10000) return false;
    const r = this.translation.addEvent(devid, eventid, intid, icid, vcpuOf(this.lpis, target));
    return r === ADD_OK || r === ADD_EXISTS;
  }
  addEvents(devid: number, count: number, eventids: Uint16Array | Uint32Array, intids: Uint16Array | Uint32Array, icids: Uint16Array | Uint32Array): number {
    return this.translation.addEvents(devid, count, eventids, intids, icids);
  }
  importEvents(staged: StagedEvents): number {
    return this.translation.importEvents(staged);
  }
  exportEvents(devid: number, eventids: Uint32Array, intids: Uint32Array, icids: Uint32Array): number {
    return this.translation.exportEvents(devid, eventids, intids, icids);
  }
  exportEventPages(devid: number, fn: (firstEventId: number, words: Uint32Array, offset: number) => void): boolean {
    return this.translation.exportEventPages(devid, fn);
  }
  freeEventPages(): number {
    return this.translation.freeEventPages;
  }
  reserveEventStorage(devices: number, pages: number): void {
    this.translation.reserveEventStorage(devices, pages);
  }
  clearTranslations(): void {
    this.translation.clearDevices();
    this.translation.clearCollections();
    this.listener?.allChanged();
  }

  // ---- Extra accessors (table ABI, tools, tests) ----

  /** ITT address of a mapped device, or -1. */
  deviceIttAddr(devid: number): number {
    return this.translation.isDeviceMapped(devid) ? this.translation.deviceIttAddr(devid) : -1;
  }
  /** EventID bits of a mapped device, or 0. */
  deviceEventIdBits(devid: number): number {
    return this.translation.deviceEventIdBits(devid);
  }
  /** ICID of the ITE (devid, eventid) (ITE_NO_COLLECTION if its collection was freed), or -1. */
  eventCollection(devid: number, eventid: number): number {
    const slot = this.translation.lookup(devid, eventid);
    return slot < 0 ? -1 : this.translation.icidAt(slot);
  }
  /** Target vCPU, COLLECTION_NOT_MAPPED, or -2 when the collection does not exist. */
  collectionTarget(icid: number): number {
    return this.translation.collectionTarget(icid);
  }
  /** Event pages in use (256 events each). */
  get eventPagesInUse(): number {
    return this.translation.pagesInUse;
  }
}
