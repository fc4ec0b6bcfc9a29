import { describe, expect, it } from 'vitest';
import { GICR_PENDBASER, GICR_PROPBASER } from '../../src/redist/registers.js';
import { LpiRedistributors } from '../../src/redist/lpi-system.js';
import { NO_VCPU } from '../../src/redist/types.js';
import { ErrnoError, Errno } from '../../src/util/errno.js';
import { RAM_SIZE, makeFixture, pendbaserValue, type Fixture } from './support/fixture.js';

function pendingLpi(f: Fixture, intid: number, target: number): void {
  f.setConfig(intid, 0xa1);
  expect(f.rd.acquire(intid, target)).toBe(true);
  f.rd.setPending(intid);
}

describe('savePendingTables (KVM vgic_v3_save_pending_tables)', () => {
  it('writes INTID 8195 on vCPU 1 (PENDBASER PA 0x50000) as bit 3 of byte 0x50400', () => {
    const f = makeFixture();
    // byte = 0x50000 + floor(8195 / 8) = 0x50000 + 1024 = 0x50400; bit = 8195 % 8 = 3 -> 0x08.
    pendingLpi(f, 8195, 1);
    f.rd.savePendingTables();
    expect(f.mem.peek(0x50400)).toBe(0x08);
    for (const a of [0x503ff, 0x50401, 0x50402, 0x50403, 0x50404]) expect(f.mem.peek(a)).toBe(0);
    // Written back a 32-bit word at a time: the word holding INTIDs 8192..8223 (0x50400..0x50403).
    expect(f.mem.writes).toEqual([{ gpa: 0x50400, len: 4 }]);
    expect(f.rd.stats.pendingTableWrites).toBe(4);
  });

  it('uses each target vCPU\'s own PENDBASER (field bug: every vCPU saved vCPU 0\'s)', () => {
    const f = makeFixture({ nrVcpus: 4 });
    // Tables at 0x40000, 0x50000, 0x60000, 0x70000; vCPU v gets INTID 8200 + 17 v.
    const cases = [0, 1, 2, 3].map((v) => {
      const intid = 8200 + 17 * v;
      const base = 0x40000 + 0x10000 * v;
      return { v, intid, byte: base + Math.floor(intid / 8), bit: 1 << intid % 8 };
    });
    // By hand: v0 8200 -> 0x40000 + 1025 = 0x40401 bit 0; v1 8217 -> 0x50000 + 1027 = 0x50403 bit 1;
    //          v2 8234 -> 0x60000 + 1029 = 0x60405 bit 2; v3 8251 -> 0x70000 + 1031 = 0x70407 bit 3.
    expect(cases.map((c) => [c.byte, c.bit])).toEqual([[0x40401, 1], [0x50403, 2], [0x60405, 4], [0x70407, 8]]);
    for (const c of cases) pendingLpi(f, c.intid, c.v);
    f.rd.savePendingTables();
    for (const c of cases) {
      expect(f.mem.peek(c.byte)).toBe(c.bit);
      // No other vCPU's table got this LPI's bit.
      for (const o of [0, 1, 2, 3].filter((o) => o !== c.v)) expect(f.pendBit(o, c.intid)).toBe(false);
    }
    expect(f.mem.writes.length).toBe(4);
  });

  it('survives a save and a re-creation on every vCPU (pending state round trip)', () => {
    const f = makeFixture({ nrVcpus: 4 });
    const perVcpu = [[8192, 8300], [8193, 9000], [8194, 65535], [8195, 40000]];
    perVcpu.forEach((ids, v) => ids.forEach((i) => pendingLpi(f, i, v)));
    f.rd.savePendingTables();
    // A fresh redistributor on the same RAM with the same registers (as a destination).
    const dest = new LpiRedistributors(f.mem, 4, { onDeliverable: () => {} });
    dest.resetPropbaser();
    dest.mmioWrite(0, GICR_PROPBASER, 8, f.rd.propbaser);
    for (let v = 0; v < 4; v++) {
      dest.mmioWrite(v, GICR_PENDBASER, 8, f.rd.pendbaser(v));
      dest.mmioWrite(v, 0, 4, 1n);
    }
    perVcpu.forEach((ids, v) => ids.forEach((i) => expect(dest.acquire(i, v)).toBe(true)));
    perVcpu.forEach((ids, v) => {
      const got: number[] = [];
      for (let r = dest.ack(v, false); r.intid !== 1023; r = dest.ack(v, false)) got.push(r.intid);
      expect(got).toEqual(ids);
      ids.forEach((i) => expect(f.pendBit(v, i)).toBe(false)); // consumed
    });
  });

  it('touches only bits of LPIs with a target, never the first 1 KiB, and writes nothing when nothing changes', () => {
    const f = makeFixture();
    f.mem.fill(0x40000, 1024, 0x5a); // INTIDs 0-8191 of vCPU 0's table
    f.mem.writes.length = 0;
    // Byte 0x40400 covers INTIDs 8192-8199. Unmapped 8197 and 8199 have their bits set in RAM.
    f.mem.poke(0x40400, 0b1010_0000);
    pendingLpi(f, 8195, 0); // mapped, pending -> bit 3 set
    f.setConfig(8196, 0x81);
    f.rd.acquire(8196, 0); // mapped, not pending, bit set afterwards -> cleared by the save
    f.mem.poke(0x40400, f.mem.peek(0x40400) | 0b0001_0000);
    f.setConfig(8194, 0x81);
    f.rd.acquire(8194, NO_VCPU); // pending but no target -> skipped
    f.rd.setPending(8194);
    f.rd.savePendingTables();
    expect(f.mem.peek(0x40400)).toBe(0b1010_1000);
    for (let a = 0x40000; a < 0x40400; a++) expect(f.mem.peek(a)).toBe(0x5a);
    expect(f.mem.writes.every((w) => w.gpa >= 0x40400)).toBe(true);
    // Second save: everything already matches -> no write at all.
    const n = f.mem.writes.length;
    f.rd.savePendingTables();
    expect(f.mem.writes.length).toBe(n);
  });

  it('writes only the pages that hold a changed byte; unchanged neighbours keep their content', () => {
    const f = makeFixture();
    // 8192 -> byte 0x400 (page 0 of the table); 40000 -> byte 5000 = 0x1388 (page 1).
    pendingLpi(f, 8192, 0);
    pendingLpi(f, 40000, 0);
    f.rd.savePendingTables();
    expect([f.pendBit(0, 8192), f.pendBit(0, 40000)]).toEqual([true, true]);
    f.rd.clearPending(40000);
    f.mem.poke(0x40000 + 5001, 0x77); // a byte next to 40000's, no LPI there
    f.mem.writes.length = 0;
    f.rd.savePendingTables();
    expect(f.mem.writes.every((w) => w.gpa >= 0x41000 && w.gpa + w.len <= 0x42000)).toBe(true);
    expect(f.mem.writes.length).toBe(1);
    expect([f.pendBit(0, 8192), f.pendBit(0, 40000), f.mem.peek(0x40000 + 5001)]).toEqual([true, false, 0x77]);
  });

  it('saves into tables that span two guest memory regions (no access straddles them)', async () => {
    const { RecordingGuestMemory } = await import('./support/recording-memory.js');
    // RAM in two regions split at 0x41000: vCPU 0's table (0x40000) has page 0 in the first
    // region and page 1 in the second.
    const mem = new RecordingGuestMemory([{ gpa: 0, size: 0x41000 }, { gpa: 0x41000, size: RAM_SIZE - 0x41000 }]);
    const rd = new LpiRedistributors(mem, 1, { onDeliverable: () => {} });
    rd.resetPropbaser();
    rd.mmioWrite(0, GICR_PROPBASER, 8, 0x10000n | 15n);
    rd.mmioWrite(0, GICR_PENDBASER, 8, 0x40000n);
    for (const i of [8192, 40000]) {
      mem.poke(0x10000 + i - 8192, 0x81);
      rd.acquire(i, 0);
      rd.setPending(i);
    }
    rd.savePendingTables();
    expect([mem.peek(0x40400), mem.peek(0x40000 + 5000)]).toEqual([0x01, 0x01]); // 40000 % 8 = 0
  });

  it('marks the written pages in the dirty log, and only those', () => {
    const f = makeFixture();
    pendingLpi(f, 8195, 1); // byte 0x50400 -> page 0x50
    const log = new Uint8Array(RAM_SIZE / 4096 / 8); // one bit per 4 KiB page, attached after setup
    f.mem.setDirtyLog(log);
    f.rd.savePendingTables();
    const dirty = [...log.keys()].flatMap((i) => [0, 1, 2, 3, 4, 5, 6, 7].filter((b) => log[i]! & (1 << b)).map((b) => i * 8 + b));
    expect(dirty).toEqual([0x50]);
  });

  it('clears the bit of a mapped LPI that is no longer pending', () => {
    const f = makeFixture();
    pendingLpi(f, 9001, 2);
    f.rd.savePendingTables();
    expect(f.pendBit(2, 9001)).toBe(true);
    f.rd.ack(2, false);
    f.rd.savePendingTables();
    expect(f.pendBit(2, 9001)).toBe(false);
  });

  it('saves latches of vCPUs with EnableLPIs = 0 too', () => {
    const f = makeFixture();
    pendingLpi(f, 8192, 3);
    f.disableLpis(3);
    f.rd.savePendingTables();
    expect(f.pendBit(3, 8192)).toBe(true);
  });

  it('throws ErrnoError(EFAULT) when a target table is outside RAM, counts it, and writes nothing', () => {
    const f = makeFixture({ enable: false });
    pendingLpi(f, 8300, 0); // vCPU 0's table is fine and needs a write
    f.setConfig(8192, 0x81);
    f.rd.acquire(8192, 1);
    f.rd.setPending(8192);
    f.rd.mmioWrite(1, GICR_PENDBASER, 8, pendbaserValue(RAM_SIZE + 0x10000));
    let err: unknown;
    try {
      f.rd.savePendingTables();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ErrnoError);
    expect((err as ErrnoError).errno).toBe(Errno.EFAULT);
    expect(f.rd.stats.tableReadFaults).toBe(1);
    expect(f.mem.writes).toEqual([]);
    expect(f.pendBit(0, 8300)).toBe(false);
  });

  it('does nothing (no read, no write) when no LPI has a target', () => {
    const f = makeFixture();
    f.rd.acquire(8192, NO_VCPU);
    f.rd.setPending(8192);
    f.mem.writes.length = 0;
    f.rd.savePendingTables();
    expect(f.mem.writes).toEqual([]);
  });
});

