/**
 * ITS_SAVE_TABLES for table ABI rev 0 (kvm-its-abi.md 3.7), full and incremental.
 *
 * Full save, as KVM: devices in ascending DeviceID order, each ITT (ITEs in ascending EventID
 * order, `next` = delta to the next written ITE, 0 for the last) then its DTE (`next` = delta
 * to the next written device, capped at 16383, 0 for the last); then the collection table in
 * creation order, followed by one all-zero CTE when the table is not full. A table whose
 * BASER has Valid = 0 is skipped. A device whose DTE slot is outside guest memory fails the
 * save with -EINVAL before anything is written (KVM: -EINVAL); a failing ITE/CTE write is
 * -EFAULT (KVM: the save stops there, partial output).
 *
 * Decisions beyond KVM (hardening.md), all of them making the image restorable:
 * - ORPHANED ITEs. An ITE whose collection no longer exists (MAPC V=0 while it had ITEs, KVM's
 *   "ITE with no collection"; the ITS reports ICID_NONE) is written as an all-zero (invalid)
 *   ITE and is skipped when computing the `next` of the ITEs around it. Restore then reads it
 *   as invalid. KVM dereferences the missing collection here (2026 CVE).
 * - BASER SHRUNK OR MOVED after mapping. The tables are located from the current BASERs. A
 *   device the device table can no longer hold (DeviceID past the flat table or past the
 *   level-1 table, or its level-1 entry invalid) is SKIPPED, not fatal; `next` offsets are
 *   computed over the written devices only, so no `next` points at a slot this save did not
 *   write. Likewise a collection whose ICID the collection table can no longer hold is not
 *   written, and the ITEs that name it are saved as orphans (else restore would fail with
 *   -EINVAL on them). A DTE slot that the table does hold but that lies outside guest memory
 *   (L1 entry or table outside RAM) stays -EINVAL, as KVM.
 * - REMOVED ENTRIES. The saver remembers which slots the last save (or restore) wrote live
 *   (its "image"). A full save zeroes the DTE slot of every imaged device that is not written
 *   now (if the slot is still the same), and the imaged ITE slots of a device that is written
 *   now with the same ITT address, inside its current ITT, that are no longer live. Slots of
 *   a device whose ITT moved or went away are not touched (the guest may have freed that
 *   memory). KVM zeroes DTE/ITE slots at MAPD V=0 / DISCARD time; the ITS does too; this
 *   covers what happened to the state between two saves by any other path.
 *
 * Incremental save (beyond KVM): the saver is the ITS's ItsChangeListener. Between saves it
 * records changed devices, events and collections; the next save writes only the changed
 * entries, the entries whose `next` changed (the previous live neighbour of every entry that
 * appeared or disappeared), the zeroes a full save would write, and the collection table if it
 * changed. The result is byte-identical to a full save on the same memory. A full save is done
 * instead when: nothing was saved yet, allChanged() was reported (BASER rewrite, reset, ABI
 * change), memory or a BASER differs from the last save, a level-1 entry the last save used
 * changed, a collection disappeared (or appeared while orphaned ITEs exist), the change log
 * overflowed. Incremental save assumes
 * the guest did not write into the ITS's tables since the last save (the architecture forbids
 * it; a full save can be forced).
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { Errno, ErrnoError } from '../../util/errno.js';
import { EVENTS_PER_EVENT_PAGE, type ItsChangeListener, type ItsTableState } from '../table-state.js';
import { decodeBaser, type TableGeometry } from './baser.js';
import { CTE_TARGET_NOT_MAPPED, CollectionTableEntry } from './cte.js';
import { DeviceTableEntry } from './dte.js';
import { TableError, hex } from './errors.js';
import { InterruptTranslationEntry } from './ite.js';
import { L2_ENTRIES, Level1Entry } from './level1.js';
import { LOCATE_NOT_IN_MEMORY, LOCATE_OUT_OF_TABLE, locateSlot } from './locate.js';
import { GrowableU32, WordSlab, nextSetBit, prevSetBit, testBit } from './bitmap.js';
import { TABLE_COLLECTIONS, TABLE_DEVICES, ittTableName, type RestoredTables } from './restore.js';

/** The O(1) lookups the incremental save needs: members of ItsTableState (this alias is kept for importers). */
export type ItsSaveLookups = Pick<ItsTableState, 'deviceIttAddr' | 'deviceEventIdBits' | 'translate' | 'eventCollection'>;

export interface SaveOptions {
  /** Force a full save even when an incremental one is possible. */
  full?: boolean;
}

export interface SaveResult {
  /** True for a full save, false for an incremental one. */
  full: boolean;
  devicesWritten: number;
  /** Devices the device table can no longer hold (not written). */
  devicesSkipped: number;
  eventsWritten: number;
  /** ITEs with no collection, written as zero. */
  orphansZeroed: number;
  collectionsWritten: number;
  /** Collections the collection table can no longer hold (not written; their ITEs are orphans). */
  collectionsSkipped: number;
  /** Stale slots zeroed (removed devices/events of the image). */
  staleZeroed: number;
  /** 8-byte entries written in all (live, zero, terminator). */
  entriesWritten: number;
  /** ITTs written as one block (dense) rather than entry by entry. */
  ittBlocks: number;
}

/** Slots one device occupied in the last save: its DTE slot, ITT and live EventIDs. */
class DeviceImage {
  constructor(
    public dteAddr: number,
    public itt: number,
    public bits: number,
    /** Bit per EventID written live (sized to the highest one). */
    public events: Uint32Array,
  ) {}
}

const ICID_SPACE = 0x10000;
const ID_SPACE = 0x10000;
const MAX_L1 = ID_SPACE / L2_ENTRIES;
/** Beyond this many logged event changes, the next save is a full one. */
const MAX_LOGGED_EVENTS = 1 << 20;
const EMPTY_BITS: Uint32Array = new Uint32Array(0);
/** An ITT is written as one block when it has at least this many entries to write, densely. */
const BULK_MIN_ENTRIES = 8;

