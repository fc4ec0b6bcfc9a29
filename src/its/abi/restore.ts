/**
 * ITS_RESTORE_TABLES for table ABI rev 0 (kvm-its-abi.md 3.8), reading HOSTILE data.
 *
 * Three phases, so that a rejected image leaves the ITS exactly as it was:
 * 1. stage: walk the collection table, then the device table (flat or two-level) and each
 *    ITT, exactly in KVM's order, validating every entry and recording it in plain typed
 *    arrays: ITEs already in the ITS's event-page format, plus the number of ITEs per LPI and
 *    per collection. Nothing in the ITS or the LPI system changes, nothing is written to
 *    guest RAM. An ITT inside one backing view of guest memory is read in place.
 * 2. check what apply will touch: the LPI property byte and (for a targeted LPI) the pending
 *    byte of every LPI the restore would create, at the point of the walk where KVM would
 *    read them, so the errno and its order match KVM's.
 *    Also there: the ITS's event storage must hold the staged ITEs (else -ENOMEM, as KVM's ITE
 *    allocation failing).
 * 3. apply through the ItsTableState mutators: collections, devices, then one importEvents
 *    that takes each LPI's references at once (creating the LPI, consuming its pending bit,
 *    with its first ITE's target: the state KVM's per-ITE vgic_add_lpi calls leave) and
 *    copies the staged pages in, or, in an ITS that never allocated an event page, keeps the
 *    staging buffer as its event storage (RestoredTables.takePageWords).
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
import { LPI_BASE, MAX_LPI_INTID_BITS, NO_VCPU } from '../../redist/types.js';
import { Errno } from '../../util/errno.js';
import {
  ADD_EVENTS_EFAULT, ADD_EVENTS_ENOMEM, ADD_EVENTS_EXISTS, ADD_EVENTS_INVALID, ADD_EVENTS_OK, COLLECTION_NOT_MAPPED,
  EVENTS_PER_EVENT_PAGE, type ItsTableState, type StagedEvents,
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
/** NO_VCPU too: a staged LPI target is a collection's target as is (first ITE wins). */
const NOT_MAPPED = NO_VCPU;
/** Level-1 entries that can hold 16-bit DeviceIDs: 65536 / 8192. */
const MAX_L1_ENTRIES = 0x10000 / L2_ENTRIES;

// The fixed-size arrays of the one stager (restore is synchronous and not reentrant), as
// module constants: V8 then compiles the walk with their address and length as constants,
// where for arrays read from object fields it reloads both on every access (measured: the
// walk of 1M ITEs 1.5 ms faster, of about 5).
/** Per INTID: staged ITEs naming it; the vCPU its first ITE's collection targets. */
const STAGED_LPI_REFS = new Uint32Array(LPI_LIMIT);
const STAGED_LPI_TARGET = new Int32Array(LPI_LIMIT);
/** Per ICID: staged ITEs naming it. */
const STAGED_ICID_REFS = new Uint32Array(0x10000);
/** Per ICID: the staged or existing collection's target (a vCPU or NOT_MAPPED), or ABSENT. */
const STAGED_COLL_TARGET = new Int32Array(0x10000);
/** The INTIDs and ICIDs with staged ITEs, ascending (finish()). */
const STAGED_LPI_IDS = new Uint32Array(LPI_LIMIT);
const STAGED_ICID_IDS = new Uint32Array(0x10000);

export const TABLE_COLLECTIONS = 'collection table';
export const TABLE_DEVICES = 'device table';
export const TABLE_DEVICES_L1 = 'device table L1';
export function ittTableName(devid: number): string {
  return `ITT of device ${hex(devid)}`;
}

/**
 * What a successful restore created, in table order (the saver records it as its image), and
 * the staged ITEs in the ITS's own event-page format, so that applying them is a copy of
 * pages plus one reference count per LPI (ItsTableState.importEvents), not work per event.
 * One instance (the stager's) is reused by every restore: it is only valid inside the
 * onRestored callback. (Its per-INTID and per-ICID arrays are module constants: one instance only.)
 */
