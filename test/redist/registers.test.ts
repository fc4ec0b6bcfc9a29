import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  GICR_CTLR,
  GICR_IIDR,
  GICR_INVALLR,
  GICR_INVLPIR,
  GICR_PENDBASER,
  GICR_PROPBASER,
  GICR_SYNCR,
  GICR_TYPER,
  mpidrOf,
  sanitisePendbaser,
  sanitisePropbaser,
  vcpuOfMpidr,
} from '../../src/redist/registers.js';
import { LpiRedistributors } from '../../src/redist/lpi-system.js';
import { ErrnoError } from '../../src/util/errno.js';
import { NO_VCPU } from '../../src/redist/types.js';
import { PROP_BASE, configAddr, makeFixture, pendBase, pendbaserValue, propbaserValue } from './support/fixture.js';

// Field positions shared by PROPBASER and PENDBASER (hand-written from the GICv3 layout).
const SH = (v: bigint) => v << 10n; // Shareability 11:10
const IC = (v: bigint) => v << 7n; // InnerCache 9:7
const OC = (v: bigint) => v << 56n; // OuterCache 58:56
const PTZ = 1n << 62n;

describe('GICR_IIDR', () => {
  it("reads KVM's value 0x4B00043B (ProductID 'K' << 24 | Arm 0x43B) and ignores writes", () => {
    const { rd } = makeFixture();
    expect(rd.mmioRead(0, GICR_IIDR, 4)).toBe((0x4bn << 24n) | 0x43bn);
    expect(rd.mmioWrite(0, GICR_IIDR, 4, 0xffffffffn)).toBe(true);
    expect(rd.mmioRead(0, GICR_IIDR, 4)).toBe(0x4b00043bn);
  });
});

describe('GICR_TYPER', () => {
  it('encodes affinity, Processor_Number, PLPIS and Last (KVM composition)', () => {
    const { rd } = makeFixture({ nrVcpus: 32 });
    // vCPU 0: Aff = 0, Processor_Number = 0, PLPIS = 1, not last.
    expect(rd.mmioRead(0, GICR_TYPER, 8)).toBe(1n);
    // vCPU 17: Aff0 = 17 & 0xf = 1, Aff1 = 17 >> 4 = 1 -> affinity 0x0101 at bits 63:32;
    // Processor_Number 17 = 0x11 at bits 23:8 -> 0x1100; PLPIS -> 0x1101.
    const typer17 = (0x0101n << 32n) | (17n << 8n) | 1n;
    expect(rd.mmioRead(17, GICR_TYPER, 8)).toBe(typer17);
    // Last vCPU (31): Aff0 = 15, Aff1 = 1 -> 0x010f; Processor_Number 31; Last = bit 4.
    expect(rd.mmioRead(31, GICR_TYPER, 8)).toBe((0x010fn << 32n) | (31n << 8n) | 0x10n | 1n);
    // DirectLPI (bit 3) and VLPIS (bit 1) are 0 on every vCPU.
    for (let v = 0; v < 32; v++) expect(rd.mmioRead(v, GICR_TYPER, 8)! & 0b1010n).toBe(0n);
  });

  it('reads as two 32-bit halves and ignores writes', () => {
    const { rd } = makeFixture({ nrVcpus: 32 });
    expect(rd.mmioRead(17, GICR_TYPER, 4)).toBe((17n << 8n) | 1n);
    expect(rd.mmioRead(17, GICR_TYPER + 4, 4)).toBe(0x0101n);
    rd.mmioWrite(17, GICR_TYPER, 8, 0n);
    rd.mmioWrite(17, GICR_TYPER + 4, 4, 0xffffffffn);
    expect(rd.mmioRead(17, GICR_TYPER, 8)).toBe((0x0101n << 32n) | (17n << 8n) | 1n);
  });

  it('reports PLPIS only once the VM has an ITS (KVM vgic_has_its)', () => {
    const { rd } = makeFixture({ nrVcpus: 2, hasIts: false, program: false, enable: false });
    expect(rd.mmioRead(0, GICR_TYPER, 8)).toBe(0n);
    expect(rd.mmioRead(1, GICR_TYPER, 8)).toBe((1n << 32n) | (1n << 8n) | 0x10n);
    rd.resetPropbaser(); // what ITS creation does
    expect(rd.mmioRead(0, GICR_TYPER, 8)).toBe(1n);
  });
});

