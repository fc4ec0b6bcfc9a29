/** Bulk export (exportEvents, exportEventPages) and bulk insert (addEvents) of the translation state. */
import { describe, expect, it } from 'vitest';
import {
  ADD_EVENTS_EFAULT, ADD_EVENTS_ENOMEM, ADD_EVENTS_EXISTS, ADD_EVENTS_INVALID, ADD_EVENTS_OK, ITE_NO_COLLECTION,
} from '../../src/its/table-state.js';
import { PEND_TABLES, cmd, ittOf, makeVm, recordingListener } from './helpers.js';

const u32 = (xs: number[]): Uint32Array => Uint32Array.from(xs);
const u16 = (xs: number[]): Uint16Array => Uint16Array.from(xs);

function eventsOf(its: ReturnType<typeof makeVm>['its'], devid: number): [number, number, number][] {
  const out: [number, number, number][] = [];
  its.forEachEvent(devid, (e, intid, icid) => out.push([e, intid, icid]));
  return out;
}

describe('exportEvents / exportEventPages', () => {
  it('export what forEachEvent reports, in ascending EventID order', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapc(3, 0), cmd.mapc(7, 1), cmd.mapd(9, 15, ittOf(9)));
    q.run(cmd.mapti(9, 60000, 9000, 7), cmd.mapti(9, 2, 9001, 3), cmd.mapti(9, 300, 9002, 3), cmd.mapti(9, 257, 9003, 7));
    const e = new Uint32Array(0x10000);
    const i = new Uint32Array(0x10000);
    const c = new Uint32Array(0x10000);
    const n = its.exportEvents(9, e, i, c);
    const got: [number, number, number][] = [];
    for (let k = 0; k < n; k++) got.push([e[k]!, i[k]!, c[k]!]);
    expect(got).toEqual([[2, 9001, 3], [257, 9003, 7], [300, 9002, 3], [60000, 9000, 7]]);
    expect(got).toEqual(eventsOf(its, 9));
    // Short arrays: stops at their length.
    expect(its.exportEvents(9, new Uint32Array(2), i, c)).toBe(2);
    expect(its.exportEvents(1234, e, i, c)).toBe(0);

    // Raw pages: word = INTID | ICID << 16 (9001 | 3 << 16 = 0x0003_2329), 0 = none.
    const raw: [number, number, number][] = [];
    expect(its.exportEventPages(9, (first, words, off) => {
      for (let k = 0; k < 256; k++) if (words[off + k] !== 0) raw.push([first + k, words[off + k]! & 0xffff, words[off + k]! >>> 16]);
    })).toBe(true);
    expect(raw).toEqual(got);
    expect(raw[0]).toEqual([2, 0x2329, 3]);
  });

  it('exportEventPages declines while an ITE has lost its collection; exportEvents reports it', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapc(3, 0), cmd.mapd(1, 3, ittOf(1)), cmd.mapti(1, 5, 8200, 3), cmd.mapc(3, 0, false));
    let calls = 0;
    expect(its.exportEventPages(1, () => calls++)).toBe(false);
    expect(calls).toBe(0);
    const e = new Uint32Array(16);
    const i = new Uint32Array(16);
    const c = new Uint32Array(16);
    expect(its.exportEvents(1, e, i, c)).toBe(1);
    expect([e[0], i[0], c[0]]).toEqual([5, 8200, ITE_NO_COLLECTION]);
  });
});

