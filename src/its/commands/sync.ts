/** SYNC (0x05): a no-op, as in KVM: every command takes effect synchronously. */
import type { CommandSpec } from './context.js';
import { CMD_OK } from './errors.js';

export const SYNC: CommandSpec = {
  opcode: 0x05,
  name: 'SYNC',
  run: () => CMD_OK,
};
