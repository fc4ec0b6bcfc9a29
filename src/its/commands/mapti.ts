/**
 * MAPTI (0x0A) and MAPI (0x0B): create the ITE (DeviceID, EventID) -> (pINTID, ICID)
 * (vgic_its_cmd_handle_mapi; kvm-its-abi.md 6.3). MAPI is MAPTI with pINTID = EventID.
 */
import { ABI_ENTRY_SIZE } from '../constants.js';
import { COLLECTION_NOT_MAPPED } from '../table-state.js';
import { locateEntryIn } from '../tables.js';
import { ADD_EFAULT, ADD_ENOMEM, ADD_EXISTS, ADD_OK, COLLECTION_ABSENT } from '../translation.js';
import { vcpuOf, type CommandContext, type CommandSpec } from './context.js';
import {
  CMD_OK, E_EFAULT, E_ENOMEM, E_MAPC_COLLECTION_OOR, E_MAPTI_ID_OOR, E_MAPTI_PHYSICALID_OOR, E_MAPTI_UNMAPPED_DEVICE,
} from './errors.js';
import { cmdDeviceId, cmdEventId, cmdIcid, cmdPhysicalId } from './fields.js';

export interface MaptiCommand {
  deviceId: number;
  eventId: number;
  intid: number;
  icid: number;
}

export function decodeMapti(cmd: Uint32Array, out: MaptiCommand): MaptiCommand {
  out.deviceId = cmdDeviceId(cmd);
  out.eventId = cmdEventId(cmd);
  out.intid = cmdPhysicalId(cmd);
  out.icid = cmdIcid(cmd);
  return out;
}

export function decodeMapi(cmd: Uint32Array, out: MaptiCommand): MaptiCommand {
  out.deviceId = cmdDeviceId(cmd);
  out.eventId = cmdEventId(cmd);
  out.intid = out.eventId;
  out.icid = cmdIcid(cmd);
  return out;
}

export function executeMapti(ctx: CommandContext, c: MaptiCommand): number {
  const state = ctx.state;
  if (!state.isDeviceMapped(c.deviceId)) return E_MAPTI_UNMAPPED_DEVICE;
  // vgic_its_check_event_id: EventID < 2^bits and its ITT slot is in guest memory.
  if (c.eventId >>> state.deviceEventIdBits(c.deviceId) !== 0) return E_MAPTI_ID_OOR;
  if (!ctx.memory.contains(state.deviceIttAddr(c.deviceId) + c.eventId * ABI_ENTRY_SIZE, ABI_ENTRY_SIZE)) return E_MAPTI_ID_OOR;
  if (!ctx.lpis.isValidLpi(c.intid)) return E_MAPTI_PHYSICALID_OOR;
  // An existing mapping is UNPREDICTABLE: KVM leaves it unchanged and succeeds.
  if (state.lookup(c.deviceId, c.eventId) >= 0) return CMD_OK;

  let target = state.collectionTarget(c.icid);
  let created = false;
  if (target === COLLECTION_ABSENT) {
    if (locateEntryIn(ctx.memory, ctx.collectionTable, c.icid) < 0) return E_MAPC_COLLECTION_OOR;
    state.addCollection(c.icid, COLLECTION_NOT_MAPPED); // an unmapped collection
    target = COLLECTION_NOT_MAPPED;
    created = true;
  }
  const r = state.addEvent(c.deviceId, c.eventId, c.intid, c.icid, vcpuOf(ctx.lpis, target));
  if (r === ADD_OK || r === ADD_EXISTS) return CMD_OK;
  if (created) state.removeCollection(c.icid);
  return r === ADD_ENOMEM ? E_ENOMEM : r === ADD_EFAULT ? E_EFAULT : E_MAPTI_PHYSICALID_OOR;
}

const scratch: MaptiCommand = { deviceId: 0, eventId: 0, intid: 0, icid: 0 };

export const MAPTI: CommandSpec = {
  opcode: 0x0a,
  name: 'MAPTI',
  run: (ctx, cmd) => executeMapti(ctx, decodeMapti(cmd, scratch)),
};

export const MAPI: CommandSpec = {
  opcode: 0x0b,
  name: 'MAPI',
  run: (ctx, cmd) => executeMapti(ctx, decodeMapi(cmd, scratch)),
};
