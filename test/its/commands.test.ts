/**
 * Every command: its effect and each of its error paths (kvm-its-abi.md 6.3, current KVM).
 * Errors are never reported to the guest: CREADR advances and a counter records them.
 */
import { describe, expect, it } from 'vitest';
import { COLLECTION_NOT_MAPPED, ITE_NO_COLLECTION } from '../../src/its/table-state.js';
import { GITS_BASER0 } from '../../src/its/types.js';
import {
  COLLECTION_TABLE, DEVICE_TABLE, GITS_BASER1, ITT_BASE, PEND_TABLES, PROP_TABLE, RAM_END, cmd, commands, errors, flatBaser,
  ittOf, makeVm,
} from './helpers.js';

describe('MAPD', () => {
  it('maps a device; remapping frees its ITEs and their LPI references', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(3, 4, ittOf(3)), cmd.mapc(0, 0), cmd.mapti(3, 1, 8200, 0), cmd.mapti(3, 2, 8201, 0));
    expect(its.hasDevice(3)).toBe(true);
    expect(its.deviceIttAddr(3)).toBe(ittOf(3));
    expect(its.deviceEventIdBits(3)).toBe(5);
    expect(its.translate(3, 1)).toBe(8200);
    expect(lpis.refcount(8200)).toBe(1);
    q.run(cmd.mapd(3, 7, ittOf(4)));
    expect(its.deviceIttAddr(3)).toBe(ittOf(4));
    expect(its.deviceEventIdBits(3)).toBe(8);
    expect(its.translate(3, 1)).toBe(0);
    expect(its.translate(3, 2)).toBe(0);
    expect(lpis.exists(8200)).toBe(false);
    expect(its.eventCount()).toBe(0);
    expect(commands(its, 'MAPD')).toBe(2);
  });

  it('MAPD_DEVICE_OOR: DeviceID outside the device table, checked even for V=0', () => {
    const { its, q } = makeVm(); // flat, one 64 KiB page: DeviceIDs 0..8191
    q.run(cmd.mapd(8191, 0, ittOf(0)));
    expect(its.hasDevice(8191)).toBe(true);
    q.run(cmd.mapd(8192, 0, ittOf(0)), cmd.mapd(8192, 0, 0, false), cmd.mapd(0xffff_ffff, 0, ittOf(0)));
    expect(errors(its, 'MAPD_DEVICE_OOR')).toBe(3);
    expect(its.hasDevice(8192)).toBe(false);
  });

  it('MAPD_ITTSIZE_OOR: Size + 1 > 16 with V=1 only', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapd(1, 15, ittOf(1)));
    expect(its.deviceEventIdBits(1)).toBe(16);
    q.run(cmd.mapd(2, 16, ittOf(2)), cmd.mapd(2, 31, ittOf(2)));
    expect(errors(its, 'MAPD_ITTSIZE_OOR')).toBe(2);
    expect(its.hasDevice(2)).toBe(false);
    q.run(cmd.mapd(1, 31, 0, false)); // V=0 ignores Size
    expect(errors(its, 'MAPD_ITTSIZE_OOR')).toBe(2);
    expect(its.hasDevice(1)).toBe(false);
  });

  it('V=0 writes a zero DTE at DEVICE_TABLE + DeviceID * 8, also for an unmapped device', () => {
    const { its, q, memory } = makeVm();
    memory.fill(DEVICE_TABLE, 0x100, 0xff);
    q.run(cmd.mapd(5, 3, ittOf(5)), cmd.mapd(5, 0, 0, false), cmd.mapd(9, 0, 0, false));
    expect(memory.readU64Big(DEVICE_TABLE + 5 * 8)).toBe(0n);
    expect(memory.readU64Big(DEVICE_TABLE + 9 * 8)).toBe(0n);
    expect(memory.readU64Big(DEVICE_TABLE + 4 * 8)).toBe(0xffff_ffff_ffff_ffffn);
    expect(memory.readU64Big(DEVICE_TABLE + 6 * 8)).toBe(0xffff_ffff_ffff_ffffn);
    expect(memory.readU64Big(DEVICE_TABLE + 8 * 8)).toBe(0xffff_ffff_ffff_ffffn);
    expect(errors(its, 'dte_write_fault')).toBe(0);
    // V=1 does not write the table (only SAVE_TABLES does).
    q.run(cmd.mapd(4, 3, ittOf(4)));
    expect(memory.readU64Big(DEVICE_TABLE + 4 * 8)).toBe(0xffff_ffff_ffff_ffffn);
  });

  it('the ITT address is not validated by MAPD (MAPTI checks the ITE slot)', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapd(1, 3, 0x7_0000_0000), cmd.mapc(0, 0), cmd.mapti(1, 0, 8192, 0));
    expect(its.hasDevice(1)).toBe(true);
    expect(errors(its, 'MAPTI_ID_OOR')).toBe(1);
  });
});