/** Scratch arrays of one save, allocated once and shared by all savers. */
interface SaveScratch {
  readonly evBits: Uint32Array;
  readonly zeroBits: Uint32Array;
  readonly evMark: Uint8Array;
  readonly list: Uint32Array;
  readonly flipped: Uint32Array;
}
let saveScratch: SaveScratch | null = null;
function sharedScratch(): SaveScratch {
  saveScratch ??= {
    evBits: new Uint32Array(ID_SPACE / 32),
    zeroBits: new Uint32Array(ID_SPACE / 32),
    evMark: new Uint8Array(ID_SPACE),
    list: new Uint32Array(ID_SPACE),
    flipped: new Uint32Array(ID_SPACE),
  };
  return saveScratch;
}

/**
 * Block buffer for ITT writes (512 KiB: the largest ITT), shared by all savers, seen as bytes
 * (for GuestMemory) and as u32 words: entry k is words 2k (low) and 2k + 1 (high). Word stores
 * are host-endian, so on a big-endian host the words are byte-swapped before use (the guest
 * layout is little-endian).
 */
let ittScratchBytes: Uint8Array | null = null;
let ittScratchWords: Uint32Array | null = null;
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** High word of an ITE with next = 1 and pINTID < 2^16. */
const ITE_HI_NEXT_ONE = InterruptTranslationEntry.hi(1, 0);
function ittScratch(): Uint8Array {
  if (ittScratchBytes === null) {
    ittScratchBytes = new Uint8Array(ID_SPACE * 8);
    ittScratchWords = new Uint32Array(ittScratchBytes.buffer);
  }
  return ittScratchBytes;
}
/** Arrays one device's events are exported into (2^16: the largest ITT), shared by all savers. */
interface ExportScratch {
  readonly eventids: Uint32Array;
  readonly intids: Uint32Array;
  readonly icids: Uint32Array;
}
let exportArrays: ExportScratch | null = null;
function exportScratch(): ExportScratch {
  exportArrays ??= { eventids: new Uint32Array(ID_SPACE), intids: new Uint32Array(ID_SPACE), icids: new Uint32Array(ID_SPACE) };
  return exportArrays;
}
/** Swaps the bytes of words [from, to) of the block buffer (big-endian hosts only). */
function swapWords(words: Uint32Array, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    const v = words[i]!;
    words[i] = ((v >>> 24) | ((v >>> 8) & 0xff00) | ((v & 0xff00) << 8) | (v << 24)) >>> 0;
  }
}

export class ItsTableSaver implements ItsChangeListener {
  // ---- Image of the last successful save (or restore) ----
  private image = new Map<number, DeviceImage>();
  /** The map the next full save builds its image in (swapped with `image`, so no Map per save). */
  private spareImage = new Map<number, DeviceImage>();
  private imageValid = false;
  private readonly imageDevBits = new Uint32Array(ID_SPACE / 32);
  private imageMemory: GuestMemory | null = null;
  private imageBaserDevice = 0n;
  private imageBaserCollection = 0n;
  /** Level-2 page used for each level-1 index by the last save (-1: none / flat). */
  private readonly imageL1 = new Float64Array(MAX_L1).fill(-1);
  /** Collections written by the last save. */
  private imageColl = new Uint8Array(ICID_SPACE);
  private imageOrphans = 0;

  // ---- Change log since then ----
  private needFull = true;
  private readonly dirtyDev = new GrowableU32(64);
  private readonly dirtyDevMark = new Uint8Array(ID_SPACE);
  /** devid * 65536 + eventid. */
  private readonly dirtyEv = new GrowableU32(1024);
  private collectionsDirty = true;
  private muted = 0;

  // ---- Scratch of one save ----
  private collNow = new Uint8Array(ICID_SPACE);
  /** Every existing collection is written by this save (collNow is 1 for each). */
  private allCollectionsWritten = false;
  private readonly collIcid = new GrowableU32(64);
  private readonly collTarget = new GrowableU32(64);
  /** Per-save scratch, shared by every saver (saves are synchronous and never nested). */
  /** Live EventIDs of the ITT being written. */
  private readonly evBits: Uint32Array;
  /** EventIDs of the ITT being written whose slot gets a zero (orphans, stale). */
  private readonly zeroBits: Uint32Array;
  private readonly evMark: Uint8Array;
  private readonly listScratch: Uint32Array;
  private readonly flippedScratch: Uint32Array;
  // The ITT being written (set by startItt, encodePage / encodeItt, finishItt).
  private itCount = 0;
  private itLive = 0;
  private itMin = 0;
  private itMax = -1;
  private itMaxWord = -1;
  /** Word index of the previous live ITE in the block buffer (-1: none yet), and its EventID. */
  private itPrevAt = -1;
  /**
   * Where the ITT being written is encoded: entry e is itWords[itBase + 2e] (low) and
   * [itBase + 2e + 1] (high). Either the block buffer (itBase 0, copied out by emitItt) or,
   * when the whole ITT lies in one backing view of guest memory, guest memory itself
   * (writableWordWindow: no copy; emitItt then only records the write for the dirty log).
   */
  private itWords: Uint32Array = EMPTY_BITS;
  private itBase = 0;
  private itDirect = false;
  private itPrevE = 0;
  /** evBits word being accumulated (-1: none) and its bits. */
  private itBitWord = -1;
  private itBitAcc = 0;
  private readonly visitPage = (firstEventId: number, words: Uint32Array, offset: number): void =>
    this.encodePage(firstEventId, words, offset);
  private readonly planIds = new GrowableU32(64);
  private readonly planItts: number[] = [];
  private readonly planBits = new GrowableU32(64);
  private result: SaveResult = emptyResult(true);
  // Current ITT of writeItt (fields instead of a closure per device).
  private mem: GuestMemory | null = null;
  private curDev = 0;
  private curItt = 0;

