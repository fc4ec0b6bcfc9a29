import { describe, expect, it } from 'vitest';
import { Errno, ErrnoError } from '../../src/util/errno.js';
import { GITS_BASER0, GITS_CBASER, GITS_CREADR, GITS_CTLR, GITS_CWRITER, GITS_IIDR, GITS_TRANSLATER, GITS_TYPER } from '../../src/its/types.js';
import {
  CMDQ, COLLECTION_TABLE, DEVICE_TABLE, GITS_BASER1, VALID, cbaserValue, cmd, flatBaser, ittOf, makeVm,
} from './helpers.js';

/** Hand-derived register values (kvm-its-abi.md 1.6). */
const TYPER = 0x1n /* PLPIS */ | (7n << 4n) /* ITT entry 8 bytes */ | (15n << 8n) /* 16 EventID bits */ | (15n << 13n); /* 16 DeviceID bits */
const BASER_COMMON = (3n << 59n) /* inner RaWb */ | (7n << 48n) /* Entry_Size 8 */ | (1n << 10n) /* inner shareable */ | (2n << 8n); /* 64K */
const BASER0_RESET = BASER_COMMON | (1n << 56n); // Type 1: devices
const BASER1_RESET = BASER_COMMON | (4n << 56n); // Type 4: collections

function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof ErrnoError) return e.errno;
    throw e;
  }
  return 0;
}

describe('reset values', () => {
  it('match KVM after creation', () => {
    const { its } = makeVm({ bare: true });
    expect(TYPER).toBe(0x1ef71n);
    expect(BASER0_RESET).toBe(0x1907_0000_0000_0600n);
    expect(BASER1_RESET).toBe(0x1c07_0000_0000_0600n);
    expect(its.getReg(GITS_CTLR)).toBe(0x8000_0000n); // disabled, quiescent
    expect(its.getReg(GITS_IIDR)).toBe(0x4b00_043bn);
    expect(its.getReg(GITS_TYPER)).toBe(TYPER);
    expect(its.getReg(GITS_CBASER)).toBe(0n);
    expect(its.getReg(GITS_CWRITER)).toBe(0n);
    expect(its.getReg(GITS_CREADR)).toBe(0n);
    expect(its.getReg(GITS_BASER0)).toBe(BASER0_RESET);
    expect(its.getReg(GITS_BASER1)).toBe(BASER1_RESET);
    for (let n = 2; n < 8; n++) expect(its.getReg(GITS_BASER0 + 8 * n)).toBe(0n);
    expect(its.enabled).toBe(false);
    expect(its.abiRevision).toBe(0);
  });

  it('ID registers', () => {
    const { its } = makeVm({ bare: true });
    const expected: [number, bigint][] = [
      [0xffd0, 0x40n], [0xffd4, 0n], [0xffd8, 0n], [0xffdc, 0n], [0xffe0, 0x92n], [0xffe4, 0xb4n], [0xffe8, 0x3bn],
      [0xffec, 0n], [0xfff0, 0x0dn], [0xfff4, 0xf0n], [0xfff8, 0x05n], [0xfffc, 0xb1n],
    ];
    for (const [off, v] of expected) {
      expect(its.mmioRead(off, 4)).toBe(v);
      expect(its.getReg(off)).toBe(v);
    }
    // PIDR2[7:4] = 3: a GICv3 ITS (what Linux checks).
    expect((its.mmioRead(0xffe8, 4) >> 4n) & 0xfn).toBe(3n);
    its.mmioWrite(0xffe8, 4, 0x44n);
    its.setReg(0xffe8, 0x44n);
    expect(its.getReg(0xffe8)).toBe(0x3bn);
    // 64-bit accesses to the 32-bit ID registers are RAZ/WI.
    expect(its.mmioRead(0xffe8, 8)).toBe(0n);
  });
});

