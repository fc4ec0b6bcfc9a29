/**
 * Live migration of the interrupt controller between two vitsd instances, the way QEMU
 * migrates a KVM vITS (protocol.md "Suspend and resume"; kvm-its-abi.md 5):
 *
 *   before the stop   destination: memory table, SET_VCPUS, vgic-v3 + INIT, each ITS + INIT
 *                     (QEMU builds the machine before loading state); optional full RAM pass
 *                     while the source runs, with the dirty log cleared first
 *   downtime          source: SUSPEND, SAVE_PENDING_TABLES (vgic-v3), ITS_SAVE_TABLES (each
 *                     ITS), register reads; RAM: the pages marked in the dirty log (or all of
 *                     it); destination: redistributor registers, then per ITS the registers
 *                     but CTLR, ITS_RESTORE_TABLES, GITS_CTLR; RESUME
 *   after             MSIs refused during the window are replayed on the destination
 *
 * Every phase is timed; the downtime breakdown is the part between SUSPEND and RESUME.
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import type { MsiRouter } from './device-model.js';
import {
  readGicState,
  restoreItsTables,
  saveItsTables,
  savePendingTables,
  writeItsCtlr,
  writeItsRegistersExceptCtlr,
  writeRedistState,
  type GicState,
  type ItsRestoreOrder,
} from './gic-state.js';
import { createGic, type GicDevices } from './gic-setup.js';
import { clearDirtyLog, copyAllRam, copyDirtyPages, countDirtyPages, type CopyStats } from './ram-copy.js';
import type { VitsdTarget } from './types.js';
import type { VmLayout } from './vm-layout.js';

export interface MigrationSource {
  readonly target: VitsdTarget;
  /** The VMM's mapping of the source VM's RAM. */
  readonly memory: GuestMemory;
  readonly devices: GicDevices;
  /**
   * The dirty log the source daemon writes (SET_LOG_BASE) and the VMM's own guest-memory
   * writes mark too. null: no dirty tracking, so all of RAM is copied inside the downtime.
   */
  readonly dirtyLog: Uint8Array | null;
}

export interface MigrationDestination {
  readonly target: VitsdTarget;
  /** The VMM's mapping of the destination's RAM file (same region table as the source). */
  readonly memory: GuestMemory;
  /** Gives the destination daemon its guest memory (SET_MEM_TABLE, or setMemory in process). */
  attachMemory(): Promise<void>;
}

export type MigrationPhase =
  | 'prepare-destination'
  | 'precopy'
  | 'suspend'
  | 'save-pending-tables'
  | 'save-its-tables'
  | 'read-registers'
  | 'copy-ram'
  | 'restore-redistributors'
  | 'restore-its-registers'
  | 'restore-its-tables'
  | 'enable-its'
  | 'resume'
  | 'replay-msis';

export const DOWNTIME_PHASES: readonly MigrationPhase[] = [
  'suspend',
  'save-pending-tables',
  'save-its-tables',
  'read-registers',
  'copy-ram',
  'restore-redistributors',
  'restore-its-registers',
  'restore-its-tables',
  'enable-its',
  'resume',
];

export interface PhaseTiming {
  phase: MigrationPhase;
  ms: number;
  downtime: boolean;
}

export interface MigrationOptions {
  readonly layout: VmLayout;
  /** Full RAM pass while the source runs (needs a dirty log). Default: true when there is one. */
  readonly precopy?: boolean;
  readonly itsRestoreOrder?: ItsRestoreOrder;
  /** Send the register reads/writes of a phase back to back (default true; see gic-state inOrder). */
  readonly pipelined?: boolean;
  /** MSIs refused with -EBUSY during the window are kept and replayed on the destination. */
  readonly msiRouter?: MsiRouter;
  /** Destination already prepared (devices created) by the caller. */
  readonly destinationDevices?: GicDevices;
  /** Called as each phase starts (progress output). */
  readonly onPhase?: (phase: MigrationPhase) => void;
  /** Called after the final RAM pass, before anything is restored (tests compare RAM here). */
  readonly afterRamCopy?: () => void | Promise<void>;
  /** Called after the full pass, while the source still runs (tests dirty pages here). */
  readonly afterPrecopy?: () => void | Promise<void>;
}

export interface MigrationResult {
  readonly state: GicState;
  readonly destinationDevices: GicDevices;
  readonly phases: PhaseTiming[];
  readonly downtimeMs: number;
  readonly totalMs: number;
  readonly ram: {
    readonly precopyBytes: number;
    /** Pages marked dirty when the final pass started (-1 without a dirty log). */
    readonly dirtyPages: number;
    readonly finalPassPages: number;
    readonly finalPassBytes: number;
  };
  readonly msisReplayed: number;
}

