/**
 * Contract between the ITS core (src/its/its.ts, which owns the translation state) and the
 * table ABI (src/its/abi/, which saves it into and restores it from guest RAM in KVM's ABI
 * revision 0). Kept as an interface so the ABI can be tested on a fake state and the core
 * without the ABI.
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import type { LpiSystem } from '../redist/types.js';

/** Collection not mapped to any vCPU (created implicitly by MAPTI/MAPI); saved as RDbase 0xffffffff. */
export const COLLECTION_NOT_MAPPED = -1;

/**
 * (added by src/its) The icid that forEachEvent reports for an ITE whose collection was freed
 * (MAPC V=0, GITS_BASER1 Valid=0) while the ITE lived on: KVM sets the ITE's collection to
 * NULL and never re-attaches it, even when the ICID is mapped again. Such an ITE cannot
 * deliver, move or be discarded; MAPD (or reset) frees it. KVM's own save path is undefined
 * for it (kvm-its-abi.md 3.9): the table ABI decides how to save it (e.g. a zero ITE).
 */
export const ITE_NO_COLLECTION = 0x10000;

/**
 * Locates the guest physical address of entry `id` of the table described by a GITS_BASER
 * value (KVM vgic_its_check_id, kvm-its-abi.md 3.6): flat or two-level (device table only),
 * 8-byte entries, 64 KiB pages. Returns -1 when the id is out of the table, the L1 entry is
 * invalid or unreadable, or the entry address is not in guest memory. Never throws.
 * Implemented in src/its/tables.ts.
 */
export type LocateEntry = (memory: GuestMemory, baser: bigint, id: number) => number;

/** (added by src/its/abi) EventIDs per page of event storage (freeEventPages). */
export const EVENTS_PER_EVENT_PAGE = 256;

/** (added by src/its/abi) Results of ItsTableState.addEvents. */
export const ADD_EVENTS_OK = 0;
/** An ITE for one of the (devid, eventid) already exists (or an EventID is repeated). */
export const ADD_EVENTS_EXISTS = 1;
/** The event-storage cap was reached (KVM: -ENOMEM). */
export const ADD_EVENTS_ENOMEM = 2;
/** An LPI could not be created: guest RAM fault (KVM: -EFAULT). */
export const ADD_EVENTS_EFAULT = 3;
/** Device not mapped, EventID out of range, INTID out of range or collection absent. */
export const ADD_EVENTS_INVALID = 4;

/**
 * (added by src/its/abi) ITEs staged by a restore, already validated, in the event-page format
 * of the ITS (ItsTableState.importEvents): per page EVENTS_PER_EVENT_PAGE words (INTID in bits
 * 15:0, ICID in bits 31:16; 0 = no ITE), and the counts the ITS needs to take the LPI
 * references and count the collections' ITEs without looking at every ITE again.
 */
export interface StagedEvents {
  /** Devices, each added (addDevice) and without ITEs, in ascending DeviceID order. */
  readonly deviceCount: number;
  readonly deviceIds: Uint32Array;
  /** Index of each device's first page; a device's pages end where the next device's begin (the last one's at pageCount). */
  readonly deviceFirstPage: Uint32Array;
  readonly pageCount: number;
  /** pageCount * EVENTS_PER_EVENT_PAGE words. */
  readonly pageWords: Uint32Array;
  /** EventID >> 8 of each page (ascending within a device). */
  readonly pageSlot: Uint8Array;
  /** ITEs in each page. */
  readonly pageLive: Uint16Array;
  /**
   * Optional: hands pageWords over to the ITS, which may keep it as its event storage instead
   * of copying the pages (staged page p becomes storage page p). Its words beyond the staged
   * pages must be zero. The stager stages into a new buffer afterwards.
   */
  takePageWords?(): Uint32Array;
  /** Total ITEs. */
  readonly eventCount: number;
  /** The INTIDs the ITEs name (each once, the first lpiCount entries of lpiIds). */
  readonly lpiCount: number;
  readonly lpiIds: Uint32Array;
  /**
   * Indexed by INTID (2^16 entries, the LPI INTID space): the number of ITEs naming it, and the
   * vCPU a new LPI targets (NO_VCPU: none). Only the entries of lpiIds are read.
   */
  readonly lpiRefs: Uint32Array;
  readonly lpiTarget: Int32Array;
  /** The ICIDs the ITEs name (each once, the first icidCount entries of icidIds). */
  readonly icidCount: number;
  readonly icidIds: Uint32Array;
  /** Indexed by ICID (2^16 entries): the number of ITEs naming it. Only the entries of icidIds are read. */
  readonly icidRefs: Uint32Array;
}

/** Receives every change of translation state, so the ABI can save incrementally. */
export interface ItsChangeListener {
  deviceChanged(devid: number): void;
  eventChanged(devid: number, eventid: number): void;
  collectionsChanged(): void;
  /** Everything changed (BASER rewrite, reset, restore): next save is a full save. */
  allChanged(): void;
}

