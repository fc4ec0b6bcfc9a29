/**
 * ITS_RESTORE_TABLES for table ABI rev 0 (kvm-its-abi.md 3.8), reading HOSTILE data.
 *
 * Three phases, so that a rejected image leaves the ITS exactly as it was:
 * 1. stage: walk the collection table, then the device table (flat or two-level) and each
 *    ITT, exactly in KVM's order, validating every entry and recording it in plain typed
 *    arrays. Nothing in the ITS or the LPI system changes, nothing is written to guest RAM.
 * 2. check what apply will touch: the LPI property byte and (for a targeted LPI) the pending
 *    byte of every LPI the restore would create, at the point of the walk where KVM would
 *    read them, so the errno and its order match KVM's.
 *    Also there: the ITS's event storage must hold the staged ITEs (else -ENOMEM, as KVM's ITE
 *    allocation failing).
 * 3. apply through the ItsTableState mutators (which create the LPIs, consuming pending bits):
 *    collections, then per device addDevice and one bulk addEvents.
 *
 * Errors are KVM's errno in a TableError naming the table, the entry index and the field.
 *
 * Differences from KVM, all on images KVM would also reject or that no KVM save produces:
 * - ITE pINTID >= 2^16 is -EINVAL (KVM's LPI INTID space is 16 bits; KVM would go on to
 *   read a property byte far beyond the table and usually fail with -EFAULT).
 * - a DTE whose DeviceID already exists in this ITS is -EEXIST (KVM would create a duplicate).
 * - in a two-level device table only the level-1 entries that can hold 16-bit DeviceIDs
 *   (indices 0..7) are walked: KVM also walks level-2 pages at higher indices, where any valid
 *   DTE is -EINVAL; walking up to 2M such pages of 8192 slots is not bounded in practice.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { LPI_BASE, MAX_LPI_INTID_BITS } from '../../redist/types.js';
import { Errno } from '../../util/errno.js';
import {
  ADD_EVENTS_EFAULT, ADD_EVENTS_ENOMEM, ADD_EVENTS_EXISTS, ADD_EVENTS_INVALID, ADD_EVENTS_OK, COLLECTION_NOT_MAPPED,
  EVENTS_PER_EVENT_PAGE, type ItsTableState,
} from '../table-state.js';
import { decodeBaser, type TableGeometry } from './baser.js';
import { CTE_TARGET_NOT_MAPPED, CollectionTableEntry } from './cte.js';
import { DeviceTableEntry } from './dte.js';
import { TableError, hex } from './errors.js';
import { InterruptTranslationEntry } from './ite.js';
import { L2_ENTRIES, L2_PAGE_SIZE, Level1Entry } from './level1.js';
import { locateSlot } from './locate.js';
import { GrowableF64, GrowableU32 } from './bitmap.js';
import { SCAN_LAST_FOUND, TableReader, entryHex, scanTable } from './scan.js';

/** Largest EventID bits a DTE may carry (2026 fix: Size > 15 is -EINVAL). */
export const MAX_DTE_EVENTID_BITS = 16;
const LPI_LIMIT = (1 << MAX_LPI_INTID_BITS) >>> 0;
/** collection target markers in the staging map. */
const ABSENT = -2;
const NOT_MAPPED = -1;
/** Level-1 entries that can hold 16-bit DeviceIDs: 65536 / 8192. */
const MAX_L1_ENTRIES = 0x10000 / L2_ENTRIES;

export const TABLE_COLLECTIONS = 'collection table';
export const TABLE_DEVICES = 'device table';
export const TABLE_DEVICES_L1 = 'device table L1';
export function ittTableName(devid: number): string {
  return `ITT of device ${hex(devid)}`;
}

/**
 * What a successful restore created, in table order (the saver records it as its image).
 * One instance is reused by every restore: it is only valid inside the onRestored callback.
 */