export class RestoredTables implements StagedEvents {
  readonly collIcid = new GrowableU32(16);
  /** vCPU id or CTE_TARGET_NOT_MAPPED. */
  readonly collTarget = new GrowableU32(16);
  readonly devId = new GrowableU32(16);
  readonly devItt = new GrowableF64(16);
  readonly devBits = new GrowableU32(16);
  readonly devDteAddr = new GrowableF64(16);
  /** Index of each device's first staged page; its pages end at the next device's first. */
  readonly devFirstPage = new GrowableU32(16);
  /**
   * Staged event pages: EVENTS_PER_EVENT_PAGE words each (INTID | ICID << 16, 0 = no ITE),
   * the page's EventID >> 8 and its ITE count. 4 bytes per EventID slot: staging a million
   * events is bound by the memory it touches.
   */
  pageWords = new Uint32Array(16 * EVENTS_PER_EVENT_PAGE);
  pageSlot = new Uint8Array(16);
  pageLive = new Uint16Array(16);
  pageCount = 0;
  eventCount = 0;
  /** Pages of pageWords that an earlier restore may have written; the words beyond are zero. */
  private dirtyPages = 0;
  /** pageWords was handed to the ITS (takePageWords): the next restore stages into a new buffer. */
  private pageWordsTaken = false;
  /** Per INTID: staged ITEs naming it, and the vCPU its first ITE's collection targets (NO_VCPU: none). */
  readonly lpiRefs = STAGED_LPI_REFS;
  readonly lpiTarget = STAGED_LPI_TARGET;
  private lpiIdCount = 0;
  /** Per ICID: staged ITEs naming it. */
  readonly icidRefs = STAGED_ICID_REFS;
  private icidIdCount = 0;

  get collections(): number {
    return this.collIcid.length;
  }
  get devices(): number {
    return this.devId.length;
  }
  /** Total staged ITEs. */
  get events(): number {
    return this.eventCount;
  }

  // ---- StagedEvents ----
  get deviceCount(): number {
    return this.devId.length;
  }
  get deviceIds(): Uint32Array {
    return this.devId.data;
  }
  get deviceFirstPage(): Uint32Array {
    return this.devFirstPage.data;
  }
  get lpiCount(): number {
    return this.lpiIdCount;
  }
  get lpiIds(): Uint32Array {
    return STAGED_LPI_IDS;
  }
  get icidCount(): number {
    return this.icidIdCount;
  }
  get icidIds(): Uint32Array {
    return STAGED_ICID_IDS;
  }

  /** End (exclusive) of device d's pages. */
  pagesEnd(d: number): number {
    return d + 1 < this.devId.length ? this.devFirstPage.data[d + 1]! : this.pageCount;
  }

  /**
   * Once staging is done: lists the INTIDs and ICIDs with staged ITEs and counts the ITEs
   * (scans of 2^16 counters and of the pages, instead of work on the per-event path).
   */
  finish(): void {
    const refs = STAGED_LPI_REFS;
    const lpiIds = STAGED_LPI_IDS;
    let n = 0;
    for (let intid = LPI_BASE; intid < LPI_LIMIT; intid++) if (refs[intid] !== 0) lpiIds[n++] = intid;
    this.lpiIdCount = n;
    const icids = STAGED_ICID_REFS;
    const icidIds = STAGED_ICID_IDS;
    n = 0;
    for (let icid = 0; icid < icids.length; icid++) if (icids[icid] !== 0) icidIds[n++] = icid;
    this.icidIdCount = n;
    let events = 0;
    for (let p = 0; p < this.pageCount; p++) events += this.pageLive[p]!;
    this.eventCount = events;
  }


  /**
   * A new page for EventID page `slot`; returns its index. Its words are NOT cleared (they may
   * hold an earlier restore's): the stager writes or zeroes every slot in order as it walks
   * (Stager.curFill), so each word is written once instead of cleared and then written.
   */
  addPage(slot: number): number {
    const p = this.pageCount;
    if (p === this.pageSlot.length) this.growPages(p * 2);
    this.pageCount = p + 1;
    this.pageSlot[p] = slot;
    this.pageLive[p] = 0;
    return p;
  }

