/** Translation state, MSI delivery and the ItsTableState contract. */
import { describe, expect, it } from 'vitest';
import { Errno } from '../../src/util/errno.js';
import { COLLECTION_NOT_MAPPED, ITE_NO_COLLECTION } from '../../src/its/table-state.js';
import type { ItsTableWriter } from '../../src/its/table-writer.js';
import { GITS_BASER0, GITS_CTLR } from '../../src/its/types.js';
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { DEVICE_TABLE, GITS_BASER1, RAM_BASE, RAM_SIZE, cmd, errors, flatBaser, ittOf, makeVm, recordingListener } from './helpers.js';

describe('translate after every kind of change', () => {
  it('MAPTI, MOVI, MAPC retarget, DISCARD, MAPD remap, MAPD unmap, BASER0 Valid=0, reset', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(1, 15, ittOf(1)), cmd.mapc(0, 0), cmd.mapc(1, 1));
    q.run(cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 255, 8193, 0), cmd.mapti(1, 256, 8194, 1), cmd.mapti(1, 65535, 8195, 1));
    expect([0, 255, 256, 65535, 1, 257].map((e) => its.translate(1, e))).toEqual([8192, 8193, 8194, 8195, 0, 0]);
    q.run(cmd.movi(1, 0, 1));
    expect(its.translate(1, 0)).toBe(8192);
    expect(lpis.target(8192)).toBe(1);
    q.run(cmd.mapc(1, 3));
    expect([8192, 8193, 8194, 8195].map((i) => lpis.target(i))).toEqual([3, 0, 3, 3]);
    q.run(cmd.discard(1, 255));
    expect(its.translate(1, 255)).toBe(0);
    expect(its.translate(1, 0)).toBe(8192);
    q.run(cmd.mapd(1, 15, ittOf(1)));
    expect([0, 256, 65535].map((e) => its.translate(1, e))).toEqual([0, 0, 0]);
    q.run(cmd.mapti(1, 7, 8200, 0), cmd.mapd(1, 0, 0, false));
    expect(its.translate(1, 7)).toBe(0);
    q.run(cmd.mapd(2, 3, ittOf(2)), cmd.mapti(2, 1, 8201, 0));
    its.setReg(GITS_CTLR, 0n);
    its.setReg(GITS_BASER0, flatBaser(DEVICE_TABLE, 1, false));
    expect(its.translate(2, 1)).toBe(0);
    expect(lpis.exists(8201)).toBe(false);
    expect(its.eventPagesInUse).toBe(0);
  });

  it('translate/signalMsi reject IDs outside every range without throwing', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 0, 8192, 0));
    for (const [d, e] of [[1, 8], [1, 0xffff_ffff], [0x10001, 0], [-1, 0], [1.5, 0], [1, -1], [1, 0.5], [2 ** 32 + 1, 0], [Number.NaN, 0]] as const) {
      expect(its.translate(d, e)).toBe(0);
      expect(its.signalMsi(d, e)).toBe(0);
    }
  });
});

describe('signalMsi (KVM_SIGNAL_MSI)', () => {
  it('returns 1, 0 or -EBUSY and counts every drop by reason', () => {
    const { its, q, lpis, deliverable } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 2), cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 1, 8193, 5));
    expect(its.signalMsi(1, 0)).toBe(1);
    expect(lpis.isPending(8192)).toBe(true);
    expect(deliverable).toEqual([2]);
    expect(its.signalMsi(2, 0)).toBe(0); // unmapped device
    expect(its.signalMsi(1, 16)).toBe(0); // event out of range (Size 3: 4 EventID bits)
    expect(its.signalMsi(1, 2)).toBe(0); // unmapped event
    expect(its.signalMsi(1, 1)).toBe(0); // collection 5 not mapped
    lpis.mmioWrite(2, 0x0, 4, 0n);
    expect(its.signalMsi(1, 0)).toBe(-Errno.EBUSY); // target's EnableLPIs = 0
    its.mmioWrite(GITS_CTLR, 4, 0n);
    expect(its.signalMsi(1, 0)).toBe(-Errno.EBUSY); // ITS disabled
    const s = its.stats;
    expect(s.msiDelivered).toBe(1);
    expect(s.msiDropped).toBe(6);
    expect(s.msiDroppedByReason).toEqual({
      its_disabled: 1, unmapped_device: 1, event_out_of_range: 1, unmapped_event: 1, unmapped_collection: 1, no_vcpu: 0, lpis_disabled: 1,
    });
  });

  it('checks the collection vCPU, and marks the LPI pending wherever it targets (after MOVALL)', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 0, 8192, 0), cmd.movall(0, 1));
    expect(lpis.target(8192)).toBe(1);
    lpis.mmioWrite(1, 0x0, 4, 0n); // the LPI's vCPU has LPIs off, the collection's does not
    expect(its.signalMsi(1, 0)).toBe(1);
    expect(lpis.isPending(8192)).toBe(true);
  });
});

