/**
 * hardening.md cases for the table ABI: each is a bug that shipped in KVM or QEMU.
 */
import { describe, expect, it } from 'vitest';
import {
  KVM_DEV_ARM_ITS_CTRL_RESET,
  KVM_DEV_ARM_VGIC_GRP_CTRL,
} from '../../../src/attr/types.js';
import { encodeBaser } from '../../../src/its/abi/baser.js';
import { TableError } from '../../../src/its/abi/errors.js';
import { ErrnoError, Errno } from '../../../src/util/errno.js';
import { ArrayBufferGuestMemory } from '../../../src/memory/array-buffer-guest-memory.js';
import {
  GITS_BASER0, GITS_BASER1, GITS_CBASER, GITS_CTLR, ITS_BASE, RAM_BASE, TestVm, copyMemory, defaultLayout, readSavedRegs, restoreInto, smallLayout,
} from './harness.js';

const DOORBELL = ITS_BASE + 0x10040;

function expectTableError(fn: () => void, errno: number, table: string, index: number, field: string): TableError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a TableError').toBeInstanceOf(TableError);
  const te = err as TableError;
  expect(te.errno).toBe(errno);
  expect(te.table).toBe(table);
  expect(te.index).toBe(index);
  expect(te.field).toBe(field);
  expect(te.message).toContain(`${table} entry ${index}: ${field}`);
  return te;
}

function lpiCount(t: TestVm): number {
  let n = 0;
  t.vm.lpis!.forEachLpi(() => n++);
  return n;
}

describe('restore of edge-case tables', () => {
  it('an all-invalid (empty) collection table restores with success (KVM once returned 1)', () => {
    const src = new TestVm({ layout: smallLayout() });
    src.saveTables(); // no collection, no device: writes one zero CTE
    const dst = restoreInto(copyMemory(src.memory), readSavedRegs(src), { layout: smallLayout() });
    expect(dst.its.deviceCount()).toBe(0);
    let n = 0;
    dst.its.forEachCollection(() => n++);
    expect(n).toBe(0);
  });

  it('a full collection table with no terminator restores (ran off the end = success)', () => {
    const t = new TestVm({ layout: smallLayout(), program: false });
    t.programRedistributors();
    // 1 page = 8192 CTEs, every one valid: ICID i -> vCPU i % 4.
    const base = t.layout.collectionTable;
    for (let i = 0; i < 8192; i++) t.memory.writeU64(base + i * 8, ((i % 4) << 16 | i) >>> 0, 0x8000_0000);
    t.programIts();
    t.restoreTables();
    let n = 0;
    t.its.forEachCollection(() => n++);
    expect(n).toBe(8192);
  });
});

describe('unmapped collections (KVM 5.6 "fix restoration of unmapped collections")', () => {
  it('MAPTI onto a never-MAPC\'d collection, migrate, then MAPC on the destination delivers the LPI', () => {
    const src = new TestVm({ layout: smallLayout() });
    src.mapd(4, 2, src.layout.itt(4));
    src.mapti(4, 1, 8300, 5); // ICID 5 was never mapped
    expect(src.vm.signalMsi(DOORBELL, 0, 1, 1, 4)).toBe(0); // dropped: collection unmapped
    src.savePendingTables();
    src.saveTables();
    // CTE for ICID 5: V | 0xFFFF_FFFF << 16 | 5
    expect(src.readU64(src.layout.collectionTable)).toBe(0x8000_ffff_ffff_0005n);
    const dst = restoreInto(copyMemory(src.memory), readSavedRegs(src), { layout: smallLayout() });
    expect(dst.its.translate(4, 1)).toBe(8300);
    dst.mapc(5, 2);
    expect(dst.vm.signalMsi(DOORBELL, 0, 1, 1, 4)).toBe(1);
    expect(dst.vm.ackLpi(2, false)).toEqual({ intid: 8300, priority: 0xa0 });
  });
});

