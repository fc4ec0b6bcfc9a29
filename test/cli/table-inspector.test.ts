import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { inspectTables, formatReport } from '../../src/cli/vitsctl/table-inspector.js';
import {
  BASER0,
  BASER1,
  CT_BASE,
  DT_BASE,
  ITT_10,
  ITT_18,
  PROPBASER,
  RAM_BASE,
  RAM_SIZE,
  writeConsistentTables,
} from './image-fixture.js';

function image(): ArrayBufferGuestMemory {
  const m = new ArrayBufferGuestMemory([{ gpa: RAM_BASE, size: RAM_SIZE }]);
  writeConsistentTables(m);
  return m;
}

const opts = { baser0: BASER0, baser1: BASER1, propbaser: PROPBASER, nrVcpus: 2 };

describe('inspectTables', () => {
  it('decodes a consistent image: collections, devices, events, no issue', () => {
    const r = inspectTables(image(), opts);
    expect(r.issues).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.collectionTable.collections.map((c) => [c.icid, c.target])).toEqual([
      [0, 0],
      [1, 1],
    ]);
    expect(r.deviceTable.devices.map((d) => [d.devid, d.ittAddr, d.eventIdBits, d.next])).toEqual([
      [0x10, ITT_10, 2, 8],
      [0x18, ITT_18, 1, 0],
    ]);
    expect(r.deviceTable.devices[0]!.events.map((e) => [e.eventid, e.intid, e.icid])).toEqual([
      [0, 8192, 0],
      [1, 8193, 1],
      [3, 8195, 0],
    ]);
    expect(formatReport(r)).toContain('No inconsistencies.');
  });

  const corrupt = (fn: (m: ArrayBufferGuestMemory) => void): ReturnType<typeof inspectTables> => {
    const m = image();
    fn(m);
    return inspectTables(m, opts);
  };
  const errorsOf = (r: ReturnType<typeof inspectTables>): string[] => r.issues.filter((i) => i.severity === 'error').map((i) => `${i.entry}.${i.field}`);

  it('DTE Size above 15 (17 EventID bits): DTE[0x10] field Size', () => {
    // DTE_10 with Size 16: low 5 bits 0x10 instead of 0x01
    const r = corrupt((m) => m.writeU64Big(DT_BASE + 0x10 * 8, 0x8010_0000_0800_6010n));
    expect(errorsOf(r)).toEqual(['DTE[0x10].Size']);
    expect(r.ok).toBe(false);
    expect(r.issues[0]!.address).toBe(DT_BASE + 0x80);
  });

  it('ITE naming a collection that does not exist: field ICID', () => {
    // event 1 -> 8193 with ICID 5 (next 2 kept)
    const r = corrupt((m) => m.writeU64Big(ITT_10 + 8, 0x0002_0000_2001_0005n));
    expect(errorsOf(r)).toEqual(['ITE[0x10:1].ICID']);
  });

  it('ITE with an INTID below 8192: field pINTID', () => {
    const r = corrupt((m) => m.writeU64Big(ITT_10, 0x0001_0000_0064_0000n)); // INTID 100
    expect(errorsOf(r)).toEqual(['ITE[0x10:0].pINTID']);
  });

  it('ITE next beyond the device: field next', () => {
    // event 3 with next 1: 3 + 1 >= 4 events
    const r = corrupt((m) => m.writeU64Big(ITT_10 + 24, 0x0001_0000_2003_0000n));
    expect(errorsOf(r)).toEqual(['ITE[0x10:3].next']);
  });

  it('DTE next pointing at an invalid DTE: DTE[0x10] field next', () => {
    const r = corrupt((m) => m.writeU64Big(DT_BASE + 0x18 * 8, 0n));
    expect(errorsOf(r)).toEqual(['DTE[0x10].next']);
  });

  it('ITE next pointing at an invalid ITE: ITE[0x10:1] field next', () => {
    const r = corrupt((m) => m.writeU64Big(ITT_10 + 24, 0n));
    expect(errorsOf(r)).toEqual(['ITE[0x10:1].next']);
  });

  it('two CTEs with the same ICID, and a target beyond the vCPUs', () => {
    const r = corrupt((m) => {
      m.writeU64Big(CT_BASE + 8, 0x8000_0000_0000_0000n); // ICID 0 again
      m.writeU64Big(CT_BASE + 16, 0x8000_0000_0007_0002n); // ICID 2 -> vCPU 7
    });
    // ITEs of ICID 1 now name a missing collection too.
    expect(errorsOf(r)).toEqual(['CTE[1].ICID', 'CTE[2].RDBase', 'ITE[0x10:1].ICID', 'ITE[0x18:0].ICID']);
  });

  it('ITT outside guest RAM: DTE field ITT_addr', () => {
    // DTE_18 with ITT at 0x50000000: 0x500000 << 5 = 0xa000000
    const r = corrupt((m) => m.writeU64Big(DT_BASE + 0x18 * 8, 0x8000_0000_0a00_0000n));
    expect(errorsOf(r)).toEqual(['DTE[0x18].ITT_addr']);
  });

  it('overlapping ITTs: DTE field ITT_addr', () => {
    // DTE_18 with its ITT at ITT_10 (0x40030000 >> 8 = 0x400300, << 5 = 0x8006000), Size 0
    const r = corrupt((m) => m.writeU64Big(DT_BASE + 0x18 * 8, 0x8000_0000_0800_6000n));
    expect(errorsOf(r)).toContain('DTE[0x18].ITT_addr');
    const overlap = r.issues.find((i) => i.entry === 'DTE[0x18]' && i.field === 'ITT_addr')!;
    expect(overlap.message).toMatch(/overlaps the ITT of device 0x10/);
  });

  it('two-level device table: L1 entry pointing outside RAM is reported with its index', () => {
    const m = image();
    // BASER0 indirect (bit 62), L1 at DT_BASE; L1[0] -> L2 at 0x40050000, L1[1] -> 0x90000000 (outside)
    const baser0 = BASER0 | (1n << 62n);
    m.fill(DT_BASE, 0x10000, 0);
    m.writeU64Big(DT_BASE, (1n << 63n) | 0x4005_0000n);
    m.writeU64Big(DT_BASE + 8, (1n << 63n) | 0x9000_0000n);
    m.writeU64Big(0x4005_0000 + 0x18 * 8, 0x8000_0000_0800_6020n); // DTE[0x18] last... but next=0 ends the scan
    const r = inspectTables(m, { ...opts, baser0 });
    expect(r.deviceTable.devices.map((d) => d.devid)).toEqual([0x18]);
    // next = 0 in L2 page 0 ends the whole restore: L1[1] is never reached
    expect(errorsOf(r)).toEqual([]);
    m.writeU64Big(0x4005_0000 + 0x18 * 8, 0x8000_0000_0000_0000n | (0x100n << 49n) | (BigInt(ITT_18 / 256) << 5n));
    const r2 = inspectTables(m, { ...opts, baser0 });
    expect(errorsOf(r2)).toContain('L1[1].L2_addr');
  });

  it('property: random corruption never throws and every issue names an entry and a field', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: RAM_SIZE / 8 - 1 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })), { maxLength: 40 }), (writes) => {
        const m = image();
        for (const [slot, v] of writes) m.writeU64Big(RAM_BASE + slot * 8, v);
        const r = inspectTables(m, opts);
        for (const i of r.issues) {
          expect(i.entry.length).toBeGreaterThan(0);
          expect(i.field.length).toBeGreaterThan(0);
        }
        expect(r.ok).toBe(!r.issues.some((i) => i.severity === 'error'));
      }),
      { numRuns: 200 },
    );
  });
});