export class RestoredTables {
  readonly collIcid = new GrowableU32(16);
  /** vCPU id or CTE_TARGET_NOT_MAPPED. */
  readonly collTarget = new GrowableU32(16);
  readonly devId = new GrowableU32(16);
  readonly devItt = new GrowableF64(16);
  readonly devBits = new GrowableU32(16);
  readonly devDteAddr = new GrowableF64(16);
  /** Index of the device's first event in ev*; the device's events end at the next device's first. */
  readonly devFirstEvent = new GrowableU32(16);
  /**
   * Events: EventID, INTID, ICID; the first `events` entries are valid. All three are 16-bit
   * (EventIDs < 2^16, LPI INTIDs < 2^16, ICIDs): 6 bytes per staged event, because staging
   * a million events is bound by the memory it touches.
   */
  evId: Uint16Array = new Uint16Array(4096);
  evIntid: Uint16Array = new Uint16Array(4096);
  evIcid: Uint16Array = new Uint16Array(4096);
  events = 0;

  get collections(): number {
    return this.collIcid.length;
  }
  get devices(): number {
    return this.devId.length;
  }
  clear(): void {
    for (const a of [this.collIcid, this.collTarget, this.devId, this.devBits, this.devFirstEvent]) a.clear();
    this.devItt.length = 0;
    this.devDteAddr.length = 0;
    this.events = 0;
  }

  /** Makes room for `extra` more events (at most one ITT's worth: 2^16). */
  reserveEvents(extra: number): void {
    const need = this.events + extra;
    if (need <= this.evId.length) return;
    let size = this.evId.length * 2;
    while (size < need) size *= 2;
    const n = this.events;
    const evId = new Uint16Array(size);
    evId.set(this.evId.subarray(0, n));
    this.evId = evId;
    const evIntid = new Uint16Array(size);
    evIntid.set(this.evIntid.subarray(0, n));
    this.evIntid = evIntid;
    const evIcid = new Uint16Array(size);
    evIcid.set(this.evIcid.subarray(0, n));
    this.evIcid = evIcid;
  }

  eventsEnd(deviceIndex: number): number {
    return deviceIndex + 1 < this.devId.length ? this.devFirstEvent.data[deviceIndex + 1]! : this.events;
  }
}

/** Walks the tables and stages everything; throws TableError; changes nothing. */
class Stager {
  readonly out: RestoredTables;
  /** ICID -> staged or pre-existing collection target (vCPU, NOT_MAPPED) or ABSENT. */
  private readonly collTarget: Int32Array;
  /** LPIs this restore would create (first ITE wins, as KVM's vgic_add_lpi). */
  private readonly newLpi: Uint8Array;
  private readonly tableReader = new TableReader();
  private readonly ittReader = new TableReader();
  private readonly nrVcpus: number;
  private readonly propBase: number;
  private readonly pendBase: Float64Array;

  // Current device of the ITT walk (fields instead of a closure per device).
  private devEventBits = 0;
  /** 2^devEventBits, precomputed (the ** operator is slow on the per-entry path). */
  private devEvents = 0;
  /** Index in out.ev* of the current device's first event. */
  private devFirst = 0;
  private ittName = '';
  /** Event pages the ITS can still allocate (freeEventPages) and pages the staged ITEs need. */
  private readonly pagesFree: number;
  private pagesTaken = 0;
  /** Event pages the staged ITEs need. */
  get eventPages(): number {
    return this.pagesTaken;
  }
  private readonly visitDte = (id: number, lo: number, hi: number): number => this.restoreDte(id, lo, hi);

  constructor(
    private readonly state: ItsTableState,
    private readonly memory: GuestMemory,
    private readonly deviceTable: TableGeometry,
    private readonly collectionTable: TableGeometry,
    scratch: StagingScratch,
  ) {
    this.out = scratch.out;
    this.out.clear();
    this.collTarget = scratch.collTarget;
    this.collTarget.fill(ABSENT);
    this.newLpi = scratch.newLpi;
    this.newLpi.fill(0);
    this.tableReader.reset(memory);
    this.ittReader.reset(memory);
    const lpis = state.lpis;
    this.nrVcpus = lpis.nrVcpus;
    // GICR_PROPBASER PA: bits 51:12; GICR_PENDBASER PA: bits 51:16.
    this.propBase = Number(lpis.propbaser & 0x000ffffffffff000n);
    this.pendBase = new Float64Array(this.nrVcpus);
    for (let v = 0; v < this.nrVcpus; v++) this.pendBase[v] = Number(lpis.pendbaser(v) & 0x000fffffffff0000n);
    state.forEachCollection((icid, target) => {
      this.collTarget[icid] = target < 0 ? NOT_MAPPED : target;
    });
    this.pagesFree = state.freeEventPages();
  }

