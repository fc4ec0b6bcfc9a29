import { describe, expect, it } from 'vitest';
import { GICR_PENDBASER, GICR_PROPBASER } from '../../src/redist/registers.js';
import { NO_VCPU } from '../../src/redist/types.js';
import { RAM_SIZE, makeFixture, pendAddr, pendBase, pendbaserValue, propbaserValue } from './support/fixture.js';

describe('configuration cache (KVM semantics)', () => {
  it('reads priority (byte & 0xfc) and enable (bit 0) at creation; the group bit is ignored', () => {
    const f = makeFixture();
    f.setConfig(8192, 0xa3); // priority 0xa0 | group 0x2 | enable 0x1
    f.setConfig(8193, 0x42); // priority 0x40, disabled
    expect(f.rd.acquire(8192, 0)).toBe(true);
    expect(f.rd.acquire(8193, 0)).toBe(true);
    expect([f.rd.priority(8192), f.rd.enabled(8192)]).toEqual([0xa0, true]);
    expect([f.rd.priority(8193), f.rd.enabled(8193)]).toEqual([0x40, false]);
  });

  it('a guest change to the table has no effect until invalidate()', () => {
    const f = makeFixture();
    f.setConfig(9000, 0xa1);
    f.rd.acquire(9000, 1);
    f.rd.setPending(9000);
    f.setConfig(9000, 0x10); // disable + new priority in RAM
    expect([f.rd.priority(9000), f.rd.enabled(9000), f.rd.hasDeliverable(1)]).toEqual([0xa0, true, true]);
    f.rd.invalidate(9000);
    expect([f.rd.priority(9000), f.rd.enabled(9000), f.rd.hasDeliverable(1)]).toEqual([0x10, false, false]);
    expect(f.rd.isPending(9000)).toBe(true); // disabled LPIs stay pending
  });

  it('invalidateAll(v) re-reads exactly the LPIs that target v', () => {
    const f = makeFixture();
    const targets: [number, number][] = [[8192, 0], [8193, 1], [8194, NO_VCPU], [8195, 0]];
    for (const [intid, t] of targets) {
      f.setConfig(intid, 0x81);
      f.rd.acquire(intid, t);
      f.setConfig(intid, 0x21);
    }
    f.rd.invalidateAll(0);
    expect(targets.map(([i]) => f.rd.priority(i))).toEqual([0x20, 0x80, 0x80, 0x20]);
    f.rd.invalidateAll(99); // out of range: ignored, no throw
    expect(f.rd.priority(8193)).toBe(0x80);
  });

  it('a faulting re-read keeps the cached configuration and is counted', () => {
    const f = makeFixture({ enable: false });
    f.setConfig(8192, 0x61);
    f.rd.acquire(8192, 0);
    // Move the property table outside RAM (allowed: EnableLPIs = 0 on vCPU 0).
    f.rd.mmioWrite(0, GICR_PROPBASER, 8, propbaserValue(RAM_SIZE, 15));
    f.rd.invalidate(8192);
    expect([f.rd.priority(8192), f.rd.enabled(8192)]).toEqual([0x60, true]);
    expect(f.rd.stats.tableReadFaults).toBe(1);
  });

  it('re-reads the configuration when an LPI is freed and created again', () => {
    const f = makeFixture();
    f.setConfig(8192, 0x81);
    f.rd.acquire(8192, 0);
    f.setConfig(8192, 0x31);
    f.rd.release(8192);
    f.rd.acquire(8192, 0);
    expect(f.rd.priority(8192)).toBe(0x30);
  });
});

