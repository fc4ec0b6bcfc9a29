/**
 * Byte layout of ITS_SAVE_TABLES and SAVE_PENDING_TABLES against vectors derived by hand from
 * kvm-its-abi.md 3.2-3.7 and 2.8 (arithmetic in the comments), on a VM driven through the real
 * command queue. Table areas are pre-filled with a marker so that slots the save must not
 * write are checked too.
 */
import { describe, expect, it } from 'vitest';
import { dirtyLogBytesFor } from '../../../src/memory/region-table.js';
import { ITS_BASE, RAM_BASE, TestVm, copyMemory, readSavedRegs, restoreInto } from './harness.js';

const MARK = 0x5a5a_5a5a_5a5a_5a5an;

/** Every 8-byte slot of [start, start + len) is either the expected value or still the marker. */
function expectSlots(t: TestVm, start: number, len: number, expected: Map<number, bigint>): void {
  for (let a = start; a < start + len; a += 8) {
    const want = expected.get(a) ?? MARK;
    const got = t.readU64(a);
    if (got !== want) throw new Error(`slot 0x${a.toString(16)}: got 0x${got.toString(16)}, want 0x${want.toString(16)}`);
  }
}

describe('ITS_SAVE_TABLES byte layout (flat device table)', () => {
  it('writes DTEs, ITEs and CTEs exactly as KVM ABI rev 0', () => {
    const t = new TestVm();
    const L = t.layout;
    for (const [start, len] of [[L.deviceTable, 0x1_0000], [L.collectionTable, 0x1_0000], [L.itt(2), 0x1000], [L.itt(5), 0x1000]] as const) {
      t.memory.fill(start, len, 0x5a);
    }
    t.mapc(1, 1); // created first
    t.mapc(0, 0);
    t.mapd(2, 4, L.itt(2)); // 16 events
    t.mapd(5, 2, L.itt(5)); // 4 events
    t.mapti(2, 1, 8192, 0);
    t.mapti(2, 4, 8193, 1);
    t.mapti(5, 0, 8200, 1);
    t.mapti(5, 3, 8201, 9); // ICID 9 never MAPC'd: an unmapped collection is created
    t.saveTables();

    expect(L.itt(2)).toBe(0x4080_2000);
    expect(L.itt(5)).toBe(0x4080_5000);
    expect(L.deviceTable).toBe(0x4021_0000);
    expect(L.collectionTable).toBe(0x4022_0000);
    // DTE of device 2 at 0x4021_0000 + 2 * 8:
    //   ITT 0x4080_2000 -> field 0x40_8020 -> << 5 = 0x0810_0400; Size = 4 - 1 = 3 -> lo 0x0810_0403
    //   next = 5 - 2 = 3 -> 3 << 17 = 0x0006_0000 in the high word; V -> hi 0x8006_0000
    // DTE of device 5 at + 5 * 8: ITT 0x4080_5000 -> field 0x40_8050 -> << 5 = 0x0810_0A00; Size 1;
    //   last device: next 0 -> 0x8000_0000_0810_0A01
    expectSlots(t, L.deviceTable, 0x1_0000, new Map([
      [0x4021_0010, 0x8006_0000_0810_0403n],
      [0x4021_0028, 0x8000_0000_0810_0a01n],
    ]));
    // ITT of device 2: event 1 -> 8192 = 0x2000, ICID 0, next 4 - 1 = 3: 0x0003_0000_2000_0000 at +8
    //                  event 4 -> 8193 = 0x2001, ICID 1, last:        0x0000_0000_2001_0001 at +32
    expectSlots(t, L.itt(2), 0x1000, new Map([
      [0x4080_2008, 0x0003_0000_2000_0000n],
      [0x4080_2020, 0x0000_0000_2001_0001n],
    ]));
    // ITT of device 5: event 0 -> 8200 = 0x2008, ICID 1, next 3: 0x0003_0000_2008_0001 at +0
    //                  event 3 -> 8201 = 0x2009, ICID 9, last:   0x0000_0000_2009_0009 at +24
    expectSlots(t, L.itt(5), 0x1000, new Map([
      [0x4080_5000, 0x0003_0000_2008_0001n],
      [0x4080_5018, 0x0000_0000_2009_0009n],
    ]));
    // Collection table in creation order: ICID 1 -> vCPU 1: V | 1 << 16 | 1 = 0x8000_0000_0001_0001
    //   ICID 0 -> vCPU 0: 0x8000_0000_0000_0000; ICID 9 unmapped: V | 0xFFFF_FFFF << 16 | 9
    //   = 0x8000_FFFF_FFFF_0009; then one all-zero terminator (the table holds 8192 entries).
    expectSlots(t, L.collectionTable, 0x1_0000, new Map([
      [0x4022_0000, 0x8000_0000_0001_0001n],
      [0x4022_0008, 0x8000_0000_0000_0000n],
      [0x4022_0010, 0x8000_ffff_ffff_0009n],
      [0x4022_0018, 0n],
    ]));
  });

  it('the saved image restores into a fresh VM with the same translations', () => {
    const t = new TestVm();
    const L = t.layout;
    t.mapc(1, 1);
    t.mapc(0, 0);
    t.mapd(2, 4, L.itt(2));
    t.mapti(2, 1, 8192, 0);
    t.mapti(2, 4, 8193, 1);
    t.savePendingTables();
    t.saveTables();
    const regs = readSavedRegs(t);
    const d = restoreInto(copyMemory(t.memory), regs);
    expect(d.its.translate(2, 1)).toBe(8192);
    expect(d.its.translate(2, 4)).toBe(8193);
    expect(d.vm.lpis!.target(8193)).toBe(1);
    expect(d.vm.signalMsi(ITS_BASE + 0x10040, 0, 4, 1, 2)).toBe(1);
    expect(d.vm.ackLpi(1, false).intid).toBe(8193);
  });
});

