/**
 * A hand-built guest RAM image holding consistent KVM ABI rev 0 tables (every value derived
 * here with its arithmetic), for the inspector tests. RAM: 1 MiB at 0x40000000.
 *
 *   device table      flat, 64 KiB at 0x40000000 (8192 DTE slots)
 *   collection table  flat, 64 KiB at 0x40020000
 *   ITT of 0x10       at 0x40030000, 2 EventID bits (4 events)
 *   ITT of 0x18       at 0x40030100, 1 EventID bit (2 events)
 */
export const RAM_BASE = 0x4000_0000;
export const RAM_SIZE = 0x10_0000;

export const DT_BASE = 0x4000_0000;
export const CT_BASE = 0x4002_0000;
export const ITT_10 = 0x4003_0000;
export const ITT_18 = 0x4003_0100;

// BASER: Valid (bit 63) | Type << 56 | (Entry_Size 8 - 1) << 48 | PA | Page_Size 64K (0b10 << 8) | Size 0
//   BASER0 = 0x8000000000000000 | 1 << 56 | 7 << 48 | 0x40000000 | 0x200 = 0x8107000040000200
//   BASER1 = 0x8000000000000000 | 4 << 56 | 7 << 48 | 0x40020000 | 0x200 = 0x8407000040020200
export const BASER0 = 0x8107_0000_4000_0200n;
export const BASER1 = 0x8407_0000_4002_0200n;
// PROPBASER: PA 0x40040000 | IDbits 15 (16 bits) = 0x4004000f
export const PROPBASER = 0x4004_000fn;

// CTE: V << 63 | RDBase << 16 | ICID
export const CTE0 = 0x8000_0000_0000_0000n; // ICID 0 -> vCPU 0
export const CTE1 = 0x8000_0000_0001_0001n; // ICID 1 -> vCPU 1

// DTE: V << 63 | next << 49 | (ITT >> 8) << 5 | (bits - 1)
//   DTE[0x10]: next = 0x18 - 0x10 = 8 -> 8 << 49 = 0x0010000000000000
//              ITT 0x40030000 >> 8 = 0x400300; << 5 = 0x8006000; Size 1
//              = 0x8000000000000000 | 0x0010000000000000 | 0x8006000 | 1 = 0x8010000008006001
//   DTE[0x18]: next 0 (last); ITT 0x40030100 >> 8 = 0x400301; << 5 = 0x8006020; Size 0
//              = 0x8000000008006020
export const DTE_10 = 0x8010_0000_0800_6001n;
export const DTE_18 = 0x8000_0000_0800_6020n;

// ITE: next << 48 | pINTID << 16 | ICID
//   8192 = 0x2000, << 16 = 0x20000000; next 1 << 48 = 0x0001000000000000
export const ITE_10_0 = 0x0001_0000_2000_0000n; // event 0 -> 8192, ICID 0, next 1
export const ITE_10_1 = 0x0002_0000_2001_0001n; // event 1 -> 8193, ICID 1, next 2 (to event 3)
export const ITE_10_3 = 0x0000_0000_2003_0000n; // event 3 -> 8195, ICID 0, last
export const ITE_18_0 = 0x0000_0000_2004_0001n; // event 0 -> 8196, ICID 1, last

export interface Writer {
  writeU64Big(gpa: number, value: bigint): void;
}

export function writeConsistentTables(m: Writer): void {
  m.writeU64Big(CT_BASE + 0, CTE0);
  m.writeU64Big(CT_BASE + 8, CTE1);
  m.writeU64Big(DT_BASE + 0x10 * 8, DTE_10);
  m.writeU64Big(DT_BASE + 0x18 * 8, DTE_18);
  m.writeU64Big(ITT_10 + 0 * 8, ITE_10_0);
  m.writeU64Big(ITT_10 + 1 * 8, ITE_10_1);
  m.writeU64Big(ITT_10 + 3 * 8, ITE_10_3);
  m.writeU64Big(ITT_18 + 0 * 8, ITE_18_0);
}

/** The same image as bytes (for writing a file). */
export function consistentImage(): Buffer {
  const buf = Buffer.alloc(RAM_SIZE);
  writeConsistentTables({ writeU64Big: (gpa, v) => buf.writeBigUInt64LE(v, gpa - RAM_BASE) });
  return buf;
}
