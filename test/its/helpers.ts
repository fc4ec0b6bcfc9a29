/**
 * Test fixture: a VM with guest RAM (ArrayBufferGuestMemory), the real LPI system and one
 * ITS, plus hand-written command encoders (kvm-its-abi.md 6.2; independent of src/its's
 * field extractors) and a queue writer that puts commands into guest RAM and writes
 * GITS_CWRITER as a guest would.
 */
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { Its, type ItsOptions } from '../../src/its/its.js';
import type { ItsChangeListener } from '../../src/its/table-state.js';
import { GITS_BASER0, GITS_CBASER, GITS_CREADR, GITS_CTLR, GITS_CWRITER } from '../../src/its/types.js';
import { LpiRedistributors } from '../../src/redist/lpi-system.js';

export const GITS_BASER1 = GITS_BASER0 + 8;

/** Guest RAM: one region of 16 MiB at 1 GiB. */
export const RAM_BASE = 0x4000_0000;
export const RAM_SIZE = 0x100_0000;
export const RAM_END = RAM_BASE + RAM_SIZE;
/** Layout inside RAM (all 64 KiB aligned). */
export const CMDQ = RAM_BASE; // 64 KiB command queue (CBASER.Size = 15)
export const DEVICE_TABLE = RAM_BASE + 0x1_0000; // flat, 1 page: 8192 DTEs
export const COLLECTION_TABLE = RAM_BASE + 0x2_0000; // 1 page: 8192 CTEs
export const PROP_TABLE = RAM_BASE + 0x3_0000; // LPI configuration table
export const PEND_TABLES = RAM_BASE + 0x4_0000; // + vcpu * 64 KiB
export const ITT_BASE = RAM_BASE + 0x10_0000; // ITTs from here, 64 KiB apart by convention

export const VALID = 1n << 63n;
export const NR_VCPUS = 4;
/** Configuration byte used by default: priority 0xa0, enabled. */
export const DEFAULT_CONFIG = 0xa1;

export interface Vm {
  memory: ArrayBufferGuestMemory;
  lpis: LpiRedistributors;
  its: Its;
  q: CommandQueue;
  deliverable: number[];
}

export interface VmOptions extends ItsOptions {
  nrVcpus?: number;
  /** PROPBASER.IDbits (INTIDs < 2^(idbits+1), capped at 16 bits). Default 15. */
  propIdBits?: number;
  /** Leave the ITS disabled and its BASER/CBASER unprogrammed. */
  bare?: boolean;
  /** Leave EnableLPIs = 0 on every vCPU. */
  lpisDisabled?: boolean;
  /** Fill the LPI configuration table with this byte (default DEFAULT_CONFIG). */
  config?: number;
}

export function makeMemory(): ArrayBufferGuestMemory {
  return new ArrayBufferGuestMemory([{ gpa: RAM_BASE, size: RAM_SIZE }]);
}

export function flatBaser(addr: number, pages = 1, valid = true): bigint {
  return (valid ? VALID : 0n) | BigInt(addr) | BigInt(pages - 1);
}

export function cbaserValue(addr: number, pages4k = 16, valid = true): bigint {
  return (valid ? VALID : 0n) | BigInt(addr) | BigInt(pages4k - 1);
}

export function makeVm(options: VmOptions = {}): Vm {
  const memory = makeMemory();
  const deliverable: number[] = [];
  const nrVcpus = options.nrVcpus ?? NR_VCPUS;
  const lpis = new LpiRedistributors(memory, nrVcpus, { onDeliverable: (v) => deliverable.push(v) });
  lpis.resetPropbaser();
  memory.fill(PROP_TABLE, 0x1_0000, options.config ?? DEFAULT_CONFIG);
  lpis.mmioWrite(0, 0x70, 8, BigInt(PROP_TABLE) | 0x580n | BigInt(options.propIdBits ?? 15));
  for (let v = 0; v < nrVcpus; v++) {
    lpis.mmioWrite(v, 0x78, 8, BigInt(PEND_TABLES + v * 0x1_0000) | 0x580n);
    if (!options.lpisDisabled) lpis.mmioWrite(v, 0x0, 4, 1n);
  }
  const its = new Its(memory, lpis, options);
  const q = new CommandQueue(its, memory, CMDQ, 0x1_0000);
  if (!options.bare) {
    its.setReg(GITS_BASER0, flatBaser(DEVICE_TABLE));
    its.setReg(GITS_BASER1, flatBaser(COLLECTION_TABLE));
    its.setReg(GITS_CBASER, cbaserValue(CMDQ));
    its.setReg(GITS_CTLR, 1n);
  }
  return { memory, lpis, its, q, deliverable };
}

// ---------------------------------------------------------------------------------------
// Command encoders: four u64 words DW0..DW3 (kvm-its-abi.md 6.2)
// ---------------------------------------------------------------------------------------