  // ---- Collection table ----

  stageCollections(): void {
    const t = this.collectionTable;
    const memory = this.memory;
    const reader = this.tableReader;
    for (let i = 0; i < t.slots; i++) {
      const gpa = t.base + i * 8;
      if (!reader.load(gpa, t.bytes - i * 8)) {
        throw new TableError(Errno.EFAULT, TABLE_COLLECTIONS, i, 'entry', `GPA ${hex(gpa)} is outside guest memory`);
      }
      const lo = reader.lo;
      const hi = reader.hi;
      if (!CollectionTableEntry.valid(hi)) return; // the first invalid entry ends the table
      const target = CollectionTableEntry.target(lo, hi);
      const icid = CollectionTableEntry.icid(lo);
      if (target !== CTE_TARGET_NOT_MAPPED && target >= this.nrVcpus) {
        throw new TableError(Errno.EINVAL, TABLE_COLLECTIONS, i, 'RDbase',
          `target ${target} is not a vCPU (${this.nrVcpus} vCPUs) (CTE ${entryHex(lo, hi)})`);
      }
      if (this.collTarget[icid] !== ABSENT) {
        throw new TableError(Errno.EEXIST, TABLE_COLLECTIONS, i, 'ICID', `collection ${icid} already exists (CTE ${entryHex(lo, hi)})`);
      }
      if (locateSlot(memory, t, icid) < 0) {
        throw new TableError(Errno.EINVAL, TABLE_COLLECTIONS, i, 'ICID',
          `ICID ${icid} is outside the collection table (${t.slots} entries) (CTE ${entryHex(lo, hi)})`);
      }
      this.collTarget[icid] = target === CTE_TARGET_NOT_MAPPED ? NOT_MAPPED : target;
      this.out.collIcid.push(icid);
      this.out.collTarget.push(target);
    }
  }

  // ---- Device table ----

  stageDevices(): void {
    const t = this.deviceTable;
    if (!t.indirect) {
      scanTable(this.tableReader, t.base, t.bytes, 0, TABLE_DEVICES, this.visitDte);
      return;
    }
    const memory = this.memory;
    const e = new Uint32Array(2);
    const l1Entries = Math.min(t.slots, MAX_L1_ENTRIES);
    for (let i = 0; i < l1Entries; i++) {
      const gpa = t.base + i * 8;
      if (!memory.contains(gpa, 8)) {
        throw new TableError(Errno.EFAULT, TABLE_DEVICES_L1, i, 'entry', `GPA ${hex(gpa)} is outside guest memory`);
      }
      memory.readU64Into(gpa, e, 0);
      if (!Level1Entry.valid(e[1]!)) continue;
      const l2 = Level1Entry.l2Addr(e[0]!, e[1]!);
      // A DTE with next = 0 inside any level-2 page ends the whole walk; running off the end of
      // a page moves on to the first slot of the next valid page (KVM handle_l1_dte).
      if (scanTable(this.tableReader, l2, L2_PAGE_SIZE, i * L2_ENTRIES, TABLE_DEVICES, this.visitDte) === SCAN_LAST_FOUND) return;
    }
  }