describe('MAPD V=0 and DISCARD are not resurrected (KVM 2024 fix)', () => {
  for (const zeroAtCommandTime of [true, false]) {
    it(`save, unmap, save, restore: gone${zeroAtCommandTime ? '' : ' (even if the command did not zero the slot)'}`, () => {
      const src = new TestVm({ layout: smallLayout() });
      if (!zeroAtCommandTime) src.its.setTableWriter({ clearDeviceEntry() {}, clearEventEntry() {} });
      const L = src.layout;
      src.mapc(0, 0);
      src.mapd(1, 3, L.itt(1));
      src.mapd(2, 3, L.itt(2));
      src.mapd(3, 3, L.itt(3));
      src.mapti(1, 0, 8192, 0);
      src.mapti(1, 1, 8193, 0);
      src.mapti(2, 0, 8194, 0);
      src.mapti(3, 0, 8195, 0);
      src.saveTables();
      src.discard(1, 0);
      src.mapd(2, 3, L.itt(2), false);
      src.saveTables();
      // The slots are zero in guest RAM.
      expect(src.readU64(L.itt(1))).toBe(0n);
      expect(src.readU64(L.deviceTable + 2 * 8)).toBe(0n);
      const dst = restoreInto(copyMemory(src.memory), readSavedRegs(src), { layout: smallLayout() });
      expect(dst.its.translate(1, 0)).toBe(0);
      expect(dst.its.translate(1, 1)).toBe(8193);
      expect(dst.its.hasDevice(2)).toBe(false);
      expect(dst.its.translate(3, 0)).toBe(8195);
    });
  }
});

describe('MAPC V=0 with live ITEs (KVM 2026 CVE)', () => {
  it('save does not crash; the orphaned ITE is saved zeroed and skipped by next', () => {
    const src = new TestVm({ layout: smallLayout() });
    const L = src.layout;
    src.mapc(1, 1);
    src.mapc(3, 2);
    src.mapd(6, 2, L.itt(6));
    src.mapti(6, 0, 8400, 1);
    src.mapti(6, 1, 8401, 3);
    src.mapti(6, 2, 8402, 1);
    src.mapc(3, 0, false); // the collection of event 1 goes away
    src.memory.fill(L.itt(6), 32, 0x77); // slot content before the save is irrelevant
    src.saveTables();
    // Event 0: 8400 = 0x20D0, ICID 1, next = 2 - 0 = 2 (event 1 skipped): 0x0002_0000_20D0_0001
    expect(src.readU64(L.itt(6))).toBe(0x0002_0000_20d0_0001n);
    // Event 1: orphan -> all zero
    expect(src.readU64(L.itt(6) + 8)).toBe(0n);
    // Event 2: 8402 = 0x20D2, ICID 1, last: 0x0000_0000_20D2_0001
    expect(src.readU64(L.itt(6) + 16)).toBe(0x0000_0000_20d2_0001n);
    expect(src.vm.lastSave?.orphansZeroed).toBe(1);
    const dst = restoreInto(copyMemory(src.memory), readSavedRegs(src), { layout: smallLayout() });
    expect(dst.its.translate(6, 0)).toBe(8400);
    expect(dst.its.translate(6, 1)).toBe(0);
    expect(dst.its.translate(6, 2)).toBe(8402);
  });
});