describe('pending-table consumption at creation (vgic_v3_lpi_sync_pending_status)', () => {
  it('latches and clears the bit of the target vCPU; other bits of the byte are kept', () => {
    const f = makeFixture();
    // INTID 8195 on vCPU 1: byte 0x50000 + 8195 / 8 = 0x50000 + 1024 = 0x50400, bit 8195 % 8 = 3.
    expect(pendAddr(1, 8195)).toBe(0x50400);
    f.mem.poke(0x50400, 0b0000_1001); // bit 3 (8195) and bit 0 (8192)
    f.setConfig(8195, 0xa1);
    expect(f.rd.acquire(8195, 1)).toBe(true);
    expect(f.rd.isPending(8195)).toBe(true);
    expect(f.mem.peek(0x50400)).toBe(0b0000_0001);
    expect(f.rd.stats.pendingTableWrites).toBe(1);
    expect(f.rd.hasDeliverable(1)).toBe(true);
  });

  it('reads nothing for an LPI without a target, and nothing for an LPI that already exists', () => {
    const f = makeFixture();
    f.mem.poke(0x40400, 0b0000_0001); // INTID 8192's bit in vCPU 0's table
    f.mem.poke(0x50400, 0b0000_0001); // ... and in vCPU 1's table
    expect(f.rd.acquire(8192, NO_VCPU)).toBe(true);
    expect(f.rd.isPending(8192)).toBe(false);
    expect(f.rd.acquire(8192, 1)).toBe(true); // exists: keeps target NO_VCPU and state
    expect(f.rd.target(8192)).toBe(NO_VCPU);
    expect(f.rd.refcount(8192)).toBe(2);
    expect(f.mem.peek(0x40400)).toBe(1);
    expect(f.mem.peek(0x50400)).toBe(1);
    expect(f.mem.writes).toEqual([]);
  });

  it('uses the pending table of the target vCPU, not of vCPU 0', () => {
    const f = makeFixture();
    f.setPendBit(0, 8300, true);
    f.setPendBit(2, 8300, true);
    f.rd.acquire(8300, 2);
    expect(f.rd.isPending(8300)).toBe(true);
    expect([f.pendBit(0, 8300), f.pendBit(2, 8300)]).toEqual([true, false]);
  });

  it('fails (no LPI, counted) when the property table or pending table is outside RAM', () => {
    const f = makeFixture({ enable: false });
    f.rd.mmioWrite(1, GICR_PENDBASER, 8, pendbaserValue(RAM_SIZE)); // vCPU 1's table outside RAM
    expect(f.rd.acquire(8192, 1)).toBe(false);
    expect(f.rd.exists(8192)).toBe(false);
    expect(f.rd.stats.tableReadFaults).toBe(1);
    expect(f.rd.acquire(8192, 0)).toBe(true); // vCPU 0's table is fine
    f.rd.mmioWrite(0, GICR_PROPBASER, 8, propbaserValue(RAM_SIZE - 0x1000, 15));
    // Config byte of 8192 + 0x1000 lies at RAM_SIZE: outside.
    expect(f.rd.acquire(8192 + 0x1000, 0)).toBe(false);
    expect(f.rd.stats.tableReadFaults).toBe(2);
    expect(f.rd.acquire(8192 + 0xfff, 0)).toBe(true); // last byte inside RAM
  });

  it('fails when the consumed bit cannot be cleared (frozen memory); RAM keeps the bit', () => {
    const f = makeFixture();
    f.setPendBit(0, 8192, true);
    f.mem.freeze();
    expect(f.rd.acquire(8192, 0)).toBe(false);
    expect(f.rd.exists(8192)).toBe(false);
    expect(f.rd.stats.tableWriteFaults).toBe(1);
    f.mem.thaw();
    expect(f.pendBit(0, 8192)).toBe(true);
    expect(f.rd.acquire(8192, 0)).toBe(true);
    expect(f.rd.isPending(8192)).toBe(true);
  });

  it('rejects INTIDs outside the LPI space and bad targets without throwing', () => {
    const f = makeFixture();
    for (const intid of [0, 8191, 65536, -1, 8192.5, Number.NaN]) expect(f.rd.acquire(intid, 0)).toBe(false);
    expect(f.rd.acquire(8192, 4)).toBe(false); // 4 vCPUs: 0..3
    expect(f.rd.acquire(65535, 3)).toBe(true);
  });
});

describe('reference counting (LPIs shared by several ITEs / ITSes)', () => {
  it('keeps the LPI and its state until the last reference goes', () => {
    const f = makeFixture();
    f.setConfig(8192, 0x81);
    f.rd.acquire(8192, 0);
    f.rd.acquire(8192, 0);
    f.rd.acquire(8192, 2);
    expect(f.rd.refcount(8192)).toBe(3);
    f.rd.setPending(8192);
    f.rd.release(8192);
    f.rd.release(8192);
    expect([f.rd.exists(8192), f.rd.isPending(8192), f.rd.hasDeliverable(0)]).toEqual([true, true, true]);
    f.rd.release(8192);
    expect([f.rd.exists(8192), f.rd.isPending(8192), f.rd.hasDeliverable(0)]).toEqual([false, false, false]);
    expect(f.rd.target(8192)).toBe(NO_VCPU);
    expect(f.rd.ack(0, true).intid).toBe(1023);
    f.rd.release(8192); // extra release: no-op
    expect(f.rd.refcount(8192)).toBe(0);
  });

  it('a freed LPI leaves nothing behind: re-created clean, and its bits are no longer saved or moved', () => {
    const f = makeFixture();
    f.setConfig(8197, 0x81);
    f.rd.acquire(8197, 0);
    f.rd.setPending(8197);
    f.rd.release(8197);
    f.rd.acquire(8197, 0); // pending bit 0 in RAM
    expect(f.rd.isPending(8197)).toBe(false);
    f.rd.release(8197);
    // Another mapped LPI in the same byte, so the save does work there.
    f.setConfig(8196, 0x81);
    f.rd.acquire(8196, 0);
    f.rd.setPending(8196);
    f.setPendBit(0, 8197, true); // the guest's bit of the now unmapped 8197
    f.rd.savePendingTables();
    expect([f.pendBit(0, 8196), f.pendBit(0, 8197)]).toEqual([true, true]);
    f.rd.moveAll(0, 1);
    expect([f.rd.target(8196), f.rd.target(8197), f.rd.exists(8197)]).toEqual([1, NO_VCPU, false]);
  });

  it('ignores pending/config operations on LPIs that do not exist', () => {
    const f = makeFixture();
    f.rd.setPending(8192);
    f.rd.invalidate(8192);
    f.rd.setTarget(8192, 1);
    f.rd.clearPending(8192);
    expect([f.rd.exists(8192), f.rd.isPending(8192), f.rd.priority(8192), f.rd.enabled(8192)]).toEqual([false, false, 0, false]);
    expect(f.notified).toEqual([]);
  });
});