  private restoreDte(id: number, lo: number, hi: number): number {
    if (!DeviceTableEntry.valid(hi)) return 1;
    const bits = DeviceTableEntry.eventIdBits(lo);
    const itt = DeviceTableEntry.ittAddr(lo, hi);
    const next = DeviceTableEntry.next(hi);
    if (bits > MAX_DTE_EVENTID_BITS) {
      throw new TableError(Errno.EINVAL, TABLE_DEVICES, id, 'Size',
        `${bits} EventID bits exceed ${MAX_DTE_EVENTID_BITS} (DTE ${entryHex(lo, hi)})`);
    }
    const slot = locateSlot(this.memory, this.deviceTable, id);
    if (slot < 0) {
      throw new TableError(Errno.EINVAL, TABLE_DEVICES, id, 'DeviceID', `DeviceID ${hex(id)} has no slot in the device table (DTE ${entryHex(lo, hi)})`);
    }
    if (this.state.hasDevice(id)) {
      throw new TableError(Errno.EEXIST, TABLE_DEVICES, id, 'DeviceID', `device ${hex(id)} already exists`);
    }
    const out = this.out;
    out.devId.push(id);
    out.devItt.push(itt);
    out.devBits.push(bits);
    out.devDteAddr.push(slot);
    out.devFirstEvent.push(out.events);
    this.devFirst = out.events;
    this.devEventBits = bits;
    this.devEvents = 1 << bits;
    this.ittName = ittTableName(id);
    out.reserveEvents(this.devEvents);
    this.scanItt(itt, this.devEvents * 8);
    return next;
  }

  /**
   * scan_its_table over one ITT with restore_ite inlined: the per-event path of a restore, so
   * it keeps everything in locals. Checks in KVM's order (3.8 restore_ite). An ITT entirely in
   * guest memory is read with one readBytes and decoded from u32 words; otherwise entry by
   * entry through the window reader, so that a fault happens exactly where KVM's would.
   */
  private scanItt(itt: number, len: number): void {
    if (HOST_LITTLE_ENDIAN && this.memory.contains(itt, len)) {
      const words = ittWords();
      this.memory.readBytes(itt, ittBytes!, 0, len);
      this.walkIttWords(words, len >>> 3);
      return;
    }
    const reader = this.ittReader;
    reader.reset(this.memory);
    const view = reader.view;
    let gpa = itt;
    let event = 0;
    let remaining = len;
    for (;;) {
      const off = reader.at(gpa, remaining);
      if (off < 0) throw new TableError(Errno.EFAULT, this.ittName, event, 'entry', `GPA ${hex(gpa)} is outside guest memory`);
      const lo = view.getUint32(off, true);
      const hi = view.getUint32(off + 4, true);
      const step = this.stageIte(event, lo, hi);
      if (step === 0) return;
      const bytes = step * 8;
      if (bytes >= remaining) return;
      event += step;
      gpa += bytes;
      remaining -= bytes;
    }
  }

  /** The walk of scanItt over an ITT copied into `words` (entry e = words 2e, 2e + 1). */
  private walkIttWords(words: Uint32Array, entries: number): void {
    const out = this.out;
    const evId = out.evId;
    const evIntid = out.evIntid;
    const evIcid = out.evIcid;
    const collTarget = this.collTarget;
    const newLpi = this.newLpi;
    const lpis = this.state.lpis;
    const limit = this.devEvents;
    let k = out.events;
    let lastPage = -1;
    let event = 0;
    try {
      for (;;) {
        const lo = words[event * 2]!;
        const hi = words[event * 2 + 1]!;
        // pINTID bits 31:16 set: not an LPI of the 16-bit space (the error path decodes it in full);
        // else pINTID is lo's top half (small-integer arithmetic on the per-event path).
        const intid = (hi & 0xffff) !== 0 ? 0x10000 : lo >>> 16; // 0x10000: >= LPI_LIMIT, rejected below
        let step = 1; // pINTID 0: an invalid entry, look at the next slot
        if (intid !== 0) {
          const icid = InterruptTranslationEntry.icid(lo);
          step = InterruptTranslationEntry.next(hi);
          if (intid < LPI_BASE || intid >= LPI_LIMIT) this.iteError(Errno.EINVAL, event, 'pINTID', lo, hi);
          if (event + step >= limit) this.iteError(Errno.EINVAL, event, 'next', lo, hi);
          const target = collTarget[icid]!;
          if (target === ABSENT) this.iteError(Errno.EINVAL, event, 'ICID', lo, hi);
          // KVM check_event_id (event < 2^bits, ITE slot in guest memory) holds: the walk stays
          // inside the ITT and the slot was just read. Then the ITE is allocated (vgic_its_alloc_ite).
          if (event >>> EVENT_PAGE_SHIFT !== lastPage) {
            lastPage = event >>> EVENT_PAGE_SHIFT;
            this.takeEventPage(event);
          }
          const known = newLpi[intid]!;
          if (known === 0) {
            if (lpis.exists(intid)) {
              newLpi[intid] = LPI_EXISTS;
            } else {
              // vgic_add_lpi will read the property byte and, for a targeted LPI, the pending byte.
              this.checkLpiBytes(event, intid, target);
              newLpi[intid] = LPI_NEW;
            }
          }
          evId[k] = event;
          evIntid[k] = intid;
          evIcid[k] = icid;
          k++;
          if (step === 0) return;
        }
        event += step;
        if (event >= entries) return;
      }
    } finally {
      out.events = k;
    }
  }