describe('MAPC', () => {
  it('V=1 maps a new collection; RDbase must be an existing vCPU (PROCNUM_OOR)', () => {
    const { its, q } = makeVm(); // 4 vCPUs
    q.run(cmd.mapc(1, 3));
    expect(its.collectionTarget(1)).toBe(3);
    q.run(cmd.mapc(2, 4), cmd.mapc(2, 0xffff_ffff), cmd.mapc(2, 0x1_0003));
    expect(errors(its, 'MAPC_PROCNUM_OOR')).toBe(3);
    expect(its.hasCollection(2)).toBe(false);
  });

  it('MAPC_COLLECTION_OOR: a new ICID must have a slot in the collection table', () => {
    const { its, q } = makeVm(); // one page: ICIDs 0..8191
    q.run(cmd.mapc(8191, 0), cmd.mapc(8192, 0), cmd.mapc(0xffff, 0));
    expect(its.hasCollection(8191)).toBe(true);
    expect(errors(its, 'MAPC_COLLECTION_OOR')).toBe(2);
  });

  it('V=1 on an existing collection retargets it and every LPI of its ITEs', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(5, 0), cmd.mapti(1, 0, 8192, 5), cmd.mapti(1, 1, 8193, 5));
    q.run(cmd.mapc(6, 2), cmd.mapti(1, 2, 8194, 6));
    q.run(cmd.mapc(5, 1));
    expect(its.collectionTarget(5)).toBe(1);
    expect(lpis.target(8192)).toBe(1);
    expect(lpis.target(8193)).toBe(1);
    expect(lpis.target(8194)).toBe(2);
    // Remapping does not change creation order.
    const order: number[] = [];
    its.forEachCollection((icid) => order.push(icid));
    expect(order).toEqual([5, 6]);
  });

  it('V=0 frees the collection (RDbase not checked); its ITEs lose it for good', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(5, 2), cmd.mapti(1, 0, 8192, 5));
    q.run(cmd.mapc(5, 1000, false));
    expect(errors(its, 'MAPC_PROCNUM_OOR')).toBe(0);
    expect(its.hasCollection(5)).toBe(false);
    expect(its.eventCollection(1, 0)).toBe(ITE_NO_COLLECTION);
    expect(its.translate(1, 0)).toBe(8192);
    expect(lpis.target(8192)).toBe(2); // KVM leaves the LPI's target alone
    q.run(cmd.mapc(5, 1)); // a new collection with the same ICID
    expect(its.eventCollection(1, 0)).toBe(ITE_NO_COLLECTION);
    expect(its.signalMsi(1, 0)).toBe(0);
    q.run(cmd.mapc(77, 0, false)); // freeing a collection that does not exist: fine
    expect(errors(its, 'internal_error')).toBe(0);
  });
});

