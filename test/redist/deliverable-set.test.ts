import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DeliverableSet, lowestBit } from '../../src/redist/deliverable-set.js';

describe('DeliverableSet', () => {
  it('lowestBit gives the index of the lowest set bit', () => {
    expect([1, 2, 0x80000000 | 0, 0b1011000, 0xffffffff | 0].map(lowestBit)).toEqual([0, 1, 31, 3, 0]);
  });

  it('keeps per-vCPU membership and counts; add reports the count before', () => {
    const s = new DeliverableSet(3);
    expect(s.add(1, 8192)).toBe(0);
    expect(s.add(1, 8192)).toBe(1); // already there: count unchanged
    expect(s.add(1, 65535)).toBe(1);
    expect([s.count(0), s.count(1), s.count(2)]).toEqual([0, 2, 0]);
    expect([s.has(1, 8192), s.has(0, 8192)]).toEqual([true, false]);
    s.remove(1, 8192);
    s.remove(1, 8192);
    expect(s.count(1)).toBe(1);
    s.clear();
    expect(s.count(1)).toBe(0);
    expect(s.findMin(1, new Uint8Array(65536), 0xfc, 0)).toBe(-1);
  });

  it('findMin = lowest key, ties to lowest INTID (property, vs a sort)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 8192, max: 65535 }), { minLength: 1, maxLength: 60 }),
        fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 60, maxLength: 60 }),
        (intids, bytes) => {
          const key = new Uint8Array(65536);
          intids.forEach((i, k) => (key[i] = bytes[k]!));
          const s = new DeliverableSet(2);
          intids.forEach((i) => s.add(1, i));
          const want = [...intids].sort((a, b) => (key[a]! & 0xfc) - (key[b]! & 0xfc) || a - b)[0];
          return s.findMin(1, key, 0xfc, 0) === want && s.findMin(0, key, 0xfc, 0) === -1;
        },
      ),
    );
  });
});