  constructor() {
    const s = sharedScratch();
    this.evBits = s.evBits;
    this.zeroBits = s.zeroBits;
    this.evMark = s.evMark;
    this.listScratch = s.list;
    this.flippedScratch = s.flipped;
  }

  // =====================================================================================
  // ItsChangeListener
  // =====================================================================================

  deviceChanged(devid: number): void {
    if (this.muted !== 0 || this.needFull) return;
    if (devid >>> 0 !== devid || devid >= ID_SPACE) {
      this.needFull = true;
      return;
    }
    if (this.dirtyDevMark[devid] === 0) {
      this.dirtyDevMark[devid] = 1;
      this.dirtyDev.push(devid);
    }
  }

  eventChanged(devid: number, eventid: number): void {
    if (this.muted !== 0 || this.needFull) return;
    if (devid >>> 0 !== devid || devid >= ID_SPACE || eventid >>> 0 !== eventid || eventid >= ID_SPACE) {
      this.needFull = true;
      return;
    }
    if (this.dirtyDevMark[devid] !== 0) return; // the whole ITT is rewritten anyway
    if (this.dirtyEv.length >= MAX_LOGGED_EVENTS) {
      this.needFull = true;
      return;
    }
    this.dirtyEv.push(devid * ID_SPACE + eventid);
  }

  collectionsChanged(): void {
    if (this.muted !== 0) return;
    this.collectionsDirty = true;
  }

  allChanged(): void {
    if (this.muted !== 0) return;
    this.needFull = true;
  }

  /** While muted, changes are not logged (restore applies its own image afterwards). */
  mute(): void {
    this.muted++;
  }
  unmute(): void {
    this.muted--;
  }

  /** True when the next save will be a full one (for tests and stats). */
  get nextSaveIsFull(): boolean {
    return this.needFull || !this.imageValid;
  }

  // =====================================================================================
  // Save
  // =====================================================================================

  save(state: ItsTableState, options: SaveOptions = {}): SaveResult {
    const memory = state.memory;
    if (
      !this.imageValid || this.imageMemory !== memory || this.imageBaserDevice !== state.baserDevice ||
      this.imageBaserCollection !== state.baserCollection
    ) {
      this.dropImage();
    }
    if (options.full !== true && this.imageValid && !this.needFull) {
      const r = this.saveIncremental(state);
      if (r !== null) return r;
    }
    return this.saveFull(state);
  }

  /** Records a successful restore as the image (the next save is a full one). */
  restored(state: ItsTableState, r: RestoredTables): void {
    this.dropImage();
    const devIds = r.devId.data;
    const words = r.pageWords;
    const bits = this.evBits; // scratch, all zero between saves
    const slab = new WordSlab();
    for (let d = 0; d < r.devId.length; d++) {
      const devid = devIds[d]!;
      const first = r.devFirstPage.data[d]!;
      const end = r.pagesEnd(d);
      let used = 0;
      for (let p = first; p < end; p++) {
        // The bitmap words of this page: bit b of word j is EventID slot * 256 + j * 32 + b.
        const w0 = r.pageSlot[p]! * (EVENTS_PER_EVENT_PAGE / 32);
        if (r.pageLive[p] === EVENTS_PER_EVENT_PAGE) {
          bits.fill(0xffffffff, w0, w0 + EVENTS_PER_EVENT_PAGE / 32); // a full page
          used = w0 + EVENTS_PER_EVENT_PAGE / 32;
          continue;
        }
        for (let j = 0; j < EVENTS_PER_EVENT_PAGE / 32; j++) {
          const at = p * EVENTS_PER_EVENT_PAGE + j * 32;
          let acc = 0;
          // Staged ITE words have INTID >= 8192 in bits 15:0: (w & 0xffff) + 0xffff carries into bit 16 iff present.
          for (let b = 0; b < 32; b++) acc |= (((words[at + b]! & 0xffff) + 0xffff) >>> 16) << b;
          if (acc !== 0) {
            bits[w0 + j] = acc;
            used = w0 + j + 1;
          }
        }
      }
      const events = used > 0 ? slab.copyOf(bits, used) : EMPTY_BITS;
      if (used > 0) bits.fill(0, 0, used);
      this.image.set(devid, new DeviceImage(r.devDteAddr.data[d]!, r.devItt.data[d]!, r.devBits.data[d]!, events));
      this.imageDevBits[devid >>> 5]! |= 1 << (devid & 31);
    }
    this.imageValid = true;
    this.imageMemory = state.memory;
    this.imageBaserDevice = state.baserDevice;
    this.imageBaserCollection = state.baserCollection;
    this.needFull = true;
    this.clearLog();
  }

  private dropImage(): void {
    this.image.clear();
    this.imageDevBits.fill(0);
    this.imageL1.fill(-1);
    this.imageColl.fill(0);
    this.imageOrphans = 0;
    this.imageValid = false;
    this.imageMemory = null;
  }

  private clearLog(): void {
    for (let i = 0; i < this.dirtyDev.length; i++) this.dirtyDevMark[this.dirtyDev.data[i]!] = 0;
    this.dirtyDev.clear();
    this.dirtyEv.clear();
    this.collectionsDirty = false;
  }

  // ---- Collections ----

  /** Which collections this save writes (into collNow / collIcid / collTarget). */
  private planCollections(state: ItsTableState, memory: GuestMemory, table: TableGeometry): void {
    const collNow = this.collNow;
    collNow.fill(0);
    this.collIcid.clear();
    this.collTarget.clear();
    this.allCollectionsWritten = false;
    if (!table.valid) return;
    let skipped = 0;
    state.forEachCollection((icid, target) => {
      if (icid >>> 0 !== icid || icid >= ICID_SPACE || locateSlot(memory, table, icid) < 0) {
        skipped++;
        return;
      }
      collNow[icid] = 1;
      this.collIcid.push(icid);
      this.collTarget.push(target >= 0 ? target : CTE_TARGET_NOT_MAPPED);
    });
    this.result.collectionsSkipped += skipped;
    this.allCollectionsWritten = skipped === 0;
  }

