/**
 * ITS command encoders, guest side: one small encoder per field, at the bit positions the
 * Linux driver uses (drivers/irqchip/irq-gic-v3-its.c, its_encode_*; its-model.md 2.1), and
 * one builder per command that zeroes the block and applies the encoders, as Linux does.
 *
 * A command is four little-endian 64-bit words DW0..DW3. This is VMM/guest-side code that
 * runs once per command, not per MSI, so the words are BigInts for clarity.
 */

/** A 32-byte ITS command block. */
export type ItsCommandBlock = [bigint, bigint, bigint, bigint];

export const ITS_COMMAND_SIZE = 32;

export const ItsOpcode = {
  MOVI: 0x01,
  INT: 0x03,
  CLEAR: 0x04,
  SYNC: 0x05,
  MAPD: 0x08,
  MAPC: 0x09,
  MAPTI: 0x0a,
  MAPI: 0x0b,
  INV: 0x0c,
  INVALL: 0x0d,
  MOVALL: 0x0e,
  DISCARD: 0x0f,
} as const;
export type ItsOpcodeName = keyof typeof ItsOpcode;

const OPCODE_NAMES = new Map<number, ItsOpcodeName>(
  (Object.entries(ItsOpcode) as [ItsOpcodeName, number][]).map(([k, v]) => [v, k]),
);

export function opcodeName(opcode: number): string {
  return OPCODE_NAMES.get(opcode) ?? `UNKNOWN(0x${opcode.toString(16)})`;
}

export function emptyCommand(): ItsCommandBlock {
  return [0n, 0n, 0n, 0n];
}

function fieldMask(hi: number, lo: number): bigint {
  return ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
}

/** Linux its_mask_encode: replaces bits [hi:lo] of dw with val (truncated to the field). */
export function maskEncode(cmd: ItsCommandBlock, dw: 0 | 1 | 2 | 3, value: bigint, hi: number, lo: number): void {
  const mask = fieldMask(hi, lo);
  cmd[dw] = (cmd[dw] & ~mask) | ((value << BigInt(lo)) & mask);
}

/** Reads bits [hi:lo] of dw (used by tests and by the command dumper). */
export function maskDecode(cmd: ItsCommandBlock, dw: 0 | 1 | 2 | 3, hi: number, lo: number): bigint {
  return (cmd[dw] & fieldMask(hi, lo)) >> BigInt(lo);
}

// ---- field encoders (its_encode_*) ----
export const encodeCmd = (cmd: ItsCommandBlock, opcode: number): void => maskEncode(cmd, 0, BigInt(opcode), 7, 0);
export const encodeDevid = (cmd: ItsCommandBlock, devid: number): void => maskEncode(cmd, 0, BigInt(devid), 63, 32);
export const encodeEventId = (cmd: ItsCommandBlock, eventId: number): void => maskEncode(cmd, 1, BigInt(eventId), 31, 0);
export const encodePhysId = (cmd: ItsCommandBlock, physId: number): void => maskEncode(cmd, 1, BigInt(physId), 63, 32);
/** MAPD Size: number of EventID bits minus one. */
export const encodeSize = (cmd: ItsCommandBlock, size: number): void => maskEncode(cmd, 1, BigInt(size), 4, 0);
/** MAPD ITT_addr: the 256-byte aligned address >> 8 in DW2[51:8]. */
export const encodeItt = (cmd: ItsCommandBlock, ittAddr: number): void => maskEncode(cmd, 2, BigInt(ittAddr) >> 8n, 51, 8);
export const encodeValid = (cmd: ItsCommandBlock, valid: boolean): void => maskEncode(cmd, 2, valid ? 1n : 0n, 63, 63);
/** RDbase: Linux passes target_address (Processor_Number << 16 when PTA = 0) and stores it >> 16. */
export const encodeTarget = (cmd: ItsCommandBlock, targetAddress: bigint): void => maskEncode(cmd, 2, targetAddress >> 16n, 51, 16);
export const encodeCollection = (cmd: ItsCommandBlock, icid: number): void => maskEncode(cmd, 2, BigInt(icid), 15, 0);
/** MOVALL RDbase2 in DW3. */
export const encodeTarget2 = (cmd: ItsCommandBlock, targetAddress: bigint): void => maskEncode(cmd, 3, targetAddress >> 16n, 51, 16);

// ---- builders (its_build_*_cmd): each starts from a zeroed block ----
export function buildMapd(devid: number, size: number, ittAddr: number, valid: boolean): ItsCommandBlock {
  const cmd = emptyCommand();
  encodeCmd(cmd, ItsOpcode.MAPD);
  encodeDevid(cmd, devid);
  encodeSize(cmd, size);
  encodeItt(cmd, ittAddr);
  encodeValid(cmd, valid);
  return cmd;
}