describe('MAPTI / MAPI', () => {
  it('creates the ITE; the LPI reads its configuration and consumes its pending bit', () => {
    const { its, q, lpis, memory } = makeVm();
    memory.writeU8(PROP_TABLE + (8300 - 8192), 0x40 | 1);
    const pend = PEND_TABLES + 2 * 0x1_0000; // vCPU 2's pending table
    memory.writeU8(pend + (8300 >> 3), 1 << (8300 & 7));
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 2), cmd.mapti(1, 4, 8300, 0));
    expect(its.translate(1, 4)).toBe(8300);
    expect(its.eventCollection(1, 4)).toBe(0);
    expect(lpis.target(8300)).toBe(2);
    expect(lpis.priority(8300)).toBe(0x40);
    expect(lpis.enabled(8300)).toBe(true);
    expect(lpis.isPending(8300)).toBe(true);
    expect(memory.readU8(pend + (8300 >> 3))).toBe(0);
  });

  it('MAPTI_UNMAPPED_DEVICE, MAPTI_ID_OOR (range and ITT slot in memory), MAPTI_PHYSICALID_OOR', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapc(0, 0), cmd.mapti(1, 0, 8192, 0));
    expect(errors(its, 'MAPTI_UNMAPPED_DEVICE')).toBe(1);
    q.run(cmd.mapd(1, 2, ittOf(1))); // 3 bits: EventIDs 0..7
    q.run(cmd.mapti(1, 7, 8192, 0), cmd.mapti(1, 8, 8193, 0), cmd.mapti(1, 0xffff_ffff, 8194, 0));
    expect(its.translate(1, 7)).toBe(8192);
    expect(errors(its, 'MAPTI_ID_OOR')).toBe(2);
    // ITT (256-byte aligned) at RAM_END - 256: event 31's slot is RAM_END - 8 (in RAM), event 32's is RAM_END.
    q.run(cmd.mapd(2, 4, RAM_END - 256), cmd.mapti(2, 31, 8195, 0));
    expect(its.translate(2, 31)).toBe(8195);
    q.run(cmd.mapd(3, 5, RAM_END - 256), cmd.mapti(3, 32, 8196, 0));
    expect(errors(its, 'MAPTI_ID_OOR')).toBe(3);
    // LPI range: 8192 <= INTID < 2^16 (PROPBASER.IDbits = 15).
    q.run(cmd.mapd(4, 15, ittOf(4)));
    q.run(cmd.mapti(4, 0, 8191, 0), cmd.mapti(4, 1, 65536, 0), cmd.mapti(4, 2, 0, 0), cmd.mapti(4, 3, 0xffff_ffff, 0));
    expect(errors(its, 'MAPTI_PHYSICALID_OOR')).toBe(4);
    q.run(cmd.mapti(4, 4, 65535, 0));
    expect(its.translate(4, 4)).toBe(65535);
  });

  it('the INTID bound follows PROPBASER.IDbits', () => {
    const { its, q } = makeVm({ propIdBits: 13 }); // INTIDs < 2^14
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 0, 16383, 0), cmd.mapti(1, 1, 16384, 0));
    expect(its.translate(1, 0)).toBe(16383);
    expect(errors(its, 'MAPTI_PHYSICALID_OOR')).toBe(1);
  });

  it('an existing ITE is left unchanged and the command succeeds', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapc(1, 1), cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 0, 9000, 1));
    expect(its.translate(1, 0)).toBe(8192);
    expect(its.eventCollection(1, 0)).toBe(0);
    expect(Object.values(its.stats.commandErrors).reduce((a, b) => a + b, 0)).toBe(0);
  });

  it('an unknown ICID creates an unmapped collection (if the collection table has its slot)', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapti(1, 0, 8192, 9));
    expect(its.collectionTarget(9)).toBe(COLLECTION_NOT_MAPPED);
    expect(lpis.target(8192)).toBe(-1);
    q.run(cmd.mapti(1, 1, 8193, 8192));
    expect(errors(its, 'MAPC_COLLECTION_OOR')).toBe(1);
    expect(its.translate(1, 1)).toBe(0);
  });

  it('one INTID may be mapped by several ITEs (shared, refcounted)', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapd(2, 3, ittOf(2)), cmd.mapc(0, 0));
    q.run(cmd.mapti(1, 0, 8192, 0), cmd.mapti(2, 5, 8192, 0));
    expect(lpis.refcount(8192)).toBe(2);
    q.run(cmd.discard(1, 0));
    expect(lpis.refcount(8192)).toBe(1);
    expect(its.translate(2, 5)).toBe(8192);
  });

  it('MAPI uses the EventID as INTID', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapd(1, 14, ittOf(1)), cmd.mapc(0, 0), cmd.mapi(1, 8192, 0), cmd.mapi(1, 8191, 0));
    expect(its.translate(1, 8192)).toBe(8192);
    expect(errors(its, 'MAPTI_PHYSICALID_OOR')).toBe(1); // MAPI shares MAPTI's error codes
    expect(commands(its, 'MAPI')).toBe(2);
  });

  it('a guest RAM fault while creating the LPI (EFAULT) leaves nothing behind', () => {
    const { its, q, lpis } = makeVm();
    lpis.mmioWrite(0, 0x0, 4, 0n); // EnableLPIs off so that PROPBASER can be rewritten
    lpis.mmioWrite(0, 0x70, 8, 0x7_0000_0000n | 0x580n | 15n); // property table outside RAM
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapti(1, 0, 8192, 9));
    expect(errors(its, 'EFAULT')).toBe(1);
    expect(its.translate(1, 0)).toBe(0);
    expect(its.hasCollection(9)).toBe(false); // the collection MAPTI created is freed again
    expect(lpis.exists(8192)).toBe(false);
  });
});

