/**
 * Translation state of one ITS (KVM keeps it in kernel lists; we keep it in typed arrays):
 * DeviceID -> device (ITT address, EventID bits), (DeviceID, EventID) -> ITE (LPI INTID,
 * ICID), ICID -> collection (target vCPU or not mapped) in creation order.
 *
 * Lookups are O(1) without allocation: a device owns a 256-entry directory (allocated when
 * its first event is mapped) whose entries point at pages of 256 events in a shared pool.
 * A MAPD with 16 EventID bits therefore costs nothing until events are mapped, and the
 * total number of event pages is capped (`maxEventPages`).
 *
 * An ITE is one u32: INTID in bits 15:0 (KVM's LPI space is 16 bits; 0 = no ITE) and ICID
 * in bits 31:16, so an MSI touches one word. ITEs whose collection was freed ("orphans",
 * after MAPC V=0 with live ITEs: UNPREDICTABLE, rare) are flagged in a side bitmap that the
 * hot path consults only while orphans exist.
 *
 * Every ITE holds one reference on its LPI (LpiSystem.acquire/release); the LPI's target
 * lives in the LpiSystem. Every change is reported to the change listener.
 */
import { LPI_BASE, MAX_LPI_INTID_BITS, NO_VCPU, type LpiSystem } from '../redist/types.js';
import {
  ADD_EVENTS_EFAULT, ADD_EVENTS_ENOMEM, ADD_EVENTS_EXISTS, ADD_EVENTS_INVALID, ADD_EVENTS_OK, COLLECTION_NOT_MAPPED,
  EVENTS_PER_EVENT_PAGE, ITE_NO_COLLECTION, type ItsChangeListener, type StagedEvents,
} from './table-state.js';

/** EventIDs per event page. */
export const EVENTS_PER_PAGE = EVENTS_PER_EVENT_PAGE;
const PAGE_SHIFT = 8;
const PAGE_MASK = EVENTS_PER_PAGE - 1;
/** Directory entries per device: 2^16 EventIDs / 256 per page. */
const DIR_ENTRIES = 256;
const DIR_SHIFT = 8;
export const MAX_DEVICE_IDS = 0x10000;
export const MAX_COLLECTION_IDS = 0x10000;
/** ICID reported for an ITE whose collection was freed (MAPC V=0, BASER1 Valid=0). */
export const ICID_NONE = ITE_NO_COLLECTION;
/** collectionTarget() of an ICID with no collection. */
export const COLLECTION_ABSENT = -2;
/** Default cap on event pages: 16384 x 256 = 4M events (16 MiB of ITEs). */
export const DEFAULT_MAX_EVENT_PAGES = 16384;

const INTID_LIMIT = 2 ** MAX_LPI_INTID_BITS;
const ITE_INTID_MASK = 0xffff;
const ITE_ICID_SHIFT = 16;
/** devMeta: EventID bits in 4:0, directory index + 1 above. */
const META_BITS_MASK = 0x1f;
const META_DIR_SHIFT = 5;

const INITIAL_PAGES = 64;
const INITIAL_DIRS = 16;

/** Results of lookup() when no ITE is found. */
export const LOOKUP_UNMAPPED_DEVICE = -1;
export const LOOKUP_EVENT_OUT_OF_RANGE = -2;
export const LOOKUP_UNMAPPED_EVENT = -3;

/** Results of addEvent() and addEvents() (the ItsTableState ADD_EVENTS_* codes). */
export const ADD_OK = ADD_EVENTS_OK;
export const ADD_EXISTS = ADD_EVENTS_EXISTS;
export const ADD_ENOMEM = ADD_EVENTS_ENOMEM;
export const ADD_EFAULT = ADD_EVENTS_EFAULT;
export const ADD_INVALID = ADD_EVENTS_INVALID;

export function isDeviceId(devid: number): boolean {
  return devid >>> 0 === devid && devid < MAX_DEVICE_IDS;
}

export class TranslationState {
  lpis: LpiSystem;
  listener: ItsChangeListener | null = null;

  // ---- Devices, indexed by DeviceID ----
  /** 0 = no device; else EventID bits (1..16) | (directory index + 1) << 5 (0 there: no directory yet). */
  readonly devMeta = new Int32Array(MAX_DEVICE_IDS);
  readonly devItt = new Float64Array(MAX_DEVICE_IDS);
  /** Bit per mapped DeviceID, for ordered iteration without scanning 64K entries. */
  private readonly devBitmap = new Uint32Array(MAX_DEVICE_IDS / 32);
  deviceCount = 0;
  eventCount = 0;

  // ---- Directory pool: DIR_ENTRIES page indices (-1 = none) per block ----
  dirPool: Int32Array;
  private dirLive: Uint16Array;
  private dirFree: Int32Array;
  private dirFreeTop = 0;
  private dirHigh = 0;

