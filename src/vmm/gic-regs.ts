/**
 * Register offsets and field layouts the guest side needs (its-model.md 1 and 3; Linux
 * include/linux/irqchip/arm-gic-v3.h). 64-bit registers are BigInts here: cold path.
 */
export {
  GITS_CTLR,
  GITS_IIDR,
  GITS_TYPER,
  GITS_CBASER,
  GITS_CWRITER,
  GITS_CREADR,
  GITS_BASER0,
  GITS_PIDR2,
  GITS_TRANSLATER,
  ITS_FRAME_SIZE,
} from '../its/types.js';

export const GITS_BASER_NR_REGS = 8;
export const gitsBaser = (n: number): number => 0x100 + 8 * n;

export const GITS_CTLR_ENABLE = 1 << 0;
export const GITS_CTLR_IMDE = 1 << 1;
export const GITS_CTLR_QUIESCENT = 0x80000000;

export const GIC_PIDR2_ARCH_MASK = 0xf0;

// ---- GITS_TYPER ----
export const typerPhysical = (t: bigint): boolean => (t & 1n) !== 0n;
export const typerIttEntrySize = (t: bigint): number => Number((t >> 4n) & 0xfn) + 1;
export const typerIdBits = (t: bigint): number => Number((t >> 8n) & 0x1fn) + 1;
export const typerDevBits = (t: bigint): number => Number((t >> 13n) & 0x1fn) + 1;
export const typerPta = (t: bigint): boolean => ((t >> 19n) & 1n) !== 0n;
export const typerHcc = (t: bigint): number => Number((t >> 24n) & 0xffn);

// ---- GITS_BASER<n> ----
export const GITS_BASER_VALID = 1n << 63n;
export const GITS_BASER_INDIRECT = 1n << 62n;
export const GITS_BASER_INNER_CACHE_SHIFT = 59n;
export const GITS_BASER_CACHEABILITY_MASK = 7n << GITS_BASER_INNER_CACHE_SHIFT;
export const GITS_BASER_RaWaWb = 7n << GITS_BASER_INNER_CACHE_SHIFT;
export const GITS_BASER_nC = 1n << GITS_BASER_INNER_CACHE_SHIFT;
export const GITS_BASER_TYPE_SHIFT = 56n;
export const GITS_BASER_ENTRY_SIZE_SHIFT = 48n;
export const GITS_BASER_SHAREABILITY_SHIFT = 10n;
export const GITS_BASER_SHAREABILITY_MASK = 3n << GITS_BASER_SHAREABILITY_SHIFT;
export const GITS_BASER_InnerShareable = 1n << GITS_BASER_SHAREABILITY_SHIFT;
export const GITS_BASER_PAGE_SIZE_SHIFT = 8n;
export const GITS_BASER_PAGE_SIZE_MASK = 3n << GITS_BASER_PAGE_SIZE_SHIFT;
export const GITS_BASER_PAGES_MAX = 256;

export const GITS_BASER_TYPE_NONE = 0;
export const GITS_BASER_TYPE_DEVICE = 1;
export const GITS_BASER_TYPE_VCPU = 2;
export const GITS_BASER_TYPE_COLLECTION = 4;

/** Page_Size field value for a page size in bytes (0b00 4K, 0b01 16K, 0b10 64K). */
export function baserPageSizeField(psz: number): bigint {
  return psz === 0x10000 ? 2n : psz === 0x4000 ? 1n : 0n;
}
export function baserPageSizeBytes(baser: bigint): number {
  const f = Number((baser & GITS_BASER_PAGE_SIZE_MASK) >> GITS_BASER_PAGE_SIZE_SHIFT);
  return f === 2 || f === 3 ? 0x10000 : f === 1 ? 0x4000 : 0x1000;
}
export const baserType = (b: bigint): number => Number((b >> GITS_BASER_TYPE_SHIFT) & 7n);
export const baserEntrySize = (b: bigint): number => Number((b >> GITS_BASER_ENTRY_SIZE_SHIFT) & 0x1fn) + 1;
export const baserPages = (b: bigint): number => Number(b & 0xffn) + 1;
/** Table base address (64K page format also carries PA[51:48] in bits 15:12). */
export function baserAddress(b: bigint): number {
  if (baserPageSizeBytes(b) === 0x10000) {
    return Number((b & 0x0000ffffffff0000n) | (((b >> 12n) & 0xfn) << 48n));
  }
  return Number(b & 0x0000fffffffff000n);
}
/** Linux GITS_BASER_PHYS_52_to_48 for 64K pages; identity below 2^48. */
export function baserEncodeAddress(pa: number): bigint {
  const p = BigInt(pa);
  return (p & 0x0000ffffffff0000n) | (((p >> 48n) & 0xfn) << 12n);
}