  private writeCollections(memory: GuestMemory, table: TableGeometry): void {
    if (!table.valid) return;
    const n = this.collIcid.length;
    let i = 0;
    try {
      for (; i < n; i++) {
        const target = this.collTarget.data[i]!;
        memory.writeU64(table.base + i * 8, CollectionTableEntry.lo(target, this.collIcid.data[i]!), CollectionTableEntry.hi(target));
      }
      if (n < table.slots) memory.writeU64(table.base + n * 8, 0, 0);
    } catch (e) {
      throw asTableError(e, TABLE_COLLECTIONS, i, table.base + i * 8);
    }
    this.result.collectionsWritten = n;
    this.result.entriesWritten += n < table.slots ? n + 1 : n;
  }

  // ---- One ITT ----

  /**
   * Writes every ITE of device devid: live ones with the delta to the next live one, orphans
   * as zero, and zero for the imaged slots (same ITT, inside it) that are no longer live.
   * Returns the new event bitmap. The device's events are exported in bulk (exportEvents) and
   * each entry is encoded once into a block buffer indexed by EventID; the planned slots are then written one by one, or,
   * when they are dense, as one block whose other slots are first read back from guest memory
   * so that their bytes do not change (the same bytes as KVM's per-entry writes).
   */
  private writeItt(state: ItsTableState, devid: number, itt: number, bits: number, old: DeviceImage | undefined): Uint32Array {
    this.curDev = devid;
    this.curItt = itt;
    const window = this.mem!.writableWordWindow(itt, 8 << bits);
    if (window !== null) {
      this.itWords = window.words;
      this.itBase = window.index;
      this.itDirect = true;
    } else {
      ittScratch();
      this.itWords = ittScratchWords!;
      this.itBase = 0;
      this.itDirect = false;
    }
    this.startItt();
    if (!state.exportEventPages(devid, this.visitPage)) {
      const exp = exportScratch();
      const count = state.exportEvents(devid, exp.eventids, exp.intids, exp.icids);
      this.encodeItt(exp.eventids, exp.intids, exp.icids, count);
    }
    this.finishItt();
    const n = this.itCount;
    const live = this.itLive;
    const imaged = old !== undefined && old.itt === itt ? old.events : EMPTY_BITS;
    const stale = this.zeroStale(imaged, 1 << bits);
    const w = n + stale;
    if (w > 0) this.emitItt(w);
    const r = this.result;
    r.eventsWritten += live;
    r.orphansZeroed += n - live;
    r.staleZeroed += stale;
    r.entriesWritten += w;
    if (w > live) this.zeroBits.fill(0, this.itMin >>> 5, (this.itMax >>> 5) + 1);
    this.itWords = EMPTY_BITS; // (do not keep a view of guest memory)
    return this.takeEventBits(old);
  }

  private startItt(): void {
    this.itCount = 0;
    this.itLive = 0;
    this.itMin = ID_SPACE;
    this.itMax = -1;
    this.itMaxWord = -1;
    this.itPrevAt = -1;
    this.itPrevE = 0;
    this.itBitWord = -1;
    this.itBitAcc = 0;
  }

  private finishItt(): void {
    if (this.itBitWord >= 0) {
      this.evBits[this.itBitWord]! |= this.itBitAcc;
      this.itMaxWord = this.itBitWord;
    }
  }

