/**
 * LpiSystem.acquireMany / releaseMany (table restore takes all the references of one LPI at
 * once): a new LPI is created exactly as acquire() creates it (configuration byte read, the
 * target vCPU's pending bit consumed in guest RAM, KVM vgic_add_lpi) with refcount = count;
 * an existing one gains count references and keeps its target and state. releaseMany(n)
 * drops n references, freeing the LPI when none is left.
 */
import { describe, expect, it } from 'vitest';
import { GICR_PENDBASER } from '../../src/redist/registers.js';
import { NO_VCPU, SPURIOUS_INTID } from '../../src/redist/types.js';
import { RAM_SIZE, configAddr, makeFixture, pendAddr, pendbaserValue, type Fixture } from './support/fixture.js';

const U32_MAX = 0xffffffff;

/** Everything observable about one LPI. */
function lpiState(f: Fixture, intid: number): Record<string, unknown> {
  return {
    exists: f.rd.exists(intid),
    refcount: f.rd.refcount(intid),
    target: f.rd.target(intid),
    pending: f.rd.isPending(intid),
    priority: f.rd.priority(intid),
    enabled: f.rd.enabled(intid),
  };
}

describe('acquireMany on a new LPI', () => {
  it('creates it as acquire() does (config byte, pending bit consumed) with refcount = count', () => {
    const f = makeFixture();
    // Twin LPIs, same configuration and pending bit, on vCPU 2: 8200 through acquire, 8201 through acquireMany.
    // 8200 = 1025 * 8 + 0 and 8201 = 1025 * 8 + 1: both bits in byte 1025 of vCPU 2's table.
    expect(pendAddr(2, 8200)).toBe(0x60000 + 1025);
    for (const intid of [8200, 8201]) {
      f.setConfig(intid, 0xa3); // priority 0xa0, group bit, enabled
      f.setPendBit(2, intid, true);
    }
    f.setPendBit(2, 8202, true); // a neighbour bit in the same byte that must stay
    expect(f.mem.peek(pendAddr(2, 8200))).toBe(0b0000_0111);

    expect(f.rd.acquire(8200, 2)).toBe(true);
    expect(f.rd.acquireMany(8201, 2, 5)).toBe(true);

    expect(lpiState(f, 8201)).toEqual({ exists: true, refcount: 5, target: 2, pending: true, priority: 0xa0, enabled: true });
    expect(lpiState(f, 8200)).toEqual({ ...lpiState(f, 8201), refcount: 1 });
    // Both bits consumed (cleared in guest RAM), bit 2 (INTID 8202) kept: 0b111 -> 0b100.
    expect(f.mem.peek(pendAddr(2, 8200))).toBe(0b0000_0100);
    expect(f.rd.stats.pendingTableWrites).toBe(2);
    // Pending + enabled + EnableLPIs: deliverable on vCPU 2 (8200 first: same priority, lower INTID).
    expect(f.rd.hasDeliverable(2)).toBe(true);
    expect(f.rd.ack(2, false)).toEqual({ intid: 8200, priority: 0xa0 });
    expect(f.rd.ack(2, false)).toEqual({ intid: 8201, priority: 0xa0 });
    expect(f.rd.ack(2, false).intid).toBe(SPURIOUS_INTID);
  });

  it('without a target reads only the configuration byte', () => {
    const f = makeFixture();
    f.setConfig(9000, 0x40); // priority 0x40, disabled
    f.setPendBit(0, 9000, true);
    expect(f.rd.acquireMany(9000, NO_VCPU, 3)).toBe(true);
    expect(lpiState(f, 9000)).toEqual({ exists: true, refcount: 3, target: NO_VCPU, pending: false, priority: 0x40, enabled: false });
    expect(f.pendBit(0, 9000)).toBe(true);
    expect(f.mem.writes).toEqual([]);
  });

  it('count = 2^32 - 1 (the largest refcount) is accepted', () => {
    const f = makeFixture();
    expect(f.rd.acquireMany(8192, 0, U32_MAX)).toBe(true);
    expect(f.rd.refcount(8192)).toBe(U32_MAX);
    // One more reference does not fit.
    expect(f.rd.acquire(8192, 0)).toBe(false);
    expect(f.rd.acquireMany(8192, 0, 1)).toBe(false);
    expect(f.rd.refcount(8192)).toBe(U32_MAX);
  });

  it('fails like acquire() (nothing created, RAM unchanged) when a table byte is outside RAM', () => {
    const f = makeFixture({ enable: false });
    f.rd.mmioWrite(1, GICR_PENDBASER, 8, pendbaserValue(RAM_SIZE)); // vCPU 1's pending table outside RAM
    expect(f.rd.acquireMany(8192, 1, 4)).toBe(false);
    expect(lpiState(f, 8192)).toEqual({ exists: false, refcount: 0, target: NO_VCPU, pending: false, priority: 0, enabled: false });
    expect(f.rd.stats.tableReadFaults).toBe(1);
    // The consumed bit cannot be cleared (frozen memory): no LPI, the bit stays.
    f.setPendBit(0, 8193, true);
    f.mem.freeze();
    expect(f.rd.acquireMany(8193, 0, 2)).toBe(false);
    f.mem.thaw();
    expect(f.rd.exists(8193)).toBe(false);
    expect(f.pendBit(0, 8193)).toBe(true);
  });
});

