/**
 * ITS command encoders for the replay: rebuild the 32-byte command a guest put in its queue
 * from the fields QEMU traced (gicv3_its_cmd_*), for traces that come without a dump of the
 * queue. Layouts: its-model.md 2.1/2.2 (Linux its_encode_*), KVM's decoder kvm-its-abi.md 6.2.
 *
 * A command is four little-endian u64 DW0..DW3, held here as eight u32 words
 * [DW0.lo, DW0.hi, DW1.lo, DW1.hi, DW2.lo, DW2.hi, DW3.lo, DW3.hi] (no BigInt).
 * QEMU does not trace INVALL's ICID nor SYNC's RDbase; the caller supplies them when known.
 */
import { ItsOpcode } from '../vmm/its-command.js';
import type { TracedCommandFields } from './qemu-trace.js';

export const ITS_COMMAND_BYTES = 32;

// One opcode table for the VMM side (the guest driver's encoders and this replay).
export { ItsOpcode };

const NAME_BY_OPCODE = new Map<number, string>(Object.entries(ItsOpcode).map(([k, v]) => [v, k]));

/** Command name for an opcode (UNKNOWN for anything that is not a physical ITS command). */
export function commandName(opcode: number): string {
  return NAME_BY_OPCODE.get(opcode) ?? 'UNKNOWN';
}

export type CommandWords = Uint32Array;

const TWO_24 = 0x100_0000;
const TWO_16 = 0x1_0000;

// ---- field encoders (one per command field, at Linux's bit positions) ----

/** DW0[7:0] */
export function encodeOpcode(w: CommandWords, opcode: number): void {
  w[0] = (w[0]! & ~0xff) | (opcode & 0xff);
}
/** DW0[63:32] */
export function encodeDeviceId(w: CommandWords, devid: number): void {
  w[1] = devid >>> 0;
}
/** DW1[31:0] */
export function encodeEventId(w: CommandWords, eventid: number): void {
  w[2] = eventid >>> 0;
}
/** DW1[63:32] */
export function encodePhysId(w: CommandWords, pintid: number): void {
  w[3] = pintid >>> 0;
}
/** DW1[4:0]: EventID bits - 1. */
export function encodeSize(w: CommandWords, size: number): void {
  w[2] = (w[2]! & ~0x1f) | (size & 0x1f);
}
/** DW2[51:8]: the ITT address >> 8 (the value QEMU traces as ITT_addr). */
export function encodeIttShifted(w: CommandWords, ittShifted: number): void {
  w[4] = (w[4]! & 0xff) | (((ittShifted % TWO_24) << 8) >>> 0);
  w[5] = (w[5]! & ~0xfffff) | (Math.floor(ittShifted / TWO_24) & 0xfffff);
}
/** DW2[15:0] */
export function encodeCollection(w: CommandWords, icid: number): void {
  w[4] = (w[4]! & ~0xffff) | (icid & 0xffff);
}
/** DW2[51:16] (or DW3[51:16] for MOVALL's second target): RDbase = processor number with PTA = 0. */
export function encodeTarget(w: CommandWords, rdbase: number, dw: 2 | 3 = 2): void {
  const lo = dw * 2;
  w[lo] = (w[lo]! & 0xffff) | (((rdbase % TWO_16) << 16) >>> 0);
  w[lo + 1] = (w[lo + 1]! & ~0xfffff) | (Math.floor(rdbase / TWO_16) & 0xfffff);
}
/** DW2[63] */
export function encodeValid(w: CommandWords, valid: boolean): void {
  w[5] = valid ? (w[5]! | 0x8000_0000) >>> 0 : w[5]! & 0x7fff_ffff;
}

// ---- field decoders (for queue dumps) ----

export const decodeOpcode = (w: CommandWords): number => w[0]! & 0xff;
export const decodeDeviceId = (w: CommandWords): number => w[1]!;
export const decodeEventId = (w: CommandWords): number => w[2]!;
export const decodeCollection = (w: CommandWords): number => w[4]! & 0xffff;
export const decodeTarget = (w: CommandWords): number => (w[4]! >>> 16) + (w[5]! & 0xfffff) * TWO_16;

// ---- one builder per command ----

/** What a builder needs: the traced fields, plus ICID/RDbase that QEMU leaves out of its trace. */
export interface CommandInput {
  fields: TracedCommandFields;
  /** INVALL's ICID (not traced); default 0. */
  icid?: number;
  /** SYNC's RDbase (not traced); default 0. */
  rdbase?: number;
}

type CommandBuilder = (w: CommandWords, input: CommandInput) => void;

const devEvent: CommandBuilder = (w, { fields }) => {
  encodeDeviceId(w, fields.deviceId ?? 0);
  encodeEventId(w, fields.eventId ?? 0);
};

const BUILDERS: Record<string, CommandBuilder> = {
  MOVI: (w, input) => {
    devEvent(w, input);
    encodeCollection(w, input.fields.icid ?? 0);
  },
  INT: devEvent,
  CLEAR: devEvent,
  DISCARD: devEvent,
  INV: devEvent,
  SYNC: (w, input) => encodeTarget(w, input.fields.rdbase ?? input.rdbase ?? 0),
  MAPD: (w, { fields }) => {
    encodeDeviceId(w, fields.deviceId ?? 0);
    encodeSize(w, fields.size ?? 0);
    encodeIttShifted(w, fields.ittAddrShifted ?? 0);
    encodeValid(w, (fields.valid ?? 0) !== 0);
  },
  MAPC: (w, { fields }) => {
    encodeCollection(w, fields.icid ?? 0);
    encodeTarget(w, fields.rdbase ?? 0);
    encodeValid(w, (fields.valid ?? 0) !== 0);
  },
  MAPTI: (w, input) => {
    devEvent(w, input);
    encodePhysId(w, input.fields.pintid ?? 0);
    encodeCollection(w, input.fields.icid ?? 0);
  },
  MAPI: (w, input) => {
    devEvent(w, input);
    encodeCollection(w, input.fields.icid ?? 0);
  },
  INVALL: (w, input) => encodeCollection(w, input.fields.icid ?? input.icid ?? 0),
  MOVALL: (w, { fields }) => {
    encodeTarget(w, fields.rdbase ?? 0, 2);
    encodeTarget(w, fields.rdbase2 ?? 0, 3);
  },
};

/**
 * Encodes one command into `out` (8 words, zeroed first as Linux zeroes the slot).
 * `opcode` is the one QEMU traced in process_command; fields of unknown commands are not encoded.
 */
export function encodeCommand(out: CommandWords, opcode: number, name: string, input: CommandInput): CommandWords {
  out.fill(0);
  encodeOpcode(out, opcode);
  const builder = BUILDERS[name];
  if (builder !== undefined && ItsOpcode[name as keyof typeof ItsOpcode] === opcode) builder(out, input);
  return out;
}

/** Reads command words from bytes (e.g. a queue dump) at a byte offset. */
export function commandWordsAt(bytes: Uint8Array, offset: number, out: CommandWords = new Uint32Array(8)): CommandWords {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < 8; i++) out[i] = dv.getUint32(offset + i * 4, true);
  return out;
}