  /**
   * Room for `pages` pages in all (begin(): a bound of what the restore can stage), so that
   * staging never grows the buffer: a new buffer is allocated at that size when the current
   * one is smaller or was handed to the ITS (each growth would copy and, in a fresh process,
   * fault in new memory: ~11 us per 4 KiB page measured on the CI-sized VM).
   */
  reserve(pages: number): void {
    if (!this.pageWordsTaken && pages <= this.pageSlot.length && pages * EVENTS_PER_EVENT_PAGE <= this.pageWords.length) return;
    const size = Math.max(16, pages);
    this.pageWords = new Uint32Array(size * EVENTS_PER_EVENT_PAGE);
    this.pageSlot = new Uint8Array(size);
    this.pageLive = new Uint16Array(size);
    this.dirtyPages = 0;
    this.pageWordsTaken = false;
  }

  /**
   * StagedEvents.takePageWords: the ITS keeps the staged pages as its event storage. The
   * words beyond the staged pages are zeroed first (a failed restore may have left some).
   * The buffer stays readable here until clear() (onRestored reads it).
   */
  takePageWords(): Uint32Array {
    if (this.dirtyPages > this.pageCount) {
      this.pageWords.fill(0, this.pageCount * EVENTS_PER_EVENT_PAGE, this.dirtyPages * EVENTS_PER_EVENT_PAGE);
    }
    this.pageWordsTaken = true;
    return this.pageWords;
  }

  /** Capacity for `pages` more pages (at most one ITT's worth at a time: 256). */
  reservePages(pages: number): void {
    const need = this.pageCount + pages;
    if (need <= this.pageSlot.length) return;
    let size = this.pageSlot.length * 2;
    while (size < need) size *= 2;
    this.growPages(size);
  }

  private growPages(size: number): void {
    const n = this.pageCount;
    const words = new Uint32Array(size * EVENTS_PER_EVENT_PAGE);
    words.set(this.pageWords.subarray(0, n * EVENTS_PER_EVENT_PAGE));
    this.pageWords = words;
    const slot = new Uint8Array(size);
    slot.set(this.pageSlot.subarray(0, n));
    this.pageSlot = slot;
    const live = new Uint16Array(size);
    live.set(this.pageLive.subarray(0, n));
    this.pageLive = live;
    this.dirtyPages = Math.min(this.dirtyPages, n);
  }

  clear(): void {
    for (const a of [this.collIcid, this.collTarget, this.devId, this.devBits, this.devFirstPage]) a.clear();
    this.devItt.length = 0;
    this.devDteAddr.length = 0;
    this.lpiRefs.fill(0); // (a failed restore may have staged references that were never listed)
    this.icidRefs.fill(0);
    this.lpiIdCount = 0;
    this.icidIdCount = 0;
    if (this.pageWordsTaken) {
      // The ITS owns the buffer now: drop it (the next restore allocates one of its size).
      this.pageWords = EMPTY_PAGE_WORDS;
      this.dirtyPages = 0;
    } else {
      this.dirtyPages = Math.max(this.dirtyPages, this.pageCount);
    }
    this.pageCount = 0;
    this.eventCount = 0;
  }
}

/** Walks the tables and stages everything; throws TableError; changes nothing. */
class Stager {
  readonly out = new RestoredTables();
  /** ICID -> staged or pre-existing collection target (vCPU, NOT_MAPPED) or ABSENT. */
  private readonly collTarget = STAGED_COLL_TARGET;
  private readonly tableReader = new TableReader();
  private readonly boundScratch = new Uint32Array(2);
  private readonly ittReader = new TableReader();
  // The restore in progress (begin()). One Stager serves every restore: optimised code that
  // inlined its closures stays valid from one restore to the next (a closure per restore
  // would be a new object each time, and code embedding the dead one is thrown away).
  private state!: ItsTableState;
  private memory!: GuestMemory;
  private deviceTable!: TableGeometry;
  private collectionTable!: TableGeometry;
  private nrVcpus = 0;
  private propBase = 0;
  private pendBase = new Float64Array(0);
  /** The whole property table / a vCPU's whole pending table (LPI part) is in guest memory: no per-LPI check needed. */
  private propAllIn = false;
  private pendAllIn = new Uint8Array(0);
  /** All of them: no new LPI needs a check (the per-event path then skips the call). */
  private lpiBytesAllIn = false;

