/**
 * The table ABIs, one entry per revision, selected by GITS_IIDR.Revision (KVM's
 * its_table_abi_versions[]: save_tables, restore_tables, commit). Only revision 0 exists
 * (NR_ITS_ABIS = 1), with 8-byte DTEs, ITEs and CTEs.
 */
import { Errno, ErrnoError } from '../../util/errno.js';
import type { ItsTableState } from '../table-state.js';
import { restoreTables, type RestoreSummary } from './restore.js';
import type { ItsTableSaver, SaveOptions, SaveResult } from './save.js';

export interface ItsTableAbi {
  readonly revision: number;
  readonly dteSize: number;
  readonly iteSize: number;
  readonly cteSize: number;
  /** ITS_SAVE_TABLES: device table + ITTs, then collection table. Throws TableError. */
  saveTables(state: ItsTableState, saver: ItsTableSaver, options?: SaveOptions): SaveResult;
  /** ITS_RESTORE_TABLES: collection table, then device table + ITTs. Throws TableError; state unchanged then. */
  restoreTables(state: ItsTableState, saver: ItsTableSaver): RestoreSummary;
  /** KVM abi->commit: the BASER value with this ABI's Entry_Size field (bits 52:48 = size - 1). */
  commit(baser: bigint, type: 'device' | 'collection'): bigint;
}

const ENTRY_SIZE_MASK = 0x1fn << 48n;

const abiRev0: ItsTableAbi = {
  revision: 0,
  dteSize: 8,
  iteSize: 8,
  cteSize: 8,
  saveTables(state, saver, options) {
    return saver.save(state, options);
  },
  restoreTables(state, saver) {
    // The state mutators report every change; restore records its own image instead.
    saver.mute();
    try {
      return restoreTables(state, (r) => saver.restored(state, r));
    } finally {
      saver.unmute();
    }
  },
  commit(baser, type) {
    const size = BigInt((type === 'device' ? this.dteSize : this.cteSize) - 1);
    return (baser & ~ENTRY_SIZE_MASK) | (size << 48n);
  },
};

export const ITS_TABLE_ABIS: readonly ItsTableAbi[] = [abiRev0];

export function itsTableAbi(revision: number): ItsTableAbi | undefined {
  return ITS_TABLE_ABIS[revision];
}

/** The ABI of a state's selected revision; -EINVAL when none (KVM refuses such an IIDR write). */
export function abiOf(state: ItsTableState): ItsTableAbi {
  const abi = itsTableAbi(state.abiRevision);
  if (abi === undefined) throw new ErrnoError(Errno.EINVAL, `no table ABI revision ${state.abiRevision}`);
  return abi;
}

/**
 * The table ABI attached to one ITS: installs the incremental saver as the ITS's change
 * listener and runs save/restore with the ABI its IIDR selects.
 */
export class ItsTables {
  constructor(
    readonly state: ItsTableState,
    readonly saver: ItsTableSaver,
  ) {
    state.setChangeListener(saver);
  }

  save(options?: SaveOptions): SaveResult {
    return abiOf(this.state).saveTables(this.state, this.saver, options);
  }

  restore(): RestoreSummary {
    return abiOf(this.state).restoreTables(this.state, this.saver);
  }

  /** Detaches the saver from the ITS. */
  detach(): void {
    this.state.setChangeListener(null);
  }
}