  // ---- Event page pool ----
  /** One word per event slot: INTID | ICID << 16; 0 = no ITE. */
  ites: Uint32Array;
  /** Bit per event slot: the ITE's collection was freed. */
  private orphanBits: Uint32Array;
  /** Number of orphaned ITEs (the MSI path looks at orphanBits only when non-zero). */
  orphanCount = 0;
  private pageLive: Uint16Array;
  private pageFree: Int32Array;
  private pageFreeTop = 0;
  private pageHigh = 0;
  readonly maxEventPages: number;
  pagesInUse = 0;

  // ---- Collections, indexed by ICID (index ICID_NONE is never a collection) ----
  /** Target vCPU, COLLECTION_NOT_MAPPED, or COLLECTION_ABSENT. */
  readonly collTarget = new Int32Array(MAX_COLLECTION_IDS + 1).fill(COLLECTION_ABSENT);
  /** Number of ITEs naming each ICID; [ICID_NONE] counts orphans (lets MAPC skip the ITE walk). */
  private readonly collItes = new Int32Array(MAX_COLLECTION_IDS + 1);
  /** Creation-order list (KVM's collection_list): next/prev ICID, -1 = none. */
  private readonly collNext = new Int32Array(MAX_COLLECTION_IDS).fill(-1);
  private readonly collPrev = new Int32Array(MAX_COLLECTION_IDS).fill(-1);
  private collHead = -1;
  private collTail = -1;
  collectionCount = 0;

  constructor(lpis: LpiSystem, maxEventPages = DEFAULT_MAX_EVENT_PAGES) {
    this.lpis = lpis;
    this.maxEventPages = Math.max(1, Math.floor(maxEventPages));
    const pages = Math.min(INITIAL_PAGES, this.maxEventPages);
    this.ites = new Uint32Array(pages * EVENTS_PER_PAGE);
    this.orphanBits = new Uint32Array((pages * EVENTS_PER_PAGE) / 32);
    this.pageLive = new Uint16Array(pages);
    this.pageFree = new Int32Array(pages);
    const dirs = Math.min(INITIAL_DIRS, this.maxDirs());
    this.dirPool = new Int32Array(dirs * DIR_ENTRIES).fill(-1);
    this.dirLive = new Uint16Array(dirs);
    this.dirFree = new Int32Array(dirs);
  }

  // =====================================================================================
  // Lookup (hot path: no allocation)
  // =====================================================================================

  /** Event slot of (devid, eventid) (an index into `ites`), or a negative LOOKUP_* reason. */
  lookup(devid: number, eventid: number): number {
    if (devid >>> 0 !== devid || devid >= MAX_DEVICE_IDS) return LOOKUP_UNMAPPED_DEVICE;
    const meta = this.devMeta[devid]!;
    if (meta === 0) return LOOKUP_UNMAPPED_DEVICE;
    if (eventid >>> 0 !== eventid || eventid >>> (meta & META_BITS_MASK) !== 0) return LOOKUP_EVENT_OUT_OF_RANGE;
    const dir = (meta >>> META_DIR_SHIFT) - 1;
    if (dir < 0) return LOOKUP_UNMAPPED_EVENT;
    const page = this.dirPool[(dir << DIR_SHIFT) | (eventid >>> PAGE_SHIFT)]!;
    if (page < 0) return LOOKUP_UNMAPPED_EVENT;
    const slot = (page << PAGE_SHIFT) | (eventid & PAGE_MASK);
    return this.ites[slot] === 0 ? LOOKUP_UNMAPPED_EVENT : slot;
  }

  /** INTID of (devid, eventid), 0 when not mapped. */
  translate(devid: number, eventid: number): number {
    if (devid >>> 0 !== devid || devid >= MAX_DEVICE_IDS) return 0;
    const meta = this.devMeta[devid]!;
    if (eventid >>> 0 !== eventid || eventid >>> (meta & META_BITS_MASK) !== 0) return 0; // also meta 0: shift by 0
    const dir = (meta >>> META_DIR_SHIFT) - 1;
    if (dir < 0) return 0;
    const page = this.dirPool[(dir << DIR_SHIFT) | (eventid >>> PAGE_SHIFT)]!;
    if (page < 0) return 0;
    return this.ites[(page << PAGE_SHIFT) | (eventid & PAGE_MASK)]! & ITE_INTID_MASK;
  }

  /** LPI INTID of the ITE at slot. */
  intidAt(slot: number): number {
    return this.ites[slot]! & ITE_INTID_MASK;
  }

  /** ICID of the ITE at slot (ICID_NONE when its collection was freed). */
  icidAt(slot: number): number {
    if (this.orphanCount !== 0 && this.isOrphan(slot)) return ICID_NONE;
    return this.ites[slot]! >>> ITE_ICID_SHIFT;
  }

  /** Target of the ITE's collection: a vCPU, or negative (not mapped, freed). */
  iteCollectionTarget(slot: number): number {
    if (this.orphanCount !== 0 && this.isOrphan(slot)) return COLLECTION_ABSENT;
    return this.collTarget[this.ites[slot]! >>> ITE_ICID_SHIFT]!;
  }

  isOrphan(slot: number): boolean {
    return (this.orphanBits[slot >>> 5]! & (1 << (slot & 31))) !== 0;
  }

  // =====================================================================================
  // Devices
  // =====================================================================================

