/**
 * DISCARD (0x0F): free an ITE whose collection is mapped, and zero its slot in the ITT
 * (the 2024 fix; kvm-its-abi.md 6.3, 3.9).
 */
import type { CommandContext, CommandSpec } from './context.js';
import { E_DISCARD_UNMAPPED_INTERRUPT } from './errors.js';
import { decodeEventCommand, type EventCommand } from './event-command.js';

export const decodeDiscard = decodeEventCommand;

export function executeDiscard(ctx: CommandContext, c: EventCommand): number {
  const state = ctx.state;
  const slot = state.lookup(c.deviceId, c.eventId);
  if (slot < 0 || state.iteCollectionTarget(slot) < 0) return E_DISCARD_UNMAPPED_INTERRUPT;
  state.removeEvent(c.deviceId, c.eventId, slot); // drops the LPI reference (and its pending state with the last one)
  return ctx.clearEventEntry(c.deviceId, c.eventId);
}

const scratch: EventCommand = { deviceId: 0, eventId: 0 };

export const DISCARD: CommandSpec = {
  opcode: 0x0f,
  name: 'DISCARD',
  run: (ctx, cmd) => executeDiscard(ctx, decodeDiscard(cmd, scratch)),
};
