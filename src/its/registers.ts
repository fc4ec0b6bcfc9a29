/**
 * The GITS_* register file of one ITS, with KVM's semantics (kvm-its-abi.md 1.5-1.7):
 * register state, guest MMIO (32/64-bit, RAZ/WI elsewhere) and the userspace accessors of
 * KVM_DEV_ARM_VGIC_GRP_ITS_REGS. Side effects on translation state and command processing go
 * through `RegisterEffects`, implemented by the ITS (./its.ts).
 */
import { Errno, ErrnoError } from '../util/errno.js';
import {
  ABI_ENTRY_SIZE, BASER_ENTRY_SIZE_MASK, BASER_ENTRY_SIZE_SHIFT, BASER_INDIRECT, BASER_PAGE_SIZE_64K,
  BASER_PAGE_SIZE_MASK, BASER_RO_MASK, BASER_TYPE_COLLECTION, BASER_TYPE_DEVICE, BASER_TYPE_SHIFT, CACHE_NC, CACHE_NCNB,
  CACHE_RAWB, CACHE_SAME_AS_INNER, CBASER_PA_15_12, CMD_OFFSET_MASK, GITS_BASER_END, GITS_CTLR_ENABLED,
  GITS_CTLR_QUIESCENT, GITS_IDREGS_END, GITS_IIDR_IMPLEMENTER_ARM, GITS_IIDR_PRODUCT_KVM, GITS_IIDR_REV_SHIFT,
  GITS_PIDR4, GITS_TYPER_VALUE, ID_REGISTER_VALUES, INITIAL_BASER_VALUE, INNER_CACHE_SHIFT, NR_ITS_ABIS,
  OUTER_CACHE_SHIFT, SHARE_INNER, SHARE_OUTER, SHAREABILITY_SHIFT, VALID_BIT,
} from './constants.js';
import { cbaserAddress, cmdQueueBytes, decodeBaser, type BaserGeometry } from './tables.js';
import { GITS_BASER0, GITS_CBASER, GITS_CREADR, GITS_CTLR, GITS_CWRITER, GITS_IIDR, GITS_TYPER } from './types.js';

const U64_MASK = 0xffff_ffff_ffff_ffffn;

// ---------------------------------------------------------------------------------------
// Pure helpers (vgic-mmio.c / vgic-mmio-v3.c)
// ---------------------------------------------------------------------------------------

/** update_64bit_reg: replaces the 32-bit half (or the whole register) that an access covers. */
export function update64(reg: bigint, offset: number, len: number, val: bigint): bigint {
  const lower = BigInt((offset & 4) * 8);
  const width = BigInt(len * 8);
  const fieldMask = ((1n << width) - 1n) << lower;
  const v = (val & ((1n << width) - 1n)) << lower;
  return ((reg & ~fieldMask) | v) & U64_MASK;
}

/** extract_bytes: the bytes an access of len bytes at offset (within the 8-byte register) reads. */
export function extractBytes(reg: bigint, offset: number, len: number): bigint {
  return (reg >> BigInt((offset & 7) * 8)) & ((1n << BigInt(len * 8)) - 1n);
}

/** vgic_sanitise_shareability: OuterShareable becomes InnerShareable. */
export function sanitiseShareability(field: bigint): bigint {
  return field === SHARE_OUTER ? SHARE_INNER : field;
}
/** vgic_sanitise_inner_cacheability: no inner non-cacheable mapping. */
export function sanitiseInnerCache(field: bigint): bigint {
  return field === CACHE_NCNB || field === CACHE_NC ? CACHE_RAWB : field;
}
/** vgic_sanitise_outer_cacheability: only SameAsInner or non-cacheable are kept. */
export function sanitiseOuterCache(field: bigint): bigint {
  return field === CACHE_SAME_AS_INNER || field === CACHE_NC ? field : CACHE_SAME_AS_INNER;
}

function sanitiseField(reg: bigint, shift: bigint, mask: bigint, fn: (f: bigint) => bigint): bigint {
  const f = (reg >> shift) & mask;
  return (reg & ~(mask << shift)) | (fn(f) << shift);
}

function sanitiseCacheAndShare(reg: bigint): bigint {
  reg = sanitiseField(reg, SHAREABILITY_SHIFT, 3n, sanitiseShareability);
  reg = sanitiseField(reg, INNER_CACHE_SHIFT, 7n, sanitiseInnerCache);
  return sanitiseField(reg, OUTER_CACHE_SHIFT, 7n, sanitiseOuterCache);
}

/** vgic_sanitise_its_cbaser: cacheability/shareability, and a 64 KiB aligned queue. */
export function sanitiseCbaser(reg: bigint): bigint {
  return sanitiseCacheAndShare(reg) & ~CBASER_PA_15_12;
}

