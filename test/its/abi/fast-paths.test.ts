/**
 * The fast paths of ITS_SAVE_TABLES / ITS_RESTORE_TABLES (save.ts encodePage and emitItt,
 * restore.ts walkItt / scanItt), checked against the KVM table ABI rev 0 (kvm-its-abi.md 3.3,
 * 3.7, 3.8):
 * - every ITE slot of every ITT after a full save, against entries computed here from the ABI
 *   (next << 48 | pINTID << 16 | ICID, next = EventID delta to the next written ITE, 0 for the
 *   last; an ITE whose collection is not written is saved as zero, see save.ts), for dense
 *   pages (4-per-iteration path), holes, pages starting with a hole, a hole inside a group of
 *   4, and with one collection the table cannot hold (per-entry check);
 * - direct encoding into guest memory (ITT inside one backing chunk) and the block buffer
 *   (ITT straddling two chunks) write the same bytes; the dirty log covers every written ITE;
 * - restore of the same image in place (word window), from a copy (ITT across two chunks) and
 *   entry by entry (ITT running past the end of guest memory), also for hand-modified images
 *   (oracle: kvm-model.ts), and with the LPI property table only partly in guest memory.
 *
 * Which path ran is checked with spies on the guest-memory object (calls and results only).
 */
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { TableError } from '../../../src/its/abi/errors.js';
import { COLLECTION_NOT_MAPPED } from '../../../src/its/table-state.js';
import { ArrayBufferGuestMemory } from '../../../src/memory/array-buffer-guest-memory.js';
import { dirtyLogBytesFor } from '../../../src/memory/region-table.js';
import { Errno } from '../../../src/util/errno.js';
import { modelRestore } from './kvm-model.js';
import {
  GITS_BASER1, GITS_CTLR, RAM_BASE, TestVm, defaultLayout, readSavedRegs, restoreInto, type Layout, type SavedRegs,
} from './harness.js';

// =========================================================================================
// The VM: 9 MiB of RAM at 1 GiB; the harness's layout for the tables; ITTs placed by hand
// =========================================================================================

const RAM_SIZE = 9 * 1024 * 1024; // tables below 0x30_0000, ITTs from 0x80_0000, one ITT at the top
const RAM_END = RAM_BASE + RAM_SIZE; // 0x4090_0000
/** Small backing chunks: 8 KiB (RAM_BASE is a multiple, so chunk boundaries are at RAM_BASE + k * 0x2000). */
const SMALL_CHUNK = 0x2000;
const MARK = 0x5a5a_5a5a_5a5a_5a5an;

