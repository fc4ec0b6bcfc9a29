import { describe, expect, it } from 'vitest';
import { GICR_PENDBASER } from '../../src/redist/registers.js';
import { LpiRedistributors } from '../../src/redist/lpi-system.js';
import { NO_VCPU } from '../../src/redist/types.js';
import { RecordingGuestMemory } from './support/recording-memory.js';
import { RAM_SIZE, makeFixture, pendBase, pendbaserValue, type Fixture } from './support/fixture.js';

const NONE = { intid: 1023, priority: 0xff };

/** Creates an LPI with a configuration byte and target. */
function lpi(f: Fixture, intid: number, config: number, target: number): void {
  f.setConfig(intid, config);
  expect(f.rd.acquire(intid, target)).toBe(true);
}

describe('ack', () => {
  it('returns the lowest priority value, then the lowest INTID, and clears it', () => {
    const f = makeFixture();
    lpi(f, 8300, 0x81, 0); // priority 0x80
    lpi(f, 8193, 0xa1, 0); // priority 0xa0
    lpi(f, 8200, 0x81, 0); // priority 0x80, lower INTID than 8300
    lpi(f, 8400, 0x40, 0); // priority 0x40 but disabled
    lpi(f, 8500, 0x01, 1); // priority 0 on another vCPU
    for (const i of [8300, 8193, 8200, 8400, 8500]) f.rd.setPending(i);
    const order: { intid: number; priority: number }[] = [];
    for (let r = f.rd.ack(0, false); r.intid !== 1023; r = f.rd.ack(0, false)) order.push(r);
    expect(order).toEqual([
      { intid: 8200, priority: 0x80 },
      { intid: 8300, priority: 0x80 },
      { intid: 8193, priority: 0xa0 },
    ]);
    expect(f.rd.ack(0, false)).toEqual(NONE);
    expect(f.rd.isPending(8400)).toBe(true); // disabled: never delivered, still pending
    expect(f.rd.ack(1, false)).toEqual({ intid: 8500, priority: 0 });
  });

  it('peek reports without clearing', () => {
    const f = makeFixture();
    lpi(f, 9000, 0x61, 2);
    f.rd.setPending(9000);
    expect(f.rd.ack(2, true)).toEqual({ intid: 9000, priority: 0x60 });
    expect(f.rd.ack(2, true)).toEqual({ intid: 9000, priority: 0x60 });
    expect(f.rd.isPending(9000)).toBe(true);
    expect(f.rd.ack(2, false)).toEqual({ intid: 9000, priority: 0x60 });
    expect(f.rd.ack(2, true)).toEqual(NONE);
    expect(f.rd.isPending(9000)).toBe(false);
  });

  it('answers 1023 while EnableLPIs = 0, even with pending LPIs', () => {
    const f = makeFixture();
    lpi(f, 8192, 0x81, 0);
    f.rd.setPending(8192);
    f.disableLpis(0);
    expect(f.rd.ack(0, false)).toEqual(NONE);
    expect(f.rd.isPending(8192)).toBe(true);
    expect(f.rd.hasDeliverable(0)).toBe(false);
  });

  it('picks the right LPI among many spread over the INTID space', () => {
    const f = makeFixture();
    const intids = [65535, 8192, 40000, 12345, 30000, 8223, 8224];
    const prios = [0x10, 0x20, 0x10, 0x30, 0x40, 0x20, 0x10];
    intids.forEach((i, k) => lpi(f, i, prios[k]! | 1, 3));
    intids.forEach((i) => f.rd.setPending(i));
    const order: number[] = [];
    for (let r = f.rd.ack(3, false); r.intid !== 1023; r = f.rd.ack(3, false)) order.push(r.intid);
    // priority 0x10: 8224, 40000, 65535; 0x20: 8192, 8223; 0x30: 12345; 0x40: 30000.
    expect(order).toEqual([8224, 40000, 65535, 8192, 8223, 12345, 30000]);
  });

  it('finds priority 0 after a lower INTID with priority 4 (no early stop before the minimum)', () => {
    const f = makeFixture();
    lpi(f, 8192, 0x05, 1); // priority 4
    lpi(f, 8193, 0x01, 1); // priority 0
    f.rd.setPending(8192);
    f.rd.setPending(8193);
    expect(f.rd.ack(1, false)).toEqual({ intid: 8193, priority: 0 });
    expect(f.rd.ack(1, false)).toEqual({ intid: 8192, priority: 4 });
  });

  it('rejects a vCPU index out of range', () => {
    const f = makeFixture({ nrVcpus: 2 });
    expect(() => f.rd.ack(2, true)).toThrow(/EINVAL/);
    expect(f.rd.hasDeliverable(2)).toBe(false);
  });
});

