/**
 * INT (0x03): make the LPI of (DeviceID, EventID) pending, as an MSI would
 * (vgic_its_trigger_msi; the ITS is enabled whenever commands run).
 */
import type { CommandContext, CommandSpec } from './context.js';
import { CMD_OK, E_INT_LPIS_DISABLED, E_INT_UNMAPPED_INTERRUPT } from './errors.js';
import { decodeEventCommand, type EventCommand } from './event-command.js';

export const decodeInt = decodeEventCommand;

export function executeInt(ctx: CommandContext, c: EventCommand): number {
  const state = ctx.state;
  const slot = state.lookup(c.deviceId, c.eventId);
  if (slot < 0) return E_INT_UNMAPPED_INTERRUPT;
  const vcpu = state.iteCollectionTarget(slot);
  if (vcpu < 0 || vcpu >= ctx.lpis.nrVcpus) return E_INT_UNMAPPED_INTERRUPT;
  if (!ctx.lpis.lpisEnabled(vcpu)) return E_INT_LPIS_DISABLED;
  ctx.lpis.setPending(state.intidAt(slot));
  return CMD_OK;
}

const scratch: EventCommand = { deviceId: 0, eventId: 0 };

export const INT: CommandSpec = {
  opcode: 0x03,
  name: 'INT',
  run: (ctx, cmd) => executeInt(ctx, decodeInt(cmd, scratch)),
};