  /**
   * Encodes one page of raw event words (exportEventPages; EventIDs ascending across calls)
   * into the block buffer, indexed by EventID: live ITEs with `next` = delta to the next live
   * one (0 for the last), ITEs whose collection is not written as zero (orphans). Keeps the
   * per-ITT state in locals for the page and in the it* fields between pages.
   */
  private encodePage(firstEventId: number, src: Uint32Array, offset: number): void {
    const words = this.itWords;
    const base = this.itBase | 0; // (an int32 for V8: see ChunkedGuestMemory.wordWindow)
    const evBits = this.evBits;
    const zeroBits = this.zeroBits;
    const collNow = this.collNow;
    let count = this.itCount;
    let live = this.itLive;
    let prevAt = this.itPrevAt;
    let prevE = this.itPrevE;
    let bitWord = this.itBitWord;
    let bitAcc = this.itBitAcc;
    let min = this.itMin;
    let max = this.itMax;
    const pageSize = EVENTS_PER_EVENT_PAGE;
    // Fast path: the run of live ITEs at the start of the page whose collections are written
    // (all of it when events are mapped densely) is encoded with one branch per event: each
    // `next` is 1 (the run's last one is fixed up by the next live ITE, or stays 0) and the
    // run's bitmap bits are set in bulk. The rest of the page takes the general loop.
    const first = firstEventId;
    const hiNextOne = ITE_HI_NEXT_ONE;
    let i = 0;
    if (this.allCollectionsWritten) {
      // Every ITE's collection exists (no orphans: exportEventPages) and is written. Four
      // entries per iteration (measured ~20% faster than one); a group with a hole is left
      // to the general loop.
      for (let at = base + first * 2; i < pageSize; i += 4, at += 8) {
        const a = src[offset + i]!;
        const b = src[offset + i + 1]!;
        const c = src[offset + i + 2]!;
        const d = src[offset + i + 3]!;
        if (a === 0 || b === 0 || c === 0 || d === 0) break;
        // INTID << 16 | ICID; pINTID < 2^16, so the high word holds next only.
        words[at] = ((a << 16) | (a >>> 16)) >>> 0;
        words[at + 1] = hiNextOne;
        words[at + 2] = ((b << 16) | (b >>> 16)) >>> 0;
        words[at + 3] = hiNextOne;
        words[at + 4] = ((c << 16) | (c >>> 16)) >>> 0;
        words[at + 5] = hiNextOne;
        words[at + 6] = ((d << 16) | (d >>> 16)) >>> 0;
        words[at + 7] = hiNextOne;
      }
    } else {
      for (let at = base + first * 2; i < pageSize; i++, at += 2) {
        const v = src[offset + i]!;
        if (v === 0 || collNow[v >>> 16] === 0) break;
        words[at] = ((v << 16) | (v >>> 16)) >>> 0; // INTID << 16 | ICID
        words[at + 1] = hiNextOne;
      }
    }
    if (i > 0) {
      if (prevAt >= 0) words[prevAt + 1] = InterruptTranslationEntry.hi(first - prevE, 0);
      const end = first + i;
      prevE = end - 1;
      prevAt = base + prevE * 2;
      words[prevAt + 1] = 0;
      if (bitWord >= 0) evBits[bitWord]! |= bitAcc;
      evBits.fill(0xffffffff, first >>> 5, end >>> 5);
      if ((end & 31) !== 0) evBits[end >>> 5]! |= (1 << (end & 31)) - 1;
      bitWord = prevE >>> 5;
      bitAcc = 0;
      if (count === 0) min = first;
      max = prevE;
      count += i;
      live += i;
    }
    for (; i < pageSize; i++) {
      const v = src[offset + i]!;
      if (v === 0) continue;
      const e = firstEventId + i;
      const at = base + e * 2;
      if (count++ === 0) min = e;
      max = e;
      const icid = v >>> 16;
      if (collNow[icid] === 0) {
        // The collection is not written (the table can no longer hold it): saved as invalid.
        words[at] = 0;
        words[at + 1] = 0;
        zeroBits[e >>> 5]! |= 1 << (e & 31);
        continue;
      }
      const intid = v & 0xffff;
      // The previous live ITE's high word, now that its next is known (pINTID < 2^16: no high bits).
      if (prevAt >= 0) words[prevAt + 1] = InterruptTranslationEntry.hi(e - prevE, 0);
      words[at] = InterruptTranslationEntry.lo(intid, icid);
      words[at + 1] = 0; // next = 0 until a later live ITE is found; pINTID bits 31:16 = 0
      prevAt = at;
      prevE = e;
      live++;
      const word = e >>> 5;
      if (word !== bitWord) {
        if (bitWord >= 0) evBits[bitWord]! |= bitAcc;
        bitWord = word;
        bitAcc = 0;
      }
      bitAcc |= 1 << (e & 31);
    }
    this.itCount = count;
    this.itLive = live;
    this.itPrevAt = prevAt;
    this.itPrevE = prevE;
    this.itBitWord = bitWord;
    this.itBitAcc = bitAcc;
    this.itMin = min;
    this.itMax = max;
  }

  /**
   * Encodes the exported events of one ITT (exportEvents: ascending EventIDs, icid
   * ITE_NO_COLLECTION for orphans) as encodePage does. Used while the ITS has orphaned ITEs.
   */
  private encodeItt(eventids: Uint32Array, intids: Uint32Array, icids: Uint32Array, count: number): void {
    const words = this.itWords;
    const base = this.itBase | 0;
    const evBits = this.evBits;
    const zeroBits = this.zeroBits;
    const collNow = this.collNow;
    this.itCount = count;
    this.itMin = count > 0 ? eventids[0]! : ID_SPACE;
    this.itMax = count > 0 ? eventids[count - 1]! : -1;
    let live = 0;
    let prevAt = -1;
    let prevE = 0;
    let prevIntid = 0;
    let bitWord = -1;
    let bitAcc = 0;
    for (let k = 0; k < count; k++) {
      const e = eventids[k]!;
      const icid = icids[k]!;
      const at = base + e * 2;
      if (icid >= ICID_SPACE || collNow[icid] === 0) {
        // Orphaned ITE: its collection is gone (or not written): saved as invalid.
        words[at] = 0;
        words[at + 1] = 0;
        zeroBits[e >>> 5]! |= 1 << (e & 31);
        continue;
      }
      const intid = intids[k]!;
      // (prevIntid, not a read back: the words may be guest memory, which the guest may change.)
      if (prevAt >= 0) words[prevAt + 1] = InterruptTranslationEntry.hi(e - prevE, prevIntid);
      words[at] = InterruptTranslationEntry.lo(intid, icid);
      prevIntid = intid;
      words[at + 1] = InterruptTranslationEntry.hi(0, intid);
      prevAt = at;
      prevE = e;
      live++;
      const word = e >>> 5;
      if (word !== bitWord) {
        if (bitWord >= 0) evBits[bitWord]! |= bitAcc;
        bitWord = word;
        bitAcc = 0;
      }
      bitAcc |= 1 << (e & 31);
    }
    this.itLive = live;
    this.itBitWord = bitWord;
    this.itBitAcc = bitAcc;
  }

  /** Zeroes (where the ITT is encoded) the imaged slots below limit that are neither live nor orphans; returns how many. */
  private zeroStale(imaged: Uint32Array, limit: number): number {
    const words = this.itWords;
    const base = this.itBase | 0;
    const evBits = this.evBits;
    const zeroBits = this.zeroBits;
    let count = 0;
    for (let word = 0; word < imaged.length; word++) {
      let removed = imaged[word]! & ~(evBits[word]! | zeroBits[word]!);
      while (removed !== 0) {
        const b = 31 - Math.clz32(removed & -removed);
        removed &= removed - 1;
        const e = (word << 5) | b;
        if (e >= limit) continue;
        words[base + e * 2] = 0;
        words[base + e * 2 + 1] = 0;
        zeroBits[word]! |= 1 << b;
        count++;
        if (e < this.itMin) this.itMin = e;
        if (e > this.itMax) this.itMax = e;
      }
    }
    return count;
  }

