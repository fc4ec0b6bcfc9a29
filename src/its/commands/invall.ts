/** INVALL (0x0D): re-read the configuration of every LPI targeting the collection's vCPU. */
import type { CommandContext, CommandSpec } from './context.js';
import { CMD_OK, E_INVALL_UNMAPPED_COLLECTION } from './errors.js';
import { decodeCollectionCommand, type CollectionCommand } from './event-command.js';

export const decodeInvall = decodeCollectionCommand;

export function executeInvall(ctx: CommandContext, c: CollectionCommand): number {
  const target = ctx.state.collectionTarget(c.icid);
  if (target < 0) return E_INVALL_UNMAPPED_COLLECTION;
  if (target < ctx.lpis.nrVcpus) ctx.lpis.invalidateAll(target);
  return CMD_OK;
}

const scratch: CollectionCommand = { icid: 0 };

export const INVALL: CommandSpec = {
  opcode: 0x0d,
  name: 'INVALL',
  run: (ctx, cmd) => executeInvall(ctx, decodeInvall(cmd, scratch)),
};
