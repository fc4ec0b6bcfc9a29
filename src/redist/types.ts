/**
 * Contract of the VM-wide LPI side of the redistributors (src/redist), as used by the ITS
 * core (src/its), the attribute layer (src/attr) and the daemon.
 *
 * LPIs form one VM-wide namespace shared by every ITS (KVM: dist->lpi_xa). Each LPI that
 * exists has: a reference count (how many ITEs map it, across all ITSes), a target vCPU
 * (or none while its collection is unmapped), a cached configuration byte (priority and
 * enable, read from the LPI configuration table at creation and on invalidation only), and
 * a pending latch. KVM semantics throughout (../shared/spec/kvm-its-abi.md section 2).
 *
 * Nothing in here throws on guest-controlled input: guest RAM faults while reading the
 * property or pending tables are counted and treated as KVM treats them.
 */

/** No target vCPU (the LPI's collection is not mapped). */
export const NO_VCPU = -1;
/** First LPI INTID. */
export const LPI_BASE = 8192;
/** KVM's LPI INTID space is 16 bits (INTERRUPT_ID_BITS_ITS). */
export const MAX_LPI_INTID_BITS = 16;
/** ACK_LPI's "no LPI" answer. */
export const SPURIOUS_INTID = 1023;

export interface AckResult {
  /** INTID acknowledged (or peeked); SPURIOUS_INTID when none. */
  intid: number;
  /** Its priority (byte & 0xfc); 0xff when none. */
  priority: number;
}

export interface LpiHooks {
  /**
   * The vCPU went from "no deliverable LPI" to "has a deliverable LPI" (or was re-armed:
   * see protocol.md "LPI delivery"). The daemon writes its notify fd. Called synchronously;
   * must not call back into the LPI system.
   */
  onDeliverable(vcpu: number): void;
  /**
   * (Added by src/redist.) GICR_CTLR.EnableLPIs of `vcpu` changed. KVM drops its ITS
   * translation caches when EnableLPIs goes 1 -> 0 (vgic_its_invalidate_all_caches); an ITS
   * that caches translations must do the same (or re-check lpisEnabled per MSI). Called
   * synchronously; must not call back into the LPI system. Optional.
   */
  onEnableLpisChanged?(vcpu: number, enabled: boolean): void;
}

/** Counters the daemon reports in GET_STATS. */
export interface LpiStats {
  /** Property/pending table reads that faulted (guest RAM outside every region). */
  tableReadFaults: number;
  /** Bytes written to pending tables (bits consumed at LPI creation + SAVE_PENDING_TABLES). */
  pendingTableWrites: number;
  /** (Added by src/redist.) Pending-table writes that faulted or hit frozen memory. */
  tableWriteFaults?: number;
}

export interface LpiSystem {
  readonly nrVcpus: number;
  readonly stats: LpiStats;

  // ---- Redistributor registers (RD_base frame of vCPU `vcpu`) ----
  /**
   * Guest MMIO read in the RD_base frame. Returns null when the offset is not one vitsd
   * implements (the VMM emulates it: -ENXIO on the wire). size is 1, 2, 4 or 8.
   */
  mmioRead(vcpu: number, offset: number, size: number): bigint | null;
  /** Guest MMIO write; false when the offset is not implemented (-ENXIO). */
  mmioWrite(vcpu: number, offset: number, size: number, value: bigint): boolean;
  /** 64-bit register reads for tools and save: */
  readonly propbaser: bigint;
  pendbaser(vcpu: number): bigint;
  lpisEnabled(vcpu: number): boolean;

  /** Called when an ITS device is created: KVM resets GICR_PROPBASER to its initial value. */
  resetPropbaser(): void;

  // ---- LPI lifecycle (used by ITS command handlers and table restore) ----
  /** LPIs valid now: 8192 <= intid < 2^min(PROPBASER.IDbits + 1, 16). */
  isValidLpi(intid: number): boolean;
  /**
   * Takes a reference on LPI `intid`, creating it if needed. On creation: reads its
   * configuration byte; if target != NO_VCPU reads that vCPU's pending-table bit and, if
   * set, latches it and clears it in guest RAM (KVM vgic_v3_lpi_sync_pending_status). An
   * existing LPI keeps its target and state. Returns false (no reference taken) only if
   * a guest RAM fault made the creation impossible (KVM: -EFAULT).
   */
  acquire(intid: number, target: number): boolean;
  /** `count` (>= 1) acquire()s at once (table restore). False: none taken. */
  acquireMany(intid: number, target: number, count: number): boolean;
  /**
   * acquireMany(ids[i], targets[ids[i]], refs[ids[i]]) for i = 0..count-1 in that order (table
   * restore: targets and refs are indexed by INTID), reading the guest bytes in place where the
   * tables allow. All or nothing: false when one fails, with the ones before released again.
   */
  acquireStaged(ids: Uint32Array, count: number, targets: Int32Array, refs: Uint32Array): boolean;
  /** Drops a reference; the last one frees the LPI (pending state lost). */
  release(intid: number): void;
  /** `count` release()s at once. */
  releaseMany(intid: number, count: number): void;
  exists(intid: number): boolean;
  refcount(intid: number): number;
  target(intid: number): number;
  /** Retargets one LPI (MOVI, MAPC remap); pending state follows it. */
  setTarget(intid: number, vcpu: number): void;
  /** MOVALL: every LPI targeting `from` now targets `to`. */
  moveAll(from: number, to: number): void;

  // ---- Pending state ----
  /** Sets the pending latch. Returns true (KVM: the LPI is queued). */
  setPending(intid: number): void;
  clearPending(intid: number): void;
  isPending(intid: number): boolean;

  // ---- Configuration cache ----
  /** Re-reads the configuration byte of one LPI (INV, GICR_INVLPIR). */
  invalidate(intid: number): void;
  /** Re-reads the configuration of every LPI targeting vcpu (INVALL, GICR_INVALLR). */
  invalidateAll(vcpu: number): void;
  /** Cached priority (byte & 0xfc) and enable bit of an existing LPI. */
  priority(intid: number): number;
  enabled(intid: number): boolean;

  // ---- Delivery ----
  hasDeliverable(vcpu: number): boolean;
  /** Highest-priority deliverable LPI of vcpu (lowest priority value, then lowest INTID); clears its pending state unless peek. */
  ack(vcpu: number, peek: boolean): AckResult;

  // ---- Save/restore (issue: save/restore) ----
  /** KVM_DEV_ARM_VGIC_SAVE_PENDING_TABLES: writes pending bits of every targeted LPI. Throws ErrnoError(EFAULT). */
  savePendingTables(): void;

  /** Forgets every LPI (device reset); registers are kept. */
  clearAllLpis(): void;

  /** Iterates existing LPIs in INTID order. */
  forEachLpi(fn: (intid: number) => void): void;
}