describe('savePendingTables: in place in guest RAM, or on a copy when memory cannot be written in place', () => {
  /** Four vCPUs with pending and not pending LPIs, and guest bytes around them that must stay. */
  function scenario(): Fixture {
    const f = makeFixture({ nrVcpus: 4 });
    for (let v = 0; v < 4; v++) {
      for (let k = 0; k < 40; k++) {
        const intid = 8192 + v + 4 * k + (k > 20 ? 30000 : 0); // both 4 KiB pages: INTID >= 32768 is byte >= 4096
        f.setConfig(intid, 0xa1);
        expect(f.rd.acquire(intid, v)).toBe(true);
        if (k % 3 === 0) f.rd.setPending(intid);
      }
      // Stale guest bits: of LPIs of this vCPU (overwritten) and of no LPI (kept).
      f.setPendBit(v, 8192 + v + 4, true);
      f.setPendBit(v, 8192 + 1000 + v, true);
    }
    f.mem.writes.length = 0;
    return f;
  }
  const tables = (f: Fixture): number[] => Array.from({ length: 4 * 8192 }, (_, i) => f.mem.peek(0x40000 + (i >>> 13) * 0x10000 + (i & 8191)));

  it('the same bytes and the same written spans either way', () => {
    const inPlace = scenario();
    inPlace.rd.savePendingTables();
    const copied = scenario();
    // No window to write through: the copy path (as on a big-endian host).
    copied.mem.writableWordWindow = () => null;
    copied.rd.savePendingTables();
    expect(tables(inPlace)).toEqual(tables(copied));
    expect(inPlace.mem.writes).toEqual(copied.mem.writes);
    expect(inPlace.mem.writes.length).toBe(8); // 2 pages x 4 vCPUs, each with a changed byte
  });

  it('frozen memory: nothing to change saves without error; a needed change fails with EBUSY, RAM unchanged', () => {
    const f = scenario();
    f.rd.savePendingTables();
    const saved = tables(f);
    f.mem.writes.length = 0;
    f.mem.freeze();
    f.rd.savePendingTables(); // every bit already as saved
    expect(f.mem.writes).toEqual([]);
    f.rd.setPending(8192 + 4 * 2); // vCPU 0, not pending before (k = 2)
    expect(() => f.rd.savePendingTables()).toThrow(expect.objectContaining({ errno: Errno.EBUSY }));
    expect(tables(f)).toEqual(saved);
    f.mem.thaw();
  });
});
