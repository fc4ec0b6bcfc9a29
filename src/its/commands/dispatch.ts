/** Dispatch table of the physical ITS commands, indexed by command number. */
import { CLEAR } from './clear.js';
import type { CommandSpec } from './context.js';
import { DISCARD } from './discard.js';
import { INT } from './int.js';
import { INV } from './inv.js';
import { INVALL } from './invall.js';
import { MAPC } from './mapc.js';
import { MAPD } from './mapd.js';
import { MAPI, MAPTI } from './mapti.js';
import { MOVALL } from './movall.js';
import { MOVI } from './movi.js';
import { SYNC } from './sync.js';

export const ALL_COMMANDS: readonly CommandSpec[] = [MOVI, INT, CLEAR, SYNC, MAPD, MAPC, MAPTI, MAPI, INV, INVALL, MOVALL, DISCARD];

/** 256 entries; null for numbers KVM ignores (including every GICv4 V* command). */
export const COMMAND_TABLE: readonly (CommandSpec | null)[] = (() => {
  const table: (CommandSpec | null)[] = new Array<CommandSpec | null>(256).fill(null);
  for (const c of ALL_COMMANDS) table[c.opcode] = c;
  return table;
})();

export const OPCODES = {
  MOVI: 0x01, INT: 0x03, CLEAR: 0x04, SYNC: 0x05, MAPD: 0x08, MAPC: 0x09, MAPTI: 0x0a, MAPI: 0x0b,
  INV: 0x0c, INVALL: 0x0d, MOVALL: 0x0e, DISCARD: 0x0f,
} as const;
