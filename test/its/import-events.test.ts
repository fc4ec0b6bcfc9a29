/**
 * ItsTableState.importEvents (TranslationState.importEvents through the Its): the bulk insert
 * of a restore's staged ITEs. The StagedEvents are built here by hand from a list of
 * (DeviceID, EventID, INTID, ICID), in the format table-state.ts documents (pages of 256 words
 * INTID | ICID << 16, per-INTID / per-ICID counters indexed by the ID as RestoredTables does),
 * independently of src/its/abi.
 */
import { describe, expect, it } from 'vitest';
import {
  ADD_EVENTS_EFAULT, ADD_EVENTS_ENOMEM, ADD_EVENTS_EXISTS, ADD_EVENTS_INVALID, ADD_EVENTS_OK, COLLECTION_NOT_MAPPED,
  ITE_NO_COLLECTION, type StagedEvents,
} from '../../src/its/table-state.js';
import { NO_VCPU } from '../../src/redist/types.js';
import { PEND_TABLES, cmd, ittOf, makeVm, recordingListener, type Vm } from './helpers.js';

/** One staged ITE. */
type Ite = readonly [devid: number, eventid: number, intid: number, icid: number];

/** A mutable StagedEvents (the tests tweak it to make it invalid). */
interface Staged extends StagedEvents {
  deviceCount: number;
  deviceIds: Uint32Array;
  deviceFirstPage: Uint32Array;
  pageCount: number;
  pageWords: Uint32Array;
  pageSlot: Uint8Array;
  pageLive: Uint16Array;
  eventCount: number;
  lpiCount: number;
  lpiIds: Uint32Array;
  lpiRefs: Uint32Array;
  lpiTarget: Int32Array;
  icidCount: number;
  icidIds: Uint32Array;
  icidRefs: Uint32Array;
}

/**
 * Stages ITEs as a restore would: devices ascending (`devices` lists the devices to add, some
 * maybe without ITEs), each device's pages ascending by EventID >> 8, word = INTID | ICID << 16;
 * an LPI's target is the target of the collection of its first ITE in that order
 * (targetOf(icid): a vCPU, or NO_VCPU for an unmapped collection).
 */
function stage(devices: readonly number[], ites: readonly Ite[], targetOf: (icid: number) => number): Staged {
  const devs = [...devices].sort((a, b) => a - b);
  const sorted = [...ites].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const pageKeys: [number, number][] = []; // [devid, slot] in order
  const deviceFirstPage: number[] = [];
  for (const d of devs) {
    deviceFirstPage.push(pageKeys.length);
    const slots = [...new Set(sorted.filter((x) => x[0] === d).map((x) => x[1] >>> 8))].sort((a, b) => a - b);
    for (const s of slots) pageKeys.push([d, s]);
  }
  const pageCount = pageKeys.length;
  const pageWords = new Uint32Array(Math.max(1, pageCount) * 256);
  const pageSlot = new Uint8Array(Math.max(1, pageCount));
  const pageLive = new Uint16Array(Math.max(1, pageCount));
  const lpiRefs = new Uint32Array(0x10000);
  const lpiTarget = new Int32Array(0x10000);
  const icidRefs = new Uint32Array(0x10000);
  const lpiIds: number[] = [];
  const icidIds: number[] = [];
  for (const [d, e, intid, icid] of sorted) {
    const p = pageKeys.findIndex(([pd, ps]) => pd === d && ps === e >>> 8);
    pageSlot[p] = e >>> 8;
    pageWords[p * 256 + (e & 255)] = (intid | (icid << 16)) >>> 0;
    pageLive[p]!++;
    if (lpiRefs[intid] === 0) {
      lpiIds.push(intid);
      lpiTarget[intid] = targetOf(icid);
    }
    lpiRefs[intid]!++;
    if (icidRefs[icid] === 0) icidIds.push(icid);
    icidRefs[icid]!++;
  }
  lpiIds.sort((a, b) => a - b);
  icidIds.sort((a, b) => a - b);
  return {
    deviceCount: devs.length,
    deviceIds: Uint32Array.from(devs),
    deviceFirstPage: Uint32Array.from(deviceFirstPage),
    pageCount,
    pageWords,
    pageSlot,
    pageLive,
    eventCount: sorted.length,
    lpiCount: lpiIds.length,
    lpiIds: Uint32Array.from(lpiIds),
    lpiRefs,
    lpiTarget,
    icidCount: icidIds.length,
    icidIds: Uint32Array.from(icidIds),
    icidRefs,
  };
}

