/** INV (0x0C): re-read the configuration byte of one LPI (kvm-its-abi.md 6.3). */
import type { CommandContext, CommandSpec } from './context.js';
import { CMD_OK, E_INV_UNMAPPED_INTERRUPT } from './errors.js';
import { decodeEventCommand, type EventCommand } from './event-command.js';

export const decodeInv = decodeEventCommand;

export function executeInv(ctx: CommandContext, c: EventCommand): number {
  const slot = ctx.state.lookup(c.deviceId, c.eventId);
  if (slot < 0) return E_INV_UNMAPPED_INTERRUPT;
  ctx.lpis.invalidate(ctx.state.intidAt(slot));
  return CMD_OK;
}

const scratch: EventCommand = { deviceId: 0, eventId: 0 };

export const INV: CommandSpec = {
  opcode: 0x0c,
  name: 'INV',
  run: (ctx, cmd) => executeInv(ctx, decodeInv(cmd, scratch)),
};