describe('DISCARD', () => {
  it('frees the ITE and writes a zero ITE at ITT + EventID * 8', () => {
    const { its, q, lpis, memory } = makeVm();
    const itt = ittOf(1);
    memory.fill(itt, 64, 0xee);
    q.run(cmd.mapd(1, 3, itt), cmd.mapc(0, 0), cmd.mapti(1, 3, 8192, 0), cmd.int(1, 3));
    expect(lpis.isPending(8192)).toBe(true);
    q.run(cmd.discard(1, 3));
    expect(its.translate(1, 3)).toBe(0);
    expect(lpis.exists(8192)).toBe(false);
    expect(memory.readU64Big(itt + 24)).toBe(0n);
    expect(memory.readU64Big(itt + 16)).toBe(0xeeee_eeee_eeee_eeeen);
    expect(memory.readU64Big(itt + 32)).toBe(0xeeee_eeee_eeee_eeeen);
  });

  it('DISCARD_UNMAPPED_INTERRUPT: no ITE, or its collection not mapped (nothing changes)', () => {
    const { its, q, memory } = makeVm();
    const itt = ittOf(1);
    memory.fill(itt, 64, 0xee);
    q.run(cmd.discard(1, 0), cmd.mapd(1, 3, itt), cmd.discard(1, 0), cmd.mapti(1, 2, 8192, 4), cmd.discard(1, 2));
    expect(errors(its, 'DISCARD_UNMAPPED_INTERRUPT')).toBe(3);
    expect(its.translate(1, 2)).toBe(8192);
    expect(memory.readU64Big(itt + 16)).toBe(0xeeee_eeee_eeee_eeeen);
  });
});

describe('MOVI', () => {
  it('moves the ITE to another mapped collection; the LPI follows', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapc(1, 3), cmd.mapti(1, 0, 8192, 0), cmd.movi(1, 0, 1));
    expect(its.eventCollection(1, 0)).toBe(1);
    expect(lpis.target(8192)).toBe(3);
    expect(its.translate(1, 0)).toBe(8192);
  });

  it('MOVI_UNMAPPED_INTERRUPT and MOVI_UNMAPPED_COLLECTION (current or new collection)', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.movi(1, 0, 0));
    expect(errors(its, 'MOVI_UNMAPPED_INTERRUPT')).toBe(1);
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 1, 8193, 7));
    q.run(cmd.movi(1, 0, 3)); // new collection does not exist
    q.run(cmd.movi(1, 0, 7)); // new collection exists but is not mapped
    q.run(cmd.mapc(2, 1), cmd.movi(1, 1, 2)); // current collection not mapped
    expect(errors(its, 'MOVI_UNMAPPED_COLLECTION')).toBe(3);
    expect(its.eventCollection(1, 0)).toBe(0);
    expect(its.eventCollection(1, 1)).toBe(7);
    expect(lpis.target(8192)).toBe(0);
  });
});

describe('MOVALL', () => {
  it('retargets LPIs from RDbase1 to RDbase2; checks both vCPUs', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapc(1, 1), cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 1, 8193, 1));
    q.run(cmd.movall(0, 4), cmd.movall(4, 0), cmd.movall(0xffff_ffff, 1));
    expect(errors(its, 'MOVALL_PROCNUM_OOR')).toBe(3);
    q.run(cmd.movall(2, 2));
    q.run(cmd.movall(0, 2));
    expect(lpis.target(8192)).toBe(2);
    expect(lpis.target(8193)).toBe(1);
    // ITEs and collections are not changed (not represented in the tables).
    expect(its.eventCollection(1, 0)).toBe(0);
    expect(its.collectionTarget(0)).toBe(0);
  });
});