  // Current device of the ITT walk (fields instead of a closure per device).
  private devEventBits = 0;
  /** 2^devEventBits, precomputed (the ** operator is slow on the per-entry path). */
  private devEvents = 0;
  /** DeviceID of the ITT being walked (its table name is built only for an error message). */
  private devId = 0;
  private get ittName(): string {
    return ittTableName(this.devId);
  }
  /**
   * The staged page being filled (-1: none yet for this device), its EventID page, its ITE
   * count, and how many of its slots from the first are written or zeroed (the walk only moves
   * forward: a skipped slot is zeroed when a later one is written or the page is closed).
   */
  private curPage = -1;
  private curSlot = -1;
  private curLive = 0;
  private curFill = 0;
  /** Event pages the ITS can still allocate (freeEventPages) and pages the staged ITEs need. */
  private pagesFree = 0;
  private pagesTaken = 0;
  private readonly visitDte = (id: number, lo: number, hi: number): number => this.restoreDte(id, lo, hi);

  /** Starts a restore of `state` (drops what the previous one staged). */
  begin(state: ItsTableState, memory: GuestMemory, deviceTable: TableGeometry, collectionTable: TableGeometry): void {
    this.state = state;
    this.memory = memory;
    this.deviceTable = deviceTable;
    this.collectionTable = collectionTable;
    this.out.clear();
    this.collTarget.fill(ABSENT);
    this.tableReader.reset(memory);
    this.ittReader.reset(memory);
    const lpis = state.lpis;
    this.nrVcpus = lpis.nrVcpus;
    // GICR_PROPBASER PA: bits 51:12; GICR_PENDBASER PA: bits 51:16.
    this.propBase = Number(lpis.propbaser & 0x000ffffffffff000n);
    this.pendBase = new Float64Array(this.nrVcpus);
    for (let v = 0; v < this.nrVcpus; v++) this.pendBase[v] = Number(lpis.pendbaser(v) & 0x000fffffffff0000n);
    this.propAllIn = memory.contains(this.propBase, LPI_LIMIT - LPI_BASE);
    this.pendAllIn = new Uint8Array(this.nrVcpus);
    for (let v = 0; v < this.nrVcpus; v++) {
      this.pendAllIn[v] = memory.contains(this.pendBase[v]! + LPI_BASE / 8, (LPI_LIMIT - LPI_BASE) / 8) ? 1 : 0;
    }
    this.lpiBytesAllIn = this.propAllIn && this.pendAllIn.every((b) => b === 1);
    state.forEachCollection((icid, target) => {
      this.collTarget[icid] = target < 0 ? NOT_MAPPED : target;
    });
    this.pagesFree = state.freeEventPages();
    this.pagesTaken = 0;
    this.out.reserve(Math.min(this.pagesFree, this.pagesBound()));
  }

  /**
   * A bound of the event pages this restore can stage, read before the walk to size the
   * staging buffer once: ceil(2^Size / 256) for each valid DTE in the slots the walk can
   * reach (at most 2^16). A capacity hint only: nothing is checked or kept, and a wrong guess
   * costs a buffer growth, not a result.
   */
  private pagesBound(): number {
    const t = this.deviceTable;
    if (!t.valid) return 0;
    if (!t.indirect) return this.pagesOfDtes(t.base, Math.min(t.slots, 0x10000));
    let pages = 0;
    const e = this.boundScratch;
    for (let i = 0; i < Math.min(t.slots, MAX_L1_ENTRIES); i++) {
      const gpa = t.base + i * 8;
      if (!this.memory.contains(gpa, 8)) break;
      this.memory.readU64Into(gpa, e, 0);
      if (Level1Entry.valid(e[1]!)) pages += this.pagesOfDtes(Level1Entry.l2Addr(e[0]!, e[1]!), L2_ENTRIES);
    }
    return pages;
  }

  /** pagesBound's count over `slots` DTEs from `gpa` (the ones in guest memory). */
  private pagesOfDtes(gpa: number, slots: number): number {
    const memory = this.memory;
    const window = memory.wordWindow(gpa, slots * 8);
    const e = this.boundScratch;
    let pages = 0;
    for (let i = 0; i < slots; i++) {
      let lo: number;
      let hi: number;
      if (window !== null) {
        lo = window.words[window.index + i * 2]!;
        hi = window.words[window.index + i * 2 + 1]!;
      } else {
        if (!memory.contains(gpa + i * 8, 8)) break;
        memory.readU64Into(gpa + i * 8, e, 0);
        lo = e[0]!;
        hi = e[1]!;
      }
      if (!DeviceTableEntry.valid(hi)) continue;
      const bits = DeviceTableEntry.eventIdBits(lo);
      if (bits <= MAX_DTE_EVENTID_BITS) pages += Math.ceil((1 << bits) / EVENTS_PER_EVENT_PAGE);
    }
    return pages;
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
    out.devFirstPage.push(out.pageCount);
    this.devEventBits = bits;
    this.devEvents = 1 << bits;
    this.devId = id;
    this.curPage = -1;
    this.curSlot = -1;
    this.curLive = 0;
    this.curFill = 0;
    out.reservePages(this.devEvents / EVENTS_PER_EVENT_PAGE);
    this.scanItt(itt, this.devEvents * 8);
    this.closePage();
    return next;
  }

