/**
 * GITS register layout and the fixed values KVM's vgic-its reports
 * (kvm-its-abi.md 1.5-1.7, its-model.md 1). Register offsets that are part of the public
 * contract live in ./types.ts; this module adds the rest.
 */

export const GITS_BASER_LAST = 0x0138;
/** End (exclusive) of the GITS_BASER<n> register block. */
export const GITS_BASER_END = 0x0140;
export const GITS_PIDR4 = 0xffd0;
export const GITS_PIDR0 = 0xffe0;
export const GITS_PIDR1 = 0xffe4;
export const GITS_CIDR0 = 0xfff0;
export const GITS_CIDR1 = 0xfff4;
export const GITS_CIDR2 = 0xfff8;
export const GITS_CIDR3 = 0xfffc;
/** End (exclusive) of the ID register block (0xffd0 + 0x30). */
export const GITS_IDREGS_END = 0x10000;

// ---- GITS_CTLR ----
export const GITS_CTLR_ENABLED = 1;
export const GITS_CTLR_QUIESCENT = 0x8000_0000;

// ---- GITS_IIDR ----
/** ProductID 'K' (0x4B) at 31:24, Implementer Arm (0x43B) at 11:0; Revision (15:12) = ABI rev. */
export const GITS_IIDR_PRODUCT_KVM = 0x4b00_0000;
export const GITS_IIDR_IMPLEMENTER_ARM = 0x43b;
export const GITS_IIDR_REV_SHIFT = 12;
/** Number of table ABI revisions KVM knows (NR_ITS_ABIS). */
export const NR_ITS_ABIS = 1;

// ---- GITS_TYPER ----
/** KVM's table entry size for ABI rev 0 (DTE, ITE, CTE). */
export const ABI_ENTRY_SIZE = 8;
/** EventID and DeviceID bits advertised (VITS_TYPER_IDBITS / VITS_TYPER_DEVBITS). */
export const VITS_TYPER_IDBITS = 16;
export const VITS_TYPER_DEVBITS = 16;
/** PLPIS | ITT_entry_size 7 (4) | IDbits 15 (8) | Devbits 15 (13); PTA 0, CIL 0. */
export const GITS_TYPER_VALUE =
  1n | (BigInt(ABI_ENTRY_SIZE - 1) << 4n) | (BigInt(VITS_TYPER_IDBITS - 1) << 8n) | (BigInt(VITS_TYPER_DEVBITS - 1) << 13n);

// ---- Shared BASER / CBASER fields ----
export const VALID_BIT = 1n << 63n;
export const SHAREABILITY_SHIFT = 10n;
export const INNER_CACHE_SHIFT = 59n;
export const OUTER_CACHE_SHIFT = 53n;
export const SHARE_INNER = 1n;
export const SHARE_OUTER = 2n;
export const CACHE_NCNB = 0n;
export const CACHE_NC = 1n;
export const CACHE_RAWB = 3n;
export const CACHE_SAME_AS_INNER = 0n;

// ---- GITS_BASER<n> ----
export const BASER_INDIRECT = 1n << 62n;
export const BASER_TYPE_SHIFT = 56n;
export const BASER_TYPE_MASK = 7n << BASER_TYPE_SHIFT;
export const BASER_ENTRY_SIZE_SHIFT = 48n;
export const BASER_ENTRY_SIZE_MASK = 0x1fn << BASER_ENTRY_SIZE_SHIFT;
/** Type and Entry_Size are read-only. */
export const BASER_RO_MASK = BASER_TYPE_MASK | BASER_ENTRY_SIZE_MASK;
export const BASER_PAGE_SIZE_SHIFT = 8n;
export const BASER_PAGE_SIZE_MASK = 3n << BASER_PAGE_SIZE_SHIFT;
export const BASER_PAGE_SIZE_64K = 2n << BASER_PAGE_SIZE_SHIFT;
export const BASER_TYPE_DEVICE = 1;
export const BASER_TYPE_COLLECTION = 4;
/** KVM's INITIAL_BASER_VALUE: inner RaWb, outer same-as-inner, inner shareable, 64 KiB pages. */
export const INITIAL_BASER_VALUE =
  (CACHE_RAWB << INNER_CACHE_SHIFT) | (CACHE_SAME_AS_INNER << OUTER_CACHE_SHIFT) | (SHARE_INNER << SHAREABILITY_SHIFT) |
  BASER_PAGE_SIZE_64K;
/** 64 KiB: the only ITS table page size KVM supports. */
export const ITS_TABLE_PAGE = 0x10000;

// ---- GITS_CBASER ----
/** KVM forces a 64 KiB aligned command queue: PA bits 15:12 always read 0. */
export const CBASER_PA_15_12 = 0xfn << 12n;

// ---- GITS_CWRITER / GITS_CREADR ----
/** Offset bits 19:5 (ITS_CMD_OFFSET). */
export const CMD_OFFSET_MASK = 0xfffe0;
export const ITS_CMD_SIZE = 32;

// ---- ID registers (vgic_mmio_read_its_idregs) ----
export const ID_REGISTER_VALUES: ReadonlyMap<number, number> = new Map([
  [GITS_PIDR0, 0x92],
  [GITS_PIDR1, 0xb4],
  [0xffe8, 0x3b], // GITS_PIDR2: GICv3 architecture (0x30) | 0x0b
  [GITS_PIDR4, 0x40],
  [GITS_CIDR0, 0x0d],
  [GITS_CIDR1, 0xf0],
  [GITS_CIDR2, 0x05],
  [GITS_CIDR3, 0xb1],
]);