  /** Logs as written each run of consecutive planned slots (evBits | zeroBits) in min..max of the ITT at `itt`. */
  private logWrittenRuns(memory: GuestMemory, itt: number, min: number, max: number): void {
    const evBits = this.evBits;
    const zeroBits = this.zeroBits;
    let runFrom = -1;
    for (let e = min; e <= max + 1; e++) {
      const planned = e <= max && ((evBits[e >>> 5]! | zeroBits[e >>> 5]!) & (1 << (e & 31))) !== 0;
      if (planned) {
        if (runFrom < 0) runFrom = e;
      } else if (runFrom >= 0) {
        memory.wroteWindow(itt + runFrom * 8, (e - runFrom) * 8);
        runFrom = -1;
      }
    }
  }

  /** Writes the w planned slots of the current ITT (those set in evBits | zeroBits, within itMin..itMax). */
  private emitItt(w: number): void {
    const memory = this.mem!;
    const itt = this.curItt;
    const words = ittScratchWords!;
    const evBits = this.evBits;
    const zeroBits = this.zeroBits;
    const min = this.itMin;
    const max = this.itMax;
    const span = max - min + 1;
    const start = itt + min * 8;
    if (this.itDirect) {
      // Already in guest memory: only the dirty log and the byte count remain. A dense ITT is
      // logged as one span; a sparse one run by run, so that the pages between its written
      // slots stay clean (the VMM copies every logged page again).
      if (w * 4 >= span) memory.wroteWindow(start, span * 8);
      else this.logWrittenRuns(memory, itt, min, max);
      this.result.ittBlocks++;
      return;
    }
    if (w >= BULK_MIN_ENTRIES && w * 4 >= span && memory.contains(start, span * 8)) {
      try {
        if (w < span) {
          // The slots the save does not write keep their bytes.
          for (let e = min; e <= max; e++) {
            if (((evBits[e >>> 5]! | zeroBits[e >>> 5]!) & (1 << (e & 31))) === 0) memory.readU64Into(itt + e * 8, words, e * 2);
          }
        }
        if (!HOST_LITTLE_ENDIAN) swapWords(words, min * 2, (max + 1) * 2);
        memory.writeBytes(start, ittScratchBytes!, min * 8, span * 8);
      } catch (e) {
        throw asTableError(e, ittTableName(this.curDev), min, start);
      }
      this.result.ittBlocks++;
      return;
    }
    for (let word = min >>> 5; word <= max >>> 5; word++) {
      let set = evBits[word]! | zeroBits[word]!;
      while (set !== 0) {
        const b = 31 - Math.clz32(set & -set);
        set &= set - 1;
        const e = (word << 5) | b;
        const addr = itt + e * 8;
        try {
          memory.writeU64(addr, words[e * 2]!, words[e * 2 + 1]!);
        } catch (err) {
          throw asTableError(err, ittTableName(this.curDev), e, addr);
        }
      }
    }
  }

  /** The event bitmap of the device just written (reusing its old array when the size fits); clears the scratch. */
  private takeEventBits(old: DeviceImage | undefined): Uint32Array {
    const used = this.itMaxWord + 1;
    if (used <= 0) return EMPTY_BITS;
    const events = old !== undefined && old.events.length === used ? old.events : new Uint32Array(used);
    const evBits = this.evBits;
    for (let w = 0; w < used; w++) {
      events[w] = evBits[w]!;
      evBits[w] = 0;
    }
    return events;
  }

  /** One ITE of the current ITT (incremental saves). */
  private writeIte(eventid: number, next: number, intid: number, icid: number): void {
    const addr = this.curItt + eventid * 8;
    try {
      this.mem!.writeU64(addr, InterruptTranslationEntry.lo(intid, icid), InterruptTranslationEntry.hi(next, intid));
    } catch (e) {
      throw asTableError(e, ittTableName(this.curDev), eventid, addr);
    }
    this.result.eventsWritten++;
    this.result.entriesWritten++;
  }

  private zeroIte(memory: GuestMemory, eventid: number): void {
    const addr = this.curItt + eventid * 8;
    try {
      memory.writeU64(addr, 0, 0);
    } catch (e) {
      throw asTableError(e, ittTableName(this.curDev), eventid, addr);
    }
    this.result.entriesWritten++;
  }

  private writeDte(memory: GuestMemory, devid: number, img: DeviceImage): void {
    const next = nextSetBit(this.imageDevBits, devid + 1);
    const delta = next < 0 ? 0 : Math.min(next - devid, DeviceTableEntry.NEXT_MAX);
    try {
      memory.writeU64(img.dteAddr, DeviceTableEntry.lo(img.itt, img.bits), DeviceTableEntry.hi(delta, img.itt));
    } catch (e) {
      throw asTableError(e, TABLE_DEVICES, devid, img.dteAddr);
    }
    this.result.devicesWritten++;
    this.result.entriesWritten++;
  }

  // ---- Full save ----

