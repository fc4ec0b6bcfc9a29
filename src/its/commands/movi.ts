/** MOVI (0x01): move an ITE to another collection; its LPI follows (kvm-its-abi.md 6.3). */
import { vcpuOf, type CommandContext, type CommandSpec } from './context.js';
import { CMD_OK, E_MOVI_UNMAPPED_COLLECTION, E_MOVI_UNMAPPED_INTERRUPT } from './errors.js';
import { cmdDeviceId, cmdEventId, cmdIcid } from './fields.js';

export interface MoviCommand {
  deviceId: number;
  eventId: number;
  icid: number;
}

export function decodeMovi(cmd: Uint32Array, out: MoviCommand): MoviCommand {
  out.deviceId = cmdDeviceId(cmd);
  out.eventId = cmdEventId(cmd);
  out.icid = cmdIcid(cmd);
  return out;
}

export function executeMovi(ctx: CommandContext, c: MoviCommand): number {
  const state = ctx.state;
  const slot = state.lookup(c.deviceId, c.eventId);
  if (slot < 0) return E_MOVI_UNMAPPED_INTERRUPT;
  // Both the current and the new collection must exist and be mapped.
  if (state.iteCollectionTarget(slot) < 0) return E_MOVI_UNMAPPED_COLLECTION;
  const target = state.collectionTarget(c.icid);
  if (target < 0) return E_MOVI_UNMAPPED_COLLECTION;
  state.setEventCollection(c.deviceId, c.eventId, slot, c.icid);
  ctx.lpis.setTarget(state.intidAt(slot), vcpuOf(ctx.lpis, target));
  return CMD_OK;
}

const scratch: MoviCommand = { deviceId: 0, eventId: 0, icid: 0 };

export const MOVI: CommandSpec = {
  opcode: 0x01,
  name: 'MOVI',
  run: (ctx, cmd) => executeMovi(ctx, decodeMovi(cmd, scratch)),
};
