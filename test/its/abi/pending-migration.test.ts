/**
 * kvm-unit-tests "its-pending-migration", mirrored: 256 events alternating over two
 * collections on two CPUs, pending bits written by the guest straight into the pending tables
 * while LPIs are disabled (configuration Enable = 0), EnableLPIs 0 -> 1 (KVM syncs the tables),
 * then a migration. On the destination the guest enables the LPIs and issues INVALL: exactly
 * 128 LPIs must arrive on each CPU, each on the CPU its collection targets, none twice.
 */
import { describe, expect, it } from 'vitest';
import { copyMemory, GICR_CTLR, GICR_PENDBASER, GICR_PROPBASER, readSavedRegs, restoreInto, TestVm } from './harness.js';

const EVENTS = 256;
const LPI_BASE = 8192;
const DISABLED = 0xa2; // priority 0xa0, group 1, Enable = 0
const ENABLED = 0xa3;

function drain(t: TestVm, vcpu: number): number[] {
  const got: number[] = [];
  for (let i = 0; i < EVENTS + 1; i++) {
    const a = t.vm.ackLpi(vcpu, false);
    if (a.intid === 1023) break;
    got.push(a.intid);
  }
  return got;
}

describe('pending LPIs written into the pending tables survive a migration (kvm-unit-tests its-pending-migration)', () => {
  it('delivers exactly 128 LPIs on each of the two CPUs after migration', () => {
    const src = new TestVm({ nrVcpus: 2, program: false });
    const L = src.layout;
    src.memory.fill(L.prop, 0x1_0000 - 0x2000, DISABLED);
    for (let v = 0; v < 2; v++) {
      src.setRedist64(v, GICR_PROPBASER, L.prop + 15);
      src.setRedist64(v, GICR_PENDBASER, L.pend(v));
    }
    src.programIts();
    src.mapd(0, 8, L.itt(0));
    src.mapc(0, 0);
    src.mapc(1, 1);
    for (let e = 0; e < EVENTS; e++) src.mapti(0, e, LPI_BASE + e, e % 2);
    src.sync();

    // The guest sets the pending bits itself: INTID n is bit n % 8 of byte n / 8 of the table
    // of the CPU its collection targets (event e -> collection e % 2 -> CPU e % 2).
    for (let e = 0; e < EVENTS; e++) {
      const intid = LPI_BASE + e;
      const byte = L.pend(e % 2) + Math.floor(intid / 8);
      src.memory.writeU8(byte, src.memory.readU8(byte) | (1 << (intid % 8)));
    }
    for (let v = 0; v < 2; v++) src.setRedist(v, GICR_CTLR, 1); // EnableLPIs 0 -> 1: pending-table sync

    // Nothing is deliverable yet: every LPI is disabled in the configuration table.
    expect(src.vm.ackLpi(0, true).intid).toBe(1023);
    expect(src.vm.ackLpi(1, true).intid).toBe(1023);

    src.vm.suspend();
    src.savePendingTables();
    src.saveTables();
    const regs = readSavedRegs(src);
    const dst = restoreInto(copyMemory(src.memory), regs, { nrVcpus: 2 });
    dst.vm.resume();

    // The destination guest enables every LPI and invalidates both collections.
    dst.memory.fill(L.prop, EVENTS, ENABLED);
    dst.invall(0);
    dst.invall(1);
    dst.sync();

    const cpu0 = drain(dst, 0);
    const cpu1 = drain(dst, 1);
    expect(cpu0).toHaveLength(128);
    expect(cpu1).toHaveLength(128);
    expect(cpu0.every((intid) => (intid - LPI_BASE) % 2 === 0)).toBe(true);
    expect(cpu1.every((intid) => (intid - LPI_BASE) % 2 === 1)).toBe(true);
    expect(new Set([...cpu0, ...cpu1]).size).toBe(EVENTS);
    // Acknowledged means gone: no spurious second delivery.
    expect(dst.vm.ackLpi(0, true).intid).toBe(1023);
    expect(dst.vm.ackLpi(1, true).intid).toBe(1023);
  });
});