describe('a failed ITT restore leaves nothing half-built (KVM 2017 "cleanup after failed ITT restore")', () => {
  it('rejects, and the ITS, the LPIs and guest RAM (pending bits) are exactly as before', () => {
    const src = new TestVm({ layout: smallLayout() });
    const L = src.layout;
    src.mapc(0, 0);
    src.mapc(1, 1);
    src.mapd(1, 3, L.itt(1));
    src.mapd(2, 3, L.itt(2));
    src.mapti(1, 0, 8192, 0);
    src.mapti(1, 1, 8193, 1);
    src.mapti(2, 0, 8194, 0);
    src.mapti(2, 5, 8195, 1);
    src.int(1, 0);
    src.int(1, 1);
    src.savePendingTables();
    src.saveTables();
    // Corrupt device 2's second ITE: ICID 1 -> 9 (no such collection).
    const ite = L.itt(2) + 5 * 8;
    src.memory.writeU32(ite, (src.memory.readU32(ite) & 0xffff0000 | 9) >>> 0);
    const image = copyMemory(src.memory);
    const before = Buffer.from(image.buffers[0]!.slice(0));
    const dst = new TestVm({ layout: smallLayout(), memory: image, program: false });
    const regs = readSavedRegs(src);
    regs.redist.forEach((r, v) => {
      dst.setRedist64(v, 0x70, r.propbaser[0]! + r.propbaser[1]! * 2 ** 32);
      dst.setRedist64(v, 0x78, r.pendbaser[0]! + r.pendbaser[1]! * 2 ** 32);
      dst.setRedist(v, 0, 1);
    });
    dst.programIts();
    expectTableError(() => dst.restoreTables(), Errno.EINVAL, 'ITT of device 0x2', 5, 'ICID');
    expect(dst.its.deviceCount()).toBe(0);
    expect(dst.its.eventCount()).toBe(0);
    let colls = 0;
    dst.its.forEachCollection(() => colls++);
    expect(colls).toBe(0);
    expect(lpiCount(dst)).toBe(0);
    // Pending bits of 8192/8193 were not consumed: RAM is byte for byte what it was.
    expect(Buffer.from(image.buffers[0]!).equals(before)).toBe(true);
    expect(dst.vm.stats.restores.count).toBe(0);
  });
});

describe('two-level device tables', () => {
  it('works with the level-1 table in the last 32 KiB of RAM (RAM size not a multiple of 64 KiB)', () => {
    const ramSize = 10 * 1024 * 1024 - 0x8000;
    const layout = { ...smallLayout(), ramSize, deviceTable: RAM_BASE + ramSize - 0x8000 };
    const src = new TestVm({ layout, indirect: true });
    src.setL1(0, layout.l2(0));
    src.setL1(3, layout.l2(3));
    src.mapc(0, 0);
    src.mapd(5, 2, layout.itt(5));
    src.mapd(3 * 8192 + 7, 2, layout.itt(3 * 8192 + 7));
    src.mapti(5, 1, 9000, 0);
    src.mapti(3 * 8192 + 7, 3, 9001, 0);
    src.saveTables();
    const dst = restoreInto(copyMemory(src.memory), readSavedRegs(src), { layout, indirect: true });
    expect(dst.its.translate(5, 1)).toBe(9000);
    expect(dst.its.translate(3 * 8192 + 7, 3)).toBe(9001);
  });

  it('an invalid level-1 entry is skipped on restore; one pointing outside RAM is -EFAULT', () => {
    const src = new TestVm({ layout: smallLayout(), indirect: true });
    const L = src.layout;
    src.setL1(0, L.l2(0));
    src.setL1(1, L.l2(1));
    src.mapc(0, 0);
    src.mapd(10, 1, L.itt(10));
    src.mapd(8192 + 11, 1, L.itt(8192 + 11));
    src.mapti(10, 0, 8192, 0);
    src.mapti(8192 + 11, 0, 8193, 0);
    src.saveTables();
    const regs = readSavedRegs(src);

    // L1[1] cleared by the guest: device 8202 is not reachable.
    const m1 = copyMemory(src.memory);
    m1.writeU64(L.deviceTable + 8, 0, 0);
    const d1 = restoreInto(m1, regs, { layout: smallLayout(), indirect: true });
    expect(d1.its.translate(10, 0)).toBe(8192);
    expect(d1.its.hasDevice(8192 + 11)).toBe(false);

    // L1[1] points past the end of RAM: reading its first slot faults.
    const m2 = copyMemory(src.memory);
    m2.writeU64(L.deviceTable + 8, 0, 0x8000_0001); // V | 0x1_0000_0000
    const d2 = new TestVm({ layout: smallLayout(), memory: m2, program: false });
    d2.programRedistributors();
    d2.programIts({ indirect: true });
    expectTableError(() => d2.restoreTables(), Errno.EFAULT, 'device table', 8192, 'entry');
    expect(d2.its.deviceCount()).toBe(0);
  });

  it('save skips a device whose level-1 entry the guest invalidated, and -EINVAL when it points outside RAM', () => {
    const t = new TestVm({ layout: smallLayout(), indirect: true });
    const L = t.layout;
    t.setL1(0, L.l2(0));
    t.setL1(1, L.l2(1));
    t.mapc(0, 0);
    t.mapd(10, 1, L.itt(10));
    t.mapd(8192 + 11, 1, L.itt(8192 + 11));
    t.setL1(1, null);
    t.saveTables();
    expect(t.vm.lastSave?.devicesSkipped).toBe(1);
    // Device 10 is now the last written device: next = 0 (it must not point at 8202's slot).
    // ITT(10) = 0x4080_0000 + 10 * 0x800 = 0x4080_5000 -> lo 0x0810_0A00 (Size 0), hi V only.
    expect(L.itt(10)).toBe(0x4080_5000);
    expect(t.readU64(L.l2(0) + 10 * 8)).toBe(0x8000_0000_0810_0a00n);
    t.memory.writeU64(L.deviceTable + 8, 0, 0x8000_0001); // outside RAM
    expectTableError(() => t.saveTables(), Errno.EINVAL, 'device table', 8192 + 11, 'DeviceID');
  });
});