describe('INV / INVALL', () => {
  it('INV re-reads one configuration byte; INV_UNMAPPED_INTERRUPT', () => {
    const { its, q, lpis, memory } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 1, 8193, 0));
    memory.writeU8(PROP_TABLE + 0, 0x20);
    memory.writeU8(PROP_TABLE + 1, 0x30);
    expect(lpis.priority(8192)).toBe(0xa0);
    q.run(cmd.inv(1, 0));
    expect(lpis.priority(8192)).toBe(0x20);
    expect(lpis.enabled(8192)).toBe(false);
    expect(lpis.priority(8193)).toBe(0xa0); // not invalidated
    q.run(cmd.inv(1, 5), cmd.inv(2, 0));
    expect(errors(its, 'INV_UNMAPPED_INTERRUPT')).toBe(2);
  });

  it("INVALL re-reads every LPI targeting the collection's vCPU; INVALL_UNMAPPED_COLLECTION", () => {
    const { its, q, lpis, memory } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapc(1, 1));
    q.run(cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 1, 8193, 0), cmd.mapti(1, 2, 8194, 1), cmd.mapti(1, 3, 8195, 9));
    memory.fill(PROP_TABLE, 4, 0x10);
    q.run(cmd.invall(0));
    expect(lpis.priority(8192)).toBe(0x10);
    expect(lpis.priority(8193)).toBe(0x10);
    expect(lpis.priority(8194)).toBe(0xa0);
    q.run(cmd.invall(5), cmd.invall(9)); // absent; exists but not mapped
    expect(errors(its, 'INVALL_UNMAPPED_COLLECTION')).toBe(2);
  });
});

describe('INT / CLEAR', () => {
  it('INT makes the LPI pending; CLEAR clears it', () => {
    const { q, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 1), cmd.mapti(1, 0, 8192, 0), cmd.int(1, 0));
    expect(lpis.isPending(8192)).toBe(true);
    expect(lpis.ack(1, true).intid).toBe(8192);
    q.run(cmd.clear(1, 0));
    expect(lpis.isPending(8192)).toBe(false);
  });

  it('INT_UNMAPPED_INTERRUPT (no ITE, unmapped collection), INT_LPIS_DISABLED, CLEAR_UNMAPPED_INTERRUPT', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.int(1, 0), cmd.clear(1, 0));
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapti(1, 0, 8192, 9), cmd.int(1, 0), cmd.int(1, 1), cmd.clear(1, 1));
    expect(errors(its, 'INT_UNMAPPED_INTERRUPT')).toBe(3);
    expect(errors(its, 'CLEAR_UNMAPPED_INTERRUPT')).toBe(2);
    q.run(cmd.mapc(0, 3), cmd.mapti(1, 1, 8193, 0));
    lpis.mmioWrite(3, 0x0, 4, 0n); // vCPU 3: EnableLPIs = 0
    q.run(cmd.int(1, 1));
    expect(errors(its, 'INT_LPIS_DISABLED')).toBe(1);
    expect(lpis.isPending(8193)).toBe(false);
  });
});

describe('SYNC and unknown commands', () => {
  it('SYNC does nothing but is counted; unknown numbers (incl. GICv4) are skipped', () => {
    const { its, q } = makeVm();
    q.run(cmd.sync(0), cmd.sync(0xffff), cmd.raw(0x00), cmd.raw(0x02), cmd.raw(0x06), cmd.raw(0x21), cmd.raw(0x29), cmd.raw(0xff));
    const s = its.stats;
    expect(s.commands['SYNC']).toBe(2);
    expect(s.commands['UNKNOWN']).toBe(6);
    expect(s.commands['total']).toBe(8);
    expect(Object.values(s.commandErrors).reduce((a, b) => a + b, 0)).toBe(0);
    expect(q.creadr).toBe(8 * 32);
  });
});

describe('table bases follow the BASERs', () => {
  it('MAPD/MAPC range checks use the current BASER0/BASER1 geometry', () => {
    const { its, q } = makeVm();
    its.setReg(0x0, 0n);
    its.setReg(GITS_BASER0, flatBaser(DEVICE_TABLE, 2)); // 16384 DeviceIDs
    its.setReg(GITS_BASER1, flatBaser(RAM_END - 0x1_0000, 1)); // 8192 ICIDs, last page of RAM
    its.setReg(0x0, 1n);
    q.run(cmd.mapd(16383, 0, ITT_BASE), cmd.mapd(16384, 0, ITT_BASE), cmd.mapc(8191, 0), cmd.mapc(8192, 0));
    expect(its.hasDevice(16383)).toBe(true);
    expect(its.hasCollection(8191)).toBe(true);
    expect(errors(its, 'MAPD_DEVICE_OOR')).toBe(1);
    expect(errors(its, 'MAPC_COLLECTION_OOR')).toBe(1);
    expect(COLLECTION_TABLE).toBeGreaterThan(0);
  });
});
