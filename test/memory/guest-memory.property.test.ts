/**
 * Model-based property test: random sequences of accesses, many of them at region and chunk
 * edges, against a byte-by-byte reference model (no DataView, no caching): same values, same
 * faults, same refusals while frozen, same dirty pages, same byte count.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { GuestMemoryFault, GuestMemoryFrozen } from '../../src/memory/errors.js';
import type { GuestRegion } from '../../src/memory/guest-memory.js';
import { dirtyPages } from './helpers.js';

const PAGE = 4096;
const CHUNK = 2 * PAGE;
// Regions at odd page numbers (so the dirty bits do not start at bit 0 of a log byte), two of
// them adjacent, one spanning several chunks.
const REGIONS: GuestRegion[] = [
  { gpa: 3 * PAGE, size: 5 * PAGE },
  { gpa: 8 * PAGE, size: 2 * PAGE }, // adjacent to the first
  { gpa: 17 * PAGE, size: 7 * PAGE },
];
const END = 24 * PAGE;

class ReferenceMemory {
  readonly bytes = REGIONS.map((r) => new Uint8Array(r.size));
  readonly dirty = new Set<number>();
  frozen = false;
  written = 0;

  private region(gpa: number, len: number): number {
    if (!Number.isInteger(gpa)) return -1;
    return REGIONS.findIndex((r) => gpa >= r.gpa && gpa + len <= r.gpa + r.size);
  }

  read(gpa: number, len: number): number[] | 'fault' {
    const r = this.region(gpa, len);
    if (r < 0) return 'fault';
    return Array.from({ length: len }, (_, i) => this.bytes[r]![gpa - REGIONS[r]!.gpa + i]!);
  }

  write(gpa: number, data: number[]): 'fault' | 'frozen' | 'ok' {
    const r = this.region(gpa, data.length);
    if (r < 0) return 'fault';
    if (this.frozen) return 'frozen';
    data.forEach((b, i) => {
      this.bytes[r]![gpa - REGIONS[r]!.gpa + i] = b & 0xff;
      this.dirty.add(Math.floor((gpa + i) / PAGE));
    });
    this.written += data.length;
    return 'ok';
  }
}

/** Little-endian bytes of an unsigned value (arithmetic, not DataView). */
function le(value: number, len: number): number[] {
  return Array.from({ length: len }, (_, i) => Math.floor(value / 256 ** i) % 256);
}

type Op =
  | { kind: 'read'; size: 1 | 2 | 4 | 8; gpa: number; part: 'lo' | 'hi' | 'into' | 'big'; warm: boolean }
  | { kind: 'write'; size: 1 | 2 | 4 | 8; gpa: number; value: number; hi: number; big: boolean; warm: boolean }
  | { kind: 'bytes'; gpa: number; data: number[] }
  | { kind: 'fill'; gpa: number; len: number; byte: number }
  | { kind: 'freeze' }
  | { kind: 'thaw' };

// Addresses near every interesting edge: region starts/ends, chunk and page boundaries.
const edges = [0, ...REGIONS.flatMap((r) => [r.gpa, r.gpa + r.size]), ...Array.from({ length: 25 }, (_, i) => i * PAGE)];
const gpaArb = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(fc.constantFrom(...edges), fc.integer({ min: -8, max: 2 })).map(([e, d]) => e + d) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: END + PAGE }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, Number.NaN, 2 ** 53, 4096.5) },
);
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('read' as const), size: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const), gpa: gpaArb, part: fc.constantFrom('lo' as const, 'hi' as const, 'into' as const, 'big' as const), warm: fc.boolean() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('write' as const), size: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const), gpa: gpaArb, value: u32, hi: u32, big: fc.boolean(), warm: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bytes' as const), gpa: gpaArb, data: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 3 * PAGE }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('fill' as const), gpa: gpaArb, len: fc.integer({ min: 1, max: 3 * PAGE }), byte: fc.integer({ min: 0, max: 255 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'freeze' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'thaw' as const }) },
);

function outcome(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (e) {
    if (e instanceof GuestMemoryFault) return 'fault';
    if (e instanceof GuestMemoryFrozen) return 'frozen';
    throw e;
  }
}

