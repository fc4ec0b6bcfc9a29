/**
 * Redistributor LPI registers (RD_base frame): offsets, KVM's values, and the pure
 * encoders/sanitisers behind GICR_PROPBASER / GICR_PENDBASER. Cold paths only: the
 * registers are BigInt here; the LPI system caches the numeric table addresses it needs.
 *
 * Values and masks follow KVM (arch/arm64/kvm/vgic/vgic-mmio-v3.c, vgic-its.c, vgic-v3.c;
 * ../shared/spec/kvm-its-abi.md sections 2.2-2.4).
 */

// ---- Offsets in the RD_base frame ----
export const GICR_CTLR = 0x0000;
export const GICR_IIDR = 0x0004;
export const GICR_TYPER = 0x0008;
export const GICR_PROPBASER = 0x0070;
export const GICR_PENDBASER = 0x0078;
export const GICR_INVLPIR = 0x00a0;
export const GICR_INVALLR = 0x00b0;
export const GICR_SYNCR = 0x00c0;

// ---- GICR_CTLR ----
export const GICR_CTLR_ENABLE_LPIS = 1;

// ---- GICR_IIDR ----
/** KVM's ProductID ('K'). */
export const PRODUCT_ID_KVM = 0x4b;
/** JEP106 code of Arm. */
export const IMPLEMENTER_ARM = 0x43b;
/**
 * KVM's GICR_IIDR: `PRODUCT_ID_KVM << 24 | IMPLEMENTER_ARM` (vgic_mmio_read_v3r_iidr; no
 * revision field, unlike GICD_IIDR) = 0x4B00043B.
 */
export const GICR_IIDR_VALUE = (PRODUCT_ID_KVM << 24) | IMPLEMENTER_ARM;

// ---- GICR_TYPER ----
export const GICR_TYPER_PLPIS = 1n << 0n;
export const GICR_TYPER_LAST = 1n << 4n;

// ---- Shared BASER field encodings (GIC_BASER_*) ----
const SHAREABILITY_SHIFT = 10n;
const SHAREABILITY_MASK = 3n << SHAREABILITY_SHIFT;
const INNER_CACHE_SHIFT = 7n;
const INNER_CACHE_MASK = 7n << INNER_CACHE_SHIFT;
const OUTER_CACHE_SHIFT = 56n;
const OUTER_CACHE_MASK = 7n << OUTER_CACHE_SHIFT;

export const SHAREABILITY_NON = 0n;
export const SHAREABILITY_INNER = 1n;
export const SHAREABILITY_OUTER = 2n;
export const CACHE_nCnB = 0n;
export const CACHE_nC = 1n;
export const CACHE_RaWb = 3n;
export const CACHE_SAME_AS_INNER = 0n;

/** KVM's INITIAL_PROPBASER_VALUE / INITIAL_PENDBASER_VALUE: RaWb inner, SameAsInner outer, InnerShareable. */
export const INITIAL_BASER_VALUE = (CACHE_RaWb << INNER_CACHE_SHIFT) | (SHAREABILITY_INNER << SHAREABILITY_SHIFT); // 0x580
export const INITIAL_PROPBASER_VALUE = INITIAL_BASER_VALUE;
export const INITIAL_PENDBASER_VALUE = INITIAL_BASER_VALUE;

/** GENMASK_ULL(hi, lo). */
function genmask(hi: number, lo: number): bigint {
  return ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
}

export const PROPBASER_IDBITS_MASK = 0x1fn;
export const PROPBASER_ADDRESS_MASK = genmask(51, 12);
export const PROPBASER_RES0_MASK = genmask(63, 59) | genmask(55, 52) | genmask(6, 5);

export const PENDBASER_PTZ = 1n << 62n;
export const PENDBASER_ADDRESS_MASK = genmask(51, 16);
export const PENDBASER_RES0_MASK = (1n << 63n) | genmask(61, 59) | genmask(55, 52) | genmask(15, 12) | genmask(6, 0);

const U64_MASK = (1n << 64n) - 1n;

/** Avoid OuterShareable (vgic_sanitise_shareability). */
function sanitiseShareability(field: bigint): bigint {
  return field === SHAREABILITY_OUTER ? SHAREABILITY_INNER : field;
}

/** No inner non-cacheable mapping (vgic_sanitise_inner_cacheability). */
function sanitiseInnerCacheability(field: bigint): bigint {
  return field === CACHE_nCnB || field === CACHE_nC ? CACHE_RaWb : field;
}

/** Non-cacheable or same-as-inner only (vgic_sanitise_outer_cacheability). */
function sanitiseOuterCacheability(field: bigint): bigint {
  return field === CACHE_SAME_AS_INNER || field === CACHE_nC ? field : CACHE_SAME_AS_INNER;
}

