/**
 * Which register reads of the trace can be compared with vitsd, and on which bits.
 *
 * QEMU and vitsd (KVM semantics) are different ITS implementations: identification and
 * IMPLEMENTATION DEFINED fields differ by design (GITS_TYPER's ITT entry size 12 vs 8, GITS_IIDR,
 * BASER page sizes KVM forces to 64 KiB, cacheability KVM sanitises). Reads are therefore
 * compared by meaning: each register has a mask of the architectural bits both must agree on;
 * registers with no such bits are reported as informational differences only.
 */

export interface ReadPolicy {
  /** Register name for reports. */
  readonly name: string;
  /** Bits compared, for the accessed bytes (0n: not compared). */
  readonly mask: bigint;
  /** Why the other bits (or the whole register) are not compared. */
  readonly note: string;
}

const bitsMask = (hi: number, lo: number): bigint => ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
const bit = (n: number): bigint => 1n << BigInt(n);

interface Register64 {
  readonly base: number;
  readonly width: 4 | 8;
  readonly name: string;
  readonly mask: bigint;
  readonly note: string;
}

const ITS_REGISTERS: readonly Register64[] = [
  { base: 0x0, width: 4, name: 'GITS_CTLR', mask: bit(31) | bit(0), note: 'Quiescent and Enabled compared' },
  { base: 0x4, width: 4, name: 'GITS_IIDR', mask: 0n, note: 'implementation identification (QEMU 0x43b, KVM 0x4b00043b)' },
  { base: 0x8, width: 8, name: 'GITS_TYPER', mask: 0n, note: 'IMPLEMENTATION DEFINED (QEMU: 12-byte ITEs, CIL; KVM: 8-byte ITEs)' },
  { base: 0x80, width: 8, name: 'GITS_CBASER', mask: bit(63) | bitsMask(51, 12) | bitsMask(7, 0), note: 'Valid, PA and Size compared; cacheability is sanitised by KVM' },
  { base: 0x88, width: 8, name: 'GITS_CWRITER', mask: bitsMask(19, 0), note: '' },
  { base: 0x90, width: 8, name: 'GITS_CREADR', mask: bitsMask(19, 0), note: '' },
  ...Array.from({ length: 8 }, (_, n): Register64 => ({
    base: 0x100 + 8 * n, width: 8, name: `GITS_BASER${n}`,
    mask: bit(63) | bit(62) | bitsMask(58, 56) | bitsMask(47, 12) | bitsMask(7, 0),
    note: 'Valid, Indirect, Type, PA and Size compared; Page_Size (KVM forces 64K), Entry_Size and cacheability are not',
  })),
  { base: 0xffe8, width: 4, name: 'GITS_PIDR2', mask: bitsMask(7, 4), note: 'ArchRev compared' },
];

const REDIST_REGISTERS: readonly Register64[] = [
  { base: 0x0, width: 4, name: 'GICR_CTLR', mask: bit(0), note: 'EnableLPIs compared (CES/IR/RWP are implementation choices)' },
  { base: 0x4, width: 4, name: 'GICR_IIDR', mask: 0n, note: 'implementation identification' },
  { base: 0x8, width: 8, name: 'GICR_TYPER', mask: bitsMask(63, 32) | bitsMask(23, 8) | bit(4) | bit(0), note: 'Affinity, Processor_Number, Last and PLPIS compared' },
  { base: 0x70, width: 8, name: 'GICR_PROPBASER', mask: bitsMask(51, 12) | bitsMask(4, 0), note: 'PA and IDbits compared' },
  { base: 0x78, width: 8, name: 'GICR_PENDBASER', mask: bitsMask(51, 16), note: 'PA compared (PTZ reads 0 in KVM)' },
];

function lookup(table: readonly Register64[], offset: number, size: number): ReadPolicy | undefined {
  for (const r of table) {
    if (offset >= r.base && offset + size <= r.base + r.width) {
      const shift = BigInt((offset - r.base) * 8);
      const accessMask = size >= 8 ? 0xffff_ffff_ffff_ffffn : (1n << BigInt(size * 8)) - 1n;
      return { name: r.name, mask: (r.mask >> shift) & accessMask, note: r.note };
    }
  }
  return undefined;
}

/** Policy for a read of the ITS control frame at `offset` (everything in the frame is vitsd's). */
export function itsReadPolicy(offset: number, size: number): ReadPolicy {
  return lookup(ITS_REGISTERS, offset, size) ?? { name: `GITS+0x${offset.toString(16)}`, mask: 0n, note: 'not a register both implement' };
}

/** Policy for a redistributor read, or undefined when the register is the VMM's, not vitsd's. */
export function redistReadPolicy(offset: number, size: number): ReadPolicy | undefined {
  return lookup(REDIST_REGISTERS, offset, size);
}

/** Redistributor registers vitsd implements writes for (the rest belong to the VMM). */
export function isVitsdRedistWrite(offset: number, size: number): boolean {
  const r = lookup(REDIST_REGISTERS, offset, size);
  return r !== undefined && (r.name === 'GICR_CTLR' || r.name === 'GICR_PROPBASER' || r.name === 'GICR_PENDBASER');
}

/** Accessed bytes of a 64-bit value (size 1, 2, 4, 8). */
export function truncateToSize(v: bigint, size: number): bigint {
  return size >= 8 ? v & 0xffff_ffff_ffff_ffffn : v & ((1n << BigInt(size * 8)) - 1n);
}