/** Collections of the fixture: ICID 0 -> vCPU 1, ICID 1 -> vCPU 2, ICID 5 exists but is not mapped. */
const TARGETS = new Map<number, number>([[0, 1], [1, 2], [5, NO_VCPU]]);
const targetOf = (icid: number): number => TARGETS.get(icid) ?? NO_VCPU;

/** Devices of the fixture (DeviceID -> EventID bits), all mapped without ITEs, plus device 1 with one ITE. */
const DEVICE_BITS = new Map<number, number>([[3, 10], [7, 16], [20, 4], [21, 8]]);

/** ITE (1, 0) -> LPI 8192 in collection 1 (vCPU 2), created by MAPTI before the import. */
const PRE_EXISTING: Ite = [1, 0, 8192, 1];

function fixture(maxEventPages?: number): Vm {
  const vm = makeVm(maxEventPages === undefined ? {} : { maxEventPages });
  vm.q.run(cmd.mapc(0, 1), cmd.mapc(1, 2));
  vm.its.addCollection(5, COLLECTION_NOT_MAPPED);
  vm.q.run(cmd.mapd(1, 7, ittOf(1)));
  for (const [d, bits] of DEVICE_BITS) vm.q.run(cmd.mapd(d, bits - 1, ittOf(d)));
  vm.q.run(cmd.mapti(...PRE_EXISTING));
  expect(vm.its.translate(1, 0)).toBe(8192);
  expect(vm.its.collectionTarget(5)).toBe(COLLECTION_NOT_MAPPED);
  return vm;
}

/**
 * The ITEs of the main case: device 3 (10 bits): events 0..299 (pages 0 and 1), 700 (page 2),
 * INTIDs 8192 + e % 100 in collection e % 2 (0 or 1, so each INTID belongs to one collection
 * and is named 3 times by events e, e + 100, e + 200; 8192 also by the pre-existing ITE);
 * device 7 (16 bits): event 65535 (page 255) and 25605 (page 100) -> 9000, 9001 in ICID 5
 * (unmapped); device 20 (4 bits): events 0 and 15 -> 9100 (ICID 1, twice). Device 21 gets no ITE.
 */
function mainItes(): Ite[] {
  const ites: Ite[] = [];
  for (let e = 0; e < 300; e++) ites.push([3, e, 8192 + (e % 100), e % 2]);
  ites.push([3, 700, 8300, 0]);
  ites.push([7, 65535, 9000, 5], [7, 25605, 9001, 5]);
  ites.push([20, 0, 9100, 1], [20, 15, 9100, 1]);
  return ites;
}

function pendByte(vcpu: number, intid: number): number {
  return PEND_TABLES + vcpu * 0x1_0000 + (intid >>> 3);
}

/** Everything the import may change, for the rejection cases. */
function snapshot(vm: Vm, ites: readonly Ite[]): unknown {
  const { its, lpis, memory } = vm;
  const intids = [...new Set([...ites.map((x) => x[2]), PRE_EXISTING[2]])].sort((a, b) => a - b);
  return {
    events: its.eventCount(),
    devices: its.deviceCount(),
    freePages: its.freeEventPages(),
    pagesInUse: its.eventPagesInUse,
    translations: ites.map(([d, e]) => its.translate(d, e)),
    pre: [its.translate(1, 0), its.eventCollection(1, 0)],
    lpis: intids.map((i) => [i, lpis.exists(i), lpis.refcount(i), lpis.target(i), lpis.isPending(i)]),
    pendBytes: intids.flatMap((i) => [0, 1, 2, 3].map((v) => memory.readU8(pendByte(v, i)))),
  };
}

function refsExpected(ites: readonly Ite[], intid: number): number {
  return ites.filter((x) => x[2] === intid).length;
}

