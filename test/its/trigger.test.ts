/**
 * kvm-unit-tests "its-trigger", paraphrased (hardening.md): LPI enable/priority caching with
 * INV and INVALL, on the real LPI system.
 */
import { describe, expect, it } from 'vitest';
import { PROP_TABLE, cmd, ittOf, makeVm } from './helpers.js';

describe('its-trigger', () => {
  it('INT lands on its own CPU; config + INV/INVALL gate delivery; MAPD V=0 stops it', () => {
    const { its, q, lpis, memory, deliverable } = makeVm();
    const lpiA = 8195;
    const lpiB = 8196;
    q.run(cmd.mapd(2, 7, ittOf(2)), cmd.mapd(7, 7, ittOf(7)), cmd.mapc(3, 3), cmd.mapc(2, 2));
    q.run(cmd.mapti(2, 20, lpiA, 3), cmd.sync(), cmd.mapti(7, 255, lpiB, 2), cmd.sync());

    // INT on each device lands only on its collection's CPU.
    q.run(cmd.int(2, 20), cmd.sync());
    expect(deliverable).toEqual([3]);
    expect(lpis.ack(2, false).intid).toBe(1023);
    expect(lpis.ack(3, false).intid).toBe(lpiA);
    q.run(cmd.int(7, 255), cmd.sync());
    expect(lpis.ack(3, false).intid).toBe(1023);
    expect(lpis.ack(2, false).intid).toBe(lpiB);
    for (let v = 0; v < 4; v++) expect(lpis.ack(v, true).intid).toBe(1023); // nothing spurious left

    // Disable lpiA in the configuration table: without INV the cached config still delivers.
    memory.writeU8(PROP_TABLE + (lpiA - 8192), 0xa0);
    q.run(cmd.int(2, 20), cmd.sync());
    expect(lpis.ack(3, false).intid).toBe(lpiA);
    q.run(cmd.inv(2, 20), cmd.sync(), cmd.int(2, 20), cmd.sync());
    expect(lpis.isPending(lpiA)).toBe(true);
    expect(lpis.ack(3, false).intid).toBe(1023); // pending but disabled

    // Re-enable + INVALL: the pending one is delivered.
    deliverable.length = 0;
    memory.writeU8(PROP_TABLE + (lpiA - 8192), 0xa1);
    q.run(cmd.invall(3), cmd.sync());
    expect(deliverable).toEqual([3]);
    expect(lpis.ack(3, false).intid).toBe(lpiA);

    // Priority is cached too: 0x40 after INV.
    memory.writeU8(PROP_TABLE + (lpiB - 8192), 0x41);
    q.run(cmd.inv(7, 255), cmd.int(7, 255));
    expect(lpis.ack(2, true)).toEqual({ intid: lpiB, priority: 0x40 });
    lpis.ack(2, false);

    // MAPD V=0: no more delivery for that device.
    q.run(cmd.mapd(2, 0, 0, false), cmd.sync(), cmd.int(2, 20), cmd.sync());
    expect(its.signalMsi(2, 20)).toBe(0);
    expect(lpis.ack(3, true).intid).toBe(1023);
    expect(its.stats.commandErrors['INT_UNMAPPED_INTERRUPT']).toBe(1);
  });
});