describe('GICR_CTLR', () => {
  it('resets to 0 and keeps only EnableLPIs (IR = CES = RWP = 0)', () => {
    const f = makeFixture({ enable: false });
    expect(f.rd.mmioRead(0, GICR_CTLR, 4)).toBe(0n);
    f.rd.mmioWrite(0, GICR_CTLR, 4, 0xffffffffn);
    expect(f.rd.mmioRead(0, GICR_CTLR, 4)).toBe(1n);
    expect(f.rd.lpisEnabled(0)).toBe(true);
    expect(f.rd.lpisEnabled(1)).toBe(false);
    f.rd.mmioWrite(0, GICR_CTLR, 4, 0xfffffffen);
    expect(f.rd.mmioRead(0, GICR_CTLR, 4)).toBe(0n);
    expect(f.enableChanges).toEqual([[0, true], [0, false]]);
  });

  it('ignores writes while the VM has no ITS', () => {
    const f = makeFixture({ nrVcpus: 2, hasIts: false, program: false, enable: false });
    f.rd.mmioWrite(0, GICR_CTLR, 4, 1n);
    expect(f.rd.lpisEnabled(0)).toBe(false);
    f.rd.setHasIts(true);
    f.rd.mmioWrite(0, GICR_CTLR, 4, 1n);
    expect(f.rd.lpisEnabled(0)).toBe(true);
  });
});

describe('GICR_PROPBASER', () => {
  it('is 0 until an ITS is created, then KVM initial value 0x580 (RaWb inner, InnerShareable)', () => {
    const f = makeFixture({ program: false, enable: false });
    expect(f.rd.propbaser).toBe(0n);
    f.rd.resetPropbaser();
    expect(f.rd.propbaser).toBe(SH(1n) | IC(3n)); // 0x400 | 0x180
    expect(f.rd.propbaser).toBe(0x580n);
    expect(f.rd.mmioRead(2, GICR_PROPBASER, 8)).toBe(0x580n);
  });

  it('keeps writable fields, sanitises and forces RES0 (KVM vgic_sanitise_propbaser)', () => {
    const f = makeFixture({ enable: false });
    const written =
      (0x1fn << 59n) | // RES0 63:59
      OC(5n) | // outer WaWb -> 0 (only SameAsInner/nC kept)
      (0xfn << 52n) | // RES0 55:52
      0x12345000n | // PA
      SH(2n) | // OuterShareable -> InnerShareable
      IC(0n) | // nCnB -> RaWb
      (3n << 5n) | // RES0 6:5
      0xfn; // IDbits
    f.rd.mmioWrite(1, GICR_PROPBASER, 8, written);
    expect(f.rd.propbaser).toBe(0x12345000n | SH(1n) | IC(3n) | 0xfn);
    expect(f.rd.propbaser).toBe(0x1234558fn);
    // VM-wide: every vCPU reads the same value.
    for (let v = 0; v < 4; v++) expect(f.rd.mmioRead(v, GICR_PROPBASER, 8)).toBe(0x1234558fn);
  });

  it('accepts 32-bit halves (KVM update_64bit_reg)', () => {
    const f = makeFixture({ enable: false });
    // Low half 0x00020f8d: PA 0x20000 | 0xf8d, and 0xf8d = SH(3) 0xc00 | IC(7) 0x380 | IDbits 0xd
    // (SH 3 and IC 7 are kept as they are).
    f.rd.mmioWrite(0, GICR_PROPBASER, 4, 0x00020f8dn);
    expect(f.rd.propbaser).toBe(0x20000n | SH(3n) | IC(7n) | 0xdn);
    f.rd.mmioWrite(0, GICR_PROPBASER + 4, 4, 0x0000000an); // high half: PA bits 35:33 -> 0xa << 32
    expect(f.rd.propbaser).toBe((0xan << 32n) | 0x20000n | SH(3n) | IC(7n) | 0xdn);
    expect(f.rd.mmioRead(0, GICR_PROPBASER, 4)).toBe(0x20f8dn);
    expect(f.rd.mmioRead(0, GICR_PROPBASER + 4, 4)).toBe(0xan);
  });

  it("ignores writes through a vCPU whose EnableLPIs is set, not through the others' (KVM)", () => {
    const f = makeFixture({ enable: false });
    const before = f.rd.propbaser;
    f.enableLpis(0);
    f.rd.mmioWrite(0, GICR_PROPBASER, 8, propbaserValue(0x30000, 13));
    expect(f.rd.propbaser).toBe(before);
    f.rd.mmioWrite(1, GICR_PROPBASER, 8, propbaserValue(0x30000, 13));
    expect(f.rd.propbaser).toBe(propbaserValue(0x30000, 13));
  });

  it('resetPropbaser() restores 0x580 whatever was written', () => {
    const f = makeFixture({ enable: false });
    f.rd.resetPropbaser();
    expect(f.rd.propbaser).toBe(0x580n);
  });
});