describe('GITS_CTLR', () => {
  it('enabling is refused silently unless BASER0, BASER1 and CBASER are valid', () => {
    const cases: [boolean, boolean, boolean][] = [[false, true, true], [true, false, true], [true, true, false], [false, false, false]];
    for (const [d, c, q] of cases) {
      const { its } = makeVm({ bare: true });
      its.setReg(GITS_BASER0, flatBaser(DEVICE_TABLE, 1, d));
      its.setReg(GITS_BASER1, flatBaser(COLLECTION_TABLE, 1, c));
      its.setReg(GITS_CBASER, cbaserValue(CMDQ, 16, q));
      its.setReg(GITS_CTLR, 1n);
      expect(its.enabled).toBe(false);
      its.mmioWrite(GITS_CTLR, 4, 1n);
      expect(its.enabled).toBe(false);
      expect(its.getReg(GITS_CTLR)).toBe(0x8000_0000n);
    }
    const { its } = makeVm({ bare: true });
    its.setReg(GITS_BASER0, flatBaser(DEVICE_TABLE));
    its.setReg(GITS_BASER1, flatBaser(COLLECTION_TABLE));
    its.setReg(GITS_CBASER, cbaserValue(CMDQ));
    its.mmioWrite(GITS_CTLR, 4, 0x8000_0001n); // Linux writes readl(CTLR) | Enabled: bit 31 ignored
    expect(its.enabled).toBe(true);
    expect(its.mmioRead(GITS_CTLR, 4)).toBe(0x8000_0001n);
    its.mmioWrite(GITS_CTLR, 4, 0n);
    expect(its.enabled).toBe(false);
  });

  it('Quiescent is CREADR == CWRITER; an enable processes queued commands', () => {
    const { its, q } = makeVm();
    its.setReg(GITS_CTLR, 0n);
    q.submit(cmd.mapd(1, 4, ittOf(1)), cmd.sync()); // queued while disabled: not processed
    expect(q.creadr).toBe(0);
    expect(q.cwriter).toBe(64);
    expect(its.getReg(GITS_CTLR)).toBe(0n); // not quiescent, not enabled
    expect(its.hasDevice(1)).toBe(false);
    its.mmioWrite(GITS_CTLR, 4, 1n);
    expect(its.hasDevice(1)).toBe(true);
    expect(q.creadr).toBe(64);
    expect(its.getReg(GITS_CTLR)).toBe(0x8000_0001n);
  });

  it('only 32-bit accesses', () => {
    const { its } = makeVm();
    expect(its.mmioRead(GITS_CTLR, 8)).toBe(0n);
    expect(its.mmioRead(GITS_CTLR, 2)).toBe(0n);
    expect(its.mmioRead(GITS_CTLR, 1)).toBe(0n);
    its.mmioWrite(GITS_CTLR, 8, 0n);
    its.mmioWrite(GITS_CTLR, 1, 0n);
    expect(its.enabled).toBe(true);
  });
});

describe('GITS_IIDR', () => {
  it('guest writes are ignored; user writes select the ABI revision', () => {
    const { its } = makeVm({ bare: true });
    its.mmioWrite(GITS_IIDR, 4, 0x1234n);
    expect(its.getReg(GITS_IIDR)).toBe(0x4b00_043bn);
    its.setReg(GITS_IIDR, 0x4b00_043bn);
    // Other fields are not compared: only Revision (15:12) matters.
    its.setReg(GITS_IIDR, 0xffff_0fffn);
    expect(its.getReg(GITS_IIDR)).toBe(0x4b00_043bn);
    expect(errnoOf(() => its.setReg(GITS_IIDR, 0x1000n))).toBe(Errno.EINVAL);
    expect(errnoOf(() => its.setReg(GITS_IIDR, 0xf000n))).toBe(Errno.EINVAL);
    expect(its.getReg(GITS_BASER0)).toBe(BASER0_RESET);
  });
});