describe('importEvents: success', () => {
  it('copies the pages, takes each LPI reference once per ITE, counts events and collections', () => {
    const vm = fixture();
    const { its, lpis, memory } = vm;
    const ites = mainItes();
    // New LPI 8193 (ICID 1 -> vCPU 2) has its pending bit set in vCPU 2's table: consumed at creation.
    memory.writeU8(pendByte(2, 8193), 1 << (8193 & 7));
    const { changes, listener } = recordingListener();
    its.setChangeListener(listener);
    const freeBefore = its.freeEventPages();
    const s = stage([...DEVICE_BITS.keys()], ites, targetOf);
    // Pages: device 3 -> slots 0, 1, 2; device 7 -> 100, 255; device 20 -> 0; device 21 -> none.
    expect(s.pageCount).toBe(6);
    expect([...s.pageSlot.subarray(0, 6)]).toEqual([0, 1, 2, 100, 255, 0]);
    expect([...s.deviceFirstPage]).toEqual([0, 3, 5, 6]);

    expect(its.importEvents(s)).toBe(ADD_EVENTS_OK);

    expect(changes).toEqual(['dev 3', 'dev 7', 'dev 20', 'dev 21']);
    expect(its.eventCount()).toBe(1 + ites.length);
    expect(its.freeEventPages()).toBe(freeBefore - 6);
    // Every EventID of every device: the staged INTID / ICID, or nothing.
    const want = new Map(ites.map(([d, e, intid, icid]) => [`${d}/${e}`, [intid, icid]]));
    for (const [d, bits] of DEVICE_BITS) {
      for (let e = 0; e < 1 << bits; e++) {
        const w = want.get(`${d}/${e}`);
        if (w === undefined) {
          if (its.translate(d, e) !== 0) throw new Error(`(${d}, ${e}) should be unmapped`);
          continue;
        }
        if (its.translate(d, e) !== w[0] || its.eventCollection(d, e) !== w[1]) {
          throw new Error(`(${d}, ${e}): got ${its.translate(d, e)}/${its.eventCollection(d, e)}, want ${w[0]}/${w[1]}`);
        }
      }
    }
    expect(its.translate(3, 150)).toBe(8192 + 50);
    expect(its.eventCollection(3, 151)).toBe(1);
    // Reference counts: 8192 is named by events 0, 100, 200 of device 3 and the pre-existing ITE.
    expect(lpis.refcount(8192)).toBe(4);
    for (const intid of new Set(ites.map((x) => x[2]))) {
      expect(lpis.refcount(intid), `refcount of ${intid}`).toBe(refsExpected(ites, intid) + (intid === 8192 ? 1 : 0));
    }
    expect([lpis.refcount(8193), lpis.refcount(8300), lpis.refcount(9100)]).toEqual([3, 1, 2]);
    // Targets: new LPIs get their collection's target; an existing one keeps its own; ICID 5 is unmapped.
    expect(lpis.target(8192)).toBe(2); // pre-existing, created through ICID 1 (vCPU 2)
    expect(lpis.target(8194)).toBe(1); // ICID 0 -> vCPU 1
    expect(lpis.target(8193)).toBe(2); // ICID 1 -> vCPU 2
    expect([lpis.target(9000), lpis.target(9001)]).toEqual([NO_VCPU, NO_VCPU]);
    // 8193's pending bit was consumed: latched, cleared in RAM.
    expect(lpis.isPending(8193)).toBe(true);
    expect(memory.readU8(pendByte(2, 8193))).toBe(0);
    // MSIs go through: (3, 1) -> 8193 on vCPU 2 (already pending), (20, 15) -> 9100 on vCPU 2.
    expect(its.signalMsi(20, 15)).toBe(1);
    expect(lpis.isPending(9100)).toBe(true);
  });

  it('collections count the imported ITEs: MAPC retargets and MAPC V=0 orphans every one of them', () => {
    const vm = fixture();
    const { its, lpis, q } = vm;
    const ites = mainItes();
    expect(its.importEvents(stage([...DEVICE_BITS.keys()], ites, targetOf))).toBe(ADD_EVENTS_OK);
    // MAPC ICID 0 -> vCPU 3: every LPI of an ITE in collection 0 follows (8192 too: ITE (3, 0) is in ICID 0).
    q.run(cmd.mapc(0, 3));
    for (const [, , intid, icid] of ites) if (icid === 0) expect(lpis.target(intid), `LPI ${intid}`).toBe(3);
    expect(lpis.target(8193)).toBe(2); // ICID 1 untouched
    // MAPC ICID 1 V=0: its ITEs (150 of device 3, 2 of device 20, and the pre-existing one) lose their collection.
    q.run(cmd.mapc(1, 2, false));
    const inOne = ites.filter((x) => x[3] === 1);
    expect(inOne.length).toBe(152);
    for (const [d, e] of [...inOne, PRE_EXISTING]) {
      if (its.eventCollection(d, e) !== ITE_NO_COLLECTION) throw new Error(`(${d}, ${e}) still has a collection`);
    }
    for (const [d, e, , icid] of ites) if (icid !== 1) expect(its.eventCollection(d, e)).toBe(icid);
    // Orphans cannot deliver; ITEs of collection 0 still can.
    expect(its.signalMsi(3, 1)).toBe(0);
    expect(its.signalMsi(3, 2)).toBe(1);
  });

  it('DISCARD and MAPD V=0 of imported ITEs release their LPI references and pages', () => {
    const vm = fixture();
    const { its, lpis, q } = vm;
    const ites = mainItes();
    const pagesBefore = its.eventPagesInUse;
    expect(its.importEvents(stage([...DEVICE_BITS.keys()], ites, targetOf))).toBe(ADD_EVENTS_OK);
    expect(its.eventPagesInUse).toBe(pagesBefore + 6);
    q.run(cmd.discard(20, 0));
    expect(lpis.refcount(9100)).toBe(1);
    q.run(cmd.discard(20, 15)); // page of device 20 now empty
    expect(lpis.exists(9100)).toBe(false);
    expect(its.eventPagesInUse).toBe(pagesBefore + 5);
    q.run(cmd.mapd(3, 9, ittOf(3), false));
    expect(lpis.refcount(8192)).toBe(1); // the pre-existing ITE's
    expect(lpis.exists(8193)).toBe(false);
    expect(its.eventPagesInUse).toBe(pagesBefore + 2);
    expect(its.eventCount()).toBe(1 + 2);
  });

  it('pages landing on non-consecutive pool pages (fragmented free list) are copied correctly', () => {
    const vm = fixture();
    const { its, lpis, q } = vm;
    const t = its.translation;
    // Device 30 (16 bits) takes pool pages for EventID pages 0..5; freeing pages 1 and 3 leaves holes.
    q.run(cmd.mapd(30, 15, ittOf(30)));
    for (let p = 0; p < 6; p++) q.run(cmd.mapti(30, p * 256, 9500 + p, 0));
    const poolOf = (d: number, e: number): number => t.lookup(d, e) >>> 8;
    const held = [0, 1, 2, 3, 4, 5].map((p) => poolOf(30, p * 256));
    q.run(cmd.discard(30, 256), cmd.discard(30, 768));
    // Device 7 gets 5 pages (slots 0, 1, 2, 3, 9), each with a different pattern of ITEs.
    const ites: Ite[] = [];
    const slots = [0, 1, 2, 3, 9];
    slots.forEach((slot, k) => {
      for (let i = 0; i < 256; i++) {
        if ((i + k) % (k + 2) !== 0) continue; // page k: every (k + 2)-th EventID
        ites.push([7, slot * 256 + i, 10000 + slot * 256 + i, (i & 1) === 0 ? 0 : 5]);
      }
    });
    const s = stage([7], ites, targetOf);
    expect(s.pageCount).toBe(5);
    expect(its.importEvents(s)).toBe(ADD_EVENTS_OK);
    const landed = slots.map((slot) => poolOf(7, slot * 256 + firstEventOf(ites, slot)));
    // The two freed pool pages are reused (in some order) and the other three are fresh ones:
    // the pool pages are not one consecutive run.
    expect(new Set(landed).size).toBe(5);
    expect(landed).toEqual(expect.arrayContaining([held[1], held[3]]));
    const sortedLanded = [...landed].sort((a, b) => a - b);
    expect(sortedLanded[4]! - sortedLanded[0]!).toBeGreaterThan(4);
    expect(landed.some((p, i) => i > 0 && p !== landed[i - 1]! + 1)).toBe(true);
    // Every EventID of the 5 pages (and of the empty ones between) translates as staged.
    const want = new Map(ites.map(([, e, intid, icid]) => [e, [intid, icid]]));
    for (let e = 0; e < 10 * 256; e++) {
      const w = want.get(e);
      const got = [its.translate(7, e), its.translate(7, e) === 0 ? -1 : its.eventCollection(7, e)];
      const exp = w === undefined ? [0, -1] : w;
      if (got[0] !== exp[0] || got[1] !== exp[1]) throw new Error(`(7, ${e}): got ${got}, want ${exp}`);
    }
    expect(its.eventCount()).toBe(1 + 4 + ites.length);
    for (const [, , intid] of ites.slice(0, 20)) expect(lpis.refcount(intid)).toBe(1);
    // Device 30's remaining events are intact.
    for (const p of [0, 2, 4, 5]) expect(its.translate(30, p * 256)).toBe(9500 + p);
  });
});