describe('GICR_PENDBASER', () => {
  it('starts at 0x580 on every vCPU (KVM INITIAL_PENDBASER_VALUE)', () => {
    const f = makeFixture({ program: false, enable: false });
    for (let v = 0; v < 4; v++) expect(f.rd.mmioRead(v, GICR_PENDBASER, 8)).toBe(0x580n);
  });

  it('keeps writable fields, forces RES0 and hides PTZ on reads', () => {
    const f = makeFixture({ enable: false });
    const written =
      (1n << 63n) | PTZ | (7n << 59n) | OC(1n) | (0xfn << 52n) | 0x50000n | 0xf000n | SH(1n) | IC(7n) | 0x7fn;
    f.rd.mmioWrite(2, GICR_PENDBASER, 8, written);
    // Kept: PTZ (hidden), OuterCache nC, PA 51:16, SH, IC. Dropped: 63, 61:59, 55:52, 15:12, 6:0.
    expect(f.rd.mmioRead(2, GICR_PENDBASER, 8)).toBe(OC(1n) | 0x50000n | SH(1n) | IC(7n));
    expect(f.rd.mmioRead(2, GICR_PENDBASER + 4, 4)).toBe(1n << 24n); // OuterCache bit 56 = high bit 24
    expect(f.rd.pendbaser(2)).toBe(OC(1n) | 0x50000n | SH(1n) | IC(7n));
    // Other vCPUs keep their own values.
    expect(f.rd.pendbaser(1)).toBe(pendbaserValue(pendBase(1)));
  });

  it('sanitises shareability and cacheability like PROPBASER', () => {
    const f = makeFixture({ enable: false });
    f.rd.mmioWrite(0, GICR_PENDBASER, 8, 0x60000n | SH(2n) | IC(1n) | OC(7n));
    expect(f.rd.pendbaser(0)).toBe(0x60000n | SH(1n) | IC(3n));
  });

  it('accepts 32-bit halves', () => {
    const f = makeFixture({ enable: false });
    f.rd.mmioWrite(3, GICR_PENDBASER, 4, 0x00060580n);
    f.rd.mmioWrite(3, GICR_PENDBASER + 4, 4, 0x40000001n); // PTZ (bit 62 = high bit 30) | PA bit 32
    expect(f.rd.pendbaser(3)).toBe((1n << 32n) | 0x60580n);
    expect(f.rd.mmioRead(3, GICR_PENDBASER + 4, 4)).toBe(1n);
  });

  it('ignores writes while this vCPU has EnableLPIs = 1', () => {
    const f = makeFixture({ enable: false });
    f.enableLpis(1);
    f.rd.mmioWrite(1, GICR_PENDBASER, 8, pendbaserValue(0x90000));
    expect(f.rd.pendbaser(1)).toBe(pendbaserValue(pendBase(1)));
    f.rd.mmioWrite(0, GICR_PENDBASER, 8, pendbaserValue(0x90000));
    expect(f.rd.pendbaser(0)).toBe(pendbaserValue(0x90000));
  });
});