export type Command = readonly [bigint, bigint, bigint, bigint];
const b = (x: number | bigint): bigint => BigInt(x);

/** DW0 = opcode | DeviceID << 32. */
function dw0(opcode: number, devid = 0): bigint {
  return b(opcode) | (b(devid >>> 0) << 32n);
}

export const cmd = {
  movi: (devid: number, eventid: number, icid: number): Command => [dw0(0x01, devid), b(eventid >>> 0), b(icid), 0n],
  int: (devid: number, eventid: number): Command => [dw0(0x03, devid), b(eventid >>> 0), 0n, 0n],
  clear: (devid: number, eventid: number): Command => [dw0(0x04, devid), b(eventid >>> 0), 0n, 0n],
  sync: (rd = 0): Command => [dw0(0x05), 0n, b(rd) << 16n, 0n],
  /** size = EventID bits - 1 (5-bit field); itt is 256-byte aligned (bits 51:8). */
  mapd: (devid: number, size: number, itt: number, valid = true): Command => [
    dw0(0x08, devid), b(size & 0x1f), (b(itt) & 0x000f_ffff_ffff_ff00n) | (valid ? VALID : 0n), 0n,
  ],
  /** RDbase in DW2[47:16] (32 bits as KVM reads it). */
  mapc: (icid: number, rd: number, valid = true): Command => [dw0(0x09), 0n, b(icid) | (b(rd >>> 0) << 16n) | (valid ? VALID : 0n), 0n],
  mapti: (devid: number, eventid: number, intid: number, icid: number): Command => [
    dw0(0x0a, devid), b(eventid >>> 0) | (b(intid >>> 0) << 32n), b(icid), 0n,
  ],
  mapi: (devid: number, eventid: number, icid: number): Command => [dw0(0x0b, devid), b(eventid >>> 0), b(icid), 0n],
  inv: (devid: number, eventid: number): Command => [dw0(0x0c, devid), b(eventid >>> 0), 0n, 0n],
  invall: (icid: number): Command => [dw0(0x0d), 0n, b(icid), 0n],
  movall: (rd1: number, rd2: number): Command => [dw0(0x0e), 0n, b(rd1 >>> 0) << 16n, b(rd2 >>> 0) << 16n],
  discard: (devid: number, eventid: number): Command => [dw0(0x0f, devid), b(eventid >>> 0), 0n, 0n],
  raw: (opcode: number): Command => [b(opcode), 0n, 0n, 0n],
};

/** Writes commands at GITS_CWRITER's position in guest RAM and then moves CWRITER, as a driver does. */
export class CommandQueue {
  constructor(
    private readonly its: Its,
    private readonly memory: ArrayBufferGuestMemory,
    public base: number,
    public size: number,
  ) {}

  get creadr(): number {
    return Number(this.its.getReg(GITS_CREADR));
  }
  get cwriter(): number {
    return Number(this.its.getReg(GITS_CWRITER));
  }

  /** Writes the commands into guest RAM after CWRITER (wrapping); returns the new CWRITER value. */
  stage(...commands: Command[]): number {
    let off = this.cwriter;
    for (const c of commands) {
      for (let i = 0; i < 4; i++) this.memory.writeU64Big(this.base + off + 8 * i, c[i]!);
      off = (off + 32) % this.size;
    }
    return off;
  }

  /** Writes the commands after CWRITER (wrapping) and moves CWRITER past them (one MMIO write). */
  submit(...commands: Command[]): void {
    this.its.mmioWrite(GITS_CWRITER, 8, BigInt(this.stage(...commands)));
  }

  /** Submits each command with its own CWRITER write (as Linux does for each command + SYNC). */
  run(...commands: Command[]): void {
    for (const c of commands) this.submit(c);
  }
}

/** Counter value helpers. */
export function errors(its: Its, name: string): number {
  return its.stats.commandErrors[name] ?? 0;
}
export function commands(its: Its, name: string): number {
  return its.stats.commands[name] ?? 0;
}

/** A 64 KiB ITT area for device n. */
export function ittOf(n: number): number {
  return ITT_BASE + n * 0x1_0000;
}

/**
 * A change listener that records each call as a string ('dev D', 'ev D/E', 'coll', 'all'),
 * in order, into `changes`.
 */
export function recordingListener(): { changes: string[]; listener: ItsChangeListener } {
  const changes: string[] = [];
  const listener: ItsChangeListener = {
    deviceChanged: (d) => changes.push(`dev ${d}`),
    eventChanged: (d, e) => changes.push(`ev ${d}/${e}`),
    collectionsChanged: () => changes.push('coll'),
    allChanged: () => changes.push('all'),
  };
  return { changes, listener };
}
