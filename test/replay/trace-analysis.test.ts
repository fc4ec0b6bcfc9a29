import { describe, expect, it } from 'vitest';
import { parseQemuTrace } from '../../src/replay/qemu-trace.js';
import { planReplay } from '../../src/replay/trace-analysis.js';
import { layoutGuestRam } from '../../src/replay/guest-layout.js';
import { SyntheticQemu } from './synthetic-trace.js';

const L = (tid: number, ev: string, msg: string): string => `${tid}@100.000001:${ev} ${msg}`;

describe('planReplay: commands belong to the register write that follows them on their thread', () => {
  const text = [
    L(1, 'gicv3_its_read', 'GICv3 ITS read: offset 0x90 data 0x0 size 4'),
    L(1, 'gicv3_its_process_command', 'GICv3 ITS: processing command at offset 0x0: 0xa'),
    L(1, 'gicv3_its_cmd_mapti', 'GICv3 ITS: command MAPTI DeviceID 0x5 EventID 0x1 ICID 0x0 pINTID 0x2001'),
    L(1, 'gicv3_its_dte_read', 'GICv3 ITS: Device Table read for DeviceID 0x5: valid 1 size 0x1 ITTaddr 0x40001000'),
    L(1, 'gicv3_its_ite_write', 'GICv3 ITS: Interrupt Table write for ITTaddr 0x40001000 EventID 0x1: valid 1 inttype 1 intid 0x2001 ICID 0x0 vPEID 0x0 doorbell 0x3ff'),
    // another thread's MSI in between (its reads are its own, not the command's)
    L(2, 'gicv3_its_translation_write', 'GICv3 ITS TRANSLATER write: offset 0x40 data 0x0 size 4 requester_id 0x9'),
    L(2, 'gicv3_its_dte_read', 'GICv3 ITS: Device Table read for DeviceID 0x9: valid 0 size 0x0 ITTaddr 0x0'),
    L(1, 'gicv3_its_process_command', 'GICv3 ITS: processing command at offset 0x1: 0x5'),
    L(1, 'gicv3_its_cmd_sync', 'GICv3 ITS: command SYNC'),
    L(1, 'gicv3_its_write', 'GICv3 ITS write: offset 0x88 data 0x40 size 4'), // index 9: the batch's write
    L(3, 'gicv3_its_write', 'GICv3 ITS write: offset 0x88 data 0x40 size 4'), // nothing processed on thread 3
  ].join('\n');
  const plan = planReplay(parseQemuTrace(text).events);

  it('attributes the two commands (caveat 1) to the CWRITER write line after them', () => {
    expect([...plan.batches.keys()]).toEqual([9]);
    const b = plan.batches.get(9)!;
    expect(b.commands.map((c) => [c.slot, c.name])).toEqual([[0, 'MAPTI'], [1, 'SYNC']]);
    expect(b.commands[0]!.tableEvents.map((e) => e.kind)).toEqual(['its_dte_read', 'its_ite_write']);
    expect(b.commands[0]!.effects.configReads).toEqual([0x2001]);
    expect(plan.orphanCommands).toBe(0);
    expect(plan.orphanTableEvents).toBe(0);
  });

  it('takes the MSI outcome from the reads after it on its own thread (caveat 5)', () => {
    expect(plan.translations.get(5)).toMatchObject({ deviceId: 9, eventId: 0, outcome: 'dropped', reason: 'unmapped_device' });
  });

  it('maps the ITT range of MAPD only (none here) and counts', () => {
    expect(plan.counts).toMatchObject({ translations: 1, commands: 2, itsWrites: 2, itsReads: 1 });
  });
});

describe('planReplay: QEMU translation outcomes', () => {
  const tw = (dev: number, ev: number): string => L(7, 'gicv3_its_translation_write', `GICv3 ITS TRANSLATER write: offset 0x40 data 0x${ev.toString(16)} size 4 requester_id 0x${dev.toString(16)}`);
  const dte = (dev: number, valid: number, size: number): string => L(7, 'gicv3_its_dte_read', `GICv3 ITS: Device Table read for DeviceID 0x${dev.toString(16)}: valid ${valid} size 0x${size.toString(16)} ITTaddr 0x40000000`);
  const ite = (ev: number, valid: number, intid: number, icid: number): string => L(7, 'gicv3_its_ite_read', `GICv3 ITS: Interrupt Table read for ITTaddr 0x40000000 EventID 0x${ev.toString(16)}: valid ${valid} inttype 1 intid 0x${intid.toString(16)} ICID 0x${icid.toString(16)} vPEID 0x0 doorbell 0x3ff`);
  const cte = (icid: number, valid: number, rd: number): string => L(7, 'gicv3_its_cte_read', `GICv3 ITS: Collection Table read for ICID 0x${icid.toString(16)}: valid ${valid} RDBase 0x${rd.toString(16)}`);
  const lines = [
    tw(1, 0), dte(1, 1, 1), ite(0, 1, 0x2000, 2), cte(2, 1, 3), // 0: pending 0x2000 on RD 3
    tw(1, 4), dte(1, 1, 1), // 4: event 4 with Size 1 (4 events): out of range
    tw(1, 2), dte(1, 1, 1), ite(2, 0, 0, 0), // 6: no ITE
    tw(1, 3), dte(1, 1, 1), ite(3, 1, 0x2003, 5), cte(5, 0, 0), // 9: collection not mapped
    tw(1, 1), // 13: nothing traced after it
    L(7, 'gicv3_icc_iar1_read', 'GICv3 ICC_IAR1 read cpu 0x3 value 0x2000'),
  ];
  const plan = planReplay(parseQemuTrace(lines.join('\n')).events);

  it('reads the outcome and the reason a lookup stopped', () => {
    expect(plan.translations.get(0)).toMatchObject({ outcome: 'pending', intid: 0x2000, icid: 2, rdbase: 3 });
    expect(plan.translations.get(4)).toMatchObject({ outcome: 'dropped', reason: 'event_out_of_range' });
    expect(plan.translations.get(6)).toMatchObject({ outcome: 'dropped', reason: 'unmapped_event' });
    expect(plan.translations.get(9)).toMatchObject({ outcome: 'dropped', reason: 'unmapped_collection', intid: 0x2003 });
    expect(plan.translations.get(13)).toMatchObject({ outcome: 'unknown' });
  });

  it('sizes the VM from the CPUs the trace names', () => {
    expect(plan.nrVcpus).toBe(4); // RDBase 3 and cpu 3
    expect(plan.counts.lpiAcks).toBe(1);
  });
});