  /** restore_ite for the entry of the window walk (one entry; same checks as walkIttWords). Returns the step. */
  private stageIte(event: number, lo: number, hi: number): number {
    const intid = InterruptTranslationEntry.intid(lo, hi);
    if (intid === 0) return 1;
    const icid = InterruptTranslationEntry.icid(lo);
    const step = InterruptTranslationEntry.next(hi);
    if (intid < LPI_BASE || intid >= LPI_LIMIT) this.iteError(Errno.EINVAL, event, 'pINTID', lo, hi);
    if (event + step >= this.devEvents) this.iteError(Errno.EINVAL, event, 'next', lo, hi);
    const target = this.collTarget[icid]!;
    if (target === ABSENT) this.iteError(Errno.EINVAL, event, 'ICID', lo, hi);
    const out = this.out;
    const prev = out.events > this.devFirst ? out.evId[out.events - 1]! >>> EVENT_PAGE_SHIFT : -1;
    if (event >>> EVENT_PAGE_SHIFT !== prev) this.takeEventPage(event);
    if (this.newLpi[intid] === 0) {
      if (this.state.lpis.exists(intid)) {
        this.newLpi[intid] = LPI_EXISTS;
      } else {
        this.checkLpiBytes(event, intid, target);
        this.newLpi[intid] = LPI_NEW;
      }
    }
    const k = out.events++;
    out.evId[k] = event;
    out.evIntid[k] = intid;
    out.evIcid[k] = icid;
    return step;
  }

  /** A new event page of the ITS's event storage for `event` (ENOMEM, as KVM's ITE allocation, once none is left). */
  private takeEventPage(event: number): void {
    if (++this.pagesTaken > this.pagesFree) {
      throw new TableError(Errno.ENOMEM, this.ittName, event, 'entry',
        `no memory for the ITE: the ITS's event storage (${this.pagesFree} free pages of ${EVENTS_PER_EVENT_PAGE} EventIDs) is exhausted`);
    }
  }

  private iteError(errno: number, event: number, field: string, lo: number, hi: number): never {
    const intid = InterruptTranslationEntry.intid(lo, hi);
    const detail =
      field === 'pINTID' ? `INTID ${intid} is not an LPI (${LPI_BASE}..${LPI_LIMIT - 1})`
      : field === 'next' ? `next ${InterruptTranslationEntry.next(hi)} leaves the ITT (${this.devEventBits} EventID bits)`
      : `collection ${InterruptTranslationEntry.icid(lo)} does not exist`;
    throw new TableError(errno, this.ittName, event, field, `${detail} (ITE ${entryHex(lo, hi)})`);
  }

  /** The guest bytes vgic_add_lpi touches for a new LPI must be in guest memory (else -EFAULT, as KVM). */
  private checkLpiBytes(event: number, intid: number, target: number): void {
    const prop = this.propBase + intid - LPI_BASE;
    if (!this.memory.contains(prop, 1)) {
      throw new TableError(Errno.EFAULT, this.ittName, event, 'pINTID',
        `property byte of LPI ${intid} at GPA ${hex(prop)} is outside guest memory`);
    }
    if (target >= 0) {
      const pend = this.pendBase[target]! + (intid >>> 3);
      if (!this.memory.contains(pend, 1)) {
        throw new TableError(Errno.EFAULT, this.ittName, event, 'pINTID',
          `pending byte of LPI ${intid} on vCPU ${target} at GPA ${hex(pend)} is outside guest memory`);
      }
    }
  }

}