  isDeviceMapped(devid: number): boolean {
    return isDeviceId(devid) && this.devMeta[devid] !== 0;
  }

  /** EventID bits of a mapped device (0 when not mapped). */
  deviceEventIdBits(devid: number): number {
    return isDeviceId(devid) ? this.devMeta[devid]! & META_BITS_MASK : 0;
  }

  /** ITT address of a mapped device (0 when not mapped). */
  deviceIttAddr(devid: number): number {
    return isDeviceId(devid) ? this.devItt[devid]! : 0;
  }

  private deviceDir(devid: number): number {
    return (this.devMeta[devid]! >>> META_DIR_SHIFT) - 1;
  }

  private setDeviceDir(devid: number, dir: number): void {
    this.devMeta[devid] = (this.devMeta[devid]! & META_BITS_MASK) | ((dir + 1) << META_DIR_SHIFT);
  }

  /** Maps a device (an existing one with that ID is freed first, as MAPD does). */
  mapDevice(devid: number, ittAddr: number, eventIdBits: number): void {
    if (!isDeviceId(devid) || !(eventIdBits >= 1 && eventIdBits <= 16)) return;
    this.freeDeviceStorage(devid);
    if (this.devMeta[devid] === 0) {
      this.deviceCount++;
      this.devBitmap[devid >>> 5]! |= 1 << (devid & 31);
    }
    this.devMeta[devid] = eventIdBits;
    this.devItt[devid] = ittAddr;
    this.listener?.deviceChanged(devid);
  }

  /** Frees a device and all its ITEs (LPI references dropped). False when it was not mapped. */
  unmapDevice(devid: number): boolean {
    if (!this.isDeviceMapped(devid)) return false;
    this.freeDeviceStorage(devid);
    this.devMeta[devid] = 0;
    this.devItt[devid] = 0;
    this.devBitmap[devid >>> 5]! &= ~(1 << (devid & 31));
    this.deviceCount--;
    this.listener?.deviceChanged(devid);
    return true;
  }

