/**
 * Fuzz target "commands": a guest that writes random (mostly plausible, often hostile) 32-byte
 * commands into a real command queue in guest memory, rewrites ITS and redistributor registers,
 * sends MSIs and acknowledges LPIs. The ITS core must never throw, and its state must stay
 * self-consistent: every translation names an LPI that exists, whose target is a real vCPU or none.
 */
import { Its } from '../../src/its/its.js';
import { GITS_BASER0, GITS_CBASER, GITS_CREADR, GITS_CTLR, GITS_CWRITER } from '../../src/its/types.js';
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { LpiRedistributors } from '../../src/redist/lpi-system.js';
import { NO_VCPU } from '../../src/redist/types.js';
import type { Rng } from './rng.js';

const RAM_BASE = 0x4000_0000;
const RAM_SIZE = 0x80_0000;
const CMDQ = RAM_BASE;
const DEVICE_TABLE = RAM_BASE + 0x1_0000;
const COLLECTION_TABLE = RAM_BASE + 0x2_0000;
const PROP_TABLE = RAM_BASE + 0x3_0000;
const PEND_TABLES = RAM_BASE + 0x4_0000;
const ITT_AREA = RAM_BASE + 0x10_0000;
const NR_VCPUS = 4;
const VALID = 1n << 63n;
const OPCODES = [0x01, 0x03, 0x04, 0x05, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f];

export interface CommandsFuzzState {
  memory: ArrayBufferGuestMemory;
  lpis: LpiRedistributors;
  its: Its;
}

export function setupCommandsFuzz(): CommandsFuzzState {
  const memory = new ArrayBufferGuestMemory([{ gpa: RAM_BASE, size: RAM_SIZE }]);
  const lpis = new LpiRedistributors(memory, NR_VCPUS, { onDeliverable: () => {} });
  lpis.resetPropbaser();
  memory.fill(PROP_TABLE, 0x1_0000, 0xa1);
  lpis.mmioWrite(0, 0x70, 8, BigInt(PROP_TABLE) | 0x580n | 15n);
  for (let v = 0; v < NR_VCPUS; v++) {
    lpis.mmioWrite(v, 0x78, 8, BigInt(PEND_TABLES + v * 0x1_0000) | 0x580n);
    lpis.mmioWrite(v, 0x0, 4, 1n);
  }
  const its = new Its(memory, lpis, { maxEventPages: 4096 });
  its.setReg(GITS_BASER0, VALID | BigInt(DEVICE_TABLE));
  its.setReg(GITS_BASER0 + 8, VALID | BigInt(COLLECTION_TABLE));
  its.setReg(GITS_CBASER, VALID | BigInt(CMDQ) | 15n);
  its.setReg(GITS_CTLR, 1n);
  return { memory, lpis, its };
}

function randomCommand(rng: Rng, words: Uint32Array): void {
  const opcode = rng.chance(0.97) ? rng.pick(OPCODES) : rng.below(256);
  const devid = rng.id(16);
  const eventid = rng.id(rng.chance(0.8) ? 4 : 16);
  const intid = rng.chance(0.8) ? 8192 + rng.below(64) : rng.id(17);
  const icid = rng.chance(0.85) ? rng.below(6) : rng.id(16);
  const rd = rng.chance(0.85) ? rng.below(NR_VCPUS + 1) : rng.u32();
  words.fill(0);
  words[0] = opcode;
  words[1] = devid;
  switch (opcode) {
    case 0x08: { // MAPD: Size in DW1[4:0], ITT in DW2[51:8], V in DW2[63]
      words[2] = rng.chance(0.9) ? rng.below(6) : rng.below(32);
      const itt = rng.chance(0.9) ? ITT_AREA + rng.below(64) * 0x1000 : rng.u32() * 256;
      words[4] = itt & 0xffff_ff00;
      words[5] = (Math.floor(itt / 0x1_0000_0000) & 0xf_ffff) | (rng.chance(0.85) ? 0x8000_0000 : 0);
      break;
    }
    case 0x09: // MAPC: ICID DW2[15:0], RDbase DW2[47:16], V DW2[63]
      words[4] = (icid & 0xffff) | ((rd & 0xffff) << 16);
      words[5] = ((rd >>> 16) & 0xffff) | (rng.chance(0.85) ? 0x8000_0000 : 0);
      break;
    case 0x0e: // MOVALL: RDbase1 DW2[47:16], RDbase2 DW3[47:16]
      words[4] = (rd & 0xffff) << 16;
      words[6] = (rng.below(NR_VCPUS + 1) & 0xffff) << 16;
      break;
    default:
      words[2] = eventid;
      words[3] = intid;
      words[4] = icid & 0xffff;
      if (rng.chance(0.02)) for (let i = 0; i < 8; i++) words[i] = rng.u32();
  }
}

