/**
 * Entry codecs against vectors derived by hand from kvm-its-abi.md 3.2-3.5 (the arithmetic is
 * in the comments; the expected 64-bit values are literals, not produced by the code).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CollectionTableEntry, CTE_TARGET_NOT_MAPPED } from '../../../src/its/abi/cte.js';
import { DeviceTableEntry } from '../../../src/its/abi/dte.js';
import { InterruptTranslationEntry } from '../../../src/its/abi/ite.js';
import { Level1Entry } from '../../../src/its/abi/level1.js';
import { decodeBaser } from '../../../src/its/abi/baser.js';

const lo = (v: bigint): number => Number(v & 0xffffffffn);
const hi = (v: bigint): number => Number(v >> 32n);
const join = (l: number, h: number): bigint => (BigInt(h >>> 0) << 32n) | BigInt(l >>> 0);

describe('DeviceTableEntry (3.2: V[63] next[62:49] ITT_addr[48:5] Size[4:0])', () => {
  it('encodes a low ITT address', () => {
    // ITT 0x12345600, 10 EventID bits, next 3:
    //   ITT field = 0x12345600 >> 8 = 0x123456;  << 5 = 0x2468AC0
    //   Size = 10 - 1 = 9
    //   next << 49 = 3 * 2^49 = 0x0006_0000_0000_0000;  V << 63 = 0x8000_0000_0000_0000
    //   total = 0x8006_0000_0246_8AC9
    const expected = 0x8006_0000_0246_8ac9n;
    expect(DeviceTableEntry.lo(0x12345600, 10)).toBe(lo(expected));
    expect(DeviceTableEntry.hi(3, 0x12345600)).toBe(hi(expected));
  });

  it('encodes a 52-bit ITT address with the largest next and 16 EventID bits', () => {
    // ITT 0xF_1234_5678_9A00: field = 0xF12_3456_789A (44 bits); << 5 = 0x1_E246_8ACF_1340
    //   Size = 16 - 1 = 0xF; next = 16383 = 0x3FFF: << 49 = 0x7FFE_0000_0000_0000
    //   total = 0x8000.. + 0x7FFE.. + 0x0001_E246_8ACF_1340 + 0xF = 0xFFFF_E246_8ACF_134F
    const expected = 0xffff_e246_8acf_134fn;
    expect(DeviceTableEntry.lo(0xf_1234_5678_9a00, 16)).toBe(lo(expected));
    expect(DeviceTableEntry.hi(16383, 0xf_1234_5678_9a00)).toBe(hi(expected));
  });

  it('decodes fields', () => {
    const e = 0xffff_e246_8acf_134fn;
    expect(DeviceTableEntry.valid(hi(e))).toBe(true);
    expect(DeviceTableEntry.next(hi(e))).toBe(16383);
    expect(DeviceTableEntry.ittAddr(lo(e), hi(e))).toBe(0xf_1234_5678_9a00);
    expect(DeviceTableEntry.eventIdBits(lo(e))).toBe(16);
    // Size 31 (0x1F) decodes as 32 bits: restore must reject it (> 16).
    expect(DeviceTableEntry.eventIdBits(0x1f)).toBe(32);
    expect(DeviceTableEntry.valid(hi(0x7fff_ffff_ffff_ffffn))).toBe(false);
  });

  it('round-trips every field (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 44 - 1 }), fc.integer({ min: 1, max: 32 }), fc.integer({ min: 0, max: 16383 }), (f, bits, next) => {
        const itt = f * 256;
        const l = DeviceTableEntry.lo(itt, bits);
        const h = DeviceTableEntry.hi(next, itt);
        // Same value built with BigInt shifts straight from the layout:
        const ref = (1n << 63n) | (BigInt(next) << 49n) | (BigInt(f) << 5n) | BigInt(bits - 1);
        expect(join(l, h)).toBe(ref);
        expect(DeviceTableEntry.ittAddr(l, h)).toBe(itt);
        expect(DeviceTableEntry.eventIdBits(l)).toBe(bits);
        expect(DeviceTableEntry.next(h)).toBe(next);
      }),
    );
  });
});

describe('InterruptTranslationEntry (3.3: next[63:48] pINTID[47:16] ICID[15:0])', () => {
  it('encodes', () => {
    // next 5 << 48 = 0x0005_0000_0000_0000; pINTID 8193 = 0x2001 << 16 = 0x2001_0000; ICID 7
    const expected = 0x0005_0000_2001_0007n;
    expect(InterruptTranslationEntry.lo(8193, 7)).toBe(lo(expected));
    expect(InterruptTranslationEntry.hi(5, 8193)).toBe(hi(expected));
    // next 0xFFFF, pINTID 0x1234_5678 (<< 16 = 0x1234_5678_0000), ICID 0xFFFF
    const big = 0xffff_1234_5678_ffffn;
    expect(InterruptTranslationEntry.lo(0x1234_5678, 0xffff)).toBe(lo(big));
    expect(InterruptTranslationEntry.hi(0xffff, 0x1234_5678)).toBe(hi(big));
  });

  it('decodes; pINTID 0 is the invalid entry', () => {
    const e = 0xffff_1234_5678_ffffn;
    expect(InterruptTranslationEntry.intid(lo(e), hi(e))).toBe(0x1234_5678);
    expect(InterruptTranslationEntry.icid(lo(e))).toBe(0xffff);
    expect(InterruptTranslationEntry.next(hi(e))).toBe(0xffff);
    const invalid = 0x0003_0000_0000_0005n; // next and ICID set, pINTID 0
    expect(InterruptTranslationEntry.intid(lo(invalid), hi(invalid))).toBe(0);
  });

  it('round-trips (property)', () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffff }), fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffff }), (next, intid, icid) => {
        const ref = (BigInt(next) << 48n) | (BigInt(intid) << 16n) | BigInt(icid);
        expect(join(InterruptTranslationEntry.lo(intid, icid), InterruptTranslationEntry.hi(next, intid))).toBe(ref);
        expect(InterruptTranslationEntry.intid(lo(ref), hi(ref))).toBe(intid);
      }),
    );
  });
});

describe('CollectionTableEntry (3.4: V[63] RDBase[51:16] ICID[15:0])', () => {
  it('encodes a mapped and an unmapped collection', () => {
    // V | RDbase 3 << 16 | ICID 0x42 = 0x8000_0000_0003_0042
    expect(join(CollectionTableEntry.lo(3, 0x42), CollectionTableEntry.hi(3))).toBe(0x8000_0000_0003_0042n);
    // Unmapped: RDbase 0xFFFF_FFFF << 16 = 0xFFFF_FFFF_0000 -> 0x8000_FFFF_FFFF_0042
    expect(join(CollectionTableEntry.lo(CTE_TARGET_NOT_MAPPED, 0x42), CollectionTableEntry.hi(CTE_TARGET_NOT_MAPPED))).toBe(
      0x8000_ffff_ffff_0042n,
    );
  });

  it('decodes (u32)(e >> 16): bits 51:48 and RES0 62:52 are ignored', () => {
    const withHigh = 0x800f_ffff_ffff_0042n;
    expect(CollectionTableEntry.target(lo(withHigh), hi(withHigh))).toBe(0xffffffff);
    const res0 = 0xfff0_0000_0005_0001n;
    expect(CollectionTableEntry.valid(hi(res0))).toBe(true);
    expect(CollectionTableEntry.target(lo(res0), hi(res0))).toBe(5);
    expect(CollectionTableEntry.icid(lo(res0))).toBe(1);
    expect(CollectionTableEntry.valid(hi(0x7fff_ffff_ffff_ffffn))).toBe(false);
  });
});

describe('Level1Entry (3.5: V[63], L2 address [51:16])', () => {
  it('decodes the level-2 page address with GENMASK(51,16)', () => {
    // 0x8008_1234_5670_FFFF: valid; & 0x000F_FFFF_FFFF_0000 = 0x0008_1234_5670_0000
    const e = 0x8008_1234_5670_ffffn;
    expect(Level1Entry.valid(hi(e))).toBe(true);
    expect(Level1Entry.l2Addr(lo(e), hi(e))).toBe(0x0008_1234_5670_0000);
    // Bits 62:52 are ignored too: 0xFFF8_... -> same address
    const junk = 0xfff8_1234_5670_0000n;
    expect(Level1Entry.l2Addr(lo(junk), hi(junk))).toBe(0x0008_1234_5670_0000);
    expect(Level1Entry.valid(hi(0x0008_1234_5670_0000n))).toBe(false);
  });

  it('encodes the guest-side form (L2 | 1 << 63)', () => {
    expect(join(Level1Entry.lo(0x0008_1234_5670_0000), Level1Entry.hi(0x0008_1234_5670_0000))).toBe(0x8008_1234_5670_0000n);
  });
});

describe('decodeBaser (1.6.6)', () => {
  it('decodes address (incl. PA[51:48] in bits 15:12), size, indirect, valid', () => {
    // Valid | Indirect | Type 1 | Entry_Size 7 | PA 0x000A_1234_5678_0000 | Size 2
    //   PA[47:16] stays in place: 0x1234_5678_0000; PA[51:48] = 0xA -> bits 15:12 = 0xA000
    //   = 0x8000.. | 0x4000.. | 0x0100.. | 0x0007_0000_0000_0000 | 0x1234_5678_0000 | 0xA000 | 2
    const baser = 0xc107_1234_5678_a002n;
    const g = decodeBaser(baser);
    expect(g.valid).toBe(true);
    expect(g.indirect).toBe(true);
    expect(g.type).toBe(1);
    expect(g.base).toBe(0x000a_1234_5678_0000);
    expect(g.bytes).toBe(3 * 0x10000);
    expect(g.slots).toBe((3 * 0x10000) / 8);
  });
});