describe('ITS_SAVE_TABLES of a dense ITT (written as one block)', () => {
  it('writes the same bytes as per-entry writes: slots in between keep their content', () => {
    const t = new TestVm();
    const L = t.layout;
    t.mapc(0, 0);
    t.mapd(3, 5, L.itt(3)); // 32 events
    t.memory.fill(L.itt(3), 0x1000, 0x5a);
    // Events 2, 4, ..., 20 (10 entries over a span of 19 slots): planned as one block.
    for (let e = 2; e <= 20; e += 2) t.mapti(3, e, 9000 + e, 0);
    t.saveTables();
    const expected = new Map<number, bigint>();
    for (let e = 2; e <= 20; e += 2) {
      // pINTID 9000 + e, ICID 0, next 2 (0 for the last): next << 48 | intid << 16
      const next = e === 20 ? 0n : 2n;
      expected.set(L.itt(3) + e * 8, (next << 48n) | (BigInt(9000 + e) << 16n));
    }
    expect(expected.get(L.itt(3) + 16)).toBe(0x0002_0000_232a_0000n); // 9002 = 0x232A
    expectSlots(t, L.itt(3), 0x1000, expected);
  });
});

describe('ITS_SAVE_TABLES byte layout (two-level device table)', () => {
  it('writes each DTE at L2 page + (DeviceID % 8192) * 8 and leaves L1 entries alone', () => {
    const t = new TestVm({ indirect: true });
    const L = t.layout;
    expect(L.l2(0)).toBe(0x4030_0000);
    expect(L.l2(1)).toBe(0x4031_0000);
    t.memory.fill(L.l2(0), 0x1_0000, 0x5a);
    t.memory.fill(L.l2(1), 0x1_0000, 0x5a);
    t.setL1(0, L.l2(0));
    t.setL1(1, L.l2(1));
    t.mapc(0, 0);
    t.mapc(1, 1);
    t.mapd(3, 1, L.itt(3));
    t.mapd(8197, 1, L.itt(8197));
    t.mapti(3, 0, 8300, 0);
    t.mapti(8197, 1, 8301, 1);
    t.saveTables();
    // L1 entries as the guest wrote them: V | L2 address.
    expect(t.readU64(L.deviceTable)).toBe(0x8000_0000_4030_0000n);
    expect(t.readU64(L.deviceTable + 8)).toBe(0x8000_0000_4031_0000n);
    // Device 3: L1 index 3 / 8192 = 0, slot 3 -> 0x4030_0000 + 24 = 0x4030_0018
    //   ITT 0x4080_3000 -> field 0x40_8030 -> << 5 = 0x0810_0600; Size 0
    //   next = 8197 - 3 = 8194 = 0x2002 -> << 17 = 0x4004_0000; hi = 0x8000_0000 | 0x4004_0000
    //   DTE = 0xC004_0000_0810_0600
    expectSlots(t, L.l2(0), 0x1_0000, new Map([[0x4030_0018, 0xc004_0000_0810_0600n]]));
    // Device 8197: L1 index 1, slot 8197 % 8192 = 5 -> 0x4031_0000 + 40 = 0x4031_0028
    //   ITT layout.itt(8197) = 0x4080_0000 + (8197 % 4096 = 5) * 0x1000 = 0x4080_5000 -> 0x0810_0A00; last
    expect(L.itt(8197)).toBe(0x4080_5000);
    expectSlots(t, L.l2(1), 0x1_0000, new Map([[0x4031_0028, 0x8000_0000_0810_0a00n]]));
    // ITEs: 8300 = 0x206C at ITT(3) + 0; 8301 = 0x206D, ICID 1 at ITT(8197) + 8
    expect(t.readU64(0x4080_3000)).toBe(0x0000_0000_206c_0000n);
    expect(t.readU64(0x4080_5008)).toBe(0x0000_0000_206d_0001n);

    // And it restores: KVM's scanner walks L1[0]'s page, hops 8194 IDs past its end, goes on
    // with L1[1]'s page from its first slot.
    const d = restoreInto(copyMemory(t.memory), readSavedRegs(t), { indirect: true });
    expect(d.its.translate(3, 0)).toBe(8300);
    expect(d.its.translate(8197, 1)).toBe(8301);
    expect(d.its.deviceCount()).toBe(2);
  });
});