/** vgic_sanitise_its_baser: cacheability/shareability, Page_Size forced to 64 KiB. */
export function sanitiseBaser(reg: bigint): bigint {
  return (sanitiseCacheAndShare(reg) & ~BASER_PAGE_SIZE_MASK) | BASER_PAGE_SIZE_64K;
}

/** The value a BASER takes after a write (steps 1-4 of kvm-its-abi.md 1.6.6). */
export function nextBaserValue(current: bigint, offset: number, len: number, val: bigint, type: number, entrySize: number): bigint {
  let reg = update64(current, offset, len, val);
  reg &= ~BASER_RO_MASK;
  if (type === BASER_TYPE_COLLECTION) reg &= ~BASER_INDIRECT; // no two-level collection tables
  reg |= BigInt(entrySize - 1) << BASER_ENTRY_SIZE_SHIFT;
  reg |= BigInt(type) << BASER_TYPE_SHIFT;
  return sanitiseBaser(reg);
}

/** vgic_its_commit_v0: rewrites the Entry_Size field for the selected ABI. */
export function commitEntrySize(baser: bigint, entrySize: number): bigint {
  return (baser & ~BASER_ENTRY_SIZE_MASK) | (BigInt(entrySize - 1) << BASER_ENTRY_SIZE_SHIFT);
}

export const INITIAL_BASER_DEVICE = INITIAL_BASER_VALUE | (BigInt(BASER_TYPE_DEVICE) << BASER_TYPE_SHIFT);
export const INITIAL_BASER_COLLECTION = INITIAL_BASER_VALUE | (BigInt(BASER_TYPE_COLLECTION) << BASER_TYPE_SHIFT);

// ---------------------------------------------------------------------------------------
// Register regions (its_registers[] in vgic-its.c)
// ---------------------------------------------------------------------------------------

export const ACCESS_32 = 1;
export const ACCESS_64 = 2;

export interface RegisterRegion {
  readonly name: string;
  readonly offset: number;
  readonly length: number;
  /** ACCESS_32 and/or ACCESS_64. */
  readonly access: number;
  read(regs: ItsRegisterFile, offset: number, len: number): bigint;
  /** Guest write; also the user write unless userWrite is set. */
  write(regs: ItsRegisterFile, offset: number, len: number, value: bigint): void;
  /** Special userspace write handler (KVM's uaccess_its_write); may throw ErrnoError. */
  userWrite?(regs: ItsRegisterFile, value: bigint): void;
}

const writeIgnored = (): void => {};

export const ITS_REGISTER_REGIONS: readonly RegisterRegion[] = [
  {
    name: 'GITS_CTLR', offset: GITS_CTLR, length: 4, access: ACCESS_32,
    read: (r) => BigInt(r.readCtlr()),
    write: (r, _o, _l, v) => r.writeCtlr(Number(v & 1n)),
  },
  {
    name: 'GITS_IIDR', offset: GITS_IIDR, length: 4, access: ACCESS_32,
    read: (r) => BigInt(r.readIidr()),
    write: writeIgnored,
    userWrite: (r, v) => r.userWriteIidr(v),
  },
  {
    name: 'GITS_TYPER', offset: GITS_TYPER, length: 8, access: ACCESS_32 | ACCESS_64,
    read: (_r, o, l) => extractBytes(GITS_TYPER_VALUE, o, l),
    write: writeIgnored,
  },
  {
    name: 'GITS_CBASER', offset: GITS_CBASER, length: 8, access: ACCESS_32 | ACCESS_64,
    read: (r, o, l) => extractBytes(r.cbaser, o, l),
    write: (r, o, l, v) => r.writeCbaser(o, l, v),
  },
  {
    name: 'GITS_CWRITER', offset: GITS_CWRITER, length: 8, access: ACCESS_32 | ACCESS_64,
    read: (r, o, l) => extractBytes(BigInt(r.cwriter), o, l),
    write: (r, o, l, v) => r.writeCwriter(o, l, v),
  },
  {
    name: 'GITS_CREADR', offset: GITS_CREADR, length: 8, access: ACCESS_32 | ACCESS_64,
    read: (r, o, l) => extractBytes(BigInt(r.creadr), o, l),
    write: writeIgnored,
    userWrite: (r, v) => r.userWriteCreadr(v),
  },
  {
    name: 'GITS_BASER', offset: GITS_BASER0, length: GITS_BASER_END - GITS_BASER0, access: ACCESS_32 | ACCESS_64,
    read: (r, o, l) => extractBytes(r.readBaser((o - GITS_BASER0) >> 3), o, l),
    write: (r, o, l, v) => r.writeBaser((o - GITS_BASER0) >> 3, o, l, v),
  },
  {
    name: 'GITS_IDREGS', offset: GITS_PIDR4, length: GITS_IDREGS_END - GITS_PIDR4, access: ACCESS_32,
    read: (_r, o) => BigInt(ID_REGISTER_VALUES.get(o) ?? 0),
    write: writeIgnored,
  },
];