  private saveFull(state: ItsTableState): SaveResult {
    const memory = state.memory;
    this.mem = memory;
    this.result = emptyResult(true);
    const deviceTable = decodeBaser(state.baserDevice);
    const collectionTable = decodeBaser(state.baserCollection);
    this.planCollections(state, memory, collectionTable);

    const old = this.image;
    const fresh = this.spareImage;
    fresh.clear();
    const devBits = this.imageDevBits;
    try {
      if (deviceTable.valid) {
        // Plan first: every DTE slot is located before anything is written.
        const ids = this.planIds;
        const itts = this.planItts;
        const bitsOf = this.planBits;
        ids.clear();
        itts.length = 0;
        bitsOf.clear();
        state.forEachDevice((devid, itt, bits) => {
          ids.push(devid);
          itts.push(itt);
          bitsOf.push(bits);
        });
        const slots = new Float64Array(ids.length);
        for (let k = 0; k < ids.length; k++) {
          const devid = ids.data[k]!;
          const slot = locateSlot(memory, deviceTable, devid);
          if (slot === LOCATE_NOT_IN_MEMORY) {
            throw new TableError(Errno.EINVAL, TABLE_DEVICES, devid, 'DeviceID',
              `the DTE slot of device ${hex(devid)} (or its level-1 entry) is outside guest memory`);
          }
          slots[k] = slot;
          if (slot === LOCATE_OUT_OF_TABLE) this.result.devicesSkipped++;
        }

        // The written devices; then zero the DTE slots of imaged devices not written now.
        devBits.fill(0);
        for (let k = 0; k < ids.length; k++) {
          const d = ids.data[k]!;
          if (slots[k]! >= 0) devBits[d >>> 5]! |= 1 << (d & 31);
        }
        for (const [devid, img] of old) {
          if (testBit(devBits, devid)) continue;
          if (locateSlot(memory, deviceTable, devid) !== img.dteAddr) continue;
          this.writeZero(memory, img.dteAddr, TABLE_DEVICES, devid);
          this.result.staleZeroed++;
        }

        for (let k = 0; k < ids.length; k++) {
          const slot = slots[k]!;
          if (slot < 0) continue;
          const devid = ids.data[k]!;
          const itt = itts[k]!;
          const bits = bitsOf.data[k]!;
          const prevImg = old.get(devid);
          const events = this.writeItt(state, devid, itt, bits, prevImg);
          const img = prevImg ?? new DeviceImage(slot, itt, bits, events);
          img.dteAddr = slot;
          img.itt = itt;
          img.bits = bits;
          img.events = events;
          fresh.set(devid, img);
          this.writeDte(memory, devid, img);
        }
      } else {
        devBits.fill(0);
      }
      this.writeCollections(memory, collectionTable);
    } catch (e) {
      // Partial output (as KVM). Keep what is known about earlier slots; the next save is full.
      this.resetScratch();
      this.rebuildDevBits();
      this.needFull = true;
      this.mem = null;
      throw e;
    }

    // The new image.
    this.spareImage = old;
    this.image = fresh;
    this.imageValid = true;
    this.imageMemory = memory;
    this.imageBaserDevice = state.baserDevice;
    this.imageBaserCollection = state.baserCollection;
    this.snapshotL1(memory, deviceTable);
    const prevColl = this.imageColl;
    this.imageColl = this.collNow;
    this.collNow = prevColl;
    this.imageOrphans = this.result.orphansZeroed;
    this.needFull = false;
    this.clearLog();
    this.mem = null;
    return this.result;
  }

  private resetScratch(): void {
    this.evBits.fill(0);
    this.zeroBits.fill(0);
    this.evMark.fill(0);
  }

  /** Restores imageDevBits from the image map (after a failed save overwrote it). */
  private rebuildDevBits(): void {
    this.imageDevBits.fill(0);
    for (const devid of this.image.keys()) this.imageDevBits[devid >>> 5]! |= 1 << (devid & 31);
  }

  private snapshotL1(memory: GuestMemory, table: TableGeometry): void {
    this.imageL1.fill(-1);
    if (!table.valid || !table.indirect) return;
    const n = Math.min(table.slots, MAX_L1);
    for (let i = 0; i < n; i++) this.imageL1[i] = readL1(memory, table, i);
  }

  // ---- Incremental save ----

  /** Returns null (having written nothing) when a full save is needed instead. */
  private saveIncremental(state: ItsTableState): SaveResult | null {
    const memory = state.memory;
    const deviceTable = decodeBaser(state.baserDevice);
    const collectionTable = decodeBaser(state.baserCollection);

    // Level-1 entries used by the last save must be unchanged.
    if (deviceTable.valid && deviceTable.indirect) {
      const n = Math.min(deviceTable.slots, MAX_L1);
      for (let i = 0; i < n; i++) if (readL1(memory, deviceTable, i) !== this.imageL1[i]) return null;
    }

    this.result = emptyResult(false);
    this.planCollections(state, memory, collectionTable);
    let lost = false;
    let gained = false;
    const collNow = this.collNow;
    const imageColl = this.imageColl;
    for (let i = 0; i < ICID_SPACE; i++) {
      if (imageColl[i] !== collNow[i]) {
        if (collNow[i] === 0) lost = true;
        else gained = true;
      }
    }
    if (lost || (gained && this.imageOrphans > 0)) return null;
    const rewriteCollections = this.collectionsDirty || gained;

    // Plan the devices: fail (as a full save would) before writing anything.
    const dirtyDev = this.dirtyDev.data.subarray(0, this.dirtyDev.length).sort();
    const liveSlot = new Float64Array(dirtyDev.length);
    for (let k = 0; k < dirtyDev.length; k++) {
      const devid = dirtyDev[k]!;
      const itt = state.deviceIttAddr(devid);
      let slot = -1;
      if (itt >= 0 && deviceTable.valid) {
        slot = locateSlot(memory, deviceTable, devid);
        if (slot === LOCATE_NOT_IN_MEMORY) {
          throw new TableError(Errno.EINVAL, TABLE_DEVICES, devid, 'DeviceID',
            `the DTE slot of device ${hex(devid)} (or its level-1 entry) is outside guest memory`);
        }
        if (slot === LOCATE_OUT_OF_TABLE) this.result.devicesSkipped++;
      }
      liveSlot[k] = slot;
    }

    this.mem = memory;
    try {
      // Devices: update the image, rewriting the whole ITT of every changed device.
      const devBits = this.imageDevBits;
      const changed: number[] = [];
      for (let k = 0; k < dirtyDev.length; k++) {
        const devid = dirtyDev[k]!;
        const old = this.image.get(devid);
        const slot = liveSlot[k]!;
        if (old !== undefined && slot < 0) {
          if (locateSlot(memory, deviceTable, devid) === old.dteAddr) {
            this.writeZero(memory, old.dteAddr, TABLE_DEVICES, devid);
            this.result.staleZeroed++;
          }
          this.image.delete(devid);
          devBits[devid >>> 5]! &= ~(1 << (devid & 31));
          changed.push(devid);
        }
        if (slot >= 0) {
          const itt = state.deviceIttAddr(devid);
          const bits = state.deviceEventIdBits(devid);
          const events = this.writeItt(state, devid, itt, bits, old);
          const img = old ?? new DeviceImage(slot, itt, bits, events);
          img.dteAddr = slot;
          img.itt = itt;
          img.bits = bits;
          img.events = events;
          this.image.set(devid, img);
          if (old === undefined) {
            devBits[devid >>> 5]! |= 1 << (devid & 31);
            changed.push(devid);
          }
        }
      }
      for (let k = 0; k < dirtyDev.length; k++) {
        const img = this.image.get(dirtyDev[k]!);
        if (img !== undefined) this.writeDte(memory, dirtyDev[k]!, img);
      }
      for (const c of changed) {
        const p = prevSetBit(devBits, c - 1);
        if (p >= 0 && this.dirtyDevMark[p] === 0) this.writeDte(memory, p, this.image.get(p)!);
      }

      // Events of unchanged devices.
      const dirtyEv = this.dirtyEv.data.subarray(0, this.dirtyEv.length).sort();
      let i = 0;
      while (i < dirtyEv.length) {
        const devid = dirtyEv[i]! >>> 16;
        let j = i;
        while (j < dirtyEv.length && dirtyEv[j]! >>> 16 === devid) j++;
        const img = this.dirtyDevMark[devid] === 0 ? this.image.get(devid) : undefined;
        if (img !== undefined) this.saveDeviceEvents(state, memory, devid, img, dirtyEv, i, j);
        i = j;
      }

      if (rewriteCollections) this.writeCollections(memory, collectionTable);
      else this.result.collectionsWritten = 0;
    } catch (e) {
      this.resetScratch();
      this.needFull = true;
      this.mem = null;
      throw e;
    }
    const prevColl = this.imageColl;
    this.imageColl = this.collNow;
    this.collNow = prevColl;
    this.imageOrphans += this.result.orphansZeroed;
    this.clearLog();
    this.mem = null;
    return this.result;
  }