describe('GITS_TYPER', () => {
  it('is read-only; 32-bit halves read one half', () => {
    const { its } = makeVm();
    its.mmioWrite(GITS_TYPER, 8, 0n);
    its.setReg(GITS_TYPER, 0n);
    expect(its.mmioRead(GITS_TYPER, 8)).toBe(TYPER);
    expect(its.mmioRead(GITS_TYPER, 4)).toBe(TYPER & 0xffff_ffffn);
    expect(its.mmioRead(GITS_TYPER + 4, 4)).toBe(TYPER >> 32n);
    expect(its.mmioRead(GITS_TYPER + 4, 8)).toBe(0n); // misaligned 64-bit: RAZ
    expect(its.mmioRead(GITS_TYPER, 2)).toBe(0n);
  });
});

describe('GITS_CBASER', () => {
  it('sanitises shareability and cacheability, forces PA[15:12] to 0', () => {
    const { its } = makeVm({ bare: true });
    const base = BigInt(CMDQ) | 0xfn | (3n << 59n); // 16 pages, inner RaWb
    const write = (v: bigint): bigint => {
      its.setReg(GITS_CBASER, v);
      return its.getReg(GITS_CBASER);
    };
    // Shareability 11:10: Outer (2) -> Inner (1); Non (0) and Inner kept.
    expect(write(base | (2n << 10n))).toBe(base | (1n << 10n));
    expect(write(base | (0n << 10n))).toBe(base);
    // InnerCache 61:59: nCnB (0) and nC (1) -> RaWb (3); RaWt (2), WaWb (5) kept.
    const noInner = base & ~(7n << 59n);
    expect(write(noInner | (1n << 59n))).toBe(base);
    expect(write(noInner)).toBe(base);
    expect(write(noInner | (2n << 59n))).toBe(noInner | (2n << 59n));
    expect(write(noInner | (5n << 59n))).toBe(noInner | (5n << 59n));
    // OuterCache 55:53: SameAsInner (0) and nC (1) kept, anything else -> 0.
    expect(write(base | (1n << 53n))).toBe(base | (1n << 53n));
    expect(write(base | (6n << 53n))).toBe(base);
    expect(write(base | (2n << 53n))).toBe(base);
    // PA bits 15:12 cleared (64 KiB aligned queue); PA bits 51:16 kept.
    expect(write((3n << 59n) | 0x000f_ffff_ffff_f000n)).toBe((3n << 59n) | 0x000f_ffff_ffff_0000n);
    // Valid kept.
    expect(write(VALID | base)).toBe(VALID | base);
  });

  it('32-bit halves, reset of CREADR/CWRITER, ignored while enabled', () => {
    const { its } = makeVm({ bare: true });
    its.mmioWrite(GITS_CBASER, 4, BigInt(CMDQ) | 0x40fn); // low half: PA[31:12] | inner shareable | Size
    its.mmioWrite(GITS_CBASER + 4, 4, 0x9800_0000n); // high half: Valid | InnerCache RaWb (bits 63, 60:59)
    const expected = VALID | (3n << 59n) | BigInt(CMDQ) | 0x40fn;
    expect(its.getReg(GITS_CBASER)).toBe(expected);
    expect(its.mmioRead(GITS_CBASER + 4, 4)).toBe(expected >> 32n);
    its.setReg(GITS_CREADR, 0x100n);
    its.mmioWrite(GITS_CWRITER, 8, 0x200n);
    expect(its.getReg(GITS_CREADR)).toBe(0x100n);
    expect(its.getReg(GITS_CWRITER)).toBe(0x200n);
    its.mmioWrite(GITS_CBASER + 4, 4, 0x9800_0000n); // any write resets both
    expect(its.getReg(GITS_CREADR)).toBe(0n);
    expect(its.getReg(GITS_CWRITER)).toBe(0n);
    its.setReg(GITS_BASER0, flatBaser(DEVICE_TABLE));
    its.setReg(GITS_BASER1, flatBaser(COLLECTION_TABLE));
    its.setReg(GITS_CTLR, 1n);
    its.setReg(GITS_CBASER, 0n);
    its.mmioWrite(GITS_CBASER, 8, 0n);
    expect(its.getReg(GITS_CBASER)).toBe(expected);
  });
});

