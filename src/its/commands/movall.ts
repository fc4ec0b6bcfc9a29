/**
 * MOVALL (0x0E): retarget LPIs from RDbase1 to RDbase2 (kvm-its-abi.md 6.3). ITEs and
 * collections are unchanged, so nothing of it reaches the saved tables (3.9).
 */
import type { CommandContext, CommandSpec } from './context.js';
import { CMD_OK, E_MOVALL_PROCNUM_OOR } from './errors.js';
import { cmdTarget, cmdTarget2 } from './fields.js';

export interface MovallCommand {
  from: number;
  to: number;
}

export function decodeMovall(cmd: Uint32Array, out: MovallCommand): MovallCommand {
  out.from = cmdTarget(cmd);
  out.to = cmdTarget2(cmd);
  return out;
}

export function executeMovall(ctx: CommandContext, c: MovallCommand): number {
  const nr = ctx.lpis.nrVcpus;
  if (c.from >= nr || c.to >= nr) return E_MOVALL_PROCNUM_OOR;
  if (c.from === c.to) return CMD_OK;
  ctx.lpis.moveAll(c.from, c.to);
  return CMD_OK;
}

const scratch: MovallCommand = { from: 0, to: 0 };

export const MOVALL: CommandSpec = {
  opcode: 0x0e,
  name: 'MOVALL',
  run: (ctx, cmd) => executeMovall(ctx, decodeMovall(cmd, scratch)),
};
