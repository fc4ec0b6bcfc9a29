/**
 * What a command handler may touch: the ITS's translation state, the VM-wide LPI system,
 * guest memory, the decoded BASERs, and the table writer for the DTE/ITE zeroing KVM does.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { LpiSystem } from '../../redist/types.js';
import type { BaserGeometry } from '../tables.js';
import type { TranslationState } from '../translation.js';

export interface CommandContext {
  readonly state: TranslationState;
  readonly lpis: LpiSystem;
  readonly memory: GuestMemory;
  /** Decoded GITS_BASER0 / GITS_BASER1. */
  readonly deviceTable: BaserGeometry;
  readonly collectionTable: BaserGeometry;
  /** Zeroes the DTE slot of devid in guest RAM (MAPD V=0). Returns CMD_OK or E_DTE_WRITE_FAULT. */
  clearDeviceEntry(devid: number): number;
  /** Zeroes the ITE slot of (devid, eventid) in guest RAM (DISCARD). Returns CMD_OK or E_ITE_WRITE_FAULT. */
  clearEventEntry(devid: number, eventid: number): number;
}

/** One command: its number, its name (stats), and decode + execute on the raw words. */
export interface CommandSpec {
  readonly opcode: number;
  readonly name: string;
  /** Returns CMD_OK or an error code from ./errors.ts. Never allocates on success paths. */
  run(ctx: CommandContext, cmd: Uint32Array): number;
}

/** The vCPU an LPI targets for a collection target value (NO_VCPU unless it is an existing vCPU). */
export function vcpuOf(lpis: LpiSystem, target: number): number {
  return target >= 0 && target < lpis.nrVcpus ? target : -1;
}
