import { describe, expect, it } from 'vitest';
import {
  LOCATE_NOT_IN_MEMORY, LOCATE_OUT_OF_TABLE, baserAddress, baserTableBytes, cbaserAddress, cmdQueueBytes, decodeBaser,
  locateEntry, locateSlotIn,
} from '../../src/its/tables.js';
import { decodeBaser as decodeAbiBaser } from '../../src/its/abi/baser.js';
import { locateSlot } from '../../src/its/abi/locate.js';
import { RAM_BASE, RAM_END, VALID, makeMemory } from './helpers.js';

const TYPE_DEVICE = 1n << 56n;
const TYPE_COLLECTION = 4n << 56n;
const ESZ8 = 7n << 48n;
const INDIRECT = 1n << 62n;

function baser(type: bigint, addr: number, pages = 1, indirect = false): bigint {
  return VALID | (indirect ? INDIRECT : 0n) | type | ESZ8 | (2n << 8n) | BigInt(addr) | BigInt(pages - 1);
}

describe('BASER/CBASER decode', () => {
  it('address uses PA[47:16] from bits 47:16 and PA[51:48] from bits 15:12', () => {
    expect(baserAddress(0x0000_1234_5678_0000n)).toBe(0x1234_5678_0000);
    // bits 15:12 = 0xa -> PA[51:48] = 0xa: 0xa << 48 = 0xa_0000_0000_0000
    expect(baserAddress(0x0000_0000_0001_a000n)).toBe(0xa_0000_0001_0000);
    // bits 63:48 (Valid, Type, Entry_Size...) and 11:0 are not address bits
    expect(baserAddress(0xffff_0000_0000_0fffn)).toBe(0);
    expect(baserTableBytes(0n)).toBe(0x1_0000);
    expect(baserTableBytes(0xffn)).toBe(256 * 0x1_0000);
    const g = decodeBaser(baser(TYPE_COLLECTION, 0x4002_0000, 3));
    expect(g).toEqual({ type: 4, valid: true, indirect: false, entrySize: 8, base: 0x4002_0000, tableBytes: 3 * 0x1_0000 });
  });

  it('CBASER: PA bits 51:12, (Size+1) * 4 KiB', () => {
    expect(cbaserAddress(VALID | 0x000f_ffff_ffff_f0ffn)).toBe(0xf_ffff_ffff_f000);
    expect(cmdQueueBytes(0n)).toBe(4096);
    expect(cmdQueueBytes(0xffn)).toBe(256 * 4096);
  });
});