export async function migrate(source: MigrationSource, destination: MigrationDestination, options: MigrationOptions): Promise<MigrationResult> {
  const phases: PhaseTiming[] = [];
  const t0 = performance.now();
  const timed = async <T>(phase: MigrationPhase, fn: () => Promise<T> | T): Promise<T> => {
    options.onPhase?.(phase);
    const start = performance.now();
    try {
      return await fn();
    } finally {
      const ms = performance.now() - start;
      const existing = phases.find((p) => p.phase === phase);
      if (existing) existing.ms += ms;
      else phases.push({ phase, ms, downtime: DOWNTIME_PHASES.includes(phase) });
    }
  };
  const { layout } = options;
  const pipelined = options.pipelined ?? true;
  const log = source.dirtyLog;

  // ---- before the stop ----
  const destinationDevices =
    options.destinationDevices ??
    (await timed('prepare-destination', async () => {
      await destination.attachMemory();
      return createGic(destination.target, layout);
    }));

  let precopyBytes = 0;
  const precopy = (options.precopy ?? log !== null) && log !== null;
  if (precopy && log) {
    await timed('precopy', () => {
      clearDirtyLog(log);
      precopyBytes = copyAllRam(source.memory, destination.memory).bytes;
    });
    await options.afterPrecopy?.();
  }

  // ---- downtime ----
  const downtime = async (): Promise<{ state: GicState; dirtyPages: number; finalPass: CopyStats }> => {
    await timed('suspend', () => source.target.suspend());
    await timed('save-pending-tables', () => savePendingTables(source.target, source.devices.vgic));
    await timed('save-its-tables', async () => {
      for (const its of source.devices.its) await saveItsTables(source.target, its);
    });
    const state = await timed('read-registers', () => readGicState(source.target, source.devices, layout.itsBases, layout.nrVcpus, pipelined));

    let dirtyPages = -1;
    const finalPass = await timed('copy-ram', () => {
      if (log) dirtyPages = countDirtyPages(log);
      if (precopy && log) return copyDirtyPages(source.memory, destination.memory, log);
      const all = copyAllRam(source.memory, destination.memory);
      if (log) clearDirtyLog(log);
      return all;
    });
    await options.afterRamCopy?.();

    await timed('restore-redistributors', () => writeRedistState(destination.target, destinationDevices.vgic, state.redist, pipelined));
    for (let i = 0; i < destinationDevices.its.length; i++) {
      const its = destinationDevices.its[i]!;
      const regs = state.its[i]!;
      await timed('restore-its-registers', () => writeItsRegistersExceptCtlr(destination.target, its, regs, options.itsRestoreOrder ?? 'kvm', pipelined));
      await timed('restore-its-tables', () => restoreItsTables(destination.target, its));
      await timed('enable-its', () => writeItsCtlr(destination.target, its, regs));
    }
    await timed('resume', () => destination.target.resume());
    return { state, dirtyPages, finalPass };
  };

  options.msiRouter?.hold();
  const downStart = performance.now();
  let outcome: Awaited<ReturnType<typeof downtime>>;
  try {
    outcome = await downtime();
  } catch (e) {
    await rollBack(source, options.msiRouter);
    throw e;
  }
  const downtimeMs = performance.now() - downStart;
  const { state, dirtyPages, finalPass } = outcome;

  // ---- after ----
  let msisReplayed = 0;
  if (options.msiRouter) {
    const router = options.msiRouter;
    const before = router.stats.replayed;
    await timed('replay-msis', () => router.release(destination.target));
    msisReplayed = router.stats.replayed - before;
  }

  return {
    state,
    destinationDevices,
    phases,
    downtimeMs,
    totalMs: performance.now() - t0,
    ram: { precopyBytes, dirtyPages, finalPassPages: finalPass.pages, finalPassBytes: finalPass.bytes },
    msisReplayed,
  };
}

/**
 * A migration that failed inside the downtime leaves the VM on the source: it is resumed
 * there (its state is intact: the saves only wrote guest RAM) and held MSIs are replayed to it.
 */
async function rollBack(source: MigrationSource, router: MsiRouter | undefined): Promise<void> {
  try {
    await source.target.resume();
  } catch {
    // The original failure is what the caller needs to see; a dead source cannot resume.
  }
  if (router?.isHeld) await router.release(source.target);
}

/** "suspend 0.1 ms, save-its-tables 0.4 ms, ..." for the downtime phases. */
export function formatDowntime(result: MigrationResult): string {
  return result.phases
    .filter((p) => p.downtime)
    .map((p) => `${p.phase} ${p.ms.toFixed(2)} ms`)
    .join(', ');
}