describe('ChunkedGuestMemory against a byte model', () => {
  it('agrees on values, faults, frozen refusals, dirty pages and bytes written', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 80, size: 'max' }), (ops) => {
        const mem = new ArrayBufferGuestMemory(REGIONS, undefined, { chunkSize: CHUNK });
        const log = new Uint8Array(END / PAGE / 8);
        mem.setDirtyLog(log);
        const model = new ReferenceMemory();
        for (const op of ops) {
          expect(dirtyPages(log)).toEqual([...model.dirty].sort((a, b) => a - b));
          if ((op.kind === 'read' || op.kind === 'write') && op.warm) {
            // A byte just below the access: its chunk becomes the cached one, so the access
            // itself runs the fast path (or must leave it at the chunk's end).
            expect(outcome(() => [mem.readU8(op.gpa - 8)])).toEqual(model.read(op.gpa - 8, 1));
          }
          switch (op.kind) {
            case 'read': {
              const expected = model.read(op.gpa, op.size);
              const got = outcome(() => {
                if (op.size === 1) return [mem.readU8(op.gpa)];
                if (op.size === 2) return le(mem.readU16(op.gpa), 2);
                if (op.size === 4) return le(mem.readU32(op.gpa), 4);
                if (op.part === 'lo') return [...le(mem.readU64Lo(op.gpa), 4), ...(expected === 'fault' ? [] : expected.slice(4))];
                if (op.part === 'hi') return [...(expected === 'fault' ? [] : expected.slice(0, 4)), ...le(mem.readU64Hi(op.gpa), 4)];
                if (op.part === 'big') {
                  const v = mem.readU64Big(op.gpa);
                  return [...le(Number(v & 0xffffffffn), 4), ...le(Number(v >> 32n), 4)];
                }
                const out = new Uint32Array(3);
                mem.readU64Into(op.gpa, out, 1);
                return [...le(out[1]!, 4), ...le(out[2]!, 4)];
              });
              expect(got).toEqual(expected);
              break;
            }
            case 'write': {
              const bytes = op.size === 8 ? [...le(op.value, 4), ...le(op.hi, 4)] : le(op.value % 256 ** op.size, op.size);
              const expected = model.write(op.gpa, bytes);
              const got = outcome(() => {
                if (op.size === 1) mem.writeU8(op.gpa, op.value);
                else if (op.size === 2) mem.writeU16(op.gpa, op.value);
                else if (op.size === 4) mem.writeU32(op.gpa, op.value);
                else if (op.big) mem.writeU64Big(op.gpa, (BigInt(op.hi) << 32n) | BigInt(op.value));
                else mem.writeU64(op.gpa, op.value, op.hi);
                return 'ok';
              });
              expect(got).toBe(expected);
              break;
            }
            case 'bytes': {
              const expected = model.write(op.gpa, op.data);
              expect(outcome(() => (mem.writeBytes(op.gpa, Uint8Array.from(op.data)), 'ok'))).toBe(expected);
              const back = model.read(op.gpa, op.data.length);
              const got = outcome(() => {
                const dst = new Uint8Array(op.data.length);
                mem.readBytes(op.gpa, dst);
                return [...dst];
              });
              expect(got).toEqual(back);
              break;
            }
            case 'fill': {
              const expected = model.write(op.gpa, new Array<number>(op.len).fill(op.byte));
              expect(outcome(() => (mem.fill(op.gpa, op.len, op.byte), 'ok'))).toBe(expected);
              break;
            }
            case 'freeze':
              mem.freeze();
              model.frozen = true;
              break;
            case 'thaw':
              mem.thaw();
              model.frozen = false;
              break;
          }
        }
        expect(dirtyPages(log)).toEqual([...model.dirty].sort((a, b) => a - b));
        expect(mem.bytesWritten).toBe(model.written);
        // every byte of every region, read back one by one
        REGIONS.forEach((r, i) => {
          const all = new Uint8Array(r.size);
          mem.readBytes(r.gpa, all);
          expect(Buffer.from(all).equals(Buffer.from(model.bytes[i]!))).toBe(true);
        });
      }),
      { numRuns: 300 },
    );
  });
});
