/**
 * Test fixture: guest RAM at [0, RAM_SIZE), an LpiRedistributors with a recording hook,
 * and helpers that program the registers through guest MMIO as a guest would.
 */
import { RecordingGuestMemory } from './recording-memory.js';
import { LpiRedistributors, type LpiRedistributorsOptions } from '../../../src/redist/lpi-system.js';
import { GICR_CTLR, GICR_PENDBASER, GICR_PROPBASER } from '../../../src/redist/registers.js';
import { LPI_BASE } from '../../../src/redist/types.js';

export const RAM_SIZE = 0x100000; // 1 MiB
/** LPI configuration table (4 KiB aligned); with 16 ID bits it spans 0x10000..0x1E000. */
export const PROP_BASE = 0x10000;
/** vCPU v's pending table (64 KiB aligned): 0x40000, 0x50000, 0x60000, ... */
export function pendBase(vcpu: number): number {
  return 0x40000 + vcpu * 0x10000;
}
/** Address of an LPI's configuration byte: PROPBASER.PA + (INTID - 8192). */
export function configAddr(intid: number): number {
  return PROP_BASE + (intid - LPI_BASE);
}
/** Address of the byte holding an INTID's pending bit in vCPU v's table: PA + INTID / 8. */
export function pendAddr(vcpu: number, intid: number): number {
  return pendBase(vcpu) + Math.floor(intid / 8);
}

/** PROPBASER as Linux writes it: PA | InnerShareable | RaWaWb | (ID bits - 1). */
export function propbaserValue(pa: number, idBitsField: number): bigint {
  return BigInt(pa) | (1n << 10n) | (7n << 7n) | BigInt(idBitsField);
}
/** PENDBASER as Linux writes it: PA | InnerShareable | RaWaWb, optional PTZ. */
export function pendbaserValue(pa: number, ptz = false): bigint {
  return BigInt(pa) | (1n << 10n) | (7n << 7n) | (ptz ? 1n << 62n : 0n);
}

export interface Fixture {
  mem: RecordingGuestMemory;
  rd: LpiRedistributors;
  /** onDeliverable calls, in order. */
  notified: number[];
  /** onEnableLpisChanged calls, in order. */
  enableChanges: [number, boolean][];
  notifyCount(vcpu: number): number;
  setConfig(intid: number, byte: number): void;
  setPendBit(vcpu: number, intid: number, on: boolean): void;
  pendBit(vcpu: number, intid: number): boolean;
  enableLpis(vcpu: number): void;
  disableLpis(vcpu: number): void;
}

export interface FixtureOptions extends LpiRedistributorsOptions {
  nrVcpus?: number;
  /** Program PROPBASER (16 ID bits) and every PENDBASER (PTZ = 0) before returning. Default true. */
  program?: boolean;
  /** Enable LPIs on every vCPU. Default true (implies program). */
  enable?: boolean;
}

export function makeFixture(opts: FixtureOptions = {}): Fixture {
  const nrVcpus = opts.nrVcpus ?? 4;
  const mem = new RecordingGuestMemory([{ gpa: 0, size: RAM_SIZE }]);
  const notified: number[] = [];
  const enableChanges: [number, boolean][] = [];
  const rd = new LpiRedistributors(mem, nrVcpus, {
    onDeliverable: (v) => notified.push(v),
    onEnableLpisChanged: (v, e) => enableChanges.push([v, e]),
  }, opts.hasIts === undefined ? {} : { hasIts: opts.hasIts });
  const f: Fixture = {
    mem,
    rd,
    notified,
    enableChanges,
    notifyCount: (v) => notified.filter((x) => x === v).length,
    setConfig: (intid, byte) => mem.poke(configAddr(intid), byte),
    setPendBit: (vcpu, intid, on) => {
      const a = pendAddr(vcpu, intid);
      const bit = 1 << (intid % 8);
      mem.poke(a, on ? mem.peek(a) | bit : mem.peek(a) & ~bit);
    },
    pendBit: (vcpu, intid) => (mem.peek(pendAddr(vcpu, intid)) & (1 << (intid % 8))) !== 0,
    enableLpis: (vcpu) => void rd.mmioWrite(vcpu, GICR_CTLR, 4, 1n),
    disableLpis: (vcpu) => void rd.mmioWrite(vcpu, GICR_CTLR, 4, 0n),
  };
  const program = opts.program ?? true;
  const enable = opts.enable ?? true;
  if (program || enable) {
    rd.resetPropbaser();
    rd.mmioWrite(0, GICR_PROPBASER, 8, propbaserValue(PROP_BASE, 15));
    for (let v = 0; v < nrVcpus; v++) rd.mmioWrite(v, GICR_PENDBASER, 8, pendbaserValue(pendBase(v)));
  }
  if (enable) for (let v = 0; v < nrVcpus; v++) f.enableLpis(v);
  return f;
}