export interface ItsTableState {
  readonly memory: GuestMemory;
  readonly lpis: LpiSystem;
  /** Current GITS_BASER0 (device table) and GITS_BASER1 (collection table) values. */
  readonly baserDevice: bigint;
  readonly baserCollection: bigint;
  /** ABI revision selected through GITS_IIDR (0). */
  readonly abiRevision: number;

  // ---- Iteration (save) ----
  /** Mapped devices in ascending DeviceID order. */
  forEachDevice(fn: (devid: number, ittAddr: number, eventIdBits: number) => void): void;
  /** Mapped events of a device in ascending EventID order. */
  forEachEvent(devid: number, fn: (eventid: number, intid: number, icid: number) => void): void;
  /** Existing collections in creation order; target is a vCPU id or COLLECTION_NOT_MAPPED. */
  forEachCollection(fn: (icid: number, target: number) => void): void;
  deviceCount(): number;
  eventCount(): number;

  // ---- (added by src/its/abi) Lookups (incremental save) and bulk export (full save) ----
  /** ITT address of a mapped device, or -1. */
  deviceIttAddr(devid: number): number;
  /** EventID bits of a mapped device, or 0. */
  deviceEventIdBits(devid: number): number;
  /** LPI INTID of the ITE (devid, eventid), or 0 when there is none. */
  translate(devid: number, eventid: number): number;
  /** ICID of the ITE (devid, eventid) (ITE_NO_COLLECTION when its collection was freed), or -1. */
  eventCollection(devid: number, eventid: number): number;
  /**
   * The mapped events of a device in ascending EventID order, copied into the arrays (icid
   * ITE_NO_COLLECTION: collection freed); returns how many (at most the shortest array's
   * length; 2^16 always suffices). The bulk form of forEachEvent.
   */
  exportEvents(devid: number, eventids: Uint32Array, intids: Uint32Array, icids: Uint32Array): number;
  /**
   * Raw bulk export (the full save's fast path), page by page: for each page of
   * EVENTS_PER_EVENT_PAGE EventIDs of the device that has storage, in ascending order,
   * fn(firstEventId, words, offset), where words[offset + i] (read-only, valid during the
   * call) describes EventID firstEventId + i: 0 = no ITE, else INTID in bits 15:0 and ICID in
   * bits 31:16. Returns false, calling nothing, while some ITE of this ITS has lost its
   * collection (exportEvents reports those).
   */
  exportEventPages(devid: number, fn: (firstEventId: number, words: Uint32Array, offset: number) => void): boolean;

  // ---- Mutators used by restore (state only; no table writes) ----
  hasCollection(icid: number): boolean;
  addCollection(icid: number, target: number): void;
  hasDevice(devid: number): boolean;
  addDevice(devid: number, ittAddr: number, eventIdBits: number): void;
  /** Maps (devid, eventid) -> intid in collection icid, acquiring the LPI. False on a guest RAM fault. */
  addEvent(devid: number, eventid: number, intid: number, icid: number): boolean;
  /**
   * (added by src/its/abi) Bulk insert of `count` events of a mapped device (restore), each
   * acquiring its LPI with its collection's target; reports deviceChanged(devid) once. All or
   * nothing for the call. Returns an ADD_EVENTS_* code.
   */
  addEvents(devid: number, count: number, eventids: Uint16Array | Uint32Array, intids: Uint16Array | Uint32Array, icids: Uint16Array | Uint32Array): number;
  /**
   * (added by src/its/abi) Bulk insert of a restore's staged ITEs: copies the pages into the
   * event storage and takes each LPI's references at once (acquireMany: a new LPI is created
   * with its staged target, reading its property byte and consuming its pending bit).
   * Reports deviceChanged once per device. All or nothing; returns an ADD_EVENTS_* code
   * (INVALID: a device not mapped or out of order, a collection absent, an INTID out of range;
   * EXISTS: a device already has ITEs; ENOMEM: event storage; EFAULT: an LPI creation fault).
   */
  importEvents(staged: StagedEvents): number;
  /**
   * (added by src/its/abi) Event storage left: events live in pages of EVENTS_PER_EVENT_PAGE
   * consecutive EventIDs (EventID >> 8) of one device; this many more pages can be allocated.
   */
  freeEventPages(): number;
  /**
   * (added by src/its/abi) Capacity hint before bulk inserts: `devices` more devices with
   * `pages` more event pages in all will be added. Changes no observable state.
   */
  reserveEventStorage(devices: number, pages: number): void;
  /** Frees every device (and its events) and every collection of this ITS. */
  clearTranslations(): void;

  /** The change listener (the incremental saver); null for none. */
  setChangeListener(listener: ItsChangeListener | null): void;
}