/** vgic_find_mmio_region: the region containing offset, or null. */
export function findRegion(offset: number): RegisterRegion | null {
  for (const region of ITS_REGISTER_REGIONS) {
    if (offset >= region.offset && offset < region.offset + region.length) return region;
  }
  return null;
}

/** check_region: the access width is allowed for the region and the address is aligned to it. */
function accessAllowed(region: RegisterRegion, offset: number, size: number): boolean {
  const flag = size === 4 ? ACCESS_32 : size === 8 ? ACCESS_64 : 0;
  return (region.access & flag) !== 0 && offset % size === 0;
}

/**
 * KVM_DEV_ARM_VGIC_GRP_ITS_REGS alignment: CTLR/IIDR (offset < GITS_TYPER) and the ID
 * registers (>= GITS_PIDR4) are 32-bit, everything else must be 64-bit aligned.
 */
function checkUserOffset(offset: number): RegisterRegion {
  if (!Number.isInteger(offset) || offset < 0) throw new ErrnoError(Errno.ENXIO, `no ITS register at offset ${offset}`);
  const align = offset < GITS_TYPER || offset >= GITS_PIDR4 ? 3 : 7;
  if (offset % (align + 1) !== 0) {
    throw new ErrnoError(Errno.EINVAL, `ITS register offset 0x${offset.toString(16)} is not ${align + 1}-byte aligned`);
  }
  const region = findRegion(offset);
  if (region === null) throw new ErrnoError(Errno.ENXIO, `no ITS register at offset 0x${offset.toString(16)}`);
  return region;
}

// ---------------------------------------------------------------------------------------
// The register file
// ---------------------------------------------------------------------------------------

/** What a register write does to the rest of the ITS. */
export interface RegisterEffects {
  /** Process the command queue (after a CTLR write or an accepted CWRITER write). */
  processCommands(): void;
  /** A GITS_BASER0/1 write was accepted (n = 0 or 1); `valid` is the new Valid bit. */
  baserWritten(n: number, valid: boolean): void;
  /** The ABI revision was (re)selected through GITS_IIDR. */
  abiSelected(rev: number): void;
}

export class ItsRegisterFile {
  enabled = false;
  cbaser = 0n;
  /** Byte offsets into the command queue (multiples of 32, < queue size). */
  cwriter = 0;
  creadr = 0;
  baserDevice = INITIAL_BASER_DEVICE;
  baserCollection = INITIAL_BASER_COLLECTION;
  abiRevision = 0;
  /** Decoded CBASER: queue base address and size in bytes. */
  queueBase = 0;
  queueBytes = 4096;
  /** Decoded BASER0/BASER1. */
  deviceTable: BaserGeometry = decodeBaser(INITIAL_BASER_DEVICE);
  collectionTable: BaserGeometry = decodeBaser(INITIAL_BASER_COLLECTION);

  constructor(private readonly effects: RegisterEffects) {
    this.commitAbi();
  }

  // ---- Individual registers ----

  readCtlr(): number {
    return ((this.enabled ? GITS_CTLR_ENABLED : 0) | (this.creadr === this.cwriter ? GITS_CTLR_QUIESCENT : 0)) >>> 0;
  }

  /** vgic_mmio_write_its_ctlr: enabling needs BASER0, BASER1 and CBASER valid, else the write is dropped. */
  writeCtlr(value: number): void {
    const enable = (value & GITS_CTLR_ENABLED) !== 0;
    if (!this.enabled && enable && !(this.deviceTable.valid && this.collectionTable.valid && (this.cbaser & VALID_BIT) !== 0n)) {
      return;
    }
    this.enabled = enable;
    // Disabling would drop KVM's translation cache; lookups here are direct, so there is none.
    this.effects.processCommands();
  }

  readIidr(): number {
    return (GITS_IIDR_PRODUCT_KVM | ((this.abiRevision & 0xf) << GITS_IIDR_REV_SHIFT) | GITS_IIDR_IMPLEMENTER_ARM) >>> 0;
  }

  /** vgic_mmio_uaccess_write_its_iidr: only the Revision field (ABI) matters. */
  userWriteIidr(value: bigint): void {
    const rev = Number((value >> BigInt(GITS_IIDR_REV_SHIFT)) & 0xfn);
    if (rev >= NR_ITS_ABIS) throw new ErrnoError(Errno.EINVAL, `ITS table ABI revision ${rev} is not supported`);
    this.abiRevision = rev;
    this.commitAbi();
    this.effects.abiSelected(rev);
  }