  /**
   * scan_its_table over one ITT with restore_ite inlined (walkItt). An ITT inside one backing
   * view of guest memory is walked in place (each word read once: the guest may change it);
   * one that straddles two views is copied first; otherwise it is read entry by entry through
   * the window reader, so that a fault happens exactly where KVM's would.
   */
  private scanItt(itt: number, len: number): void {
    const entries = len >>> 3;
    const window = this.memory.wordWindow(itt, len);
    if (window !== null) {
      this.walkItt(window.words, window.index, entries);
      return;
    }
    if (HOST_LITTLE_ENDIAN && this.memory.contains(itt, len)) {
      this.memory.readBytes(itt, ittCopy(), 0, len);
      this.walkItt(ittCopyWords!, 0, entries);
      return;
    }
    const reader = this.ittReader;
    reader.reset(this.memory);
    const view = reader.view;
    let event = 0;
    while (event >= 0 && event < entries) {
      const gpa = itt + event * 8;
      const off = reader.at(gpa, len - event * 8);
      if (off < 0) throw new TableError(Errno.EFAULT, this.ittName, event, 'entry', `GPA ${hex(gpa)} is outside guest memory`);
      event = this.stageIte(event, view.getUint32(off, true), view.getUint32(off + 4, true));
    }
  }

  /**
   * The walk of one ITT held in `words` (entry e = words[base + 2e] low, words[base + 2e + 1]
   * high), `entries` long. The general path is stageIte, one entry at a time (it also opens
   * each staged page). The fast path continues inside the current page over the entries that
   * pass every check trivially: valid ITEs with next = 1 (what a save writes for consecutive
   * EventIDs) whose collection exists. It walks them at a fixed stride, so the loads of an
   * entry never wait for the previous entry's `next`, with everything in locals and no call in
   * the loop (a call, even on a path never taken, makes V8 reload every array on every
   * iteration: measured 1.4x slower). Taken only when every new LPI's guest bytes are known
   * to be in memory. Every word is read once.
   */
  private walkItt(words: Uint32Array, index: number, entries: number): void {
    // (an int32 for V8: an index computed by division is a float, and so would be every
    // index derived from it in the loop)
    const base = index | 0;
    const out = this.out;
    // (the module constants themselves, not the fields that hold them: see STAGED_LPI_REFS)
    const collTarget = STAGED_COLL_TARGET;
    const lpiRefs = STAGED_LPI_REFS;
    const lpiTarget = STAGED_LPI_TARGET;
    const icidRefs = STAGED_ICID_REFS;
    // An entry below this with next = 1 stays inside the ITT.
    const denseEnd = this.lpiBytesAllIn ? Math.min(entries, this.devEvents - 1) : 0;
    // Module and imported constants as locals: each use of one in the loop would be a load
    // and an initialisation check.
    const lpiBase = LPI_BASE;
    const absent = ABSENT;
    const nextOne = ITE_HI_NEXT_ONE;
    const pageShift = EVENT_PAGE_SHIFT;
    const pageMask = EVENT_PAGE_MASK;
    const pageSize = EVENTS_PER_EVENT_PAGE;
    let event = 0;
    while (event < entries) {
      const slot = this.curSlot;
      if (event < denseEnd && event >>> pageShift === slot) {
        const pageStart = slot << pageShift;
        const runEnd = Math.min(denseEnd, pageStart + pageSize);
        const pageWords = out.pageWords;
        const pageBase = this.curPage * pageSize;
        this.fillTo(event - pageStart);
        let live = this.curLive;
        // Word index of the entry and of its staged slot, stepped with the event.
        let w = base + event * 2;
        let pw = pageBase + (event & pageMask);
        for (; event < runEnd; event++, w += 2, pw++) {
          const hi = words[w + 1]!;
          const lo = words[w]!;
          if (hi !== nextOne) break;
          const intid = lo >>> 16;
          const icid = lo & 0xffff;
          const target = collTarget[icid]!;
          if (intid < lpiBase || target === absent) break;
          const refs = lpiRefs[intid]!;
          if (refs === 0) lpiTarget[intid] = target; // a vCPU or NOT_MAPPED (= NO_VCPU)
          lpiRefs[intid] = refs + 1;
          icidRefs[icid]++;
          pageWords[pw] = (lo >>> 16) | (lo << 16); // INTID | ICID << 16
          live++;
        }
        this.curLive = live;
        this.curFill = event - pageStart;
        if (event === runEnd) continue; // end of the page or of the dense range: back to the top
      }
      event = this.stageIte(event, words[base + event * 2]!, words[base + event * 2 + 1]!);
      if (event < 0) return;
    }
  }