describe('event storage', () => {
  it('pages are allocated per 256 EventIDs, freed when empty, and capped (ENOMEM)', () => {
    const { its, q } = makeVm({ maxEventPages: 2 });
    q.run(cmd.mapd(1, 15, ittOf(1)), cmd.mapc(0, 0));
    expect(its.eventPagesInUse).toBe(0); // MAPD with 16 EventID bits costs nothing yet
    q.run(cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 65535, 8193, 0));
    expect(its.eventPagesInUse).toBe(2);
    q.run(cmd.mapti(1, 256, 8194, 0));
    expect(errors(its, 'ENOMEM')).toBe(1);
    expect(its.translate(1, 256)).toBe(0);
    q.run(cmd.mapti(1, 255, 8195, 0)); // same page as event 0: fine
    expect(its.translate(1, 255)).toBe(8195);
    q.run(cmd.discard(1, 65535));
    expect(its.eventPagesInUse).toBe(1);
    q.run(cmd.mapti(1, 256, 8194, 0));
    expect(its.translate(1, 256)).toBe(8194);
    expect(its.eventPagesInUse).toBe(2);
    // ENOMEM on a new ICID frees the collection MAPTI created for it.
    q.run(cmd.mapti(1, 1024, 8196, 33));
    expect(its.hasCollection(33)).toBe(false);
    expect(errors(its, 'ENOMEM')).toBe(2);
  });

  it('grows its pools and keeps every mapping exact (4096 events over 64 devices)', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapc(0, 0));
    const batch = [];
    for (let d = 0; d < 64; d++) {
      batch.push(cmd.mapd(d, 9, ittOf(d)));
      for (let e = 0; e < 64; e++) batch.push(cmd.mapti(d, e * 13, 8192 + ((d * 64 + e) % 50000), e % 2));
    }
    for (let i = 0; i < batch.length; i += 1000) q.submit(...batch.slice(i, i + 1000));
    expect(its.eventCount()).toBe(4096);
    for (let d = 0; d < 64; d++) for (let e = 0; e < 64; e++) expect(its.translate(d, e * 13)).toBe(8192 + ((d * 64 + e) % 50000));
    expect(its.translate(5, 14)).toBe(0);
  });
});