/** First EventID of page `slot` staged in `ites` (device 7), as an offset inside the page. */
function firstEventOf(ites: readonly Ite[], slot: number): number {
  const e = ites.find((x) => x[1] >>> 8 === slot);
  if (e === undefined) throw new Error(`no ITE on page ${slot}`);
  return e[1] & 255;
}

describe('importEvents: rejections leave the state unchanged', () => {
  /** Runs one rejected import against a fresh fixture and checks nothing changed. */
  function rejected(expectedCode: number | null, make: (vm: Vm) => Staged, ites: readonly Ite[] = mainItes()): void {
    const vm = fixture();
    // A pending bit for a new LPI that must not be consumed.
    vm.memory.writeU8(pendByte(2, 8193), 1 << (8193 & 7));
    const s = make(vm);
    const before = snapshot(vm, ites);
    const code = vm.its.importEvents(s);
    if (expectedCode === null) expect(code).not.toBe(ADD_EVENTS_OK);
    else expect(code).toBe(expectedCode);
    expect(snapshot(vm, ites)).toEqual(before);
  }
  const all = (): number[] => [...DEVICE_BITS.keys()];

  it('a device that is not mapped: INVALID', () => {
    rejected(ADD_EVENTS_INVALID, () => stage([...all(), 99], [...mainItes(), [99, 0, 8400, 0]], targetOf));
    // Even one without ITEs.
    rejected(ADD_EVENTS_INVALID, () => stage([...all(), 99], mainItes(), targetOf));
  });

  it('a device that already has ITEs: EXISTS', () => {
    rejected(ADD_EVENTS_EXISTS, () => stage([1, ...all()], [...mainItes(), [1, 5, 8401, 0]], targetOf));
  });

  it('device ids not strictly ascending: INVALID', () => {
    rejected(ADD_EVENTS_INVALID, () => {
      const s = stage(all(), mainItes(), targetOf); // [3, 7, 20, 21]
      s.deviceIds.set([3, 20, 7, 21]);
      s.deviceFirstPage.set([0, 3, 3, 6]); // (first pages kept ascending)
      return s;
    });
    rejected(ADD_EVENTS_INVALID, () => {
      const s = stage(all(), mainItes(), targetOf);
      s.deviceIds.set([3, 7, 7, 21]);
      return s;
    });
  });

  it('first pages out of order or past the page count: INVALID', () => {
    rejected(ADD_EVENTS_INVALID, () => {
      const s = stage(all(), mainItes(), targetOf);
      s.deviceFirstPage.set([0, 3, 2, 6]);
      return s;
    });
    rejected(ADD_EVENTS_INVALID, () => {
      const s = stage(all(), mainItes(), targetOf);
      s.deviceFirstPage.set([0, 3, 5, 7]); // 6 pages
      return s;
    });
  });

  it('page slots not strictly ascending within a device: INVALID', () => {
    rejected(ADD_EVENTS_INVALID, () => {
      const s = stage(all(), mainItes(), targetOf);
      s.pageSlot.set([0, 2, 1], 0); // device 3's pages
      return s;
    });
    rejected(ADD_EVENTS_INVALID, () => {
      const s = stage(all(), mainItes(), targetOf);
      s.pageSlot.set([1, 1], 0);
      return s;
    });
  });

  it("a page slot beyond the device's EventID bits: INVALID", () => {
    // Device 20 has 4 EventID bits: only slot 0 (EventIDs 0..255, of which 0..15 valid).
    rejected(ADD_EVENTS_INVALID, () => {
      const s = stage(all(), mainItes(), targetOf);
      s.pageSlot[5] = 1;
      return s;
    });
    // Device 3 has 10 EventID bits: slots 0..3 (EventIDs < 1024); slot 4 is EventID 1024.
    rejected(ADD_EVENTS_INVALID, () => {
      const s = stage(all(), mainItes(), targetOf);
      s.pageSlot[2] = 4;
      return s;
    });
    // Device 21 (8 bits) only has slot 0.
    rejected(ADD_EVENTS_INVALID, () => stage(all(), [...mainItes(), [21, 256, 8402, 0]], targetOf));
  });

  it('an ICID whose collection does not exist: INVALID', () => {
    rejected(ADD_EVENTS_INVALID, () => stage(all(), [...mainItes(), [3, 900, 8403, 9]], targetOf));
  });

  it('INTID 0 or >= 2^16: INVALID', () => {
    for (const bad of [0, 0x10000, 0x12345]) {
      rejected(ADD_EVENTS_INVALID, () => {
        const s = stage(all(), mainItes(), targetOf);
        const ids = Uint32Array.from([...s.lpiIds.subarray(0, s.lpiCount), bad]);
        return { ...s, lpiIds: ids, lpiCount: s.lpiCount + 1 };
      });
    }
  });

  it('an INTID below the LPI range (1..8191): INVALID, like one above it (no LPI can be created for it)', () => {
    for (const bad of [1, 100, 8191]) rejected(ADD_EVENTS_INVALID, () => stage(all(), [...mainItes(), [3, 901, bad, 0]], targetOf));
  });

  it('more pages than freeEventPages: ENOMEM; exactly freeEventPages fits', () => {
    const vm = fixture(7); // device 1's page in use: 6 free
    expect(vm.its.freeEventPages()).toBe(6);
    const ites = [...mainItes(), [3, 800, 8404, 0] as const]; // device 3 slot 3: 7 pages in all
    const s = stage(all(), ites, targetOf);
    expect(s.pageCount).toBe(7);
    const before = snapshot(vm, ites);
    expect(vm.its.importEvents(s)).toBe(ADD_EVENTS_ENOMEM);
    expect(snapshot(vm, ites)).toEqual(before);
    expect(vm.its.importEvents(stage(all(), mainItes(), targetOf))).toBe(ADD_EVENTS_OK);
    expect(vm.its.freeEventPages()).toBe(0);
  });

  it('an LPI creation fault: EFAULT, the references already taken are dropped again', () => {
    // LPI 8193 (vCPU 2) has its pending bit set; with memory frozen it cannot be consumed, so
    // creating 8193 fails after 8192 (pre-existing: +3) was already taken.
    const vm = fixture();
    const { its, lpis, memory } = vm;
    const ites = mainItes();
    memory.writeU8(pendByte(2, 8193), 1 << (8193 & 7));
    const s = stage(all(), ites, targetOf);
    expect([s.lpiIds[0], s.lpiIds[1]]).toEqual([8192, 8193]);
    const before = snapshot(vm, ites);
    memory.freeze();
    expect(its.importEvents(s)).toBe(ADD_EVENTS_EFAULT);
    memory.thaw();
    expect(snapshot(vm, ites)).toEqual(before);
    expect(lpis.refcount(8192)).toBe(1);
    expect(lpis.exists(8193)).toBe(false);
    // The same staging goes through once the memory is writable.
    expect(its.importEvents(s)).toBe(ADD_EVENTS_OK);
    expect(lpis.refcount(8192)).toBe(4);
  });
});