function sanitiseField(reg: bigint, mask: bigint, shift: bigint, fn: (f: bigint) => bigint): bigint {
  const field = (reg & mask) >> shift;
  return (reg & ~mask) | (fn(field) << shift);
}

/** Shareability/cacheability fixes shared by PROPBASER and PENDBASER (same field positions). */
function sanitiseBaserAttributes(reg: bigint): bigint {
  reg = sanitiseField(reg, SHAREABILITY_MASK, SHAREABILITY_SHIFT, sanitiseShareability);
  reg = sanitiseField(reg, INNER_CACHE_MASK, INNER_CACHE_SHIFT, sanitiseInnerCacheability);
  reg = sanitiseField(reg, OUTER_CACHE_MASK, OUTER_CACHE_SHIFT, sanitiseOuterCacheability);
  return reg;
}

/** vgic_sanitise_propbaser. */
export function sanitisePropbaser(reg: bigint): bigint {
  return sanitiseBaserAttributes(reg & U64_MASK) & ~PROPBASER_RES0_MASK;
}

/** vgic_sanitise_pendbaser (PTZ is kept; reads hide it). */
export function sanitisePendbaser(reg: bigint): bigint {
  return sanitiseBaserAttributes(reg & U64_MASK) & ~PENDBASER_RES0_MASK;
}

/** Base of the LPI configuration table (PA bits 51:12). */
export function propbaserAddress(reg: bigint): number {
  return Number(reg & PROPBASER_ADDRESS_MASK);
}

/** PROPBASER.IDbits (number of INTID bits - 1). */
export function propbaserIdBits(reg: bigint): number {
  return Number(reg & PROPBASER_IDBITS_MASK);
}

/** Exclusive upper bound of valid LPI INTIDs: 2^min(IDbits + 1, 16) (KVM max_lpis_propbaser). */
export function lpiLimit(reg: bigint, maxBits: number): number {
  return 2 ** Math.min(propbaserIdBits(reg) + 1, maxBits);
}

/** Base of a pending table (PA bits 51:16, 64 KiB aligned). */
export function pendbaserAddress(reg: bigint): number {
  return Number(reg & PENDBASER_ADDRESS_MASK);
}

/** KVM extract_bytes: `size` bytes of `value` starting at byte `offset`. */
export function extractBytes(value: bigint, offset: number, size: number): bigint {
  return (value >> BigInt(offset * 8)) & ((1n << BigInt(size * 8)) - 1n);
}

/**
 * KVM update_64bit_reg: replaces the half (or whole) of a 64-bit register that a 4- or
 * 8-byte access at byte `offset` (0 or 4) of the register covers.
 */
export function update64(reg: bigint, offset: number, size: number, value: bigint): bigint {
  const lower = BigInt((offset & 4) * 8);
  const width = BigInt(size * 8);
  const fieldMask = ((1n << width) - 1n) << lower;
  return ((reg & ~fieldMask) | ((value & ((1n << width) - 1n)) << lower)) & U64_MASK;
}

// ---- vCPU affinity (KVM's default MPIDR, reset_mpidr) ----

/** Affinity of vCPU `vcpu` as Aff3:Aff2:Aff1:Aff0 in 32 bits (Aff3 = 0): KVM's default MPIDR. */
export function mpidrOf(vcpu: number): number {
  return ((((vcpu >>> 12) & 0xff) << 16) | (((vcpu >>> 4) & 0xff) << 8) | (vcpu & 0xf)) >>> 0;
}

/**
 * vCPU index whose default MPIDR is `mpidr` (Aff3:Aff2:Aff1:Aff0 packed in 32 bits, as in
 * the REDIST_REGS attribute's bits 63:32), or -1 when no vCPU below nrVcpus has it.
 */
export function vcpuOfMpidr(mpidr: number, nrVcpus: number): number {
  if (!Number.isInteger(mpidr) || mpidr < 0 || mpidr > 0xffffffff) return -1;
  const aff0 = mpidr & 0xff;
  const aff1 = (mpidr >>> 8) & 0xff;
  const aff2 = (mpidr >>> 16) & 0xff;
  const aff3 = mpidr >>> 24;
  if (aff3 !== 0 || aff0 > 0xf) return -1;
  const vcpu = aff0 | (aff1 << 4) | (aff2 << 12);
  return vcpu < nrVcpus ? vcpu : -1;
}

/** GICR_TYPER of a vCPU (KVM vgic_mmio_read_v3r_typer, one contiguous redistributor region). */
export function gicrTyper(vcpu: number, nrVcpus: number, hasIts: boolean): bigint {
  let value = BigInt(mpidrOf(vcpu) & 0xffffff) << 32n;
  value |= BigInt(vcpu & 0xffff) << 8n;
  if (hasIts) value |= GICR_TYPER_PLPIS;
  if (vcpu === nrVcpus - 1) value |= GICR_TYPER_LAST;
  return value;
}