describe('planReplay: LPI configuration bytes at each point the ITS reads them', () => {
  /** A guest on 2 CPUs with one device (DeviceID 1, LPIs 0x2000/0x2001 on CPU 1). */
  function guest(): SyntheticQemu {
    const g = new SyntheticQemu(2, 'comment');
    for (let cpu = 0; cpu < 2; cpu++) g.post(cpu, [['MAPC', cpu, cpu], ['SYNC']]);
    g.post(0, [['MAPD', 1, 1, 0x4000_0100, 1]]);
    return g;
  }
  const writes = (text: string, finalConfig?: Uint8Array): Array<[number, number]> =>
    [...planReplay(parseQemuTrace(text).events, finalConfig ? { finalConfig } : {}).batches.values()].flatMap((b) => b.configWrites.map(([i, v]) => [i, v] as [number, number]));

  it('an acknowledge before the next read proves Enable; an MSI nobody takes before it shows a mask; DISCARD after a read masks', () => {
    const g = guest();
    g.post(0, [['MAPTI', 1, 0, 0x2000, 1], ['SYNC']]); // point 1 (creation)
    g.inv(0, 1, 0, true); // point 2
    g.msi(1, 0);
    g.ack(1); // evidence: enabled at point 2
    g.inv(0, 1, 0, false); // point 3
    g.msi(1, 0); // pending, not delivered before point 4
    g.inv(0, 1, 0, true); // point 4
    g.ack(1);
    g.inv(0, 1, 0, false); // point 5: followed by DISCARD
    g.post(0, [['DISCARD', 1, 0], ['SYNC']]);
    // 0xa2 = priority 0xa0 | Group1 (Linux's default), | 1 when enabled
    // point 1 has no evidence of its own (the ack comes after point 2): enabled by default
    expect(writes(g.finish().text)).toEqual([[0x2000, 0xa3], [0x2000, 0xa3], [0x2000, 0xa2], [0x2000, 0xa3], [0x2000, 0xa2]]);
  });

  it('the final table dump gives priority bits and the Enable of the last read without evidence', () => {
    const g = guest();
    g.post(0, [['MAPTI', 1, 1, 0x2001, 1], ['SYNC']]);
    g.inv(0, 1, 1, true); // last point, no MSI after it
    const text = g.finish().text;
    const dump = new Uint8Array(4).fill(0xa2);
    dump[1] = 0x60; // INTID 0x2001: priority 0x60, disabled at the end
    // MAPTI's read: no evidence and not the last one -> enabled (0x61); INV's: the last -> the dump's 0x60
    expect(writes(text, dump)).toEqual([[0x2001, 0x61], [0x2001, 0x60]]);
  });
});

describe('layoutGuestRam', () => {
  it('page-aligns, merges near ranges, keeps far ones apart, adds 64 KiB-aligned scratch above', () => {
    const l = layoutGuestRam([
      { gpa: 0x4218_0000, size: 0x1_0000, what: 'a' },
      { gpa: 0x4219_0000, size: 0x1_0000, what: 'b' }, // adjacent: merged
      { gpa: 0x42b6_d200, size: 0x100, what: 'itt' }, // 256 bytes inside one 4 KiB page
      { gpa: 0x9000_0000, size: 0x10, what: 'far' },
    ], 0x1_0000);
    expect(l.regions).toEqual([
      { gpa: 0x4218_0000, size: 0x2_0000 },
      { gpa: 0x42b6_d000, size: 0x1000 },
      // 'far' and the scratch space (above the highest range, 64 KiB aligned) are < 1 MiB apart: one region
      { gpa: 0x9000_0000, size: 0x2_0000 },
    ]);
    expect(l.scratch).toEqual({ gpa: 0x9001_0000, size: 0x1_0000 });
  });

  it('joins the closest neighbours until the region count fits', () => {
    const ranges = Array.from({ length: 12 }, (_, i) => ({ gpa: 0x4000_0000 + i * 0x100_0000 + (i === 5 ? 0x80_0000 : 0), size: 0x1000, what: String(i) }));
    const l = layoutGuestRam(ranges, 0, 8);
    expect(l.regions).toHaveLength(8);
    // every range is still inside a region
    for (const r of ranges) expect(l.regions.some((g) => r.gpa >= g.gpa && r.gpa + r.size <= g.gpa + g.size)).toBe(true);
  });
});