describe('access widths and unimplemented offsets', () => {
  it('answers null / false for offsets vitsd does not implement (-ENXIO)', () => {
    const { rd } = makeFixture();
    for (const off of [0x10, 0x14, 0x40, 0x48, 0x68, 0x80, 0xa8, 0xb8, 0xc4, 0xffe8, 0x10000, 0x10100]) {
      expect(rd.mmioRead(0, off, 4)).toBeNull();
      expect(rd.mmioWrite(0, off, 4, 0n)).toBe(false);
      expect(LpiRedistributors.isImplementedOffset(off)).toBe(false);
    }
    for (const off of [0, 4, 8, 0xc, 0x70, 0x74, 0x78, 0x7c, 0xa0, 0xa4, 0xb0, 0xb4, 0xc0]) {
      expect(LpiRedistributors.isImplementedOffset(off)).toBe(true);
    }
  });

  it('treats widths a register does not take, and misaligned accesses, as RAZ/WI', () => {
    const f = makeFixture({ enable: false });
    const prop = f.rd.propbaser;
    // 8- and 16-bit accesses: no LPI register allows them.
    expect(f.rd.mmioRead(0, GICR_PROPBASER, 1)).toBe(0n);
    expect(f.rd.mmioRead(0, GICR_PROPBASER, 2)).toBe(0n);
    expect(f.rd.mmioRead(0, GICR_IIDR, 1)).toBe(0n);
    expect(f.rd.mmioWrite(0, GICR_PROPBASER, 2, 0n)).toBe(true);
    expect(f.rd.propbaser).toBe(prop);
    // 64-bit access to a 32-bit register.
    expect(f.rd.mmioRead(0, GICR_CTLR, 8)).toBe(0n);
    f.rd.mmioWrite(0, GICR_CTLR, 8, 1n);
    expect(f.rd.lpisEnabled(0)).toBe(false);
    f.rd.mmioWrite(0, GICR_CTLR, 1, 1n);
    expect(f.rd.lpisEnabled(0)).toBe(false);
    // Misaligned: 64-bit at +4, 32-bit at +2.
    expect(f.rd.mmioRead(0, GICR_PROPBASER + 4, 8)).toBe(0n);
    f.rd.mmioWrite(0, GICR_PROPBASER + 4, 8, 0xffffffffffffffffn);
    expect(f.rd.propbaser).toBe(prop);
    expect(f.rd.mmioRead(0, GICR_TYPER + 2, 4)).toBe(0n);
  });

  it('rejects a vCPU index out of range with EINVAL', () => {
    const { rd } = makeFixture({ nrVcpus: 2 });
    expect(() => rd.mmioRead(2, GICR_CTLR, 4)).toThrow(ErrnoError);
    expect(() => rd.mmioWrite(-1, GICR_CTLR, 4, 1n)).toThrow(ErrnoError);
    expect(() => rd.pendbaser(5)).toThrow(/EINVAL/);
    expect(rd.lpisEnabled(7)).toBe(false);
  });
});

describe('GICR_INVLPIR / GICR_INVALLR / GICR_SYNCR', () => {
  it('INVLPIR re-reads one LPI (any target) only while EnableLPIs = 1, lower half only', () => {
    const f = makeFixture();
    f.setConfig(8200, 0xa1);
    expect(f.rd.acquire(8200, 3)).toBe(true);
    f.setConfig(8200, 0x40);
    f.disableLpis(0);
    f.rd.mmioWrite(0, GICR_INVLPIR, 4, 8200n);
    expect(f.rd.priority(8200)).toBe(0xa0); // dropped: EnableLPIs = 0
    f.enableLpis(0);
    f.rd.mmioWrite(0, GICR_INVLPIR + 4, 4, 8200n);
    expect(f.rd.priority(8200)).toBe(0xa0); // dropped: upper half (vPE) write
    f.rd.mmioWrite(0, GICR_INVLPIR, 8, (0xabcdn << 32n) | 8200n); // INTID in bits 31:0
    expect(f.rd.priority(8200)).toBe(0x40);
    expect(f.rd.enabled(8200)).toBe(false);
    expect(f.rd.mmioRead(0, GICR_INVLPIR, 8)).toBe(0n);
  });

  it('INVALLR re-reads the LPIs targeting this vCPU only', () => {
    const f = makeFixture();
    for (const [intid, v] of [[8192, 1], [8193, 1], [8194, 2]] as const) {
      f.setConfig(intid, 0x81);
      f.rd.acquire(intid, v);
      f.setConfig(intid, 0x20);
    }
    f.rd.mmioWrite(1, GICR_INVALLR + 4, 4, 1n); // upper half: dropped
    expect(f.rd.priority(8192)).toBe(0x80);
    f.rd.mmioWrite(1, GICR_INVALLR, 4, 0n);
    expect([f.rd.priority(8192), f.rd.priority(8193), f.rd.priority(8194)]).toEqual([0x20, 0x20, 0x80]);
    expect(f.rd.mmioRead(1, GICR_INVALLR, 4)).toBe(0n);
  });

  it('SYNCR reads 0 (never busy) and ignores writes', () => {
    const { rd } = makeFixture();
    expect(rd.mmioRead(0, GICR_SYNCR, 4)).toBe(0n);
    expect(rd.mmioWrite(0, GICR_SYNCR, 4, 1n)).toBe(true);
    expect(rd.mmioRead(0, GICR_SYNCR, 4)).toBe(0n);
    expect(rd.mmioRead(0, GICR_SYNCR, 8)).toBe(0n);
  });
});

