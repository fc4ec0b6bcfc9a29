/**
 * A replay target: a vitsd (in process or over the wire) together with the VMM-side view of the
 * guest RAM it runs on. The replayer writes what the guest wrote (command queue, configuration
 * bytes, device-table L1 entries) through `memory` and drives the ITS through `target`.
 */
import type { GuestMemory, GuestRegion } from '../memory/guest-memory.js';
import type { VitsdTarget } from '../vmm/types.js';

/** Counters for cross-checks, as GET_STATS reports them. */
export interface EndpointStats {
  /** Commands processed by name, plus "total". */
  commands: Record<string, number>;
  /** Command errors by reason. */
  commandErrors: Record<string, number>;
}

export interface ReplayEndpoint {
  readonly target: VitsdTarget;
  /** The same guest pages the target uses (shared memory for a daemon). */
  readonly memory: GuestMemory;
  /** Short description for reports ("in-process", "daemon pid 1234 /tmp/x.sock"). */
  readonly description: string;
  /** Statistics, when the target can report them. */
  stats?(): Promise<EndpointStats>;
  /** Releases the target and the memory. */
  close(): Promise<void>;
}

/** Creates a fresh, empty vitsd with `regions` of zeroed guest RAM already attached (SET_MEM_TABLE). */
export type EndpointFactory = (regions: readonly GuestRegion[]) => Promise<ReplayEndpoint>;
