/** hardening.md cases that concern the ITS core (commands, queue, MSIs). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Errno } from '../../src/util/errno.js';
import { ITE_NO_COLLECTION } from '../../src/its/table-state.js';
import { GITS_BASER0, GITS_CBASER, GITS_CTLR, GITS_CWRITER } from '../../src/its/types.js';
import {
  CMDQ, COLLECTION_TABLE, DEVICE_TABLE, GITS_BASER1, RAM_BASE, RAM_END, VALID, cbaserValue, cmd, errors, flatBaser, ittOf, makeVm,
} from './helpers.js';

function reprogram(its: ReturnType<typeof makeVm>['its'], baser0: bigint, baser1 = flatBaser(COLLECTION_TABLE)): void {
  its.setReg(GITS_CTLR, 0n);
  its.setReg(GITS_BASER0, baser0);
  its.setReg(GITS_BASER1, baser1);
  its.setReg(GITS_CTLR, 1n);
}

describe('IDs at and past every bound', () => {
  it('DeviceID vs Devbits (16) and the device table size', () => {
    const { its, q } = makeVm();
    // 256 pages of 64 KiB = 2M DTE slots: the 16-bit DeviceID bound applies first.
    reprogram(its, flatBaser(RAM_BASE, 256));
    q.run(cmd.mapd(0xffff, 0, ittOf(0)), cmd.mapd(0x10000, 0, ittOf(0)));
    expect(its.hasDevice(0xffff)).toBe(true);
    expect(errors(its, 'MAPD_DEVICE_OOR')).toBe(1);
    // 1 page: DeviceIDs < 8192.
    reprogram(its, flatBaser(DEVICE_TABLE, 1));
    q.run(cmd.mapd(8191, 0, ittOf(0)), cmd.mapd(8192, 0, ittOf(0)));
    expect(errors(its, 'MAPD_DEVICE_OOR')).toBe(2);
  });

  it("EventID vs the device's MAPD size, ICID vs the collection table, INTID vs 8192 and 2^IDbits", () => {
    const { its, q } = makeVm({ propIdBits: 14 }); // INTIDs < 2^15
    q.run(cmd.mapd(1, 0, ittOf(1)), cmd.mapc(0, 0)); // 1 EventID bit: 0..1
    q.run(cmd.mapti(1, 1, 8192, 0), cmd.mapti(1, 2, 8193, 0));
    expect(errors(its, 'MAPTI_ID_OOR')).toBe(1);
    q.run(cmd.mapd(2, 15, ittOf(2)));
    q.run(cmd.mapti(2, 0, 8191, 0), cmd.mapti(2, 1, 8192, 0), cmd.mapti(2, 2, 32767, 0), cmd.mapti(2, 3, 32768, 0));
    expect(errors(its, 'MAPTI_PHYSICALID_OOR')).toBe(2);
    expect([1, 2].map((e) => its.translate(2, e))).toEqual([8192, 32767]);
    q.run(cmd.mapc(8191, 0), cmd.mapc(8192, 0), cmd.mapti(2, 4, 8194, 8191), cmd.mapti(2, 5, 8195, 8192));
    expect(errors(its, 'MAPC_COLLECTION_OOR')).toBe(2);
  });

  it('RDbase equal to the number of vCPUs is rejected (QEMU off-by-one)', () => {
    const { its, q } = makeVm({ nrVcpus: 2 });
    q.run(cmd.mapc(0, 2), cmd.mapc(0, 1), cmd.movall(0, 2), cmd.movall(2, 0));
    expect(errors(its, 'MAPC_PROCNUM_OOR')).toBe(1);
    expect(errors(its, 'MOVALL_PROCNUM_OOR')).toBe(2);
    expect(its.collectionTarget(0)).toBe(1);
  });
});

describe('two-level device table', () => {
  it('uses the exact L2 entry (not the page start); invalid or outside-RAM L1 entries reject the DeviceID', () => {
    const { its, q, memory } = makeVm();
    const l1 = RAM_BASE + 0x50_0000;
    const l2 = RAM_BASE + 0x60_0000;
    memory.writeU64Big(l1 + 8, VALID | BigInt(l2)); // L1[1]: DeviceIDs 8192..16383
    memory.writeU64Big(l1 + 16, VALID | 0x7_0000_0000n); // L1[2]: outside RAM
    memory.fill(l2, 0x1_0000, 0xcc);
    reprogram(its, VALID | (1n << 62n) | BigInt(l1));
    q.run(cmd.mapd(8192 + 100, 3, ittOf(1)), cmd.mapd(8192 + 100, 0, 0, false));
    expect(memory.readU64Big(l2 + 100 * 8)).toBe(0n);
    expect(memory.readU64Big(l2)).toBe(0xcccc_cccc_cccc_ccccn);
    expect(memory.readU64Big(l2 + 99 * 8)).toBe(0xcccc_cccc_cccc_ccccn);
    expect(memory.readU64Big(l2 + 101 * 8)).toBe(0xcccc_cccc_cccc_ccccn);
    q.run(cmd.mapd(5, 3, ittOf(1)), cmd.mapd(2 * 8192 + 5, 3, ittOf(1)), cmd.mapd(3 * 8192, 3, ittOf(1)));
    expect(errors(its, 'MAPD_DEVICE_OOR')).toBe(3);
    expect(its.deviceCount()).toBe(0);
  });

  it('a flat table in the last 64 KiB of RAM with a Size beyond RAM: only slots in RAM are usable', () => {
    const { its, q } = makeVm();
    reprogram(its, flatBaser(RAM_END - 0x1_0000, 3));
    q.run(cmd.mapd(8191, 3, ittOf(1)), cmd.mapd(8192, 3, ittOf(1)), cmd.mapd(20000, 3, ittOf(1)));
    expect(its.hasDevice(8191)).toBe(true);
    expect(errors(its, 'MAPD_DEVICE_OOR')).toBe(2);
  });
});

describe('unmapped collections', () => {
  it('MAPTI onto a collection never mapped, then MAPC: the LPI is delivered there', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapti(1, 0, 8192, 5), cmd.int(1, 0));
    expect(its.signalMsi(1, 0)).toBe(0);
    expect(lpis.isPending(8192)).toBe(false);
    q.run(cmd.mapc(5, 3), cmd.sync());
    expect(lpis.target(8192)).toBe(3);
    expect(its.signalMsi(1, 0)).toBe(1);
    expect(lpis.ack(3, false).intid).toBe(8192);
  });

  it('MAPD, MAPTI, then MAPC V=0 with live ITEs: INT, MOVI, DISCARD, INV, CLEAR, MAPTI do not crash', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapc(1, 1), cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 1, 8193, 0));
    q.run(cmd.mapc(0, 0, false));
    q.run(cmd.int(1, 0), cmd.movi(1, 0, 1), cmd.discard(1, 0), cmd.inv(1, 1), cmd.clear(1, 1), cmd.mapti(1, 0, 8194, 0));
    expect(errors(its, 'internal_error')).toBe(0);
    expect(errors(its, 'INT_UNMAPPED_INTERRUPT')).toBe(1);
    expect(errors(its, 'MOVI_UNMAPPED_COLLECTION')).toBe(1);
    expect(errors(its, 'DISCARD_UNMAPPED_INTERRUPT')).toBe(1);
    const seen: number[] = [];
    its.forEachEvent(1, (_e, _i, icid) => seen.push(icid));
    expect(seen).toEqual([ITE_NO_COLLECTION, ITE_NO_COLLECTION]);
    // MAPD frees them.
    q.run(cmd.mapd(1, 0, 0, false));
    expect(its.eventCount()).toBe(0);
  });
});

describe('tables moved or resized by the guest', () => {
  it('a BASER rewrite with Valid=1 keeps devices; later commands use the new geometry', () => {
    const { its, q } = makeVm();
    reprogram(its, flatBaser(DEVICE_TABLE, 2)); // DeviceIDs < 16384
    q.run(cmd.mapd(10000, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(10000, 0, 8192, 0));
    reprogram(its, flatBaser(DEVICE_TABLE + 0x10_0000, 1)); // moved and shrunk: DeviceIDs < 8192
    expect(its.translate(10000, 0)).toBe(8192); // KVM frees only on Valid=0
    expect(its.signalMsi(10000, 0)).toBe(1);
    q.run(cmd.mapd(10000, 0, 0, false));
    expect(errors(its, 'MAPD_DEVICE_OOR')).toBe(1);
    expect(its.hasDevice(10000)).toBe(true);
  });

  it('MOVALL after the LPIs are gone (another ITS unmapped them) does not crash', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 0, 8192, 0), cmd.discard(1, 0), cmd.movall(0, 1));
    expect(lpis.exists(8192)).toBe(false);
    expect(errors(its, 'internal_error')).toBe(0);
  });
});

describe('MSIs racing with DISCARD, ITS disable and EnableLPIs=0', () => {
  it('any interleaving: no stale translation, nothing freed twice', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 60 }), (ops) => {
        const { its, q, lpis } = makeVm();
        q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 1), cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 1, 8192, 0));
        let mapped = [true, true];
        let enabled = true;
        let lpisOn = true;
        for (const op of ops) {
          switch (op) {
            case 0: case 1: {
              const r = its.signalMsi(1, op);
              const expected = !enabled ? -Errno.EBUSY : !mapped[op] ? 0 : !lpisOn ? -Errno.EBUSY : 1;
              expect(r).toBe(expected);
              break;
            }
            case 2: case 3:
              if (enabled) {
                q.run(cmd.discard(1, op - 2));
                mapped[op - 2] = false;
              }
              break;
            case 4:
              its.mmioWrite(GITS_CTLR, 4, enabled ? 0n : 1n);
              enabled = !enabled;
              break;
            case 5:
              lpis.mmioWrite(1, 0x0, 4, lpisOn ? 0n : 1n);
              lpisOn = !lpisOn;
              break;
            case 6:
              if (enabled) {
                q.run(cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 1, 8192, 0));
                mapped = [true, true];
              }
              break;
          }
          const refs = mapped.filter(Boolean).length;
          expect(lpis.refcount(8192)).toBe(refs);
          expect(lpis.exists(8192)).toBe(refs > 0);
          expect(its.translate(1, 0)).toBe(mapped[0] ? 8192 : 0);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('command queue placement', () => {
  it('the queue address is a guest physical address: CBASER.PA = 0 (no RAM) faults, RAM untouched', () => {
    const { its, memory } = makeVm({ bare: true });
    its.setReg(GITS_BASER0, flatBaser(DEVICE_TABLE));
    its.setReg(GITS_BASER1, flatBaser(COLLECTION_TABLE));
    its.setReg(GITS_CBASER, cbaserValue(0, 1));
    its.setReg(GITS_CTLR, 1n);
    const before = memory.bytesWritten;
    its.mmioWrite(GITS_CWRITER, 8, 0xfe0n);
    expect(errors(its, 'cmd_read_fault')).toBe(127);
    expect(memory.bytesWritten).toBe(before);
  });

  it('a device table overlapping the command queue: MAPD V=0 zeroes a queued command slot, no harm', () => {
    const { its, q, memory } = makeVm();
    reprogram(its, flatBaser(CMDQ));
    q.run(cmd.sync());
    // Commands at CMDQ + 32, + 64, + 96; the DTE of DeviceID 12 is at CMDQ + 96: the third one.
    const end = q.stage(cmd.mapd(12, 0, 0, false), cmd.mapc(0, 0), cmd.mapd(3, 3, ittOf(3)));
    its.mmioWrite(GITS_CWRITER, 8, BigInt(end));
    expect(memory.readU64Big(CMDQ + 96)).toBe(0n);
    expect(its.hasCollection(0)).toBe(true);
    expect(its.hasDevice(3)).toBe(false);
    expect(its.stats.commands['UNKNOWN']).toBe(1); // the zeroed MAPD now reads as command 0
  });

  it('guest-written junk never throws out of the core', () => {
    const { its, q, memory } = makeVm();
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { minLength: 1, maxLength: 64 }), (junk) => {
        let off = q.cwriter;
        for (const bytes of junk) {
          bytes[0] = bytes[0]! % 16; // mostly real command numbers
          memory.writeBytes(CMDQ + off, bytes);
          off = (off + 32) % 0x1_0000;
        }
        expect(() => its.mmioWrite(GITS_CWRITER, 8, BigInt(off))).not.toThrow();
        expect(q.creadr).toBe(off);
      }),
      { numRuns: 300 },
    );
    expect(errors(its, 'internal_error')).toBe(0);
  });

  it('a hostile guest mapping 8192 devices with 16 EventID bits costs no event storage', () => {
    const { its, q } = makeVm();
    const batch = Array.from({ length: 8192 }, (_, d) => cmd.mapd(d, 15, ittOf(0)));
    for (let i = 0; i < batch.length; i += 2000) q.submit(...batch.slice(i, i + 2000));
    expect(its.deviceCount()).toBe(8192);
    expect(its.eventPagesInUse).toBe(0);
  });
});