describe('GITS_CWRITER and GITS_CREADR', () => {
  it('CWRITER keeps offset bits 19:5 and ignores offsets beyond the queue', () => {
    const { its, q } = makeVm(); // 64 KiB queue
    its.setReg(GITS_CTLR, 0n); // keep the commands unprocessed
    its.mmioWrite(GITS_CWRITER, 8, 0x41n | (1n << 40n)); // Retry bit 0 and high bits dropped
    expect(its.getReg(GITS_CWRITER)).toBe(0x40n);
    its.mmioWrite(GITS_CWRITER, 8, 0x5fn); // bits 4:1 dropped
    expect(its.getReg(GITS_CWRITER)).toBe(0x40n);
    its.mmioWrite(GITS_CWRITER, 8, 0x1_0000n); // == queue size: ignored
    expect(its.getReg(GITS_CWRITER)).toBe(0x40n);
    its.mmioWrite(GITS_CWRITER, 4, 0xffe0n); // writel, last slot
    expect(its.getReg(GITS_CWRITER)).toBe(0xffe0n);
    its.mmioWrite(GITS_CWRITER + 4, 4, 0n); // high half write keeps the low half
    expect(its.getReg(GITS_CWRITER)).toBe(0xffe0n);
    expect(its.mmioRead(GITS_CWRITER, 4)).toBe(0xffe0n);
    expect(q.creadr).toBe(0);
  });

  it('CREADR: guest writes ignored; user writes EBUSY while enabled, EINVAL beyond the queue', () => {
    const { its } = makeVm();
    its.mmioWrite(GITS_CREADR, 8, 0x100n);
    expect(its.getReg(GITS_CREADR)).toBe(0n);
    expect(errnoOf(() => its.setReg(GITS_CREADR, 0x100n))).toBe(Errno.EBUSY);
    its.setReg(GITS_CTLR, 0n);
    expect(errnoOf(() => its.setReg(GITS_CREADR, 0x1_0000n))).toBe(Errno.EINVAL);
    expect(errnoOf(() => its.setReg(GITS_CREADR, 0x2_0000n))).toBe(Errno.EINVAL);
    its.setReg(GITS_CREADR, 0xffe1n); // masked to bits 19:5
    expect(its.getReg(GITS_CREADR)).toBe(0xffe0n);
    expect(its.mmioRead(GITS_CREADR + 4, 4)).toBe(0n);
    // Queue size is taken from the current CBASER: 4 KiB queue.
    its.setReg(GITS_CBASER, cbaserValue(CMDQ, 1));
    expect(errnoOf(() => its.setReg(GITS_CREADR, 0x1000n))).toBe(Errno.EINVAL);
    its.setReg(GITS_CREADR, 0xfe0n);
    expect(its.getReg(GITS_CREADR)).toBe(0xfe0n);
  });
});

