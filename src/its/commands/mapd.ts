/** MAPD (0x08): map a DeviceID to an ITT, or unmap it (kvm-its-abi.md 6.3). */
import { VITS_TYPER_IDBITS } from '../constants.js';
import { locateEntryIn } from '../tables.js';
import type { CommandContext, CommandSpec } from './context.js';
import { CMD_OK, E_MAPD_DEVICE_OOR, E_MAPD_ITTSIZE_OOR } from './errors.js';
import { cmdDeviceId, cmdIttAddr, cmdSize, cmdValid } from './fields.js';

export interface MapdCommand {
  deviceId: number;
  valid: boolean;
  /** Size + 1. */
  eventIdBits: number;
  ittAddr: number;
}

export function decodeMapd(cmd: Uint32Array, out: MapdCommand): MapdCommand {
  out.deviceId = cmdDeviceId(cmd);
  out.valid = cmdValid(cmd);
  out.eventIdBits = cmdSize(cmd) + 1;
  out.ittAddr = cmdIttAddr(cmd);
  return out;
}

export function executeMapd(ctx: CommandContext, c: MapdCommand): number {
  // The DTE slot must exist, even for V=0 (its address is where V=0 writes the zero DTE).
  if (locateEntryIn(ctx.memory, ctx.deviceTable, c.deviceId) < 0) return E_MAPD_DEVICE_OOR;
  if (c.valid && c.eventIdBits > VITS_TYPER_IDBITS) return E_MAPD_ITTSIZE_OOR;
  if (!c.valid) {
    // Unmapping a device that does not exist is not an error.
    ctx.state.unmapDevice(c.deviceId);
    return ctx.clearDeviceEntry(c.deviceId);
  }
  // An existing device is destroyed first (all its ITEs freed), then recreated.
  ctx.state.mapDevice(c.deviceId, c.ittAddr, c.eventIdBits);
  return CMD_OK;
}

const scratch: MapdCommand = { deviceId: 0, valid: false, eventIdBits: 0, ittAddr: 0 };

export const MAPD: CommandSpec = {
  opcode: 0x08,
  name: 'MAPD',
  run: (ctx, cmd) => executeMapd(ctx, decodeMapd(cmd, scratch)),
};