describe('notifications (onDeliverable)', () => {
  it('MSI-style setPending: one call on the 0 -> 1 transition only', () => {
    const f = makeFixture();
    lpi(f, 8192, 0x81, 1);
    lpi(f, 8193, 0x81, 1);
    f.rd.setPending(8192);
    expect(f.notified).toEqual([1]);
    f.rd.setPending(8192); // already pending
    f.rd.setPending(8193); // vCPU 1 already has one
    expect(f.notified).toEqual([1]);
  });

  it('a non-PEEK ack that leaves another deliverable LPI re-arms; the last one and PEEK do not', () => {
    const f = makeFixture();
    lpi(f, 8192, 0x81, 0);
    lpi(f, 8193, 0x81, 0);
    f.rd.setPending(8192);
    f.rd.setPending(8193);
    expect(f.notifyCount(0)).toBe(1);
    f.rd.ack(0, true);
    expect(f.notifyCount(0)).toBe(1);
    f.rd.ack(0, false); // 8193 remains
    expect(f.notifyCount(0)).toBe(2);
    f.rd.ack(0, false); // nothing remains
    expect(f.notifyCount(0)).toBe(2);
    f.rd.setPending(8192);
    expect(f.notifyCount(0)).toBe(3);
  });

  it('disabled LPIs do not notify; an invalidation that enables a pending one does, once', () => {
    const f = makeFixture();
    lpi(f, 8192, 0x80, 2);
    lpi(f, 8193, 0x80, 2);
    f.rd.setPending(8192);
    f.rd.setPending(8193);
    expect(f.notified).toEqual([]);
    f.setConfig(8192, 0x81);
    f.setConfig(8193, 0x81);
    f.rd.invalidateAll(2);
    expect(f.notified).toEqual([2]);
    f.rd.invalidate(8192); // no change
    expect(f.notified).toEqual([2]);
  });

  it('EnableLPIs = 0 suppresses notification; enabling with pending LPIs notifies once', () => {
    const f = makeFixture({ enable: false });
    f.rd.mmioWrite(0, GICR_PENDBASER, 8, pendbaserValue(pendBase(0), true)); // PTZ: no sync
    lpi(f, 8192, 0x81, 0);
    lpi(f, 8193, 0x81, 0);
    f.rd.setPending(8192);
    f.rd.setPending(8193);
    expect(f.notified).toEqual([]);
    f.enableLpis(0);
    expect(f.notified).toEqual([0]);
    f.enableLpis(0); // already enabled: nothing
    f.enableLpis(1); // nothing pending on vCPU 1
    expect(f.notified).toEqual([0]);
  });

  it('retargeting a pending LPI notifies the new vCPU once; MOVALL of several notifies once', () => {
    const f = makeFixture();
    for (const i of [8192, 8193, 8194]) {
      lpi(f, i, 0x81, 0);
      f.rd.setPending(i);
    }
    expect(f.notified).toEqual([0]);
    f.rd.setTarget(8192, 1);
    expect(f.notified).toEqual([0, 1]);
    f.rd.moveAll(0, 3); // 8193 and 8194
    expect(f.notified).toEqual([0, 1, 3]);
    f.rd.moveAll(3, 1); // vCPU 1 already has one: no new transition
    expect(f.notified).toEqual([0, 1, 3]);
  });

  it('creating an LPI whose pending bit is set notifies its target', () => {
    const f = makeFixture();
    f.setPendBit(2, 8500, true);
    lpi(f, 8500, 0x81, 2);
    expect(f.notified).toEqual([2]);
    f.setPendBit(2, 8501, true);
    lpi(f, 8501, 0x80, 2); // disabled
    expect(f.notified).toEqual([2]);
  });

  it('clearPending, release and disabling never notify', () => {
    const f = makeFixture();
    lpi(f, 8192, 0x81, 0);
    f.rd.setPending(8192);
    f.rd.clearPending(8192);
    f.rd.setPending(8192);
    f.rd.release(8192);
    lpi(f, 8193, 0x81, 1);
    f.rd.setPending(8193);
    f.disableLpis(1);
    expect(f.notified).toEqual([0, 0, 1]);
  });

  it('a throwing hook is counted and leaves the state consistent', () => {
    const mem = new RecordingGuestMemory([{ gpa: 0, size: RAM_SIZE }]);
    const rd = new LpiRedistributors(mem, 1, { onDeliverable: () => { throw new Error('boom'); } });
    rd.resetPropbaser();
    rd.mmioWrite(0, 0x70, 8, 0x10000n | 15n);
    rd.mmioWrite(0, 0x78, 8, 0x40000n);
    rd.mmioWrite(0, 0, 4, 1n);
    mem.poke(0x10000, 0x81);
    rd.acquire(8192, 0);
    expect(() => rd.setPending(8192)).not.toThrow();
    expect(rd.stats.hookErrors).toBe(1);
    expect(rd.ack(0, false)).toEqual({ intid: 8192, priority: 0x80 });
  });
});