describe('addEvents', () => {
  it('creates every ITE and LPI reference, reports the device once', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapc(0, 1), cmd.mapc(1, 0, true), cmd.mapd(4, 9, ittOf(4)));
    q.run(cmd.mapc(1, 0, false)); // collection 1 gone
    q.run(cmd.mapti(4, 1000, 8300, 0)); // an existing event on page 3
    const { changes, listener } = recordingListener();
    its.setChangeListener(listener);
    const r = its.addEvents(4, 3, u32([0, 255, 769]), u32([8192, 8193, 8192]), u16([0, 0, 0]));
    expect(r).toBe(ADD_EVENTS_OK);
    expect(changes).toEqual(['dev 4']);
    expect(eventsOf(its, 4)).toEqual([[0, 8192, 0], [255, 8193, 0], [769, 8192, 0], [1000, 8300, 0]]);
    expect(lpis.refcount(8192)).toBe(2);
    expect(lpis.target(8193)).toBe(1); // collection 0 targets vCPU 1
    expect(its.eventCount()).toBe(4);
    expect(its.eventPagesInUse).toBe(2); // pages 0 (EventIDs 0..255) and 3 (768..1023)
  });

  it('is all or nothing: a failing event undoes the call (pages, LPIs, counts)', () => {
    const { its, q, lpis, memory } = makeVm();
    q.run(cmd.mapc(0, 0), cmd.mapd(4, 15, ittOf(4)), cmd.mapti(4, 700, 8400, 0));
    const before = { events: its.eventCount(), pages: its.eventPagesInUse };
    const check = (): void => {
      expect(its.eventCount()).toBe(before.events);
      expect(its.eventPagesInUse).toBe(before.pages);
      expect(lpis.exists(8500)).toBe(false);
      expect(eventsOf(its, 4)).toEqual([[700, 8400, 0]]);
    };
    // Existing ITE at 700 (after two new ones on other pages).
    expect(its.addEvents(4, 3, u32([1, 300, 700]), u32([8500, 8501, 8502]), u16([0, 0, 0]))).toBe(ADD_EVENTS_EXISTS);
    check();
    // Repeated EventID within the call.
    expect(its.addEvents(4, 2, u32([9, 9]), u32([8500, 8501]), u16([0, 0]))).toBe(ADD_EVENTS_EXISTS);
    check();
    // Absent collection, INTID 0, EventID out of range (16 bits), device not mapped.
    expect(its.addEvents(4, 2, u32([1, 2]), u32([8500, 8501]), u16([0, 5]))).toBe(ADD_EVENTS_INVALID);
    expect(its.addEvents(4, 2, u32([1, 2]), u32([8500, 0]), u16([0, 0]))).toBe(ADD_EVENTS_INVALID);
    expect(its.addEvents(4, 1, u32([0x10000]), u32([8500]), u16([0]))).toBe(ADD_EVENTS_INVALID);
    expect(its.addEvents(5, 1, u32([1]), u32([8500]), u16([0]))).toBe(ADD_EVENTS_INVALID);
    check();
    // INTID below the LPI range: invalid, not a fault.
    expect(its.addEvents(4, 2, u32([1, 2]), u32([8500, 100]), u16([0, 0]))).toBe(ADD_EVENTS_INVALID);
    check();
    // LPI creation fault: LPI 8501 (collection 0 targets vCPU 0) has its pending bit set, and
    // with guest memory frozen the bit cannot be consumed; 8500 was created first.
    memory.writeU8(PEND_TABLES + (8501 >>> 3), 1 << (8501 & 7));
    memory.freeze();
    expect(its.addEvents(4, 2, u32([1, 2]), u32([8500, 8501]), u16([0, 0]))).toBe(ADD_EVENTS_EFAULT);
    memory.thaw();
    check();
    expect(lpis.exists(8501)).toBe(false);
  });

  it('returns ENOMEM at the event-page cap and leaves nothing behind', () => {
    const { its, q } = makeVm({ maxEventPages: 2 });
    q.run(cmd.mapc(0, 0), cmd.mapd(4, 15, ittOf(4)), cmd.mapd(6, 15, ittOf(6)), cmd.mapti(4, 0, 8192, 0));
    expect(its.freeEventPages()).toBe(1);
    // Device 6: page 0 fits, page 1 (EventID 256) does not.
    expect(its.addEvents(6, 2, u32([0, 256]), u32([8300, 8301]), u16([0, 0]))).toBe(ADD_EVENTS_ENOMEM);
    expect(its.eventPagesInUse).toBe(1);
    expect(eventsOf(its, 6)).toEqual([]);
    expect(its.addEvents(6, 2, u32([0, 255]), u32([8300, 8301]), u16([0, 0]))).toBe(ADD_EVENTS_OK);
    expect(its.freeEventPages()).toBe(0);
  });
});