  /**
   * restore_ite for one entry, every check in KVM's order (3.8), staging a valid ITE into the
   * current page. Returns the next EventID to visit (possibly past the ITT: the walk ends), or
   * -1 when this ITE's next = 0 ended the ITT.
   */
  private stageIte(event: number, lo: number, hi: number): number {
    const intid = InterruptTranslationEntry.intid(lo, hi);
    if (intid === 0) return event + 1; // an invalid entry: look at the next slot
    const icid = InterruptTranslationEntry.icid(lo);
    const step = InterruptTranslationEntry.next(hi);
    if (intid < LPI_BASE || intid >= LPI_LIMIT) this.iteError(Errno.EINVAL, event, 'pINTID', lo, hi);
    if (event + step >= this.devEvents) this.iteError(Errno.EINVAL, event, 'next', lo, hi);
    const target = this.collTarget[icid]!;
    if (target === ABSENT) this.iteError(Errno.EINVAL, event, 'ICID', lo, hi);
    // KVM check_event_id (event < 2^bits, ITE slot in guest memory) holds: the walk stays
    // inside the ITT and the slot was just read. Then the ITE is allocated (vgic_its_alloc_ite).
    const out = this.out;
    const slot = event >>> EVENT_PAGE_SHIFT;
    if (slot !== this.curSlot) {
      this.closePage();
      this.curPage = this.openPage(event, slot);
      this.curSlot = slot;
    }
    this.fillTo(event & EVENT_PAGE_MASK);
    this.curFill = (event & EVENT_PAGE_MASK) + 1;
    const refs = out.lpiRefs[intid]!;
    if (refs === 0) {
      if (!this.lpiBytesAllIn) this.checkNewLpi(event, intid, target);
      out.lpiTarget[intid] = target;
    }
    out.lpiRefs[intid] = refs + 1;
    out.icidRefs[icid]++;
    out.pageWords[this.curPage * EVENTS_PER_EVENT_PAGE + (event & EVENT_PAGE_MASK)] = (intid | (icid << 16)) >>> 0;
    this.curLive++;
    return step === 0 ? -1 : event + step;
  }

  /**
   * An LPI this restore names for the first time, when not all LPI bytes are known to be in
   * guest memory: one that exists already just gains references; for a new one,
   * vgic_add_lpi will read its property byte and, for a targeted LPI, its pending byte.
   */
  private checkNewLpi(event: number, intid: number, target: number): void {
    if (!this.state.lpis.exists(intid)) this.checkLpiBytes(event, intid, target);
  }

  /** Zeroes the current page's slots from curFill up to `to` (exclusive), the ones the walk skipped. */
  private fillTo(to: number): void {
    if (to > this.curFill) {
      const pageBase = this.curPage * EVENTS_PER_EVENT_PAGE;
      this.out.pageWords.fill(0, pageBase + this.curFill, pageBase + to);
      this.curFill = to;
    }
  }

  /** Finishes the current page (if any): its ITE count, and its slots after the last written one zeroed. */
  private closePage(): void {
    if (this.curPage < 0) return;
    this.fillTo(EVENTS_PER_EVENT_PAGE);
    this.out.pageLive[this.curPage] = this.curLive;
  }