describe('GICR_CTLR.EnableLPIs 0 -> 1 pending-table sync (vgic_enable_lpis)', () => {
  it('with PTZ = 0 latches bits of existing LPIs targeting this vCPU, without clearing RAM', () => {
    const f = makeFixture({ enable: false });
    for (const i of [8192, 8193, 8194]) lpi(f, i, 0x81, 0);
    lpi(f, 8195, 0x81, 1); // other vCPU
    lpi(f, 8196, 0x81, NO_VCPU);
    f.rd.setPending(8194); // latch set, bit 0 in RAM: the sync clears the latch
    f.setPendBit(0, 8192, true);
    f.setPendBit(0, 8193, true);
    f.setPendBit(0, 8195, true);
    f.setPendBit(0, 8196, true);
    const writesBefore = f.mem.writes.length;
    f.enableLpis(0);
    expect([8192, 8193, 8194, 8195, 8196].map((i) => f.rd.isPending(i))).toEqual([true, true, false, false, false]);
    expect([f.pendBit(0, 8192), f.pendBit(0, 8193)]).toEqual([true, true]);
    expect(f.mem.writes.length).toBe(writesBefore);
    expect(f.notified).toEqual([0]);
    expect(f.rd.ack(0, false).intid).toBe(8192);
  });

  it('with PTZ = 1 reads nothing', () => {
    const f = makeFixture({ enable: false });
    f.rd.mmioWrite(0, GICR_PENDBASER, 8, pendbaserValue(pendBase(0), true));
    lpi(f, 8192, 0x81, 0);
    f.setPendBit(0, 8192, true);
    f.enableLpis(0);
    expect(f.rd.isPending(8192)).toBe(false);
    expect(f.notified).toEqual([]);
  });

  it('stops at a faulting byte (counted), keeps the remaining latches, and still enables', () => {
    const f = makeFixture({ enable: false });
    lpi(f, 8192, 0x81, 0);
    f.rd.setPending(8192);
    f.rd.mmioWrite(0, GICR_PENDBASER, 8, pendbaserValue(RAM_SIZE)); // table outside RAM
    expect(() => f.enableLpis(0)).not.toThrow();
    expect(f.rd.stats.tableReadFaults).toBe(1);
    expect(f.rd.lpisEnabled(0)).toBe(true);
    expect(f.rd.isPending(8192)).toBe(true);
    expect(f.notified).toEqual([0]);
  });

  it('1 -> 0 stops delivery but keeps the latches (KVM vgic_flush_pending_lpis); 0 -> 1 re-syncs', () => {
    const f = makeFixture();
    lpi(f, 8192, 0x81, 0);
    lpi(f, 8193, 0x81, 0);
    f.rd.setPending(8192);
    f.disableLpis(0);
    expect([f.rd.hasDeliverable(0), f.rd.isPending(8192)]).toEqual([false, true]);
    expect(f.enableChanges.at(-1)).toEqual([0, false]);
    f.rd.setPending(8193); // pending while disabled: no notification
    expect(f.notifyCount(0)).toBe(1);
    f.setPendBit(0, 8193, true); // the table says: only 8193
    f.enableLpis(0);
    expect([f.rd.isPending(8192), f.rd.isPending(8193)]).toEqual([false, true]);
    expect(f.notifyCount(0)).toBe(2);
  });
});