  writeCbaser(offset: number, len: number, value: bigint): void {
    if (this.enabled) return; // read-only while enabled
    this.cbaser = sanitiseCbaser(update64(this.cbaser, offset, len, value));
    this.queueBase = cbaserAddress(this.cbaser);
    this.queueBytes = cmdQueueBytes(this.cbaser);
    this.creadr = 0;
    this.cwriter = 0; // KVM: CWRITER = CREADR, an empty queue
  }

  writeCwriter(offset: number, len: number, value: bigint): void {
    const reg = Number(update64(BigInt(this.cwriter), offset, len, value) & BigInt(CMD_OFFSET_MASK));
    if (reg >= this.queueBytes) return;
    this.cwriter = reg;
    this.effects.processCommands();
  }

  /** vgic_mmio_uaccess_write_its_creadr. */
  userWriteCreadr(value: bigint): void {
    if (this.enabled) throw new ErrnoError(Errno.EBUSY, 'GITS_CREADR cannot be written while the ITS is enabled');
    const offset = Number(value & BigInt(CMD_OFFSET_MASK));
    if (offset >= this.queueBytes) {
      throw new ErrnoError(Errno.EINVAL, `GITS_CREADR offset 0x${offset.toString(16)} is outside the ${this.queueBytes}-byte command queue`);
    }
    this.creadr = offset;
  }

  readBaser(n: number): bigint {
    return n === 0 ? this.baserDevice : n === 1 ? this.baserCollection : 0n;
  }

  writeBaser(n: number, offset: number, len: number, value: bigint): void {
    if (this.enabled) return;
    if (n === 0) {
      this.baserDevice = nextBaserValue(this.baserDevice, offset, len, value, BASER_TYPE_DEVICE, ABI_ENTRY_SIZE);
      this.deviceTable = decodeBaser(this.baserDevice);
      this.effects.baserWritten(0, this.deviceTable.valid);
    } else if (n === 1) {
      this.baserCollection = nextBaserValue(this.baserCollection, offset, len, value, BASER_TYPE_COLLECTION, ABI_ENTRY_SIZE);
      this.collectionTable = decodeBaser(this.baserCollection);
      this.effects.baserWritten(1, this.collectionTable.valid);
    }
    // BASER2..7: not implemented, writes ignored.
  }

  /** KVM_DEV_ARM_ITS_CTRL_RESET register part: BASERs keep everything but Valid. */
  reset(): void {
    this.baserDevice &= ~VALID_BIT;
    this.baserCollection &= ~VALID_BIT;
    this.deviceTable = decodeBaser(this.baserDevice);
    this.collectionTable = decodeBaser(this.baserCollection);
    this.cbaser = 0n;
    this.queueBase = 0;
    this.queueBytes = cmdQueueBytes(0n);
    this.creadr = 0;
    this.cwriter = 0;
    this.enabled = false;
  }

  private commitAbi(): void {
    this.baserDevice = commitEntrySize(this.baserDevice, ABI_ENTRY_SIZE);
    this.baserCollection = commitEntrySize(this.baserCollection, ABI_ENTRY_SIZE);
    this.deviceTable = decodeBaser(this.baserDevice);
    this.collectionTable = decodeBaser(this.baserCollection);
  }

  // ---- Guest MMIO ----

  /** Guest read: RAZ for unknown offsets and disallowed widths/alignments. */
  mmioRead(offset: number, size: number): bigint {
    const region = findRegion(offset);
    if (region === null || !accessAllowed(region, offset, size)) return 0n;
    return region.read(this, offset, size);
  }

  /** Guest write: WI for unknown offsets and disallowed widths/alignments. */
  mmioWrite(offset: number, size: number, value: bigint): void {
    const region = findRegion(offset);
    if (region === null || !accessAllowed(region, offset, size)) return;
    region.write(this, offset, size, value & ((1n << BigInt(size * 8)) - 1n));
  }

  // ---- Userspace (KVM_DEV_ARM_VGIC_GRP_ITS_REGS) ----

  getReg(offset: number): bigint {
    const region = checkUserOffset(offset);
    return region.read(this, offset, region.access & ACCESS_64 ? 8 : 4);
  }

  setReg(offset: number, value: bigint): void {
    const region = checkUserOffset(offset);
    const v = value & U64_MASK;
    if (region.userWrite) region.userWrite(this, v);
    else region.write(this, offset, region.access & ACCESS_64 ? 8 : 4, v);
  }

  hasReg(offset: number): void {
    checkUserOffset(offset);
  }
}