describe('GITS_BASER<n>', () => {
  it('Type and Entry_Size are fixed; Page_Size forced to 64K; Indirect only on BASER0', () => {
    const { its } = makeVm({ bare: true });
    const addr = BigInt(DEVICE_TABLE);
    // Try to write Type 2, Entry_Size 16 bytes, 4K pages, Indirect, Size 3.
    its.setReg(GITS_BASER0, VALID | (1n << 62n) | (3n << 59n) | (2n << 56n) | (15n << 48n) | addr | (1n << 10n) | (0n << 8n) | 3n);
    expect(its.getReg(GITS_BASER0)).toBe(VALID | (1n << 62n) | (3n << 59n) | (1n << 56n) | (7n << 48n) | addr | (1n << 10n) | (2n << 8n) | 3n);
    its.setReg(GITS_BASER1, VALID | (1n << 62n) | (3n << 59n) | (0n << 56n) | (0n << 48n) | addr | (1n << 10n) | (1n << 8n));
    expect(its.getReg(GITS_BASER1)).toBe(VALID | (3n << 59n) | (4n << 56n) | (7n << 48n) | addr | (1n << 10n) | (2n << 8n));
  });

  it('sanitises like CBASER and keeps PA[51:48] in bits 15:12', () => {
    const { its } = makeVm({ bare: true });
    its.setReg(GITS_BASER0, (2n << 10n) | (1n << 59n) | (7n << 53n) | 0x0000_ffff_ffff_f000n);
    expect(its.getReg(GITS_BASER0)).toBe((1n << 10n) | (3n << 59n) | (1n << 56n) | (7n << 48n) | 0x0000_ffff_ffff_f000n | (2n << 8n));
  });

  it('32-bit halves, BASER2..7 RAZ/WI, ignored while enabled', () => {
    const { its } = makeVm({ bare: true });
    // The low half is replaced whole (shareability 0 now); Page_Size is forced back to 64K.
    its.mmioWrite(GITS_BASER0, 4, BigInt(DEVICE_TABLE) | 1n);
    expect(its.mmioRead(GITS_BASER0, 4)).toBe(BigInt(DEVICE_TABLE) | 0x200n | 1n);
    its.mmioWrite(GITS_BASER0 + 4, 4, 0x8000_0000n | (3n << 27n)); // Valid | InnerCache RaWb (bits 63, 61:59 -> 31, 29:27)
    expect(its.getReg(GITS_BASER0)).toBe(VALID | (3n << 59n) | (1n << 56n) | (7n << 48n) | BigInt(DEVICE_TABLE) | 0x201n);
    for (let n = 2; n < 8; n++) {
      its.mmioWrite(GITS_BASER0 + 8 * n, 8, VALID | 0x1234_0000n);
      its.setReg(GITS_BASER0 + 8 * n, VALID | 0x1234_0000n);
      expect(its.mmioRead(GITS_BASER0 + 8 * n, 8)).toBe(0n);
      expect(its.getReg(GITS_BASER0 + 8 * n)).toBe(0n);
    }
    its.setReg(GITS_BASER1, flatBaser(COLLECTION_TABLE));
    its.setReg(GITS_CBASER, cbaserValue(CMDQ));
    its.setReg(GITS_CTLR, 1n);
    const before = its.getReg(GITS_BASER0);
    its.mmioWrite(GITS_BASER0, 8, 0n);
    its.setReg(GITS_BASER0, 0n);
    expect(its.getReg(GITS_BASER0)).toBe(before);
  });

  it('Valid=0 frees all devices (BASER0) or all collections (BASER1)', () => {
    const { its, q } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(2, 1), cmd.mapti(1, 0, 8192, 2));
    expect(its.translate(1, 0)).toBe(8192);
    its.setReg(GITS_CTLR, 0n);
    its.setReg(GITS_BASER1, flatBaser(COLLECTION_TABLE, 1, true)); // still valid: nothing freed
    expect(its.hasCollection(2)).toBe(true);
    its.setReg(GITS_BASER1, flatBaser(COLLECTION_TABLE, 1, false));
    expect(its.hasCollection(2)).toBe(false);
    expect(its.hasDevice(1)).toBe(true);
    expect(its.translate(1, 0)).toBe(8192); // the ITE lost its collection only
    its.setReg(GITS_BASER0, flatBaser(DEVICE_TABLE, 1, false));
    expect(its.hasDevice(1)).toBe(false);
    expect(its.translate(1, 0)).toBe(0);
  });
});