/** Results of the LPI walk: newLpi[intid] (0: not seen yet). */
const LPI_NEW = 1;
const LPI_EXISTS = 2;
const EVENT_PAGE_SHIFT = Math.log2(EVENTS_PER_EVENT_PAGE);
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** One ITT (at most 2^16 entries of 8 bytes), read in one block; shared by every restore. */
let ittBytes: Uint8Array | null = null;
let ittWordsView: Uint32Array | null = null;
function ittWords(): Uint32Array {
  if (ittWordsView === null) {
    ittBytes = new Uint8Array(0x10000 * 8);
    ittWordsView = new Uint32Array(ittBytes.buffer);
  }
  return ittWordsView;
}

/** Staging storage, reused by every restore (restore is synchronous and not reentrant). */
interface StagingScratch {
  readonly out: RestoredTables;
  readonly collTarget: Int32Array;
  readonly newLpi: Uint8Array;
}
let scratch: StagingScratch | null = null;

export interface RestoreSummary {
  collections: number;
  devices: number;
  events: number;
}

/**
 * Restores the collection table, then the device table and ITTs, into `state`. Throws
 * TableError (state unchanged). On success, `onRestored` sees everything that was created
 * (only during the call) and the counts are returned.
 */
export function restoreTables(state: ItsTableState, onRestored?: (r: RestoredTables) => void): RestoreSummary {
  const memory = state.memory;
  const deviceTable = decodeBaser(state.baserDevice);
  const collectionTable = decodeBaser(state.baserCollection);
  scratch ??= { out: new RestoredTables(), collTarget: new Int32Array(0x10000), newLpi: new Uint8Array(LPI_LIMIT) };
  const stager = new Stager(state, memory, deviceTable, collectionTable, scratch);
  if (collectionTable.valid) stager.stageCollections();
  if (deviceTable.valid) stager.stageDevices();
  const r = stager.out;
  state.reserveEventStorage(r.devices, stager.eventPages);
  applyStaged(state, r);
  onRestored?.(r);
  const summary = { collections: r.collections, devices: r.devices, events: r.events };
  r.clear();
  return summary;
}

function applyStaged(state: ItsTableState, r: RestoredTables): void {
  for (let i = 0; i < r.collIcid.length; i++) {
    const target = r.collTarget.data[i]!;
    state.addCollection(r.collIcid.data[i]!, target === CTE_TARGET_NOT_MAPPED ? COLLECTION_NOT_MAPPED : target);
  }
  for (let d = 0; d < r.devId.length; d++) {
    const devid = r.devId.data[d]!;
    state.addDevice(devid, r.devItt.data[d]!, r.devBits.data[d]!);
    const first = r.devFirstEvent.data[d]!;
    const count = r.eventsEnd(d) - first;
    if (count === 0) continue;
    const why = state.addEvents(devid, count, r.evId.subarray(first), r.evIntid.subarray(first), r.evIcid.subarray(first));
    if (why !== ADD_EVENTS_OK) {
      // Every guest address the LPI creation touches and the event storage were checked above,
      // so this is not expected; fail as KVM does after a failed restore: free everything of this ITS.
      state.clearTranslations();
      const errno = why === ADD_EVENTS_ENOMEM ? Errno.ENOMEM : why === ADD_EVENTS_EFAULT ? Errno.EFAULT : Errno.EINVAL;
      throw new TableError(errno, ittTableName(devid), r.evId[first]!, 'pINTID',
        `creating the ITEs of device ${hex(devid)} failed (${ADD_EVENTS_REASONS[why] ?? why}); the ITS was cleared`);
    }
  }
}

const ADD_EVENTS_REASONS: Record<number, string> = {
  [ADD_EVENTS_EXISTS]: 'an ITE exists',
  [ADD_EVENTS_ENOMEM]: 'event storage exhausted',
  [ADD_EVENTS_EFAULT]: 'LPI creation faulted',
  [ADD_EVENTS_INVALID]: 'invalid event',
};
