/** MAPC (0x09): map an ICID to a vCPU (V=1), or free the collection (V=0) (kvm-its-abi.md 6.3). */
import { locateEntryIn } from '../tables.js';
import type { CommandContext, CommandSpec } from './context.js';
import { CMD_OK, E_MAPC_COLLECTION_OOR, E_MAPC_PROCNUM_OOR } from './errors.js';
import { cmdIcid, cmdTarget, cmdValid } from './fields.js';

export interface MapcCommand {
  icid: number;
  /** RDbase: a vCPU id (GITS_TYPER.PTA = 0). */
  target: number;
  valid: boolean;
}

export function decodeMapc(cmd: Uint32Array, out: MapcCommand): MapcCommand {
  out.icid = cmdIcid(cmd);
  out.target = cmdTarget(cmd);
  out.valid = cmdValid(cmd);
  return out;
}

export function executeMapc(ctx: CommandContext, c: MapcCommand): number {
  const state = ctx.state;
  if (!c.valid) {
    // Current KVM does not check RDbase for V=0. The collection's ITEs lose it.
    state.removeCollection(c.icid);
    return CMD_OK;
  }
  if (c.target >= ctx.lpis.nrVcpus) return E_MAPC_PROCNUM_OOR; // kvm_get_vcpu_by_id
  if (!state.hasCollection(c.icid)) {
    if (locateEntryIn(ctx.memory, ctx.collectionTable, c.icid) < 0) return E_MAPC_COLLECTION_OOR;
    state.addCollection(c.icid, c.target);
  } else {
    // Existing (possibly unmapped) collection: retarget it and every LPI its ITEs map.
    state.retargetCollection(c.icid, c.target);
  }
  return CMD_OK;
}

const scratch: MapcCommand = { icid: 0, target: 0, valid: false };

export const MAPC: CommandSpec = {
  opcode: 0x09,
  name: 'MAPC',
  run: (ctx, cmd) => executeMapc(ctx, decodeMapc(cmd, scratch)),
};