describe('locateEntry (vgic_its_check_id)', () => {
  const memory = makeMemory();
  const T = RAM_BASE + 0x2_0000;

  it('flat tables: base + id * 8 while id < (Size+1) * 64K / 8', () => {
    const b = baser(TYPE_DEVICE, T);
    expect(locateEntry(memory, b, 0)).toBe(T);
    expect(locateEntry(memory, b, 8191)).toBe(T + 8191 * 8);
    expect(locateEntry(memory, b, 8192)).toBe(-1); // one 64 KiB page holds 8192 entries
    expect(locateEntry(memory, baser(TYPE_DEVICE, T, 2), 8192)).toBe(T + 8192 * 8);
    // Valid is not checked here (callers do).
    expect(locateEntry(memory, b & ~VALID, 5)).toBe(T + 40);
  });

  it('DeviceIDs above 0xFFFF and ICIDs above 0xFFFF fail whatever the table size', () => {
    const big = (type: bigint): bigint => baser(type, RAM_BASE, 256); // 16 MiB: 2M entries
    expect(locateEntry(memory, big(TYPE_DEVICE), 0xffff)).toBe(RAM_BASE + 0xffff * 8);
    expect(locateEntry(memory, big(TYPE_DEVICE), 0x10000)).toBe(-1);
    expect(locateEntry(memory, big(TYPE_COLLECTION), 0xffff)).toBe(RAM_BASE + 0xffff * 8);
    expect(locateEntry(memory, big(TYPE_COLLECTION), 0x10000)).toBe(-1);
  });

  it('other table types fail', () => {
    for (const t of [0n, 2n, 3n, 5n, 7n]) expect(locateEntry(memory, baser(t << 56n, T), 0)).toBe(-1);
  });

  it('an entry outside guest memory fails (table in the last 64 KiB with Size 2)', () => {
    const last = RAM_END - 0x1_0000;
    const b = baser(TYPE_DEVICE, last, 2);
    expect(locateEntry(memory, b, 8191)).toBe(last + 8191 * 8);
    expect(locateEntry(memory, b, 8192)).toBe(-1);
    expect(locateEntry(memory, baser(TYPE_DEVICE, 0x1000_0000), 0)).toBe(-1);
  });

  it('two-level: L1 index id / 8192, valid bit 63, L2 address GENMASK(51,16) + (id % 8192) * 8', () => {
    const mem = makeMemory();
    const l1 = RAM_BASE + 0x5_0000;
    const l2a = RAM_BASE + 0x6_0000;
    const l2b = RAM_BASE + 0x8_0000;
    const b = baser(TYPE_DEVICE, l1, 1, true);
    // L1[0] valid with junk in bits 15:0 and 62:52 (ignored); L1[1] invalid; L1[2] valid; L1[3] outside RAM.
    mem.writeU64Big(l1, VALID | (0x7ffn << 52n) | BigInt(l2a) | 0xabcdn);
    mem.writeU64Big(l1 + 8, BigInt(l2b));
    mem.writeU64Big(l1 + 16, VALID | BigInt(l2b));
    mem.writeU64Big(l1 + 24, VALID | 0x10_0000_0000n);
    expect(locateEntry(mem, b, 0)).toBe(l2a);
    expect(locateEntry(mem, b, 5)).toBe(l2a + 5 * 8); // not the page start
    expect(locateEntry(mem, b, 8191)).toBe(l2a + 8191 * 8);
    expect(locateEntry(mem, b, 8192)).toBe(-1); // L1[1] invalid
    expect(locateEntry(mem, b, 2 * 8192 + 7)).toBe(l2b + 7 * 8);
    expect(locateEntry(mem, b, 3 * 8192)).toBe(-1); // L2 outside RAM
    expect(locateEntry(mem, b, 0x10000)).toBe(-1);
    // L1 table itself outside RAM: unreadable L1 entry.
    expect(locateEntry(mem, baser(TYPE_DEVICE, 0x1000_0000, 1, true), 0)).toBe(-1);
  });

  it('never throws on odd ids', () => {
    const b = baser(TYPE_DEVICE, T);
    for (const id of [-1, 0.5, Number.NaN, Infinity, 2 ** 32, 2 ** 53]) expect(locateEntry(memory, b, id)).toBe(-1);
  });
});

describe('one vgic_its_check_id for the core and the table ABI', () => {
  it('tells why there is no slot, and the ABI adapter agrees with the core on every case', () => {
    const mem = makeMemory();
    const l1 = RAM_BASE + 0x5_0000;
    const l2 = RAM_BASE + 0x6_0000;
    // L1[0] valid -> l2; L1[1] invalid; L1[2] valid but its page is outside RAM (0x10_0000_0000).
    mem.writeU64Big(l1, VALID | BigInt(l2));
    mem.writeU64Big(l1 + 16, VALID | 0x10_0000_0000n);
    const indirect = baser(TYPE_DEVICE, l1, 1, true);
    const flatNearEnd = baser(TYPE_DEVICE, RAM_END - 0x1_0000, 2); // second page outside RAM
    const l1Outside = baser(TYPE_DEVICE, 0x1000_0000, 1, true);
    const cases: [bigint, number, number][] = [
      [indirect, 3, l2 + 3 * 8],
      [indirect, 8192, LOCATE_OUT_OF_TABLE], // L1[1] invalid
      [indirect, 2 * 8192, LOCATE_NOT_IN_MEMORY], // L2 page outside RAM
      [indirect, 0x10000, LOCATE_OUT_OF_TABLE], // past the 16-bit ID space
      [flatNearEnd, 8191, RAM_END - 8],
      [flatNearEnd, 8192, LOCATE_NOT_IN_MEMORY], // slot 8192 = RAM_END: in the table, not in RAM
      [flatNearEnd, 2 * 8192, LOCATE_OUT_OF_TABLE], // past 2 pages of 8192 slots
      [l1Outside, 0, LOCATE_NOT_IN_MEMORY],
      [baser(2n << 56n, RAM_BASE), 0, LOCATE_OUT_OF_TABLE], // not a device/collection table
    ];
    for (const [b, id, want] of cases) {
      expect(locateSlotIn(mem, decodeBaser(b), id)).toBe(want);
      expect(locateSlot(mem, decodeAbiBaser(b), id)).toBe(want);
      expect(locateEntry(mem, b, id)).toBe(want < 0 ? -1 : want);
    }
  });
});