describe('sanitisers (pure)', () => {
  it('map each shareability / cacheability encoding as KVM', () => {
    // Shareability: 0 -> 0, 1 -> 1, 2 -> 1, 3 -> 3.
    expect([0n, 1n, 2n, 3n].map((s) => (sanitisePropbaser(SH(s)) >> 10n) & 3n)).toEqual([0n, 1n, 1n, 3n]);
    // Inner: 0,1 -> 3; others kept.
    expect([0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n].map((c) => (sanitisePropbaser(IC(c)) >> 7n) & 7n))
      .toEqual([3n, 3n, 2n, 3n, 4n, 5n, 6n, 7n]);
    // Outer: 0,1 kept; others -> 0.
    expect([0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n].map((c) => (sanitisePendbaser(OC(c) | IC(3n)) >> 56n) & 7n))
      .toEqual([0n, 1n, 0n, 0n, 0n, 0n, 0n, 0n]);
  });

  it('are idempotent and never set a RES0 bit (property)', () => {
    const PROP_RES0 = (0x1fn << 59n) | (0xfn << 52n) | (3n << 5n);
    const PEND_RES0 = (1n << 63n) | (7n << 59n) | (0xfn << 52n) | (0xfn << 12n) | 0x7fn;
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (v) => {
        const p = sanitisePropbaser(v);
        const q = sanitisePendbaser(v);
        return sanitisePropbaser(p) === p && sanitisePendbaser(q) === q && (p & PROP_RES0) === 0n && (q & PEND_RES0) === 0n
          && ((p >> 10n) & 3n) !== 2n && ((q >> 7n) & 7n) > 1n;
      }),
    );
  });
});

describe('MPIDR helpers', () => {
  it("use KVM's default MPIDR (Aff0 = i & 0xf, Aff1 = (i >> 4) & 0xff, Aff2 = (i >> 12) & 0xff)", () => {
    expect(mpidrOf(0)).toBe(0);
    expect(mpidrOf(15)).toBe(0x0f);
    expect(mpidrOf(16)).toBe(0x0100); // Aff1 = 1, Aff0 = 0
    expect(mpidrOf(511)).toBe(0x1f0f); // 511 = 0x1ff: Aff1 = 0x1f, Aff0 = 0xf
    expect(mpidrOf(0x1234)).toBe(0x012304); // Aff2 = 1, Aff1 = 0x23, Aff0 = 4
  });

  it('invert for every vCPU and reject affinities no vCPU has', () => {
    const n = 512;
    for (let i = 0; i < n; i++) expect(vcpuOfMpidr(mpidrOf(i), n)).toBe(i);
    expect(vcpuOfMpidr(0x10, n)).toBe(-1); // Aff0 = 16: KVM never assigns it
    expect(vcpuOfMpidr(0x2000, n)).toBe(-1); // Aff1 = 0x20 -> vCPU 512, out of range
    expect(vcpuOfMpidr(0x01000000, n)).toBe(-1); // Aff3 != 0
    expect(vcpuOfMpidr(mpidrOf(4), 4)).toBe(-1);
    const { rd } = makeFixture({ nrVcpus: 20 });
    expect(rd.vcpuOfMpidr(0x0103)).toBe(19);
    expect(rd.mpidrOf(19)).toBe(0x0103);
  });
});

describe('isValidLpi', () => {
  it('follows 8192 <= INTID < 2^min(IDbits + 1, 16)', () => {
    const f = makeFixture({ enable: false });
    f.rd.mmioWrite(0, GICR_PROPBASER, 8, propbaserValue(PROP_BASE, 13)); // 14 bits -> < 16384
    expect([8191, 8192, 16383, 16384].map((i) => f.rd.isValidLpi(i))).toEqual([false, true, true, false]);
    f.rd.mmioWrite(0, GICR_PROPBASER, 8, propbaserValue(PROP_BASE, 12)); // 13 bits -> < 8192: none
    expect(f.rd.isValidLpi(8192)).toBe(false);
    f.rd.mmioWrite(0, GICR_PROPBASER, 8, propbaserValue(PROP_BASE, 31)); // capped at 16 bits
    expect([65535, 65536, 8192.5].map((i) => f.rd.isValidLpi(i))).toEqual([true, false, false]);
    f.rd.resetPropbaser(); // IDbits 0
    expect(f.rd.isValidLpi(8192)).toBe(false);
    expect(configAddr(8192)).toBe(PROP_BASE);
    expect(NO_VCPU).toBe(-1);
  });
});