interface DevSpec {
  readonly devid: number;
  readonly bits: number;
  readonly itt: number;
  readonly events: readonly number[];
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

const DEVICES: readonly DevSpec[] = [
  // 10 EventID bits (8 KiB ITT), 0..599 all mapped: pages 0 and 1 full, page 2 partial (512..599).
  { devid: 1, bits: 10, itt: RAM_BASE + 0x80_0000, events: range(0, 599) },
  // Holes: page 0 full; page 1: 300 unmapped inside 256..310 (a group of 4 starting with a hole),
  // then 400; page 2: 512, 513, 515 (514 missing: a hole inside a group of 4), 516..530;
  // page 3 starts with a hole (768), 769..800, and the last slot 1023.
  // ITT at an odd 4 KiB offset: it straddles the 8 KiB chunk boundary RAM_BASE + 0x81_2000.
  {
    devid: 2, bits: 10, itt: RAM_BASE + 0x81_1000,
    events: [...range(0, 299), ...range(301, 310), 400, 512, 513, ...range(515, 530), ...range(769, 800), 1023],
  },
  // Sparse: three lone ITEs.
  { devid: 3, bits: 10, itt: RAM_BASE + 0x82_0000, events: [5, 700, 1022] },
  // 6 EventID bits (512-byte ITT), all 64 mapped; straddles the chunk boundary RAM_BASE + 0x83_2000.
  { devid: 4, bits: 6, itt: RAM_BASE + 0x83_1f00, events: range(0, 63) },
  // 1 EventID bit: both events (a group of 4 that runs past the ITT).
  { devid: 5, bits: 1, itt: RAM_BASE + 0x84_0000, events: [0, 1] },
  // 11 EventID bits (16 KiB ITT) at the very top of RAM; live ITEs only in its first half.
  { devid: 6, bits: 11, itt: RAM_END - 0x4000, events: [...range(0, 99), 500, ...range(1000, 1020)] },
];

const LAYOUT: Layout = { ...defaultLayout(RAM_SIZE), itt: (devid) => DEVICES.find((d) => d.devid === devid)!.itt };

/** The collection the tables cannot hold in scenario "unwritable" (a 1-page collection table has 8192 slots). */
const BIG_ICID = 8200;
/** ICID 7 is never MAPC'd: MAPTI creates it unmapped (saved with RDbase 0xffffffff). */
const UNMAPPED_ICID = 7;

/** ICID of ITE (devid, e): (e >> 3) % 4 (ICID n targets vCPU n), ICID 7 for some, BIG_ICID for others when enabled. */
function icidOf(devid: number, e: number, unwritable: boolean): number {
  if (unwritable && (devid === 1 || devid === 2 || devid === 4) && e % 37 === 5) return BIG_ICID;
  if ((devid === 2 || devid === 6) && e % 50 === 7) return UNMAPPED_ICID;
  return (e >>> 3) % 4;
}

/** INTID of ITE (devid, e): 8192 + (devid * 977 + e) % 1200, so several ITEs share an LPI. */
function intidOf(devid: number, e: number): number {
  return 8192 + ((devid * 977 + e) % 1200);
}

/** Entry value from the ABI: next << 48 | pINTID << 16 | ICID. */
function iteValue(next: number, intid: number, icid: number): bigint {
  return (BigInt(next) << 48n) | (BigInt(intid) << 16n) | BigInt(icid);
}

function makeMemory(chunkSize?: number, size = RAM_SIZE, buffer?: ArrayBuffer): ArrayBufferGuestMemory {
  return new ArrayBufferGuestMemory([{ gpa: RAM_BASE, size }], buffer === undefined ? undefined : [buffer], chunkSize === undefined ? {} : { chunkSize });
}

/**
 * Source VM: collections 0..3 -> vCPUs 0..3 (and BIG_ICID -> vCPU 1 with a 2-page collection
 * table, shrunk to 1 page afterwards, when `unwritable`), the devices of DEVICES with their
 * events mapped through the command queue in ascending (DeviceID, EventID) order. With `mark`,
 * ITT areas hold the marker first, so slots a save must not write can be checked.
 */
function buildSource(memory: ArrayBufferGuestMemory, unwritable: boolean, mark = true): TestVm {
  // (Restore images keep zeroed ITTs, as a guest allocates them: the walk starts at slot 0.)
  const end = memory.regions[0]!.gpa + memory.regions[0]!.size;
  if (mark) for (const d of DEVICES) memory.fill(d.itt, Math.min(8 << d.bits, end - d.itt), 0x5a);
  const t = new TestVm({ layout: LAYOUT, memory, collectionPages: unwritable ? 2 : 1 });
  for (let icid = 0; icid < 4; icid++) t.mapc(icid, icid);
  if (unwritable) t.mapc(BIG_ICID, 1);
  for (const d of DEVICES) t.mapd(d.devid, d.bits, d.itt);
  for (const d of DEVICES) for (const e of d.events) t.mapti(d.devid, e, intidOf(d.devid, e), icidOf(d.devid, e, unwritable));
  expect(t.its.eventCount()).toBe(DEVICES.reduce((n, d) => n + d.events.length, 0));
  if (unwritable) {
    // The guest disables the ITS and shrinks the collection table: BIG_ICID has no slot any more.
    t.setItsReg(GITS_CTLR, 0n);
    t.setItsReg(GITS_BASER1, t.collectionBaser({ collectionPages: 1 }));
    expect(t.its.collectionTarget(BIG_ICID)).toBe(1); // the collection still exists in the ITS
  }
  return t;
}

/** Expected content of every ITE slot of a device after a full save (MARK: not written). */
function expectedItt(d: DevSpec, unwritable: boolean): bigint[] {
  const slots: bigint[] = new Array<bigint>(1 << d.bits).fill(MARK);
  const written = d.events.filter((e) => icidOf(d.devid, e, unwritable) !== BIG_ICID);
  for (const e of d.events) if (icidOf(d.devid, e, unwritable) === BIG_ICID) slots[e] = 0n; // saved as invalid
  written.forEach((e, k) => {
    const next = k + 1 < written.length ? written[k + 1]! - e : 0;
    slots[e] = iteValue(next, intidOf(d.devid, e), icidOf(d.devid, e, unwritable));
  });
  return slots;
}

/** Slots whose content differs from the expectation, as readable strings (empty: all match). */
function ittMismatches(memory: ArrayBufferGuestMemory, d: DevSpec, unwritable: boolean): string[] {
  const want = expectedItt(d, unwritable);
  const bad: string[] = [];
  for (let e = 0; e < want.length; e++) {
    const got = memory.readU64Big(d.itt + e * 8);
    if (got !== want[e]) bad.push(`device ${d.devid} event ${e}: got 0x${got.toString(16)}, want 0x${want[e]!.toString(16)}`);
  }
  return bad.slice(0, 10);
}

/** Records writableWordWindow(gpa, len) calls on the ITT addresses: ITT -> was a window returned. */
function spyWritableWindows(memory: ArrayBufferGuestMemory): () => Map<number, boolean> {
  const spy = vi.spyOn(memory, 'writableWordWindow');
  return () => {
    const seen = new Map<number, boolean>();
    spy.mock.calls.forEach(([gpa, len], i) => {
      const d = DEVICES.find((x) => x.itt === gpa && 8 << x.bits === len);
      if (d !== undefined) seen.set(d.devid, spy.mock.results[i]!.value !== null);
    });
    return seen;
  };
}

// =========================================================================================
// Save
// =========================================================================================

describe('the vectors of this file (arithmetic by hand)', () => {
  it('entries and INTIDs are what the comments say', () => {
    // Device 1, event 0: INTID 8192 + (977 + 0) % 1200 = 9169 = 0x23D1, ICID (0 >> 3) % 4 = 0,
    // next 1 -> 0x0001_0000_23D1_0000.
    expect(iteValue(1, intidOf(1, 0), icidOf(1, 0, false))).toBe(0x0001_0000_23d1_0000n);
    // Device 2, event 299: next = 301 - 299 = 2; INTID 8192 + (1954 + 299) % 1200 = 8192 + 1053 = 9245 = 0x241D;
    // ICID (299 >> 3) % 4 = 37 % 4 = 1 -> 0x0002_0000_241D_0001.
    expect(expectedItt(DEVICES[1]!, false)[299]).toBe(0x0002_0000_241d_0001n);
    // Device 2, event 513: next = 515 - 513 = 2 (514 is a hole inside the group 512..515).
    expect(expectedItt(DEVICES[1]!, false)[513]! >> 48n).toBe(2n);
    // Device 2, event 530 -> 769 (page 3 starts with a hole at 768): next 239.
    expect(expectedItt(DEVICES[1]!, false)[530]! >> 48n).toBe(239n);
    // Device 2, event 1023 is the last: next 0; event 300 is a hole: MARK (not written).
    expect(expectedItt(DEVICES[1]!, false)[1023]! >> 48n).toBe(0n);
    expect(expectedItt(DEVICES[1]!, false)[300]).toBe(MARK);
    // Device 2, event 257: 257 % 50 = 7 -> ICID 7 (never MAPC'd); INTID 8192 + (1954 + 257) % 1200 = 9203 = 0x23F3.
    expect(expectedItt(DEVICES[1]!, false)[257]).toBe(0x0001_0000_23f3_0007n);
    // Unwritable collection: device 1 event 5 (5 % 37 = 5) is zero; event 4 then hops to 6: next 2.
    expect(expectedItt(DEVICES[0]!, true)[5]).toBe(0n);
    expect(expectedItt(DEVICES[0]!, true)[4]! >> 48n).toBe(2n);
    // The ITT placement: device 2's ITT straddles the 8 KiB chunk boundary, device 1's does not.
    expect(Math.floor((DEVICES[1]!.itt - RAM_BASE) / SMALL_CHUNK)).not.toBe(Math.floor((DEVICES[1]!.itt + 0x1fff - RAM_BASE) / SMALL_CHUNK));
    expect(Math.floor((DEVICES[0]!.itt - RAM_BASE) / SMALL_CHUNK)).toBe(Math.floor((DEVICES[0]!.itt + 0x1fff - RAM_BASE) / SMALL_CHUNK));
  });
});

for (const unwritable of [false, true]) {
  const label = unwritable ? 'one collection the table cannot hold (per-entry collection check)' : 'every collection written (4 ITEs per step)';

  describe(`full save, ${label}`, () => {
    it('writes every ITE slot as the ABI says (direct encoding into guest memory)', () => {
      const memory = makeMemory();
      const t = buildSource(memory, unwritable);
      const windows = spyWritableWindows(memory);
      t.saveTables();
      // Every ITT lies in the one 2 GiB chunk: all encoded in place.
      expect([...windows().entries()].sort((a, b) => a[0] - b[0])).toEqual(DEVICES.map((d) => [d.devid, true]));
      for (const d of DEVICES) expect(ittMismatches(memory, d, unwritable), `device ${d.devid}`).toEqual([]);
      const r = t.vm.lastSave!;
      const zeroed = DEVICES.reduce((n, d) => n + d.events.filter((e) => icidOf(d.devid, e, unwritable) === BIG_ICID).length, 0);
      expect(zeroed > 0).toBe(unwritable);
      expect(r.orphansZeroed).toBe(zeroed);
      expect(r.eventsWritten).toBe(t.its.eventCount() - zeroed);
      expect(r.collectionsSkipped).toBe(unwritable ? 1 : 0);
    });

    it('ITTs straddling two backing chunks (block buffer) get the same bytes as in-place encoding', () => {
      const direct = makeMemory();
      const chunked = makeMemory(SMALL_CHUNK);
      const a = buildSource(direct, unwritable);
      const b = buildSource(chunked, unwritable);
      const windowsB = spyWritableWindows(chunked);
      a.saveTables();
      b.saveTables();
      // 8 KiB chunks: devices 2, 4 and 6 straddle a boundary (buffered), 1, 3 and 5 do not (direct).
      expect([...windowsB().entries()].sort((x, y) => x[0] - y[0])).toEqual([[1, true], [2, false], [3, true], [4, false], [5, true], [6, false]]);
      for (const d of DEVICES) expect(ittMismatches(chunked, d, unwritable), `device ${d.devid}`).toEqual([]);
      // The whole of guest RAM is byte for byte the same.
      const bytesA = new Uint8Array(direct.buffers[0]!);
      const bytesB = new Uint8Array(chunked.buffers[0]!);
      expect(Buffer.compare(bytesA, bytesB)).toBe(0);
      expect(b.vm.lastSave).toEqual({ ...a.vm.lastSave!, ittBlocks: b.vm.lastSave!.ittBlocks });
    });

    it('an ITT running past the end of guest memory (live ITEs inside) is written through the buffer, same bytes', () => {
      const direct = makeMemory();
      const cut = makeMemory(undefined, RAM_SIZE - 0x2000); // device 6's ITT: its second half is outside
      const a = buildSource(direct, unwritable);
      const b = buildSource(cut, unwritable);
      const windowsB = spyWritableWindows(cut);
      a.saveTables();
      b.saveTables();
      expect(windowsB().get(6)).toBe(false);
      expect(windowsB().get(1)).toBe(true);
      const bytesA = new Uint8Array(direct.buffers[0]!, 0, RAM_SIZE - 0x2000);
      const bytesB = new Uint8Array(cut.buffers[0]!, 0, RAM_SIZE - 0x2000);
      expect(Buffer.compare(bytesA, bytesB)).toBe(0);
    });

    it('the dirty log covers every page holding a written ITE, and no page outside the tables', () => {
      for (const chunkSize of [undefined, SMALL_CHUNK]) {
        const memory = makeMemory(chunkSize);
        const t = buildSource(memory, unwritable);
        const log = new Uint8Array(dirtyLogBytesFor(RAM_END));
        memory.setDirtyLog(log);
        const dirty = (gpa: number): boolean => {
          const page = Math.floor(gpa / 4096);
          return (log[page >>> 3]! & (1 << (page & 7))) !== 0;
        };
        log.fill(0);
        t.saveTables();
        const allowed = new Set<number>();
        const addPages = (from: number, to: number): void => {
          for (let p = Math.floor(from / 4096); p <= Math.floor((to - 1) / 4096); p++) allowed.add(p);
        };
        for (const d of DEVICES) {
          const want = expectedItt(d, unwritable);
          const written = want.flatMap((v, e) => (v === MARK ? [] : [e]));
          const missing = written.filter((e) => !dirty(d.itt + e * 8));
          expect(missing, `device ${d.devid} (chunk ${chunkSize ?? 'default'})`).toEqual([]);
          addPages(d.itt + written[0]! * 8, d.itt + written[written.length - 1]! * 8 + 8);
          addPages(LAYOUT.deviceTable + d.devid * 8, LAYOUT.deviceTable + d.devid * 8 + 8);
        }
        addPages(LAYOUT.collectionTable, LAYOUT.collectionTable + 8 * 8);
        const logged: number[] = [];
        for (let p = 0; p < log.length * 8; p++) if ((log[p >>> 3]! >> (p & 7)) & 1) logged.push(p);
        expect(logged.filter((p) => !allowed.has(p)).map((p) => `0x${(p * 4096).toString(16)}`)).toEqual([]);
      }
    });
  });
}

describe('dirty log of a sparse ITT encoded in place', () => {
  it('logs the pages holding written slots only, not the pages between them', () => {
    const memory = makeMemory();
    const t = new TestVm({ layout: LAYOUT, memory });
    t.mapc(0, 0);
    // 14 EventID bits: a 128 KiB ITT, 32 guest pages, inside one backing chunk (encoded in place).
    const itt = RAM_BASE + 0x86_0000;
    t.mapd(9, 14, itt);
    // EventID 1: byte 8, page 0; 8000: byte 64000, page 15 (64000 / 4096 = 15.6); 16000: byte 128000, page 31.
    for (const e of [1, 8000, 16000]) t.mapti(9, e, 8192 + e, 0);
    const log = new Uint8Array(dirtyLogBytesFor(RAM_END));
    memory.setDirtyLog(log);
    const windows = vi.spyOn(memory, 'writableWordWindow');
    t.saveTables();
    const call = windows.mock.calls.findIndex(([gpa, len]) => gpa === itt && len === 8 << 14);
    expect(windows.mock.results[call]!.value).not.toBeNull(); // encoded in place
    const ittPages: number[] = [];
    const firstPage = itt / 4096;
    for (let p = firstPage; p < firstPage + 32; p++) if ((log[p >>> 3]! >> (p & 7)) & 1) ittPages.push(p - firstPage);
    expect(ittPages).toEqual([0, 15, 31]);
    expect(memory.readU64Big(itt + 8000 * 8)).toBe(iteValue(8000, 8192 + 8000, 0));
  });
});

// =========================================================================================
// Restore
// =========================================================================================

/** Everything a restore must reproduce, per device and EventID, and per LPI. */
interface Snapshot {
  translations: string[];
  collections: [number, number][];
  lpis: string[];
}

function snapshotOf(t: TestVm): Snapshot {
  const lpis = t.vm.lpis!;
  const translations: string[] = [];
  for (const d of DEVICES) {
    for (let e = 0; e < 1 << d.bits; e++) {
      const intid = t.its.translate(d.devid, e);
      if (intid !== 0) translations.push(`${d.devid}/${e} -> ${intid} icid ${t.its.eventCollection(d.devid, e)} vcpu ${lpis.target(intid)}`);
    }
  }
  const collections: [number, number][] = [];
  t.its.forEachCollection((icid, target) => collections.push([icid, target]));
  const lpiList: string[] = [];
  lpis.forEachLpi((intid) => lpiList.push(`${intid}: refs ${lpis.refcount(intid)} vcpu ${lpis.target(intid)} pending ${lpis.isPending(intid)}`));
  return { translations, collections, lpis: lpiList };
}

interface Image {
  src: TestVm;
  regs: SavedRegs;
  bytes: ArrayBuffer;
}

/** The source of the restore tests: the state above, a few LPIs pending, pending tables and ITS tables saved. */
function saveImage(): Image {
  const memory = makeMemory();
  const src = buildSource(memory, false, false);
  src.int(1, 10);
  src.int(2, 512);
  src.int(6, 1000);
  src.savePendingTables();
  src.saveTables();
  return { src, regs: readSavedRegs(src), bytes: memory.buffers[0]!.slice(0) };
}

type Placement = 'window' | 'copy' | 'reader';
const PLACEMENTS: readonly Placement[] = ['window', 'copy', 'reader'];

/**
 * A destination memory holding the image: 'window' (one 2 GiB chunk: every ITT walked in
 * place), 'copy' (8 KiB chunks: device 6's 16 KiB ITT spans two chunks and is copied first, as
 * device 2's), 'reader' (RAM cut 8 KiB short: device 6's ITT runs past the end of guest memory,
 * after its last valid ITE (event 1020, byte 8160 < 8192), and is read entry by entry).
 */
function placeImage(bytes: ArrayBuffer, placement: Placement): ArrayBufferGuestMemory {
  if (placement === 'window') return makeMemory(undefined, RAM_SIZE, bytes.slice(0));
  if (placement === 'copy') return makeMemory(SMALL_CHUNK, RAM_SIZE, bytes.slice(0));
  return makeMemory(undefined, RAM_SIZE - 0x2000, bytes.slice(0, RAM_SIZE - 0x2000));
}

/** Records which way each ITT of DEVICES was read during a restore. */
function spyReads(memory: ArrayBufferGuestMemory): () => Map<number, Placement> {
  const ww = vi.spyOn(memory, 'wordWindow');
  const rb = vi.spyOn(memory, 'readBytes');
  return () => {
    const how = new Map<number, Placement>();
    for (const d of DEVICES) {
      const len = 8 << d.bits;
      const w = ww.mock.calls.findIndex(([gpa, l]) => gpa === d.itt && l === len);
      if (w < 0) continue;
      if (ww.mock.results[w]!.value !== null) how.set(d.devid, 'window');
      else if (rb.mock.calls.some(([gpa, , , l]) => gpa === d.itt && l === len)) how.set(d.devid, 'copy');
      else if (rb.mock.calls.some(([gpa]) => gpa >= d.itt && gpa < d.itt + len)) how.set(d.devid, 'reader');
    }
    return how;
  };
}

function restoreImage(img: Image, placement: Placement, regs: SavedRegs = img.regs, patch?: (m: ArrayBufferGuestMemory) => void): {
  dst: TestVm | null;
  error: unknown;
  how: Map<number, Placement>;
  memory: ArrayBufferGuestMemory;
} {
  const memory = placeImage(img.bytes, placement);
  patch?.(memory);
  const how = spyReads(memory);
  let dst: TestVm | null = null;
  let error: unknown = null;
  try {
    dst = restoreInto(memory, regs, { layout: LAYOUT });
  } catch (e) {
    error = e;
  }
  return { dst, error, how: how(), memory };
}

describe('restore of the same image: in place, from a copy, entry by entry', () => {
  let img: Image;
  let expected: Snapshot;
  beforeAll(() => {
    img = saveImage();
    expected = snapshotOf(img.src);
  });

  it('the source is what the restore must reproduce (shared LPIs, pending LPIs, an unmapped collection)', () => {
    expect(expected.translations.length).toBe(DEVICES.reduce((n, d) => n + d.events.length, 0));
    expect(expected.lpis.some((s) => !s.includes('refs 1 '))).toBe(true); // LPIs named by several ITEs
    expect(expected.lpis.filter((s) => s.endsWith('pending true')).length).toBe(3);
    expect(expected.collections).toContainEqual([UNMAPPED_ICID, COLLECTION_NOT_MAPPED]);
  });

  for (const placement of PLACEMENTS) {
    it(`${placement}: same translations (INTID, ICID, target), collections and LPI refcounts`, () => {
      const { dst, error, how } = restoreImage(img, placement);
      expect(error).toBeNull();
      // Device 6 took the path under test; device 2 (straddling 8 KiB chunks) is copied too with small chunks.
      expect(how.get(6)).toBe(placement);
      expect(how.get(1)).toBe('window');
      expect(how.get(2)).toBe(placement === 'copy' ? 'copy' : 'window');
      const got = snapshotOf(dst!);
      expect(got.translations).toEqual(expected.translations);
      expect(got.collections).toEqual(expected.collections);
      expect(got.lpis).toEqual(expected.lpis);
    });

    it(`${placement}: a full save after the restore writes the image's table bytes again`, () => {
      const { dst, memory } = restoreImage(img, placement);
      // Clear the tables first, so that the save must write every entry itself.
      const size = memory.regions[0]!.size;
      const areas: [number, number][] = [[LAYOUT.deviceTable, 0x1_0000], [LAYOUT.collectionTable, 0x1_0000]];
      for (const d of DEVICES) areas.push([d.itt, Math.min(8 << d.bits, RAM_BASE + size - d.itt)]);
      for (const [at, len] of areas) memory.fill(at, len, 0);
      dst!.saveTables();
      expect(dst!.vm.lastSave!.full).toBe(true);
      for (const [at, len] of areas) {
        const want = new Uint8Array(img.bytes, at - RAM_BASE, len);
        const got = new Uint8Array(memory.buffers[0]!, at - RAM_BASE, len);
        expect(Buffer.compare(got, want), `0x${at.toString(16)}`).toBe(0);
      }
    });
  }

  it('the reader path faults where KVM would: an entry the walk reaches outside guest memory', () => {
    // Device 6's last ITE (event 1020) gets next = 10: the walk goes on to event 1030, at byte
    // 8240 of the ITT, past the end of the cut RAM -> -EFAULT naming that entry.
    const { dst, error } = restoreImage(img, 'reader', img.regs, (m) => {
      const at = DEVICES[5]!.itt + 1020 * 8;
      m.writeU64Big(at, (m.readU64Big(at) & 0x0000_ffff_ffff_ffffn) | (10n << 48n));
    });
    expect(dst).toBeNull();
    expect(error).toBeInstanceOf(TableError);
    const te = error as TableError;
    expect([te.errno, te.table, te.index, te.field]).toEqual([Errno.EFAULT, 'ITT of device 0x6', 1030, 'entry']);
  });
});

describe('staged event pages are reused from one restore to the next without being cleared first', () => {
  // The stager keeps one page buffer and writes or zeroes each slot once as it walks (no
  // clearing pass). A sparse ITT staged into pages a dense one filled before must not inherit
  // the dense one's words, whether that restore succeeded or failed half-way.
  /** Device 1 only, with events 3, 100 and 300: holes before, between and after the ITEs of pages 0 and 1. */
  const SPARSE_EVENTS = [3, 100, 300];
  function sparseImage(): Image {
    const memory = makeMemory();
    const src = new TestVm({ layout: LAYOUT, memory });
    for (let icid = 0; icid < 4; icid++) src.mapc(icid, icid);
    src.mapd(1, 10, DEVICES[0]!.itt);
    for (const e of SPARSE_EVENTS) src.mapti(1, e, intidOf(1, e), icidOf(1, e, false));
    src.saveTables();
    return { src, regs: readSavedRegs(src), bytes: memory.buffers[0]!.slice(0) };
  }
  const failDevice6 = (m: ArrayBufferGuestMemory): void => m.writeU64Big(DEVICES[5]!.itt + 1000 * 8, (1n << 48n) | (5n << 16n));

  it('a sparse image restored after a dense one, and after a failed one, has exactly its own ITEs', () => {
    const dense = saveImage(); // device 1: events 0..599, staged into the buffer's first pages
    const sparse = sparseImage();
    const want = SPARSE_EVENTS.map((e) => `1/${e} -> ${intidOf(1, e)} icid ${icidOf(1, e, false)} vcpu ${icidOf(1, e, false)}`);

    // 1. After a successful dense restore.
    expect(restoreImage(dense, 'window').error).toBeNull();
    let r = restoreImage(sparse, 'window');
    expect(r.error).toBeNull();
    expect(snapshotOf(r.dst!).translations).toEqual(want);
    expect(r.dst!.its.eventCount()).toBe(3);

    // 2. After a restore that failed on device 6's event 1000 (pINTID 5: not an LPI), devices 1..5 staged.
    const failed = restoreImage(dense, 'window', dense.regs, failDevice6);
    expect(failed.error).toBeInstanceOf(TableError);
    expect([(failed.error as TableError).errno, (failed.error as TableError).index]).toEqual([Errno.EINVAL, 1000]);
    r = restoreImage(sparse, 'window');
    expect(r.error).toBeNull();
    expect(snapshotOf(r.dst!).translations).toEqual(want);
    expect(r.dst!.its.eventCount()).toBe(3);
    // The fresh ITS keeps the staging buffer as its event storage: its next pages (pool pages
    // 2.. here) are past the staged ones, where the failed restore had written device 2..5's
    // ITEs. A new page must hold only what is mapped on it.
    const t = r.dst!;
    t.mapti(1, 600, 9999, 0); // device 1, EventID page 2
    t.mapd(8, 10, RAM_BASE + 0x85_0000);
    t.mapti(8, 5, 9998, 1);
    expect(snapshotOf(t).translations).toEqual([...want, `1/600 -> 9999 icid 0 vcpu 0`]);
    for (let e = 0; e < 1024; e++) expect(t.its.translate(8, e), `8/${e}`).toBe(e === 5 ? 9998 : 0);
    expect(t.its.eventCount()).toBe(5);
  });

  it('a restore does not change the ITS of the restore before it (whose event storage was the staging buffer)', () => {
    const dense = saveImage();
    const expected = snapshotOf(dense.src);
    const first = restoreImage(dense, 'window');
    expect(first.error).toBeNull();
    // Another restore, successful, then a failing one: both stage into buffers of their own.
    expect(restoreImage(sparseImage(), 'window').error).toBeNull();
    expect(restoreImage(dense, 'window', dense.regs, failDevice6).error).toBeInstanceOf(TableError);
    expect(snapshotOf(first.dst!)).toEqual(expected);
    expect(first.dst!.its.eventCount()).toBe(expected.translations.length);
  });
});

describe('hand-modified images walk the same way on every path (oracle: kvm-model.ts)', () => {
  let img: Image;
  beforeAll(() => {
    img = saveImage();
  });
  const itt6 = DEVICES[5]!.itt;
  const itt1 = DEVICES[0]!.itt;
  /** Rewrites fields of the ITE at gpa (undefined: keep). */
  const editIte = (gpa: number, f: { next?: number; intid?: number; icid?: number; zero?: boolean }) => (m: ArrayBufferGuestMemory): void => {
    const v = m.readU64Big(gpa);
    if (f.zero === true) {
      m.writeU64Big(gpa, 0n);
      return;
    }
    const next = f.next ?? Number(v >> 48n);
    const intid = f.intid ?? Number((v >> 16n) & 0xffff_ffffn);
    const icid = f.icid ?? Number(v & 0xffffn);
    m.writeU64Big(gpa, (BigInt(next) << 48n) | (BigInt(intid) << 16n) | BigInt(icid));
  };
  const cases: [string, (m: ArrayBufferGuestMemory) => void][] = [
    ['a next of 2 inside a dense run skips one ITE', editIte(itt6 + 40 * 8, { next: 2 })],
    ['a zero ITE inside a dense run is stepped over', editIte(itt6 + 40 * 8, { zero: true })],
    ['a next of 3 on the last ITE of a page skips into the next page', editIte(itt1 + 255 * 8, { next: 3 })],
    ['next = 0 at the end of a dense run ends the ITT', editIte(itt6 + 99 * 8, { next: 0 })],
    ['an absent collection inside a dense run: -EINVAL ICID', editIte(itt6 + 40 * 8, { icid: 99 })],
    ['pINTID below 8192 inside a dense run: -EINVAL pINTID', editIte(itt6 + 40 * 8, { intid: 100 })],
    ['pINTID >= 2^16 inside a dense run: -EINVAL pINTID', editIte(itt6 + 40 * 8, { intid: 0x1_2000 })],
    ['a next leaving the ITT: -EINVAL next', editIte(itt6 + 1019 * 8, { next: 2048 - 1019 })],
    ['the last entry of the dense range with next = 1 on the last slot: -EINVAL next', (m) => {
      // Device 4 (6 bits): event 63 is the last slot; next = 1 would go to event 64.
      editIte(DEVICES[3]!.itt + 63 * 8, { next: 1 })(m);
    }],
  ];

  for (const [name, patch] of cases) {
    it(name, () => {
      const outcomes: string[] = [];
      for (const placement of PLACEMENTS) {
        const { dst, error, memory } = restoreImage(img, placement, img.regs, patch);
        // The model reads the same (patched) memory: what KVM's walk does on it.
        const model = modelRestore({
          read64: (gpa) => (memory.contains(gpa, 8) ? memory.readU64Big(gpa) : null),
          baserDevice: BigInt(img.regs.its.BASER0!),
          baserCollection: BigInt(img.regs.its.BASER1!),
          nrVcpus: 4,
        });
        if (model.ok) {
          expect(error, placement).toBeNull();
          const events: [number, number, number, number][] = [];
          dst!.its.forEachDevice((d) => dst!.its.forEachEvent(d, (e, intid, icid) => events.push([d, e, intid, icid])));
          expect(events, placement).toEqual(model.events);
          outcomes.push(`ok ${events.length}`);
        } else {
          expect(error, placement).toBeInstanceOf(TableError);
          const te = error as TableError;
          expect([te.errno, te.table, te.index, te.field], placement).toEqual([model.errno, model.table, model.index, model.field]);
          outcomes.push(`${te.errno} ${te.table} ${te.index} ${te.field}`);
        }
      }
      expect(new Set(outcomes).size).toBe(1);
    });
  }
});

describe('restore with the LPI property table only partly in guest memory', () => {
  // PROPBASER moved to RAM_END - 0x1000: the property byte of INTID i is at
  // RAM_END - 0x1000 + (i - 8192), inside RAM for i <= 8192 + 0xfff = 12287 only. Every LPI
  // byte is then no longer known to be in memory, so the restore checks each new LPI (KVM
  // reads its property byte in vgic_add_lpi: -EFAULT when that read fails).
  const PROP = RAM_END - 0x1000;
  let img: Image;
  let movedRegs: SavedRegs;
  beforeAll(() => {
    img = saveImage();
    movedRegs = {
      its: img.regs.its,
      redist: img.regs.redist.map((r) => ({ ...r, propbaser: [((PROP & 0xffff_f000) | (r.propbaser[0]! & 0xfff)) >>> 0, r.propbaser[1]!] })),
    };
  });
  const dev2 = DEVICES[1]!;

  it('restores an image whose LPIs all have their property byte in memory (INTIDs up to 12287)', () => {
    expect(Math.max(...DEVICES.flatMap((d) => d.events.map((e) => intidOf(d.devid, e))))).toBeLessThan(12288);
    for (const placement of ['window', 'copy'] as const) {
      // Device 2 event 299 names INTID 12287: its byte is the last byte of RAM.
      const { dst, error } = restoreImage(img, placement, movedRegs, editIte(dev2.itt + 299 * 8, 12287));
      expect(error, placement).toBeNull();
      expect(dst!.vm.lpis!.propbaser & 0x000f_ffff_ffff_f000n).toBe(BigInt(PROP));
      const got = snapshotOf(dst!);
      const want = snapshotOf(img.src).translations.map((s) =>
        s.startsWith('2/299 ') ? `2/299 -> 12287 icid ${icidOf(2, 299, false)} vcpu ${icidOf(2, 299, false)}` : s);
      expect(got.translations).toEqual(want);
      expect(dst!.vm.lpis!.refcount(12287)).toBe(1);
      expect(dst!.its.eventCount()).toBe(img.src.its.eventCount());
    }
  });

  it('fails with -EFAULT on the first ITE naming a new LPI whose byte is outside, restoring nothing', () => {
    for (const placement of ['window', 'copy'] as const) {
      // Walk order: device 1, then device 2 events 0, 1, ...: event 301 (INTID 12288, byte at
      // RAM_END) comes before device 6 event 50 (INTID 13000).
      const { dst, error, memory } = restoreImage(img, placement, movedRegs, (m) => {
        editIte(dev2.itt + 299 * 8, 12287)(m);
        editIte(dev2.itt + 301 * 8, 12288)(m);
        editIte(DEVICES[5]!.itt + 50 * 8, 13000)(m);
      });
      expect(dst, placement).toBeNull();
      expect(error, placement).toBeInstanceOf(TableError);
      const te = error as TableError;
      expect([te.errno, te.table, te.index, te.field], placement).toEqual([Errno.EFAULT, 'ITT of device 0x2', 301, 'pINTID']);
      expect(te.message).toContain('ITT of device 0x2 entry 301: pINTID');
      expect(te.message).toContain('12288');
      // Nothing was created: the restore is all or nothing (the pending bits in RAM were not consumed).
      const pend = img.regs.redist.map((r) => r.pendbaser[0]! & 0xffff_0000);
      for (const base of pend) {
        const saved = new Uint8Array(img.bytes, base - RAM_BASE + 1024, 7168);
        const now = new Uint8Array(memory.buffers[0]!, base - RAM_BASE + 1024, 7168);
        expect(Buffer.compare(saved, now)).toBe(0);
      }
    }
  });

  it('an LPI named by two ITEs (its byte inside) gets both references', () => {
    const { dst, error } = restoreImage(img, 'window', movedRegs, (m) => {
      editIte(dev2.itt + 299 * 8, 12287)(m);
      editIte(dev2.itt + 301 * 8, 12287)(m);
    });
    expect(error).toBeNull();
    expect(dst!.vm.lpis!.refcount(12287)).toBe(2);
  });

  /** Sets the pINTID of the ITE at gpa, keeping next and ICID. */
  function editIte(gpa: number, intid: number): (m: ArrayBufferGuestMemory) => void {
    return (m) => {
      const v = m.readU64Big(gpa);
      m.writeU64Big(gpa, (v & 0xffff_0000_0000_ffffn) | (BigInt(intid) << 16n));
    };
  }
});