describe('SAVE_PENDING_TABLES byte layout (2.8)', () => {
  it('sets bit intid % 8 of byte intid / 8 in the target vCPU pending table', () => {
    const t = new TestVm();
    const L = t.layout;
    t.mapc(0, 0);
    t.mapc(1, 1);
    t.mapd(1, 5, L.itt(1));
    t.mapti(1, 0, 8209, 1);
    t.mapti(1, 1, 8200, 0);
    t.int(1, 0);
    t.int(1, 1);
    t.savePendingTables();
    // 8209 = 1026 * 8 + 1 -> vCPU 1's table (0x4011_0000), byte 1026, bit 1 -> 0x02
    expect(L.pend(1)).toBe(0x4011_0000);
    expect(t.memory.readU8(0x4011_0000 + 1026)).toBe(0x02);
    // 8200 = 1025 * 8 + 0 -> vCPU 0's table (0x4010_0000), byte 1025, bit 0 -> 0x01
    expect(t.memory.readU8(0x4010_0000 + 1025)).toBe(0x01);
    // Nothing else in either table, and never the first 1 KiB.
    for (const [base, keep] of [[0x4010_0000, 1025], [0x4011_0000, 1026]] as const) {
      for (let i = 0; i < 8192; i++) if (i !== keep) expect(t.memory.readU8(base + i)).toBe(0);
    }
    // CLEAR then save again: the bit goes back to 0.
    t.clear(1, 0);
    t.savePendingTables();
    expect(t.memory.readU8(0x4011_0000 + 1026)).toBe(0);
    void RAM_BASE;
  });
});

describe('dirty log (every page the save writes is logged; nothing else)', () => {
  it('full save logs the table pages; an incremental save with no change logs nothing', () => {
    const t = new TestVm();
    const L = t.layout;
    const log = new Uint8Array(dirtyLogBytesFor(RAM_BASE + L.ramSize));
    t.memory.setDirtyLog(log);
    const page = (gpa: number): boolean => (log[Math.floor(gpa / 4096 / 8)]! & (1 << (Math.floor(gpa / 4096) % 8))) !== 0;
    const logged = (): number[] => {
      const pages: number[] = [];
      for (let i = 0; i < log.length * 8; i++) if (log[i >> 3]! & (1 << (i & 7))) pages.push(i * 4096);
      return pages;
    };
    t.mapc(0, 0);
    t.mapd(2, 5, L.itt(2));
    t.mapd(700, 1, L.itt(700));
    for (let e = 0; e < 20; e++) t.mapti(2, e, 8192 + e, 0); // written as a block
    t.mapti(700, 1, 9000, 0);
    log.fill(0);
    t.saveTables();
    expect(t.vm.lastSave!.full).toBe(true);
    // DTE slots 2 and 700 (pages 0x4021_0000 and 0x4021_1000), ITT(2), ITT(700), collection table.
    for (const gpa of [L.deviceTable + 2 * 8, L.deviceTable + 700 * 8, L.itt(2), L.itt(700) + 8, L.collectionTable]) {
      expect(page(gpa), `page of 0x${gpa.toString(16)}`).toBe(true);
    }
    const tablePages = new Set([L.deviceTable, L.deviceTable + 0x1000, L.itt(2), L.itt(700), L.collectionTable]);
    expect(logged().filter((p) => !tablePages.has(p))).toEqual([]);

    log.fill(0);
    t.saveTables();
    expect(t.vm.lastSave!.full).toBe(false);
    expect(logged()).toEqual([]);

    t.discard(2, 7); // the ITS zeroes the ITE at command time (logged), then the save fixes next of event 6
    log.fill(0);
    t.saveTables();
    expect(t.vm.lastSave!.full).toBe(false);
    expect(logged()).toEqual([L.itt(2)]);
    // Event 6 now hops over 7: next = 2 -> 0x0002_0000_2006_0000
    expect(t.readU64(L.itt(2) + 6 * 8)).toBe(0x0002_0000_2006_0000n);
  });
});