describe('the guest shrinks or moves GITS_BASER after mapping (KVM 2026 fixes)', () => {
  it('devices and collections the tables can no longer hold are skipped; no next points at an unwritten slot', () => {
    const layout = smallLayout();
    const t = new TestVm({ layout, devicePages: 2, collectionPages: 2 });
    const L = t.layout;
    t.mapc(0, 0);
    t.mapc(8200, 1); // only fits a 2-page collection table
    t.mapd(1, 2, L.itt(1));
    t.mapd(5, 2, L.itt(5));
    t.mapd(9000, 2, L.itt(9000)); // only fits a 2-page device table
    t.mapti(1, 0, 8192, 0);
    t.mapti(5, 0, 8193, 8200);
    t.mapti(5, 1, 8194, 0);
    t.mapti(9000, 0, 8195, 0);
    // The guest disables the ITS and shrinks both tables to one page.
    t.setItsReg(GITS_CTLR, 0n);
    t.setItsReg(GITS_BASER0, t.deviceBaser({ devicePages: 1 }));
    t.setItsReg(GITS_BASER1, t.collectionBaser({ collectionPages: 1 }));
    t.memory.fill(L.deviceTable, 0x2_0000, 0);
    t.saveTables();
    const r = t.vm.lastSave!;
    expect(r.devicesSkipped).toBe(1);
    expect(r.collectionsSkipped).toBe(1);
    expect(r.orphansZeroed).toBe(1); // (5, 0) named the collection that was not written
    // Device 5 is the last written device: ITT(5) = 0x4080_2800 -> field 0x40_8028 -> << 5 = 0x0810_0500, Size 1
    expect(L.itt(5)).toBe(0x4080_2800);
    expect(t.readU64(L.deviceTable + 5 * 8)).toBe(0x8000_0000_0810_0501n);
    // Device 1: next = 5 - 1 = 4 -> hi 0x8000_0000 | 4 << 17 = 0x8008_0000; ITT(1) = 0x4080_0800 -> 0x0810_0100 | 1
    expect(t.readU64(L.deviceTable + 8)).toBe(0x8008_0000_0810_0101n);
    // Nothing was written for device 9000 (its slot is past the table now).
    expect(t.readU64(L.deviceTable + 9000 * 8)).toBe(0n);
    const dst = restoreInto(copyMemory(t.memory), { ...readSavedRegs(t), its: { ...readSavedRegs(t).its, CTLR: 1n } }, { layout });
    expect(dst.its.deviceCount()).toBe(2);
    expect(dst.its.translate(1, 0)).toBe(8192);
    expect(dst.its.translate(5, 0)).toBe(0);
    expect(dst.its.translate(5, 1)).toBe(8194);
  });

  it('moving the device table writes the DTEs at the new place', () => {
    const layout = smallLayout();
    const t = new TestVm({ layout });
    t.mapc(0, 0);
    t.mapd(3, 1, layout.itt(3));
    t.mapti(3, 0, 8192, 0);
    t.saveTables();
    const moved = RAM_BASE + 0x60_0000;
    t.setItsReg(GITS_CTLR, 0n);
    t.setItsReg(GITS_BASER0, encodeBaser({ valid: true, type: 1, base: moved, pages: 1 }));
    t.setItsReg(GITS_CTLR, 1n);
    t.saveTables();
    expect(t.vm.lastSave?.full).toBe(true);
    expect(t.readU64(moved + 24) >> 63n).toBe(1n);
  });
});

