/** The (DeviceID, EventID) pair that MOVI, INT, CLEAR, INV and DISCARD name. */
import { cmdDeviceId, cmdEventId, cmdIcid } from './fields.js';

export interface EventCommand {
  deviceId: number;
  eventId: number;
}

export function decodeEventCommand(cmd: Uint32Array, out: EventCommand): EventCommand {
  out.deviceId = cmdDeviceId(cmd);
  out.eventId = cmdEventId(cmd);
  return out;
}

export interface CollectionCommand {
  icid: number;
}

export function decodeCollectionCommand(cmd: Uint32Array, out: CollectionCommand): CollectionCommand {
  out.icid = cmdIcid(cmd);
  return out;
}