describe('acquireMany on an existing LPI', () => {
  it('adds count references, keeps target, pending state and cached configuration, touches no RAM', () => {
    const f = makeFixture();
    f.setConfig(8300, 0x81);
    expect(f.rd.acquire(8300, 1)).toBe(true);
    f.rd.setPending(8300);
    // The guest changes the configuration and sets 8300's bit in vCPU 3's table: neither is read again.
    f.setConfig(8300, 0x20);
    f.setPendBit(3, 8300, true);
    const writesBefore = f.mem.writes.length;
    expect(f.rd.acquireMany(8300, 3, 4)).toBe(true);
    expect(lpiState(f, 8300)).toEqual({ exists: true, refcount: 5, target: 1, pending: true, priority: 0x80, enabled: true });
    expect(f.pendBit(3, 8300)).toBe(true);
    expect(f.mem.writes.length).toBe(writesBefore);
    expect(f.rd.acquireMany(8300, NO_VCPU, 10)).toBe(true);
    expect([f.rd.refcount(8300), f.rd.target(8300)]).toEqual([15, 1]);
  });

  it('refuses a count that would overflow the 32-bit refcount, changing nothing', () => {
    const f = makeFixture();
    f.rd.acquire(8192, 0);
    f.rd.acquire(8192, 0);
    f.rd.acquire(8192, 0); // refcount 3
    // 3 + (2^32 - 3) = 2^32 does not fit; 3 + (2^32 - 4) = 2^32 - 1 does.
    expect(f.rd.acquireMany(8192, 0, U32_MAX - 2)).toBe(false);
    expect(f.rd.refcount(8192)).toBe(3);
    expect(f.rd.acquireMany(8192, 0, U32_MAX - 3)).toBe(true);
    expect(f.rd.refcount(8192)).toBe(U32_MAX);
  });
});

describe('acquireMany with a bad count or INTID', () => {
  const badCounts = [0, -1, -5, 1.5, 0.5, Number.NaN, Number.POSITIVE_INFINITY, U32_MAX + 1, 2 ** 40];

  it('returns false and creates nothing for a new LPI (config not read, pending bit kept)', () => {
    const f = makeFixture();
    f.setConfig(8400, 0x81);
    f.setPendBit(0, 8400, true);
    for (const count of badCounts) {
      expect(f.rd.acquireMany(8400, 0, count), `count ${count}`).toBe(false);
      expect(f.rd.exists(8400), `count ${count}`).toBe(false);
    }
    expect(f.pendBit(0, 8400)).toBe(true);
    expect(f.mem.writes).toEqual([]);
    expect(f.rd.stats.tableReadFaults).toBe(0);
  });

  it('returns false and leaves an existing LPI as it was', () => {
    const f = makeFixture();
    f.setConfig(8401, 0x81);
    f.rd.acquire(8401, 2);
    f.rd.acquire(8401, 2);
    const before = lpiState(f, 8401);
    for (const count of badCounts) expect(f.rd.acquireMany(8401, 2, count), `count ${count}`).toBe(false);
    expect(lpiState(f, 8401)).toEqual(before);
    expect(before.refcount).toBe(2);
  });

  it('refuses a target that is not a vCPU, also for an LPI that exists (as acquire does)', () => {
    const f = makeFixture();
    f.setConfig(8402, 0x81);
    expect(f.rd.acquireMany(8402, 2, 2)).toBe(true);
    const before = lpiState(f, 8402);
    for (const target of [f.rd.nrVcpus, 1000, -5, 2.5]) {
      expect(f.rd.acquire(8402, target), `acquire, target ${target}`).toBe(false);
      expect(f.rd.acquireMany(8402, target, 3), `acquireMany, target ${target}`).toBe(false);
      expect(f.rd.acquireMany(8403, target, 1), `new LPI, target ${target}`).toBe(false);
    }
    expect(lpiState(f, 8402)).toEqual(before);
    expect(f.rd.exists(8403)).toBe(false);
  });

  it('returns false for INTIDs outside the LPI space', () => {
    const f = makeFixture();
    for (const intid of [0, 1023, 8191, 65536, -1, 8192.5, Number.NaN]) expect(f.rd.acquireMany(intid, 0, 2)).toBe(false);
    let n = 0;
    f.rd.forEachLpi(() => n++);
    expect(n).toBe(0);
    expect(f.rd.acquireMany(65535, 0, 2)).toBe(true); // the last one of the 16-bit space
    expect(f.rd.refcount(65535)).toBe(2);
    expect(configAddr(65535)).toBe(0x10000 + 65535 - 8192);
  });
});