  /**
   * Opens a staged page for EventID page `slot` (the current one closed), taking a page of the
   * ITS's event storage (ENOMEM, as KVM's ITE allocation, once none is left).
   */
  private openPage(event: number, slot: number): number {
    this.curLive = 0;
    this.curFill = 0;
    if (++this.pagesTaken > this.pagesFree) {
      throw new TableError(Errno.ENOMEM, this.ittName, event, 'entry',
        `no memory for the ITE: the ITS's event storage (${this.pagesFree} free pages of ${EVENTS_PER_EVENT_PAGE} EventIDs) is exhausted`);
    }
    return this.out.addPage(slot);
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
    if (this.propAllIn && (target < 0 || this.pendAllIn[target] === 1)) return;
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

const EVENT_PAGE_SHIFT = 31 - Math.clz32(EVENTS_PER_EVENT_PAGE);
const EVENT_PAGE_MASK = EVENTS_PER_EVENT_PAGE - 1;
/** High word of a valid ITE with next = 1 and pINTID < 2^16. */
const ITE_HI_NEXT_ONE = InterruptTranslationEntry.hi(1, 0);
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const EMPTY_PAGE_WORDS = new Uint32Array(0);
/** One ITT (at most 2^16 entries of 8 bytes) copied in one block when it cannot be walked in place; shared by every restore. */
let ittCopyBytes: Uint8Array | null = null;
let ittCopyWords: Uint32Array | null = null;
function ittCopy(): Uint8Array {
  if (ittCopyBytes === null) {
    ittCopyBytes = new Uint8Array(0x10000 * 8);
    ittCopyWords = new Uint32Array(ittCopyBytes.buffer);
  }
  return ittCopyBytes;
}

/** The stager, reused by every restore (restore is synchronous and not reentrant). */
let stager: Stager | null = null;

export interface RestoreSummary {
  collections: number;
  devices: number;
  events: number;
  /** Milliseconds spent walking and validating the tables (staging), applying the staged state, and in onRestored (the saver's image). */
  stageMs: number;
  applyMs: number;
  imageMs: number;
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
  stager ??= new Stager();
  const t0 = performance.now();
  stager.begin(state, memory, deviceTable, collectionTable);
  if (collectionTable.valid) stager.stageCollections();
  if (deviceTable.valid) stager.stageDevices();
  const r = stager.out;
  r.finish();
  const t1 = performance.now();
  applyStaged(state, r);
  const t2 = performance.now();
  onRestored?.(r);
  const t3 = performance.now();
  const summary = {
    collections: r.collections, devices: r.devices, events: r.events, stageMs: t1 - t0, applyMs: t2 - t1, imageMs: t3 - t2,
  };
  r.clear();
  return summary;
}

function applyStaged(state: ItsTableState, r: RestoredTables): void {
  for (let i = 0; i < r.collIcid.length; i++) {
    const target = r.collTarget.data[i]!;
    state.addCollection(r.collIcid.data[i]!, target === CTE_TARGET_NOT_MAPPED ? COLLECTION_NOT_MAPPED : target);
  }
  for (let d = 0; d < r.devId.length; d++) state.addDevice(r.devId.data[d]!, r.devItt.data[d]!, r.devBits.data[d]!);
  const why = state.importEvents(r);
  if (why !== ADD_EVENTS_OK) {
    // Every guest address the LPI creation touches and the event storage were checked above,
    // so this is not expected; fail as KVM does after a failed restore: free everything of this ITS.
    state.clearTranslations();
    const errno = why === ADD_EVENTS_ENOMEM ? Errno.ENOMEM : why === ADD_EVENTS_EFAULT ? Errno.EFAULT : Errno.EINVAL;
    const first = r.devId.length > 0 ? r.devId.data[0]! : 0;
    throw new TableError(errno, TABLE_DEVICES, first, 'ITT',
      `creating the ${r.events} staged ITEs failed (${ADD_EVENTS_REASONS[why] ?? why}); the ITS was cleared`);
  }
}

const ADD_EVENTS_REASONS: Record<number, string> = {
  [ADD_EVENTS_EXISTS]: 'an ITE exists',
  [ADD_EVENTS_ENOMEM]: 'event storage exhausted',
  [ADD_EVENTS_EFAULT]: 'LPI creation faulted',
  [ADD_EVENTS_INVALID]: 'invalid event',
};
