/** CLEAR (0x04): clear the pending state of the LPI of (DeviceID, EventID). */
import type { CommandContext, CommandSpec } from './context.js';
import { CMD_OK, E_CLEAR_UNMAPPED_INTERRUPT } from './errors.js';
import { decodeEventCommand, type EventCommand } from './event-command.js';

export const decodeClear = decodeEventCommand;

export function executeClear(ctx: CommandContext, c: EventCommand): number {
  const slot = ctx.state.lookup(c.deviceId, c.eventId);
  if (slot < 0) return E_CLEAR_UNMAPPED_INTERRUPT;
  ctx.lpis.clearPending(ctx.state.intidAt(slot));
  return CMD_OK;
}

const scratch: EventCommand = { deviceId: 0, eventId: 0 };

export const CLEAR: CommandSpec = {
  opcode: 0x04,
  name: 'CLEAR',
  run: (ctx, cmd) => executeClear(ctx, decodeClear(cmd, scratch)),
};