describe('importEvents: a fresh pool takes the staged buffer as it is (takePageWords)', () => {
  /** The fixture without the pre-existing ITE: no pool page was ever handed out. */
  function freshFixture(maxEventPages?: number): Vm {
    const vm = makeVm(maxEventPages === undefined ? {} : { maxEventPages });
    vm.q.run(cmd.mapc(0, 1), cmd.mapc(1, 2));
    vm.its.addCollection(5, COLLECTION_NOT_MAPPED);
    for (const [d, bits] of DEVICE_BITS) vm.q.run(cmd.mapd(d, bits - 1, ittOf(d)));
    return vm;
  }
  /** A staging whose buffer can be taken, spare pages (zero) after the staged ones; counts the hand-overs. */
  function takeable(extraPages: number): { s: Staged; taken: () => number } {
    const s = stage([...DEVICE_BITS.keys()], mainItes(), targetOf);
    const words = new Uint32Array((s.pageCount + extraPages) * 256);
    words.set(s.pageWords.subarray(0, s.pageCount * 256));
    let n = 0;
    const staged: Staged = { ...s, pageWords: words, takePageWords: () => { n++; return words; } };
    return { s: staged, taken: () => n };
  }
  const translations = (vm: Vm): number[][] => mainItes().map(([d, e]) => [vm.its.translate(d, e), vm.its.eventCollection(d, e)]);

  it('a fresh ITS keeps the buffer: same translations and counts as a copy, later MAPTIs grow the storage', () => {
    const vm = freshFixture();
    const { s, taken } = takeable(2);
    const freeBefore = vm.its.freeEventPages();
    expect(vm.its.importEvents(s)).toBe(ADD_EVENTS_OK);
    expect(taken()).toBe(1);
    expect(translations(vm)).toEqual(mainItes().map(([, , intid, icid]) => [intid, icid]));
    expect(vm.its.eventCount()).toBe(mainItes().length);
    expect(vm.its.freeEventPages()).toBe(freeBefore - 6);
    expect(vm.lpis.refcount(8192)).toBe(refsExpected(mainItes(), 8192));
    // The storage is the staged buffer (8 pages, 6 used). Four new pages: two spare ones, then growth.
    const pagesBefore = vm.its.eventPagesInUse;
    vm.q.run(cmd.mapti(3, 768, 9503, 0), cmd.mapti(7, 7, 9600, 1), cmd.mapti(7, 300, 9601, 1), cmd.mapti(7, 40000, 9602, 1));
    expect(vm.its.eventPagesInUse).toBe(pagesBefore + 4);
    expect([vm.its.translate(3, 768), vm.its.translate(7, 7), vm.its.translate(7, 300), vm.its.translate(7, 40000)]).toEqual([9503, 9600, 9601, 9602]);
    // Nothing else appeared on the new pages, and the imported ITEs are intact.
    expect(vm.its.translate(7, 8)).toBe(0);
    expect(vm.its.translate(7, 40001)).toBe(0);
    expect(translations(vm)).toEqual(mainItes().map(([, , intid, icid]) => [intid, icid]));
    // DISCARD and MAPD V=0 on adopted pages free them like any other.
    vm.q.run(cmd.mapd(3, 9, ittOf(3), false));
    expect(vm.its.translate(3, 0)).toBe(0);
    expect(vm.lpis.exists(8300)).toBe(false);
  });

  it('an ITS whose storage was used before copies the staged pages (the buffer is not taken)', () => {
    const vm = fixture(); // MAPTI (1, 0) took a pool page
    const { s, taken } = takeable(0);
    expect(vm.its.importEvents(s)).toBe(ADD_EVENTS_OK);
    expect(taken()).toBe(0);
    expect(translations(vm)).toEqual(mainItes().map(([, , intid, icid]) => [intid, icid]));
    s.pageWords.fill(0); // the ITS does not alias the staged buffer
    expect(translations(vm)).toEqual(mainItes().map(([, , intid, icid]) => [intid, icid]));
  });

  it('a rejected import does not take the buffer', () => {
    const vm = freshFixture(5); // 6 pages needed: ENOMEM
    const { s, taken } = takeable(0);
    expect(vm.its.importEvents(s)).toBe(ADD_EVENTS_ENOMEM);
    expect(taken()).toBe(0);
    expect(vm.its.eventCount()).toBe(0);
  });
});