describe('access rules', () => {
  it('guest: unknown offsets, wrong widths and GITS_TRANSLATER are RAZ/WI', () => {
    const { its, q, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 2, 8192, 0));
    for (const off of [0x10, 0x14, 0x18, 0x40, 0x48, 0x98, 0x140, 0xc000, 0xffcc, 0x10000, 0x10040, 0x1fffc]) {
      expect(its.mmioRead(off, 4)).toBe(0n);
      expect(its.mmioRead(off & ~7, 8)).toBe(0n);
      its.mmioWrite(off, 4, 0xffff_ffffn);
    }
    its.mmioWrite(GITS_TRANSLATER, 4, 2n);
    its.mmioWrite(GITS_TRANSLATER, 2, 2n);
    expect(lpis.isPending(8192)).toBe(false);
    expect(its.mmioRead(GITS_CBASER, 2)).toBe(0n);
    expect(its.mmioRead(GITS_CBASER + 1, 1)).toBe(0n);
    expect(its.mmioRead(GITS_CBASER + 4, 8)).toBe(0n);
    expect(its.mmioRead(GITS_CBASER, 8)).not.toBe(0n);
  });

  it('user: alignment first (EINVAL), then unknown offset (ENXIO)', () => {
    const { its } = makeVm({ bare: true });
    for (const off of [0x1, 0x2, 0x6, 0x84, 0x8c, 0x10c, 0xc, 0xffd1]) {
      expect(errnoOf(() => its.getReg(off))).toBe(Errno.EINVAL);
      expect(errnoOf(() => its.setReg(off, 0n))).toBe(Errno.EINVAL);
      expect(errnoOf(() => its.hasReg(off))).toBe(Errno.EINVAL);
    }
    for (const off of [0x10, 0x18, 0x40, 0x98, 0x140, 0x200, 0xffc8, 0x10000, 0x10040, 0x20000]) {
      expect(errnoOf(() => its.getReg(off))).toBe(Errno.ENXIO);
      expect(errnoOf(() => its.setReg(off, 0n))).toBe(Errno.ENXIO);
      expect(errnoOf(() => its.hasReg(off))).toBe(Errno.ENXIO);
    }
    for (const off of [0x0, 0x4, 0x8, 0x80, 0x88, 0x90, 0x100, 0x138, 0xffd0, 0xffd4, 0xfffc]) {
      expect(errnoOf(() => its.hasReg(off))).toBe(0);
    }
  });

  it('user writes to read-only registers are ignored; 32-bit registers take the low bits of the u64', () => {
    const { its } = makeVm({ bare: true });
    its.setReg(GITS_TYPER, 0n);
    expect(its.getReg(GITS_TYPER)).toBe(TYPER);
    its.setReg(0xfff0, 0n);
    expect(its.getReg(0xfff0)).toBe(0x0dn);
    // CTLR user read is zero-extended to 64 bits.
    expect(its.getReg(GITS_CTLR)).toBe(0x8000_0000n);
  });
});

describe('KVM_DEV_ARM_ITS_CTRL_RESET', () => {
  it('keeps BASER fields but Valid, zeroes CBASER/CREADR/CWRITER, frees everything, leaves RAM alone', () => {
    const { its, q, memory, lpis } = makeVm();
    q.run(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(2, 1), cmd.mapti(1, 0, 8192, 2), cmd.mapti(1, 1, 8193, 7));
    memory.writeU64(DEVICE_TABLE + 8, 0x1234, 0x8000_0000);
    const b0 = its.getReg(GITS_BASER0);
    const b1 = its.getReg(GITS_BASER1);
    its.reset();
    expect(its.getReg(GITS_BASER0)).toBe(b0 & ~VALID);
    expect(its.getReg(GITS_BASER1)).toBe(b1 & ~VALID);
    expect(its.getReg(GITS_CBASER)).toBe(0n);
    expect(its.getReg(GITS_CREADR)).toBe(0n);
    expect(its.getReg(GITS_CWRITER)).toBe(0n);
    expect(its.getReg(GITS_CTLR)).toBe(0x8000_0000n);
    expect(its.getReg(GITS_IIDR)).toBe(0x4b00_043bn);
    expect(its.deviceCount()).toBe(0);
    expect(its.eventCount()).toBe(0);
    let collections = 0;
    its.forEachCollection(() => collections++);
    expect(collections).toBe(0);
    expect(lpis.exists(8192)).toBe(false);
    expect(lpis.exists(8193)).toBe(false);
    expect(memory.readU64Big(DEVICE_TABLE + 8)).toBe(0x8000_0000_0000_1234n);
    expect(its.signalMsi(1, 0)).toBe(-Errno.EBUSY);
  });
});