  /** Frees every device (BASER0 Valid=0, reset). */
  clearDevices(): void {
    for (let w = 0; w < this.devBitmap.length; w++) {
      let bits = this.devBitmap[w]!;
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits & -bits);
        bits &= bits - 1;
        this.unmapDevice((w << 5) | b);
      }
    }
  }

  /** Releases every ITE of a device and its pages and directory; the device stays mapped. */
  private freeDeviceStorage(devid: number): void {
    const dir = this.deviceDir(devid);
    if (dir < 0) return;
    const listener = this.listener;
    const dirBase = dir << DIR_SHIFT;
    for (let d = 0; d < DIR_ENTRIES; d++) {
      const page = this.dirPool[dirBase + d]!;
      if (page < 0) continue;
      const first = page << PAGE_SHIFT;
      for (let i = 0; i < EVENTS_PER_PAGE; i++) {
        const slot = first + i;
        if (this.ites[slot] === 0) continue;
        const intid = this.intidAt(slot);
        this.collItes[this.icidAt(slot)]!--;
        this.clearIte(slot);
        this.eventCount--;
        this.lpis.release(intid);
        listener?.eventChanged(devid, (d << PAGE_SHIFT) | i);
      }
      this.pageLive[page] = 0;
      this.freePage(page);
      this.dirPool[dirBase + d] = -1;
    }
    this.dirLive[dir] = 0;
    this.freeDir(dir);
    this.setDeviceDir(devid, -1);
  }

  /** Mapped DeviceIDs in ascending order. */
  forEachDevice(fn: (devid: number, ittAddr: number, eventIdBits: number) => void): void {
    for (let w = 0; w < this.devBitmap.length; w++) {
      let bits = this.devBitmap[w]!;
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits & -bits);
        bits &= bits - 1;
        const devid = (w << 5) | b;
        fn(devid, this.devItt[devid]!, this.devMeta[devid]! & META_BITS_MASK);
      }
    }
  }

  // =====================================================================================
  // Events
  // =====================================================================================

  private setIte(slot: number, intid: number, icid: number): void {
    if (icid === ICID_NONE) {
      this.ites[slot] = intid;
      this.orphanBits[slot >>> 5]! |= 1 << (slot & 31);
      this.orphanCount++;
    } else {
      if (this.orphanCount !== 0 && this.isOrphan(slot)) this.clearOrphan(slot);
      this.ites[slot] = (intid | (icid << ITE_ICID_SHIFT)) >>> 0;
    }
  }

  private clearIte(slot: number): void {
    if (this.orphanCount !== 0 && this.isOrphan(slot)) this.clearOrphan(slot);
    this.ites[slot] = 0;
  }

  private clearOrphan(slot: number): void {
    this.orphanBits[slot >>> 5]! &= ~(1 << (slot & 31));
    this.orphanCount--;
  }

  /**
   * Creates the ITE (devid, eventid) -> (intid, icid), taking a reference on the LPI with
   * `target` (NO_VCPU when the collection is not mapped). The ITE storage is allocated first,
   * as KVM allocates the ITE before creating the LPI, so ENOMEM has no side effect.
   */
  addEvent(devid: number, eventid: number, intid: number, icid: number, target: number): number {
    if (!this.isDeviceMapped(devid)) return ADD_INVALID;
    const meta = this.devMeta[devid]!;
    if (eventid >>> 0 !== eventid || eventid >>> (meta & META_BITS_MASK) !== 0) return ADD_INVALID;
    if (!(intid >= LPI_BASE && intid < INTID_LIMIT) || intid % 1 !== 0) return ADD_INVALID;
    if (icid >>> 0 !== icid || icid >= MAX_COLLECTION_IDS) return ADD_INVALID;
    let dir = this.deviceDir(devid);
    if (dir < 0) {
      dir = this.allocDir();
      if (dir < 0) return ADD_ENOMEM;
      this.setDeviceDir(devid, dir);
    }
    const dirIndex = (dir << DIR_SHIFT) | (eventid >>> PAGE_SHIFT);
    let page = this.dirPool[dirIndex]!;
    if (page < 0) {
      page = this.allocPage();
      if (page < 0) {
        this.releaseDirIfEmpty(devid, dir);
        return ADD_ENOMEM;
      }
      this.dirPool[dirIndex] = page;
      this.dirLive[dir]!++;
    }
    const slot = (page << PAGE_SHIFT) | (eventid & PAGE_MASK);
    if (this.ites[slot] !== 0) return ADD_EXISTS;
    if (!this.lpis.acquire(intid, target)) {
      this.releasePageIfEmpty(devid, dir, dirIndex, page);
      return ADD_EFAULT;
    }
    this.setIte(slot, intid, icid);
    this.pageLive[page]!++;
    this.collItes[icid]!++;
    this.eventCount++;
    this.listener?.eventChanged(devid, eventid);
    return ADD_OK;
  }

  /** Frees the ITE at `slot` (from lookup), dropping its LPI reference. */
  removeEvent(devid: number, eventid: number, slot: number, notify = true): void {
    if (this.ites[slot] === 0) return;
    const intid = this.intidAt(slot);
    this.collItes[this.icidAt(slot)]!--;
    this.clearIte(slot);
    this.eventCount--;
    const page = slot >>> PAGE_SHIFT;
    this.pageLive[page]!--;
    const dir = this.deviceDir(devid);
    this.releasePageIfEmpty(devid, dir, (dir << DIR_SHIFT) | (eventid >>> PAGE_SHIFT), page);
    this.lpis.release(intid);
    if (notify) this.listener?.eventChanged(devid, eventid);
  }

  /** MOVI (or a freed collection: ICID_NONE): the ITE now belongs to collection icid. */
  setEventCollection(devid: number, eventid: number, slot: number, icid: number): void {
    this.collItes[this.icidAt(slot)]!--;
    this.setIte(slot, this.intidAt(slot), icid);
    this.collItes[icid]!++;
    this.listener?.eventChanged(devid, eventid);
  }

  /** Mapped events of a device in ascending EventID order (icid ICID_NONE: collection freed). */
  forEachEvent(devid: number, fn: (eventid: number, intid: number, icid: number) => void): void {
    if (!this.isDeviceMapped(devid)) return;
    const dir = this.deviceDir(devid);
    if (dir < 0) return;
    for (let d = 0; d < DIR_ENTRIES; d++) {
      const page = this.dirPool[(dir << DIR_SHIFT) + d]!;
      if (page < 0) continue;
      const first = page << PAGE_SHIFT;
      for (let i = 0; i < EVENTS_PER_PAGE; i++) {
        const slot = first + i;
        if (this.ites[slot] !== 0) fn((d << PAGE_SHIFT) | i, this.intidAt(slot), this.icidAt(slot));
      }
    }
  }

  /**
   * Bulk export (save): copies the mapped events of a device, in ascending EventID order, into
   * eventids / intids / icids (icid ICID_NONE: collection freed) and returns how many. Walks the
   * device's page directory and the pool slices directly (no callback per event). Stops at the
   * shortest array's length (2^16 always suffices).
   */
  exportEvents(devid: number, eventids: Uint32Array, intids: Uint32Array, icids: Uint32Array): number {
    if (!this.isDeviceMapped(devid)) return 0;
    const dir = this.deviceDir(devid);
    if (dir < 0) return 0;
    const cap = Math.min(eventids.length, intids.length, icids.length);
    const ites = this.ites;
    const dirPool = this.dirPool;
    const dirBase = dir << DIR_SHIFT;
    const checkOrphans = this.orphanCount !== 0;
    let n = 0;
    for (let d = 0; d < DIR_ENTRIES; d++) {
      const page = dirPool[dirBase + d]!;
      if (page < 0) continue;
      const first = page << PAGE_SHIFT;
      const eventBase = d << PAGE_SHIFT;
      for (let i = 0; i < EVENTS_PER_PAGE; i++) {
        const v = ites[first + i]!;
        if (v === 0) continue;
        if (n >= cap) return n;
        eventids[n] = eventBase | i;
        intids[n] = v & ITE_INTID_MASK;
        icids[n] = checkOrphans && this.isOrphan(first + i) ? ICID_NONE : v >>> ITE_ICID_SHIFT;
        n++;
      }
    }
    return n;
  }

  /**
   * Raw bulk export (save), page by page: for each 256-EventID page of the device that has
   * storage, in ascending order, fn(firstEventId, words, offset), where words[offset + i]
   * describes EventID firstEventId + i: 0 = no ITE, else INTID in bits 15:0 and ICID in bits
   * 31:16. Returns false, calling nothing, while some ITE of this ITS has lost its collection
   * (its word still holds the old ICID): use exportEvents then.
   */
  exportEventPages(devid: number, fn: (firstEventId: number, words: Uint32Array, offset: number) => void): boolean {
    if (this.orphanCount !== 0) return false;
    if (!this.isDeviceMapped(devid)) return true;
    const dir = this.deviceDir(devid);
    if (dir < 0) return true;
    const dirBase = dir << DIR_SHIFT;
    for (let d = 0; d < DIR_ENTRIES; d++) {
      const page = this.dirPool[dirBase + d]!;
      if (page >= 0) fn(d << PAGE_SHIFT, this.ites, page << PAGE_SHIFT);
    }
    return true;
  }

  /**
   * Bulk insert (restore): creates the ITEs (devid, eventids[k]) -> (intids[k], icids[k]) for
   * k < count, each taking a reference on its LPI with its collection's target, filling the
   * event pages directly. Reports deviceChanged(devid) once. All or nothing: on failure the
   * events added by this call are removed again (their LPI references dropped) and the reason
   * is returned: ADD_INVALID (device not mapped, EventID out of range, bad INTID, collection
   * absent), ADD_EXISTS (an ITE already there, or a duplicate EventID), ADD_ENOMEM (event-page
   * cap), ADD_EFAULT (the LPI could not be created: guest RAM fault). ADD_OK otherwise.
   */
  addEvents(devid: number, count: number, eventids: Uint16Array | Uint32Array, intids: Uint16Array | Uint32Array, icids: Uint16Array | Uint32Array): number {
    if (!this.isDeviceMapped(devid)) return ADD_INVALID;
    if (!(count >= 0 && count <= eventids.length && count <= intids.length && count <= icids.length)) return ADD_INVALID;
    if (count === 0) return ADD_OK;
    const bits = this.devMeta[devid]! & META_BITS_MASK;
    let dir = this.deviceDir(devid);
    const hadDir = dir >= 0;
    if (!hadDir) {
      dir = this.allocDir();
      if (dir < 0) return ADD_ENOMEM;
      this.setDeviceDir(devid, dir);
    }
    const dirBase = dir << DIR_SHIFT;
    const lpis = this.lpis;
    const nrVcpus = lpis.nrVcpus;
    const collTarget = this.collTarget;
    const collItes = this.collItes;
    let ites = this.ites;
    let reason = ADD_OK;
    let k = 0;
    let dirIndex = -1;
    let page = -1;
    let live = 0;
    for (; k < count; k++) {
      const eventid = eventids[k]!;
      const intid = intids[k]!;
      const icid = icids[k]!;
      if (eventid >>> bits !== 0 || intid < LPI_BASE || intid >= INTID_LIMIT || icid >= MAX_COLLECTION_IDS) {
        reason = ADD_INVALID;
        break;
      }
      const target = collTarget[icid]!;
      if (target === COLLECTION_ABSENT) {
        reason = ADD_INVALID;
        break;
      }
      const di = dirBase | (eventid >>> PAGE_SHIFT);
      if (di !== dirIndex) {
        if (page >= 0) this.pageLive[page] = live;
        dirIndex = di;
        page = this.dirPool[di]!;
        if (page < 0) {
          page = this.allocPage();
          if (page < 0) {
            reason = ADD_ENOMEM;
            break;
          }
          this.dirPool[di] = page;
          this.dirLive[dir]!++;
          ites = this.ites; // allocPage may have grown the pool
        }
        live = this.pageLive[page]!;
      }
      const slot = (page << PAGE_SHIFT) | (eventid & PAGE_MASK);
      if (ites[slot] !== 0) {
        reason = ADD_EXISTS;
        break;
      }
      if (!lpis.acquire(intid, target >= 0 && target < nrVcpus ? target : NO_VCPU)) {
        reason = ADD_EFAULT;
        break;
      }
      ites[slot] = (intid | (icid << ITE_ICID_SHIFT)) >>> 0;
      live++;
      collItes[icid]!++;
    }
    if (page >= 0) this.pageLive[page] = live;
    this.eventCount += k;
    if (reason !== ADD_OK) this.undoAddEvents(devid, k, eventids, dirIndex, page);
    if (k > 0 || reason === ADD_OK) this.listener?.deviceChanged(devid);
    return reason;
  }

  /**
   * Bulk insert of a restore's staged ITEs (ItsTableState.importEvents): everything is checked
   * first, then the LPI references are taken (the only step that can fail: undone), then the
   * pages are copied into the pool. The words themselves were validated by the stager (INTID
   * in the LPI space, ICID one of icidIds); the counts must describe them.
   */
  importEvents(s: StagedEvents): number {
    const devices = s.deviceCount;
    const pages = s.pageCount;
    if (!(devices >= 0 && pages >= 0 && devices <= s.deviceIds.length && devices <= s.deviceFirstPage.length)) return ADD_INVALID;
    if (pages > s.pageSlot.length || pages > s.pageLive.length || pages * EVENTS_PER_PAGE > s.pageWords.length) return ADD_INVALID;
    let prevDev = -1;
    let prevFirst = 0;
    for (let d = 0; d < devices; d++) {
      const devid = s.deviceIds[d]!;
      const first = s.deviceFirstPage[d]!;
      if (devid <= prevDev || !this.isDeviceMapped(devid) || first < prevFirst || first > pages) return ADD_INVALID;
      if (this.deviceDir(devid) >= 0) return ADD_EXISTS;
      const end = d + 1 < devices ? s.deviceFirstPage[d + 1]! : pages;
      const bits = this.devMeta[devid]! & META_BITS_MASK;
      for (let p = first; p < end; p++) {
        const slot = s.pageSlot[p]!;
        if ((p > first && slot <= s.pageSlot[p - 1]!) || (slot << PAGE_SHIFT) >>> bits !== 0) return ADD_INVALID;
      }
      prevDev = devid;
      prevFirst = first;
    }
    if (devices === 0 && pages !== 0) return ADD_INVALID;
    for (let i = 0; i < s.icidCount; i++) {
      const icid = s.icidIds[i]!;
      if (icid >= MAX_COLLECTION_IDS || this.collTarget[icid] === COLLECTION_ABSENT) return ADD_INVALID;
    }
    for (let i = 0; i < s.lpiCount; i++) {
      const intid = s.lpiIds[i]!;
      if (intid < LPI_BASE || intid >= INTID_LIMIT) return ADD_INVALID;
    }
    if (pages > this.freeEventPages) return ADD_ENOMEM;

    // LPI references, all of each LPI's at once (undone on a failure).
    if (!this.lpis.acquireStaged(s.lpiIds, s.lpiCount, s.lpiTarget, s.lpiRefs)) return ADD_EFAULT;

    // Storage: one directory per device with pages. A pool that never handed out a page takes
    // the staged pages as they are (staged page p is pool page p: nothing copied); otherwise
    // the pages are copied in.
    const adopted = this.adoptStagedPages(s);
    if (adopted) this.reserveDirs(devices, pages);
    else this.reserveEventStorage(devices, pages);
    for (let d = 0; d < devices; d++) {
      const devid = s.deviceIds[d]!;
      const first = s.deviceFirstPage[d]!;
      const end = d + 1 < devices ? s.deviceFirstPage[d + 1]! : pages;
      if (end > first) {
        const dir = this.allocDir();
        this.setDeviceDir(devid, dir);
        const dirBase = dir << DIR_SHIFT;
        if (adopted) {
          for (let p = first; p < end; p++) this.dirPool[dirBase | s.pageSlot[p]!] = p;
        } else {
          this.copyStagedDevicePages(s, first, end, dirBase);
        }
        this.dirLive[dir] = end - first;
      }
      this.listener?.deviceChanged(devid);
    }
    this.eventCount += s.eventCount;
    for (let i = 0; i < s.icidCount; i++) this.collItes[s.icidIds[i]!]! += s.icidRefs[s.icidIds[i]!]!;
    return ADD_OK;
  }

  /**
   * importEvents: makes the staged page buffer the event pool when no pool page was ever
   * handed out (a fresh ITS, as on a migration's destination): the pool's words are all zero
   * and no page index is in use, so staged page p can be pool page p. False: not possible.
   */
  private adoptStagedPages(s: StagedEvents): boolean {
    const pages = s.pageCount;
    if (this.pageHigh !== 0 || pages === 0 || s.takePageWords === undefined) return false;
    const capacity = Math.min(this.maxEventPages, Math.floor(s.pageWords.length / EVENTS_PER_PAGE));
    if (capacity < pages) return false;
    const words = s.takePageWords();
    this.ites = words.length === capacity * EVENTS_PER_PAGE ? words : words.subarray(0, capacity * EVENTS_PER_PAGE);
    this.orphanBits = new Uint32Array((capacity * EVENTS_PER_PAGE) / 32);
    this.pageLive = new Uint16Array(capacity);
    this.pageLive.set(s.pageLive.subarray(0, pages));
    this.pageFree = new Int32Array(capacity);
    this.pageFreeTop = 0;
    this.pageHigh = pages;
    this.pagesInUse += pages;
    return true;
  }

  /**
   * Copies one device's staged pages [first, end) into newly allocated pool pages and enters
   * them in its directory at dirBase, in runs (staged pages landing on consecutive pool
   * pages: one set() per run).
   */
  private copyStagedDevicePages(s: StagedEvents, first: number, end: number, dirBase: number): void {
    let runFrom = first;
    let runPage = -1;
    for (let p = first; p < end; p++) {
      const page = this.allocPage();
      if (runPage >= 0 && page !== runPage + (p - runFrom)) {
        this.copyStagedPages(s.pageWords, runFrom, p, runPage);
        runFrom = p;
        runPage = page;
      } else if (runPage < 0) {
        runPage = page;
      }
      this.pageLive[page] = s.pageLive[p]!;
      this.dirPool[dirBase | s.pageSlot[p]!] = page;
    }
    this.copyStagedPages(s.pageWords, runFrom, end, runPage);
  }

  /** Copies staged pages [from, to) onto pool pages poolPage.. */
  private copyStagedPages(words: Uint32Array, from: number, to: number, poolPage: number): void {
    if (to > from) this.ites.set(words.subarray(from * EVENTS_PER_PAGE, to * EVENTS_PER_PAGE), poolPage << PAGE_SHIFT);
  }

  /** Removes the first `added` events of a failed addEvents and frees the pages (and directory) left empty. */
  private undoAddEvents(devid: number, added: number, eventids: Uint16Array | Uint32Array, failedDirIndex: number, failedPage: number): void {
    for (let k = 0; k < added; k++) {
      const slot = this.lookup(devid, eventids[k]!);
      if (slot >= 0) this.removeEvent(devid, eventids[k]!, slot, false);
    }
    // A page allocated for the failing event itself holds no event.
    const dir = this.deviceDir(devid);
    if (dir >= 0 && failedPage >= 0 && this.dirPool[failedDirIndex] === failedPage) {
      this.releasePageIfEmpty(devid, dir, failedDirIndex, failedPage);
    } else if (dir >= 0) {
      this.releaseDirIfEmpty(devid, dir);
    }
  }

  /** Calls fn for every ITE of collection icid (stops once all of them were seen). */
  private forEachIteOfCollection(icid: number, fn: (devid: number, eventid: number, slot: number) => void): void {
    let remaining = this.collItes[icid]!;
    if (remaining <= 0) return;
    for (let w = 0; w < this.devBitmap.length && remaining > 0; w++) {
      let bits = this.devBitmap[w]!;
      while (bits !== 0 && remaining > 0) {
        const b = 31 - Math.clz32(bits & -bits);
        bits &= bits - 1;
        const devid = (w << 5) | b;
        const dir = this.deviceDir(devid);
        if (dir < 0) continue;
        for (let d = 0; d < DIR_ENTRIES && remaining > 0; d++) {
          const page = this.dirPool[(dir << DIR_SHIFT) + d]!;
          if (page < 0) continue;
          const first = page << PAGE_SHIFT;
          for (let i = 0; i < EVENTS_PER_PAGE; i++) {
            const slot = first + i;
            if (this.ites[slot] !== 0 && this.icidAt(slot) === icid) {
              remaining--;
              fn(devid, (d << PAGE_SHIFT) | i, slot);
            }
          }
        }
      }
    }
  }

  // =====================================================================================
  // Collections
  // =====================================================================================

  hasCollection(icid: number): boolean {
    return icid >>> 0 === icid && icid < MAX_COLLECTION_IDS && this.collTarget[icid] !== COLLECTION_ABSENT;
  }

  /** Target vCPU, COLLECTION_NOT_MAPPED, or COLLECTION_ABSENT. */
  collectionTarget(icid: number): number {
    return icid >>> 0 === icid && icid <= MAX_COLLECTION_IDS ? this.collTarget[icid]! : COLLECTION_ABSENT;
  }

  /** Creates a collection (appended to the creation order). No-op when it exists. */
  addCollection(icid: number, target: number): void {
    if (icid >>> 0 !== icid || icid >= MAX_COLLECTION_IDS || this.collTarget[icid] !== COLLECTION_ABSENT) return;
    this.collTarget[icid] = target >= 0 && target % 1 === 0 ? target : COLLECTION_NOT_MAPPED;
    this.collPrev[icid] = this.collTail;
    this.collNext[icid] = -1;
    if (this.collTail >= 0) this.collNext[this.collTail] = icid;
    else this.collHead = icid;
    this.collTail = icid;
    this.collectionCount++;
    this.listener?.collectionsChanged();
  }

  /** MAPC V=1 on an existing collection: new target, and every LPI of its ITEs follows. */
  retargetCollection(icid: number, target: number): void {
    if (!this.hasCollection(icid)) return;
    this.collTarget[icid] = target;
    const vcpu = target < 0 ? NO_VCPU : target;
    this.forEachIteOfCollection(icid, (_devid, _eventid, slot) => this.lpis.setTarget(this.intidAt(slot), vcpu));
    this.listener?.collectionsChanged();
  }

  /**
   * Frees a collection (vgic_its_free_collection): its ITEs lose their collection (ICID_NONE)
   * and keep it even if the ICID is mapped again. LPI targets are left as they are (KVM).
   */
  removeCollection(icid: number): void {
    if (!this.hasCollection(icid)) return;
    this.forEachIteOfCollection(icid, (devid, eventid, slot) => this.setEventCollection(devid, eventid, slot, ICID_NONE));
    const prev = this.collPrev[icid]!;
    const next = this.collNext[icid]!;
    if (prev >= 0) this.collNext[prev] = next;
    else this.collHead = next;
    if (next >= 0) this.collPrev[next] = prev;
    else this.collTail = prev;
    this.collPrev[icid] = -1;
    this.collNext[icid] = -1;
    this.collTarget[icid] = COLLECTION_ABSENT;
    this.collectionCount--;
    this.listener?.collectionsChanged();
  }

  clearCollections(): void {
    while (this.collHead >= 0) this.removeCollection(this.collHead);
  }

  /** Collections in creation order. */
  forEachCollection(fn: (icid: number, target: number) => void): void {
    let guard = MAX_COLLECTION_IDS;
    for (let icid = this.collHead; icid >= 0 && guard-- > 0; icid = this.collNext[icid]!) {
      fn(icid, this.collTarget[icid]!);
    }
  }

  // =====================================================================================
  // Pools
  // =====================================================================================

  /** Event pages that can still be allocated before the cap (each holds 256 consecutive EventIDs of one device). */
  get freeEventPages(): number {
    return this.maxEventPages - this.pagesInUse;
  }

  private maxDirs(): number {
    // A directory exists only while its device has at least one page.
    return Math.min(MAX_DEVICE_IDS, this.maxEventPages);
  }

  private allocPage(): number {
    if (this.pageFreeTop > 0) {
      this.pagesInUse++;
      return this.pageFree[--this.pageFreeTop]!;
    }
    const capacity = this.pageLive.length;
    if (this.pageHigh >= capacity) {
      if (capacity >= this.maxEventPages) return -1;
      this.growPages(Math.min(capacity * 2, this.maxEventPages));
    }
    this.pagesInUse++;
    return this.pageHigh++;
  }

  private growPages(capacity: number): void {
    const ites = new Uint32Array(capacity * EVENTS_PER_PAGE);
    ites.set(this.ites);
    this.ites = ites;
    const orphans = new Uint32Array((capacity * EVENTS_PER_PAGE) / 32);
    orphans.set(this.orphanBits);
    this.orphanBits = orphans;
    const live = new Uint16Array(capacity);
    live.set(this.pageLive);
    this.pageLive = live;
    const free = new Int32Array(capacity);
    free.set(this.pageFree.subarray(0, this.pageFreeTop));
    this.pageFree = free;
  }

  /** Page slots are already zero (every ITE is cleared when freed). */
  private freePage(page: number): void {
    this.pageFree[this.pageFreeTop++] = page;
    this.pagesInUse--;
  }

  private releasePageIfEmpty(devid: number, dir: number, dirIndex: number, page: number): void {
    if (this.pageLive[page] !== 0) return;
    this.freePage(page);
    this.dirPool[dirIndex] = -1;
    this.dirLive[dir]!--;
    this.releaseDirIfEmpty(devid, dir);
  }

  private releaseDirIfEmpty(devid: number, dir: number): void {
    if (this.dirLive[dir] !== 0) return;
    this.freeDir(dir);
    this.setDeviceDir(devid, -1);
  }

  private allocDir(): number {
    if (this.dirFreeTop > 0) return this.dirFree[--this.dirFreeTop]!;
    const capacity = this.dirLive.length;
    if (this.dirHigh >= capacity) {
      if (capacity >= this.maxDirs()) return -1;
      this.growDirs(Math.min(capacity * 2, this.maxDirs()));
    }
    return this.dirHigh++;
  }

  private growDirs(capacity: number): void {
    const pool = new Int32Array(capacity * DIR_ENTRIES);
    pool.set(this.dirPool);
    pool.fill(-1, this.dirPool.length);
    this.dirPool = pool;
    const live = new Uint16Array(capacity);
    live.set(this.dirLive);
    this.dirLive = live;
    const free = new Int32Array(capacity);
    free.set(this.dirFree.subarray(0, this.dirFreeTop));
    this.dirFree = free;
  }

  /**
   * Capacity hint before a bulk insert (restore): grows the pools once so that `devices` more
   * devices with `pages` more event pages in all fit without repeated doubling (each doubling
   * allocates and copies the pool). Never beyond the caps; changes no state.
   */
  reserveEventStorage(devices: number, pages: number): void {
    if (!(pages > 0)) return;
    const wantPages = Math.min(this.maxEventPages, this.pageHigh + Math.max(0, pages - this.pageFreeTop));
    if (wantPages > this.pageLive.length) this.growPages(wantPages);
    this.reserveDirs(devices, pages);
  }

  /** The directory part of reserveEventStorage. */
  private reserveDirs(devices: number, pages: number): void {
    if (!(pages > 0)) return;
    const newDirs = Math.min(Math.max(0, devices), pages);
    const wantDirs = Math.min(this.maxDirs(), this.dirHigh + Math.max(0, newDirs - this.dirFreeTop));
    if (wantDirs > this.dirLive.length) this.growDirs(wantDirs);
  }

  /** Directory entries are already -1 when a directory is freed. */
  private freeDir(dir: number): void {
    this.dirFree[this.dirFreeTop++] = dir;
  }
}