describe('releaseMany', () => {
  function lpiWithRefs(f: Fixture, intid: number, refs: number, vcpu: number): void {
    f.setConfig(intid, 0x61); // priority 0x60, enabled
    expect(f.rd.acquireMany(intid, vcpu, refs)).toBe(true);
    f.rd.setPending(intid);
  }

  it('n < refcount decrements; the LPI keeps its target and pending state', () => {
    const f = makeFixture();
    lpiWithRefs(f, 8500, 7, 3);
    f.rd.releaseMany(8500, 4);
    expect(lpiState(f, 8500)).toEqual({ exists: true, refcount: 3, target: 3, pending: true, priority: 0x60, enabled: true });
    expect(f.rd.hasDeliverable(3)).toBe(true);
    f.rd.releaseMany(8500, 2);
    expect(f.rd.refcount(8500)).toBe(1);
    expect(f.rd.exists(8500)).toBe(true);
  });

  it('n = refcount frees the LPI (pending state and deliverability gone)', () => {
    const f = makeFixture();
    lpiWithRefs(f, 8501, 6, 1);
    expect(f.rd.hasDeliverable(1)).toBe(true);
    f.rd.releaseMany(8501, 6);
    expect(lpiState(f, 8501)).toEqual({ exists: false, refcount: 0, target: NO_VCPU, pending: false, priority: 0, enabled: false });
    expect(f.rd.hasDeliverable(1)).toBe(false);
    expect(f.rd.ack(1, true).intid).toBe(SPURIOUS_INTID);
    let n = 0;
    f.rd.forEachLpi(() => n++);
    expect(n).toBe(0);
  });

  it('n > refcount frees the LPI too; a re-created LPI starts clean', () => {
    const f = makeFixture();
    lpiWithRefs(f, 8502, 2, 0);
    f.rd.releaseMany(8502, 1000);
    expect(f.rd.exists(8502)).toBe(false);
    expect(f.rd.hasDeliverable(0)).toBe(false);
    expect(f.rd.acquireMany(8502, 2, 3)).toBe(true);
    expect(lpiState(f, 8502)).toEqual({ exists: true, refcount: 3, target: 2, pending: false, priority: 0x60, enabled: true });
  });

  it('a bad count or a missing LPI changes nothing', () => {
    const f = makeFixture();
    lpiWithRefs(f, 8503, 5, 2);
    for (const count of [0, -1, 1.5, Number.NaN]) f.rd.releaseMany(8503, count);
    expect(f.rd.refcount(8503)).toBe(5);
    f.rd.releaseMany(8504, 3); // never created
    expect(f.rd.exists(8504)).toBe(false);
    for (const intid of [0, 8191, 65536]) f.rd.releaseMany(intid, 1);
    expect(f.rd.refcount(8503)).toBe(5);
  });

  it('acquireMany then releaseMany of the same count is a no-op on an existing LPI', () => {
    const f = makeFixture();
    lpiWithRefs(f, 8505, 1, 2);
    const before = lpiState(f, 8505);
    expect(f.rd.acquireMany(8505, 2, 9)).toBe(true);
    f.rd.releaseMany(8505, 9);
    expect(lpiState(f, 8505)).toEqual(before);
  });
});