const words = new Uint32Array(8);

/** One fuzz step. */
export function commandsStep(s: CommandsFuzzState, rng: Rng): void {
  const { its, lpis, memory } = s;
  const r = rng.below(100);
  if (r < 80) {
    // A batch of commands at CWRITER, then one CWRITER write (as a driver posts them).
    let off = Number(its.getReg(GITS_CWRITER));
    const n = 1 + rng.below(8);
    for (let c = 0; c < n; c++) {
      randomCommand(rng, words);
      for (let i = 0; i < 8; i++) memory.writeU32(CMDQ + off + 4 * i, words[i]!);
      off = (off + 32) % 0x1_0000;
    }
    its.mmioWrite(GITS_CWRITER, rng.chance(0.9) ? 8 : 4, BigInt(off));
  } else if (r < 90) {
    its.signalMsi(rng.id(16), rng.id(4));
  } else if (r < 94) {
    lpis.ack(rng.below(NR_VCPUS), rng.chance(0.3));
  } else if (r < 96) {
    // Guest rewrites a register: disable/enable, BASER or CBASER (often hostile).
    const which = rng.below(4);
    if (which === 0) its.mmioWrite(GITS_CTLR, 4, BigInt(rng.below(2)));
    else if (which === 1) its.mmioWrite(GITS_BASER0 + 8 * rng.below(2), 8, BigInt(rng.u32()) | (BigInt(rng.u32()) << 32n));
    else if (which === 2) its.mmioWrite(GITS_CBASER, 8, (rng.chance(0.5) ? VALID : 0n) | BigInt(rng.chance(0.8) ? CMDQ : rng.u32() * 4096) | BigInt(rng.below(16)));
    else its.mmioWrite(rng.below(0x20000) & ~3, rng.pick([1, 2, 4, 8]), BigInt(rng.u32()));
  } else if (r < 98) {
    // Restore a sane configuration so that the run keeps exercising the mapped paths.
    its.mmioWrite(GITS_CTLR, 4, 0n);
    its.setReg(GITS_BASER0, VALID | BigInt(DEVICE_TABLE));
    its.setReg(GITS_BASER0 + 8, VALID | BigInt(COLLECTION_TABLE));
    its.setReg(GITS_CBASER, VALID | BigInt(CMDQ) | 15n);
    its.setReg(GITS_CTLR, 1n);
  } else {
    // Guest scribbles on the LPI configuration table, then invalidates through the redistributor.
    memory.writeU8(PROP_TABLE + rng.below(64), rng.u32() & 0xff);
    lpis.mmioWrite(rng.below(NR_VCPUS), 0xb0, 8, 0n);
  }
}

/** State invariants the fuzzer checks every few steps; returns a description of the first violation. */
export function commandsInvariant(s: CommandsFuzzState): string | null {
  const { its, lpis } = s;
  let problem: string | null = null;
  its.forEachDevice((devid) => {
    its.forEachEvent(devid, (eventid, intid) => {
      if (problem) return;
      if (!lpis.exists(intid)) problem = `device ${devid} event ${eventid} maps INTID ${intid}, which does not exist`;
      const t = lpis.target(intid);
      if (t !== NO_VCPU && (t < 0 || t >= NR_VCPUS)) problem = `INTID ${intid} targets vCPU ${t}`;
      if (its.translate(devid, eventid) !== intid) problem = `translate(${devid}, ${eventid}) disagrees with the table state`;
    });
  });
  const creadr = Number(its.getReg(GITS_CREADR));
  if (creadr % 32 !== 0) problem ??= `CREADR ${creadr} is not a command boundary`;
  return problem;
}