describe('ItsTableState', () => {
  it('iterates devices and events in ascending order, collections in creation order', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapc(7, 1), cmd.mapc(3, 0), cmd.mapd(100, 15, ittOf(2)), cmd.mapd(5, 3, ittOf(1)), cmd.mapd(4000, 0, ittOf(3)));
    q.run(cmd.mapti(100, 60000, 9000, 7), cmd.mapti(100, 2, 9001, 3), cmd.mapti(100, 300, 9002, 12), cmd.mapti(5, 1, 9003, 3));
    const devices: [number, number, number][] = [];
    its.forEachDevice((d, itt, bits) => devices.push([d, itt, bits]));
    expect(devices).toEqual([[5, ittOf(1), 4], [100, ittOf(2), 16], [4000, ittOf(3), 1]]);
    const events: [number, number, number][] = [];
    its.forEachEvent(100, (e, intid, icid) => events.push([e, intid, icid]));
    expect(events).toEqual([[2, 9001, 3], [300, 9002, 12], [60000, 9000, 7]]);
    const cols: [number, number][] = [];
    its.forEachCollection((c, t) => cols.push([c, t]));
    expect(cols).toEqual([[7, 1], [3, 0], [12, COLLECTION_NOT_MAPPED]]);
    q.run(cmd.mapc(7, 0, false), cmd.mapc(7, 2));
    const cols2: number[] = [];
    its.forEachCollection((c) => cols2.push(c));
    expect(cols2).toEqual([3, 12, 7]);
    const after: number[] = [];
    its.forEachEvent(100, (_e, _i, icid) => after.push(icid));
    expect(after).toEqual([3, 12, ITE_NO_COLLECTION]);
    expect(its.deviceCount()).toBe(3);
    expect(its.eventCount()).toBe(4);
  });

  it('restore mutators: addCollection, addDevice, addEvent, clearTranslations', () => {
    const { its, lpis } = makeVm();
    its.addCollection(4, 1);
    its.addCollection(5, COLLECTION_NOT_MAPPED);
    its.addDevice(9, ittOf(9), 8);
    expect(its.addEvent(9, 200, 8192, 4)).toBe(true);
    expect(its.addEvent(9, 201, 8193, 5)).toBe(true);
    expect(lpis.target(8192)).toBe(1);
    expect(lpis.target(8193)).toBe(-1);
    expect(its.addEvent(9, 202, 8194, 6)).toBe(false); // no collection 6
    expect(its.addEvent(9, 256, 8194, 4)).toBe(false); // 8 bits
    expect(its.addEvent(10, 0, 8194, 4)).toBe(false); // no device
    expect(its.addEvent(9, 203, 70000, 4)).toBe(false); // outside the LPI space
    expect(its.addEvent(9, 200, 8195, 4)).toBe(true); // existing: unchanged
    expect(its.translate(9, 200)).toBe(8192);
    expect(its.signalMsi(9, 200)).toBe(1);
    its.clearTranslations();
    expect(its.deviceCount() + its.eventCount()).toBe(0);
    expect(its.hasCollection(4)).toBe(false);
    expect(lpis.exists(8192)).toBe(false);
  });

  it('reports every change to the listener; BASER writes, reset and clearTranslations are allChanged', () => {
    const { its, q } = makeVm();
    const { changes: log, listener } = recordingListener();
    its.setChangeListener(listener);
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapc(1, 1), cmd.mapti(1, 2, 8192, 0), cmd.movi(1, 2, 1));
    q.run(cmd.int(1, 2), cmd.inv(1, 2), cmd.sync(), cmd.movall(0, 1)); // no table-visible change
    q.run(cmd.mapti(1, 3, 8193, 9), cmd.discard(1, 2), cmd.mapc(9, 2), cmd.mapc(9, 0, false), cmd.mapd(1, 0, 0, false));
    expect(log).toEqual([
      'dev 1', 'coll', 'coll', 'ev 1/2', 'ev 1/2',
      'coll', 'ev 1/3', 'ev 1/2', 'coll', 'ev 1/3', 'coll', 'ev 1/3', 'dev 1',
    ]);
    log.length = 0;
    its.setReg(GITS_CTLR, 0n);
    its.setReg(GITS_BASER1, flatBaser(RAM_BASE + 0x2_0000));
    expect(log).toEqual(['all']);
    log.length = 0;
    its.reset();
    expect(log).toEqual(['coll', 'coll', 'all']);
    log.length = 0;
    its.clearTranslations();
    expect(log).toEqual(['all']);
    its.setChangeListener(null);
    its.addCollection(3, 0);
    expect(log).toEqual(['all']);
  });

  it('the table writer is replaceable; its failures are counted, never thrown', () => {
    const { its, q } = makeVm();
    const calls: string[] = [];
    const writer: ItsTableWriter = {
      clearDeviceEntry: (d) => {
        calls.push(`dte ${d}`);
        throw new Error('boom');
      },
      clearEventEntry: (d, e) => {
        calls.push(`ite ${d}/${e}`);
        throw new Error('boom');
      },
    };
    its.setTableWriter(writer);
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 2, 8192, 0), cmd.discard(1, 2), cmd.mapd(1, 0, 0, false));
    expect(calls).toEqual(['ite 1/2', 'dte 1']);
    expect(errors(its, 'ite_write_fault')).toBe(1);
    expect(errors(its, 'dte_write_fault')).toBe(1);
    expect(its.translate(1, 2)).toBe(0);
    its.setTableWriter(null);
    q.run(cmd.mapd(2, 0, 0, false));
    expect(errors(its, 'dte_write_fault')).toBe(1);
  });

  it('the default writer counts (and survives) a frozen guest memory', () => {
    const { its, q, memory } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)));
    const cwriter = q.stage(cmd.mapd(1, 0, 0, false));
    memory.freeze();
    its.mmioWrite(0x88, 8, BigInt(cwriter));
    memory.thaw();
    expect(errors(its, 'dte_write_fault')).toBe(1);
    expect(its.hasDevice(1)).toBe(false);
  });

  it('setMemory: later guest accesses use the new memory, state is kept', () => {
    const { its, q, memory } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 2, 8192, 0));
    const copy = new ArrayBufferGuestMemory([{ gpa: RAM_BASE, size: RAM_SIZE }], [memory.buffers[0]!.slice(0)]);
    its.setMemory(copy);
    expect(its.memory).toBe(copy);
    q.run(cmd.sync()); // written into the old memory: the ITS reads the copy, which holds zeros there
    expect(its.stats.commands['SYNC']).toBe(0);
    expect(its.translate(1, 2)).toBe(8192);
  });
});