describe('retargeting', () => {
  it('setTarget moves the pending state with the LPI', () => {
    const f = makeFixture();
    f.setConfig(8192, 0x81);
    f.rd.acquire(8192, 0);
    f.rd.setPending(8192);
    f.rd.setTarget(8192, 3);
    expect([f.rd.hasDeliverable(0), f.rd.hasDeliverable(3)]).toEqual([false, true]);
    expect(f.rd.ack(3, false)).toEqual({ intid: 8192, priority: 0x80 });
    f.rd.setTarget(8192, 7); // out of range: ignored
    expect(f.rd.target(8192)).toBe(3);
  });

  it('NO_VCPU parks a pending LPI; retargeting it delivers it', () => {
    const f = makeFixture();
    f.setConfig(8192, 0x81);
    f.rd.acquire(8192, 1);
    f.rd.setTarget(8192, NO_VCPU);
    f.rd.setPending(8192);
    expect([0, 1, 2, 3].some((v) => f.rd.hasDeliverable(v))).toBe(false);
    f.rd.setTarget(8192, 2);
    expect(f.rd.hasDeliverable(2)).toBe(true);
  });

  it('moveAll retargets exactly the LPIs that target `from`', () => {
    const f = makeFixture();
    const initial: [number, number][] = [[8192, 0], [8193, 1], [8194, 0], [8195, NO_VCPU], [8196, 2]];
    for (const [intid, t] of initial) {
      f.setConfig(intid, 0x81);
      f.rd.acquire(intid, t);
      f.rd.setPending(intid);
    }
    f.rd.moveAll(0, 2);
    expect(initial.map(([i]) => f.rd.target(i))).toEqual([2, 1, 2, NO_VCPU, 2]);
    expect(f.rd.hasDeliverable(0)).toBe(false);
    const acked: number[] = [];
    for (let r = f.rd.ack(2, false); r.intid !== 1023; r = f.rd.ack(2, false)) acked.push(r.intid);
    expect(acked).toEqual([8192, 8194, 8196]);
    f.rd.moveAll(1, 1); // same vCPU: no-op
    f.rd.moveAll(1, 9); // out of range: ignored
    expect(f.rd.target(8193)).toBe(1);
  });
});

describe('clearAllLpis and forEachLpi', () => {
  it('forEachLpi visits existing LPIs in INTID order; removing during the walk is safe', () => {
    const f = makeFixture();
    for (const intid of [65535, 8192, 40000, 8224, 8223]) f.rd.acquire(intid, 0);
    const seen: number[] = [];
    f.rd.forEachLpi((i) => seen.push(i));
    expect(seen).toEqual([8192, 8223, 8224, 40000, 65535]);
    const seen2: number[] = [];
    f.rd.forEachLpi((i) => {
      seen2.push(i);
      f.rd.release(8224); // removes a later one
    });
    expect(seen2).toEqual([8192, 8223, 40000, 65535]);
    expect(f.rd.nextLpi(0)).toBe(8192);
    expect(f.rd.nextLpi(40001)).toBe(65535);
    expect(f.rd.nextLpi(65536)).toBe(-1);
  });

  it('clearAllLpis forgets every LPI but keeps the registers', () => {
    const f = makeFixture();
    f.setConfig(8192, 0x81);
    f.rd.acquire(8192, 0);
    f.rd.setPending(8192);
    const prop = f.rd.propbaser;
    f.rd.clearAllLpis();
    expect([f.rd.exists(8192), f.rd.hasDeliverable(0), f.rd.lpisEnabled(0)]).toEqual([false, false, true]);
    expect(f.rd.propbaser).toBe(prop);
    expect(f.rd.pendbaser(1)).toBe(pendbaserValue(pendBase(1)));
    let count = 0;
    f.rd.forEachLpi(() => count++);
    expect(count).toBe(0);
  });
});

describe('setMemory', () => {
  it('reads tables from the new memory after replacement', async () => {
    const f = makeFixture();
    const { RecordingGuestMemory } = await import('./support/recording-memory.js');
    const other = new RecordingGuestMemory([{ gpa: 0, size: RAM_SIZE }]);
    other.poke(0x10000 + 5, 0x51); // config byte of INTID 8197 in the new memory
    f.setConfig(8197, 0x91);
    f.rd.setMemory(other);
    f.rd.acquire(8197, 0);
    expect(f.rd.priority(8197)).toBe(0x50);
  });
});
