/**
 * Named field extractors of a 32-byte ITS command (kvm-its-abi.md 6.2, its-model.md 2.1).
 * The command is held as 8 little-endian u32 words: word 2k is DWk[31:0], word 2k+1 is
 * DWk[63:32]. No BigInt, no allocation.
 */

/** Number of u32 words in a command. */
export const COMMAND_WORDS = 8;
const TWO_POW_32 = 0x1_0000_0000;

/** DW0[7:0]: command number. */
export function cmdOpcode(c: Uint32Array): number {
  return c[0]! & 0xff;
}
/** DW0[63:32]: DeviceID (32 bits as KVM reads it; range-checked by the handlers). */
export function cmdDeviceId(c: Uint32Array): number {
  return c[1]!;
}
/** DW1[31:0]: EventID. */
export function cmdEventId(c: Uint32Array): number {
  return c[2]!;
}
/** DW1[63:32]: pINTID (MAPTI). */
export function cmdPhysicalId(c: Uint32Array): number {
  return c[3]!;
}
/** DW1[4:0]: MAPD Size (EventID bits - 1). */
export function cmdSize(c: Uint32Array): number {
  return c[2]! & 0x1f;
}
/** DW2[15:0]: ICID. */
export function cmdIcid(c: Uint32Array): number {
  return c[4]! & 0xffff;
}
/** DW2[51:8] << 8: ITT address (MAPD), 256-byte aligned. */
export function cmdIttAddr(c: Uint32Array): number {
  return (c[5]! & 0xfffff) * TWO_POW_32 + ((c[4]! & 0xffff_ff00) >>> 0);
}
/** DW2[47:16]: RDbase / target processor number (MAPC, MOVALL RDbase1), 32 bits as KVM reads it. */
export function cmdTarget(c: Uint32Array): number {
  return ((c[4]! >>> 16) | ((c[5]! & 0xffff) << 16)) >>> 0;
}
/** DW3[47:16]: MOVALL RDbase2. */
export function cmdTarget2(c: Uint32Array): number {
  return ((c[6]! >>> 16) | ((c[7]! & 0xffff) << 16)) >>> 0;
}
/** DW2[63]: V. */
export function cmdValid(c: Uint32Array): boolean {
  return c[5]! >>> 31 === 1;
}