/** Level-1 entry of a two-level table: Valid bit 63 | L2 page address. */
export const GITS_LVL1_ENTRY_SIZE = 8;
export const LVL1_VALID = 1n << 63n;

// ---- GITS_CBASER ----
export const GITS_CBASER_VALID = 1n << 63n;
export const GITS_CBASER_RaWaWb = 7n << 59n;
export const GITS_CBASER_nC = 1n << 59n;
export const GITS_CBASER_CACHEABILITY_MASK = 7n << 59n;
export const GITS_CBASER_InnerShareable = 1n << 10n;
export const GITS_CBASER_SHAREABILITY_MASK = 3n << 10n;

// ---- Redistributor (RD_base frame) ----
export const GICR_CTLR = 0x0000;
export const GICR_IIDR = 0x0004;
export const GICR_TYPER = 0x0008;
export const GICR_PROPBASER = 0x0070;
export const GICR_PENDBASER = 0x0078;

export const GICR_CTLR_ENABLE_LPIS = 1 << 0;
export const GICR_CTLR_RWP = 1 << 3;
export const GICR_TYPER_PLPIS = 1n << 0n;
export const GICR_TYPER_DIRECT_LPI = 1n << 3n;
export const gicrTyperProcessorNumber = (t: bigint): number => Number((t >> 8n) & 0xffffn);
export const gicrTyperAffinity = (t: bigint): number => Number(t >> 32n);

export const GICR_PROPBASER_InnerShareable = 1n << 10n;
export const GICR_PROPBASER_RaWaWb = 7n << 7n;
export const GICR_PROPBASER_nC = 1n << 7n;
export const GICR_PROPBASER_SHAREABILITY_MASK = 3n << 10n;
export const GICR_PROPBASER_CACHEABILITY_MASK = 7n << 7n;
export const GICR_PROPBASER_IDBITS_MASK = 0x1fn;

export const GICR_PENDBASER_InnerShareable = 1n << 10n;
export const GICR_PENDBASER_RaWaWb = 7n << 7n;
export const GICR_PENDBASER_nC = 1n << 7n;
export const GICR_PENDBASER_SHAREABILITY_MASK = 3n << 10n;
export const GICR_PENDBASER_CACHEABILITY_MASK = 7n << 7n;
export const GICR_PENDBASER_PTZ = 1n << 62n;

// ---- LPI configuration byte ----
export const LPI_PROP_ENABLED = 1 << 0;
export const LPI_PROP_GROUP1 = 1 << 1;
/** GICD_INT_DEF_PRI, the default LPI priority of Linux 6.1 (its-model.md 3.4: read, don't assume). */
export const LPI_PROP_DEFAULT_PRIO = 0xa0;

/** KVM's default MPIDR affinity of vCPU i (protocol.md "vCPUs"), as Aff2:Aff1:Aff0. */
export function defaultMpidrAffinity(vcpu: number): number {
  const aff0 = vcpu & 0xf;
  const aff1 = (vcpu >> 4) & 0xff;
  const aff2 = (vcpu >> 12) & 0xff;
  return (aff2 << 16) | (aff1 << 8) | aff0;
}

/** GRP_REDIST_REGS attr: MPIDR (Aff3:Aff2:Aff1:Aff0) in bits 63:32, offset in bits 31:0. */
export function redistRegAttr(vcpu: number, offset: number): bigint {
  return (BigInt(defaultMpidrAffinity(vcpu)) << 32n) | BigInt(offset >>> 0);
}