export function buildMapc(icid: number, targetAddress: bigint, valid: boolean): ItsCommandBlock {
  const cmd = emptyCommand();
  encodeCmd(cmd, ItsOpcode.MAPC);
  encodeCollection(cmd, icid);
  encodeTarget(cmd, targetAddress);
  encodeValid(cmd, valid);
  return cmd;
}

export function buildMapti(devid: number, eventId: number, physId: number, icid: number): ItsCommandBlock {
  const cmd = emptyCommand();
  encodeCmd(cmd, ItsOpcode.MAPTI);
  encodeDevid(cmd, devid);
  encodeEventId(cmd, eventId);
  encodePhysId(cmd, physId);
  encodeCollection(cmd, icid);
  return cmd;
}

export function buildMovi(devid: number, eventId: number, newIcid: number): ItsCommandBlock {
  const cmd = emptyCommand();
  encodeCmd(cmd, ItsOpcode.MOVI);
  encodeDevid(cmd, devid);
  encodeEventId(cmd, eventId);
  encodeCollection(cmd, newIcid);
  return cmd;
}

/** DISCARD, INV, INT and CLEAR share one layout: DeviceID and EventID. */
function buildDevEvent(opcode: number, devid: number, eventId: number): ItsCommandBlock {
  const cmd = emptyCommand();
  encodeCmd(cmd, opcode);
  encodeDevid(cmd, devid);
  encodeEventId(cmd, eventId);
  return cmd;
}
export const buildDiscard = (devid: number, eventId: number): ItsCommandBlock => buildDevEvent(ItsOpcode.DISCARD, devid, eventId);
export const buildInv = (devid: number, eventId: number): ItsCommandBlock => buildDevEvent(ItsOpcode.INV, devid, eventId);
export const buildInt = (devid: number, eventId: number): ItsCommandBlock => buildDevEvent(ItsOpcode.INT, devid, eventId);
export const buildClear = (devid: number, eventId: number): ItsCommandBlock => buildDevEvent(ItsOpcode.CLEAR, devid, eventId);

export function buildInvall(icid: number): ItsCommandBlock {
  const cmd = emptyCommand();
  encodeCmd(cmd, ItsOpcode.INVALL);
  encodeCollection(cmd, icid);
  return cmd;
}

export function buildSync(targetAddress: bigint): ItsCommandBlock {
  const cmd = emptyCommand();
  encodeCmd(cmd, ItsOpcode.SYNC);
  encodeTarget(cmd, targetAddress);
  return cmd;
}

export function buildMovall(fromTarget: bigint, toTarget: bigint): ItsCommandBlock {
  const cmd = emptyCommand();
  encodeCmd(cmd, ItsOpcode.MOVALL);
  encodeTarget(cmd, fromTarget);
  encodeTarget2(cmd, toTarget);
  return cmd;
}

/** Human-readable one-liner (logs, the trace of what the reference guest posted). */
export function describeCommand(cmd: ItsCommandBlock): string {
  const op = Number(maskDecode(cmd, 0, 7, 0));
  const devid = maskDecode(cmd, 0, 63, 32);
  const event = maskDecode(cmd, 1, 31, 0);
  const icid = maskDecode(cmd, 2, 15, 0);
  const rd = maskDecode(cmd, 2, 51, 16);
  switch (op) {
    case ItsOpcode.MAPD:
      return `MAPD dev=0x${devid.toString(16)} size=${maskDecode(cmd, 1, 4, 0)} itt=0x${(maskDecode(cmd, 2, 51, 8) << 8n).toString(16)} V=${maskDecode(cmd, 2, 63, 63)}`;
    case ItsOpcode.MAPC:
      return `MAPC icid=${icid} rd=${rd} V=${maskDecode(cmd, 2, 63, 63)}`;
    case ItsOpcode.MAPTI:
      return `MAPTI dev=0x${devid.toString(16)} event=${event} intid=${maskDecode(cmd, 1, 63, 32)} icid=${icid}`;
    case ItsOpcode.MOVI:
      return `MOVI dev=0x${devid.toString(16)} event=${event} icid=${icid}`;
    case ItsOpcode.SYNC:
      return `SYNC rd=${rd}`;
    case ItsOpcode.INVALL:
      return `INVALL icid=${icid}`;
    case ItsOpcode.MOVALL:
      return `MOVALL rd1=${rd} rd2=${maskDecode(cmd, 3, 51, 16)}`;
    default:
      return `${opcodeName(op)} dev=0x${devid.toString(16)} event=${event}`;
  }
}