  /** Incremental save of the changed events [from, to) of dirtyEv, all of device devid. */
  private saveDeviceEvents(
    state: ItsTableState,
    memory: GuestMemory,
    devid: number,
    img: DeviceImage,
    dirtyEv: Uint32Array,
    from: number,
    to: number,
  ): void {
    this.curDev = devid;
    this.curItt = img.itt;
    const mark = this.evMark;
    // Update the bitmap first: the nexts depend on the final set of live events.
    let events = img.events;
    const list = this.listScratch;
    const flipped = this.flippedScratch;
    let nList = 0;
    let nFlipped = 0;
    for (let k = from; k < to; k++) {
      const e = dirtyEv[k]! & 0xffff;
      if (mark[e] !== 0) continue;
      mark[e] = 1;
      list[nList++] = e;
      const intid = state.translate(devid, e);
      const icid = intid !== 0 ? state.eventCollection(devid, e) : -1;
      const live = intid !== 0 && icid >= 0 && icid < ICID_SPACE && this.collNow[icid] !== 0;
      const was = testBit(events, e);
      if (live !== was) {
        if (live) {
          if ((e >>> 5) >= events.length) events = growBits(events, e);
          events[e >>> 5]! |= 1 << (e & 31);
        } else {
          events[e >>> 5]! &= ~(1 << (e & 31));
        }
        flipped[nFlipped++] = e;
      }
      if (!live && (intid !== 0 || was)) {
        // Removed since the last save, or orphaned: a full save writes a zero here.
        this.zeroIte(memory, e);
        if (intid !== 0) this.result.orphansZeroed++;
        else this.result.staleZeroed++;
      }
    }
    img.events = events;
    for (let i = 0; i < nList; i++) if (testBit(events, list[i]!)) this.rewriteIte(state, devid, events, list[i]!);
    for (let i = 0; i < nFlipped; i++) {
      const p = prevSetBit(events, flipped[i]! - 1);
      if (p >= 0 && mark[p] === 0) this.rewriteIte(state, devid, events, p);
    }
    for (let i = 0; i < nList; i++) mark[list[i]!] = 0;
  }

  private rewriteIte(state: ItsTableState, devid: number, events: Uint32Array, e: number): void {
    const next = nextSetBit(events, e + 1);
    this.writeIte(e, next < 0 ? 0 : next - e, state.translate(devid, e), state.eventCollection(devid, e));
  }

  private writeZero(memory: GuestMemory, addr: number, table: string, index: number): void {
    try {
      memory.writeU64(addr, 0, 0);
    } catch (e) {
      throw asTableError(e, table, index, addr);
    }
    this.result.entriesWritten++;
  }
}

function emptyResult(full: boolean): SaveResult {
  return {
    full, devicesWritten: 0, devicesSkipped: 0, eventsWritten: 0, orphansZeroed: 0, collectionsWritten: 0,
    collectionsSkipped: 0, staleZeroed: 0, entriesWritten: 0, ittBlocks: 0,
  };
}

function growBits(bits: Uint32Array, e: number): Uint32Array {
  const next = new Uint32Array((e >>> 5) + 1);
  next.set(bits);
  return next;
}

/** Level-2 page of level-1 entry i, or -1 (invalid or unreadable). */
function readL1(memory: GuestMemory, table: TableGeometry, i: number): number {
  const gpa = table.base + i * 8;
  if (!memory.contains(gpa, 8)) return -1;
  const lo = memory.readU64Lo(gpa);
  const hi = memory.readU64Hi(gpa);
  return Level1Entry.valid(hi) ? Level1Entry.l2Addr(lo, hi) : -1;
}

/** A guest-memory write error in context (EFAULT as KVM; EBUSY when memory is frozen). */
function asTableError(e: unknown, table: string, index: number, gpa: number): Error {
  if (e instanceof TableError) return e;
  if (e instanceof ErrnoError) {
    return new TableError(e.errno, table, index, 'entry', `write at GPA ${hex(gpa)} failed: ${e.message}`);
  }
  return e instanceof Error ? e : new Error(String(e));
}