describe('KVM selftest-style stress (two-level table, first/last IDs)', () => {
  // Scaled down from 32768 devices x 8192 events: 2050 devices over 4 level-2 pages (DeviceIDs
  // 0, 16, 32, ..., 32752 and 32767), 8 EventID bits each.
  const devices: number[] = [];
  for (let d = 0; d < 32768; d += 16) devices.push(d);
  devices.push(32767);
  const layout = { ...defaultLayout(24 * 1024 * 1024, 0x800, 8192) };
  const itt = (d: number): number => RAM_BASE + 0x50_0000 + devices.indexOf(d) * 0x800;

  function scenario(name: string, map: (t: TestVm) => Set<string>): void {
    it(name, () => {
      const t = new TestVm({ layout, indirect: true });
      for (let i = 0; i < 4; i++) t.setL1(i, layout.l2(i));
      t.mapc(0, 0);
      t.mapc(1, 1);
      for (const d of devices) t.mapd(d, 8, itt(d));
      const expected = map(t);
      t.saveTables();
      // Reset the ITS, re-init it (BASERs lost Valid), restore into the same ITS.
      t.vm.setDeviceAttr(t.itsId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_ITS_CTRL_RESET), 0n);
      expect(t.its.deviceCount()).toBe(0);
      t.setItsReg(GITS_BASER0, t.deviceBaser({ indirect: true }));
      t.setItsReg(GITS_BASER1, t.collectionBaser());
      t.setItsReg(GITS_CBASER, (1n << 63n) | BigInt(layout.cmdq) | 15n);
      t.restoreTables();
      t.setItsReg(GITS_CTLR, 1n);
      expect(t.its.deviceCount()).toBe(devices.length);
      let lost = 0;
      let invented = 0;
      for (const d of devices) {
        for (let e = 0; e < 256; e++) {
          const key = `${d}:${e}`;
          const got = t.its.translate(d, e);
          if (expected.has(key) && got === 0) lost++;
          if (!expected.has(key) && got !== 0) invented++;
        }
      }
      expect({ lost, invented }).toEqual({ lost: 0, invented: 0 });
    });
  }

  scenario('empty ITTs', () => new Set());
  scenario('single mappings at the first and last IDs', (t) => {
    t.mapti(0, 0, 8192, 0);
    t.mapti(32767, 255, 8193, 1);
    return new Set(['0:0', '32767:255']);
  });
  scenario('one event on every device', (t) => {
    const s = new Set<string>();
    devices.forEach((d, i) => {
      const e = (i * 7) % 256;
      t.mapti(d, e, 8192 + i, i % 2);
      s.add(`${d}:${e}`);
    });
    return s;
  });
});

describe('hostile input never escapes as anything but an errno', () => {
  it('restore with tables entirely outside guest memory fails with -EFAULT, not an exception', () => {
    const memory = new ArrayBufferGuestMemory([{ gpa: RAM_BASE, size: 10 * 1024 * 1024 }]);
    const t = new TestVm({ layout: smallLayout(), memory, program: false });
    t.setItsReg(GITS_BASER1, encodeBaser({ valid: true, type: 4, base: 0x1_0000_0000, pages: 1 }));
    t.setItsReg(GITS_BASER0, encodeBaser({ valid: true, type: 1, base: 0x1_0000_0000, pages: 1 }));
    let err: unknown;
    try {
      t.restoreTables();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ErrnoError);
    expect((err as ErrnoError).errno).toBe(Errno.EFAULT);
    expect((err as ErrnoError).message).toContain('collection table entry 0');
  });
});
