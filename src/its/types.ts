/**
 * Contract of one emulated ITS (src/its), as used by the attribute layer (src/attr), the
 * daemon and the tests. KVM semantics throughout (../shared/spec/kvm-its-abi.md sections
 * 1.5-1.7 and 6, ../shared/spec/its-model.md sections 1-2 and 4).
 *
 * Guest-driven paths (MMIO, command queue, MSIs) never throw: errors are counted and
 * dropped as KVM drops them. Userspace paths (GRP_ITS_REGS) throw ErrnoError with KVM's errno.
 */

/** Size of the ITS MMIO region: control frame + translation frame. */
export const ITS_FRAME_SIZE = 0x20000;
/** Offset of GITS_TRANSLATER from the ITS base (the MSI doorbell). */
export const GITS_TRANSLATER = 0x10040;

export const GITS_CTLR = 0x0000;
export const GITS_IIDR = 0x0004;
export const GITS_TYPER = 0x0008;
export const GITS_CBASER = 0x0080;
export const GITS_CWRITER = 0x0088;
export const GITS_CREADR = 0x0090;
export const GITS_BASER0 = 0x0100;
export const GITS_PIDR2 = 0xffe8;

/** Why a translation or command was dropped (GET_STATS keys). */
export type DropReason =
  | 'its_disabled'
  | 'unmapped_device'
  | 'event_out_of_range'
  | 'unmapped_event'
  | 'unmapped_collection'
  | 'no_vcpu'
  | 'lpis_disabled';

export type CommandName =
  | 'MOVI' | 'INT' | 'CLEAR' | 'SYNC' | 'MAPD' | 'MAPC' | 'MAPTI' | 'MAPI'
  | 'INV' | 'INVALL' | 'MOVALL' | 'DISCARD' | 'UNKNOWN';

export interface ItsStats {
  /** Commands processed, by name, plus "total". */
  commands: Record<string, number>;
  /** Command errors by reason, e.g. "MAPTI_PHYSICALID_OOR", "cmd_read_fault". */
  commandErrors: Record<string, number>;
  /** (added by src/its) signalMsi results: 1 (delivered). */
  msiDelivered: number;
  /** (added by src/its) signalMsi calls that returned 0 or a negative errno. */
  msiDropped: number;
  /** (added by src/its) msiDropped by reason (its_disabled and lpis_disabled are the -EBUSY ones). */
  msiDroppedByReason: Record<DropReason, number>;
}

/** Result codes of signalMsi (KVM_SIGNAL_MSI): 1 delivered, 0 dropped, negative errno. */
export interface TranslationResult {
  intid: number;
  vcpu: number;
}

export interface ItsDevice {
  /** GITS_* MMIO read at offset inside the 128 KiB region; RAZ for unimplemented offsets. */
  mmioRead(offset: number, size: number): bigint;
  /** GITS_* MMIO write; WI for unimplemented offsets; a CWRITER write processes the queue. */
  mmioWrite(offset: number, size: number, value: bigint): void;

  /** KVM_DEV_ARM_VGIC_GRP_ITS_REGS get (64-bit value; throws ErrnoError as KVM). */
  getReg(offset: number): bigint;
  /** KVM_DEV_ARM_VGIC_GRP_ITS_REGS set (throws ErrnoError as KVM). */
  setReg(offset: number, value: bigint): void;
  /** Whether KVM_HAS_DEVICE_ATTR would accept GRP_ITS_REGS/offset (throws as KVM otherwise). */
  hasReg(offset: number): void;

  readonly enabled: boolean;

  /**
   * KVM_SIGNAL_MSI for (devid, eventid): 1 = now pending at its target, 0 = dropped by the
   * guest's mapping (counted by reason), negative errno (-EBUSY: ITS disabled or target
   * has EnableLPIs = 0). Hot path: no allocation.
   */
  signalMsi(devid: number, eventid: number): number;
  /**
   * Pure lookup: LPI INTID for (devid, eventid) or 0 when not mapped. The target vCPU is
   * lpis.target(intid). Hot path: no allocation.
   */
  translate(devid: number, eventid: number): number;

  /** KVM_DEV_ARM_ITS_CTRL_RESET. */
  reset(): void;

  readonly stats: ItsStats;
}
