/**
 * LpiSystem.acquireStaged (table restore takes the references of every staged LPI in one
 * call): the same LPIs, reference counts, targets, pending latches, configurations, guest RAM
 * writes and notifications as acquireMany called for each INTID of the list in order, whether
 * the guest bytes are read in place (one word window per table) or, when a table is not in
 * one backing view of guest memory, LPI by LPI. All or nothing on a failure.
 */
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { NO_VCPU } from '../../src/redist/types.js';
import { makeFixture, type Fixture } from './support/fixture.js';

const NR_VCPUS = 4;

interface Staged {
  ids: Uint32Array;
  count: number;
  targets: Int32Array;
  refs: Uint32Array;
}

interface Scenario {
  /** LPIs that exist before (INTID, target, references). */
  existing: [number, number, number][];
  /** Staged LPIs: INTID, target (NO_VCPU allowed), references. */
  staged: [number, number, number][];
  /** Configuration bytes and pending bits (vCPU, INTID) in guest RAM before. */
  configs: [number, number][];
  pending: [number, number][];
}

function staging(list: readonly [number, number, number][]): Staged {
  const targets = new Int32Array(0x10000).fill(NO_VCPU);
  const refs = new Uint32Array(0x10000);
  for (const [intid, target, n] of list) {
    targets[intid] = target;
    refs[intid] = n;
  }
  return { ids: Uint32Array.from(list.map(([intid]) => intid)), count: list.length, targets, refs };
}

function setUp(s: Scenario, windows: boolean): Fixture {
  const f = makeFixture({ nrVcpus: NR_VCPUS });
  for (const [intid, byte] of s.configs) f.setConfig(intid, byte);
  for (const [intid, target, n] of s.existing) expect(f.rd.acquireMany(intid, target, n)).toBe(true);
  for (const [vcpu, intid] of s.pending) f.setPendBit(vcpu, intid, true);
  f.mem.writes.length = 0;
  f.notified.length = 0;
  if (!windows) vi.spyOn(f.mem, 'wordWindow').mockReturnValue(null);
  return f;
}

/** Everything observable about the LPIs of the scenario, guest RAM writes and notifications. */
function observe(f: Fixture, s: Scenario): unknown {
  const intids = [...new Set([...s.existing.map((e) => e[0]), ...s.staged.map((e) => e[0])])].sort((a, b) => a - b);
  return {
    lpis: intids.map((intid) => [intid, f.rd.exists(intid), f.rd.refcount(intid), f.rd.target(intid), f.rd.isPending(intid), f.rd.priority(intid), f.rd.enabled(intid)]),
    pendingBits: s.pending.map(([v, intid]) => f.pendBit(v, intid)),
    writes: [...f.mem.writes],
    notified: [...f.notified],
  };
}

/** The reference: acquireMany per staged LPI, in order, undone on a failure as importEvents used to. */
function reference(f: Fixture, st: Staged): boolean {
  for (let i = 0; i < st.count; i++) {
    const intid = st.ids[i]!;
    if (!f.rd.acquireMany(intid, st.targets[intid]!, st.refs[intid]!)) {
      for (let j = 0; j < i; j++) f.rd.releaseMany(st.ids[j]!, st.refs[st.ids[j]!]!);
      return false;
    }
  }
  return true;
}

const intidArb = fc.integer({ min: 8192, max: 8192 + 300 });
const targetArb = fc.oneof(fc.integer({ min: 0, max: NR_VCPUS - 1 }), fc.constant(NO_VCPU));
const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  existing: fc.array(fc.tuple(intidArb, targetArb, fc.integer({ min: 1, max: 3 })), { maxLength: 10 }),
  staged: fc.uniqueArray(fc.tuple(intidArb, targetArb, fc.integer({ min: 1, max: 5 })), { maxLength: 40, selector: (t) => t[0] }),
  configs: fc.array(fc.tuple(intidArb, fc.integer({ min: 0, max: 255 })), { maxLength: 40 }),
  pending: fc.array(fc.tuple(fc.integer({ min: 0, max: NR_VCPUS - 1 }), intidArb), { maxLength: 30 }),
});

describe('acquireStaged', () => {
  for (const windows of [true, false]) {
    const how = windows ? 'bytes read in place' : 'no word window (LPI by LPI)';
    it(`${how}: the same state as acquireMany per LPI in list order (random lists)`, () => {
      fc.assert(
        fc.property(scenarioArb, (s) => {
          const st = staging(s.staged);
          const a = setUp(s, windows);
          const b = setUp(s, true);
          expect(a.rd.acquireStaged(st.ids, st.count, st.targets, st.refs)).toBe(reference(b, st));
          expect(observe(a, s)).toEqual(observe(b, s));
        }),
        { numRuns: 300, seed: 0x5eed },
      );
    });
  }

  it('reads the configuration byte in place, consumes a set pending bit (RAM write) and latches it', () => {
    const s: Scenario = {
      existing: [],
      staged: [[8195, 1, 2], [8200, NO_VCPU, 1], [9000, 3, 4]],
      configs: [[8195, 0xa1], [8200, 0x41], [9000, 0x61]],
      pending: [[3, 9000], [0, 8195]], // 8195's bit on vCPU 0 is not its target's: not consumed
    };
    const f = setUp(s, true);
    const windows = vi.spyOn(f.mem, 'wordWindow');
    const st = staging(s.staged);
    expect(f.rd.acquireStaged(st.ids, st.count, st.targets, st.refs)).toBe(true);
    expect(windows).toHaveBeenCalled();
    expect([f.rd.refcount(8195), f.rd.target(8195), f.rd.isPending(8195), f.rd.priority(8195), f.rd.enabled(8195)]).toEqual([2, 1, false, 0xa0, true]);
    expect([f.rd.refcount(8200), f.rd.target(8200), f.rd.priority(8200)]).toEqual([1, NO_VCPU, 0x40]);
    expect([f.rd.refcount(9000), f.rd.target(9000), f.rd.isPending(9000)]).toEqual([4, 3, true]);
    expect(f.pendBit(3, 9000)).toBe(false);
    expect(f.pendBit(0, 8195)).toBe(true);
    expect(f.mem.writes.length).toBe(1); // only 9000's pending byte
    expect(f.notified).toEqual([3]);
  });

  it('fails all or nothing: a bad target, a bad count or an INTID outside the LPI space releases what was taken', () => {
    for (const bad of [[8300, NR_VCPUS, 1], [8300, 0, 0], [100, 0, 1], [0x10000, 0, 1]] as [number, number, number][]) {
      const s: Scenario = { existing: [[8192, 0, 1]], staged: [[8192, 0, 2], [8193, 1, 1], bad, [8194, 2, 1]], configs: [], pending: [] };
      const f = setUp(s, true);
      const before = observe(f, s);
      const st = staging(s.staged);
      expect(f.rd.acquireStaged(st.ids, st.count, st.targets, st.refs), `${bad}`).toBe(false);
      expect(observe(f, s), `${bad}`).toEqual(before);
      expect(f.rd.refcount(8192)).toBe(1);
      expect(f.rd.exists(8193)).toBe(false);
    }
  });

  it('a count beyond the list is refused, changing nothing', () => {
    const s: Scenario = { existing: [], staged: [[8192, 0, 1]], configs: [], pending: [] };
    const f = setUp(s, true);
    const st = staging(s.staged);
    expect(f.rd.acquireStaged(st.ids, 2, st.targets, st.refs)).toBe(false);
    expect(f.rd.exists(8192)).toBe(false);
  });
});
