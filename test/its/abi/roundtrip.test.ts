/**
 * Property tests of save/restore on random ITS states built by random valid command streams
 * through the real command queue:
 * - save -> fresh VM on a COPY of guest RAM -> restore in KVM's register order: every
 *   (DeviceID, EventID) translates to the same (INTID, vCPU), every pending targeted LPI is
 *   still pending, and a save on the destination writes exactly the same bytes;
 * - an incremental save after random changes writes the same bytes as a full save.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NO_VCPU } from '../../../src/redist/types.js';
import { TestVm, copyMemory, readSavedRegs, restoreInto, smallLayout } from './harness.js';

const DEVICES = [0, 1, 2, 3, 7, 100, 1000, 8191];
const EVENTS = 32;
const ICIDS = 7;

type Cmd =
  | { op: 'mapd'; dev: number; bits: number; valid: boolean }
  | { op: 'mapc'; icid: number; target: number; valid: boolean }
  | { op: 'mapti'; dev: number; ev: number; icid: number }
  | { op: 'movi'; dev: number; ev: number; icid: number; pick: number }
  | { op: 'discard'; dev: number; ev: number; pick: number }
  | { op: 'int'; dev: number; ev: number; pick: number }
  | { op: 'clear'; dev: number; ev: number; pick: number }
  /** MAPC V=0 of the collection of a mapped event (its ITEs become orphans). */
  | { op: 'unmapcoll'; pick: number }
  /** MAPD (5 EventID bits) then MAPTI of `count` consecutive events: a dense ITT, saved as one block. */
  | { op: 'mapmany'; dev: number; ev: number; count: number; icid: number };

function cmdArb(nrVcpus: number): fc.Arbitrary<Cmd> {
  const dev = fc.constantFrom(...DEVICES);
  const ev = fc.nat({ max: EVENTS - 1 });
  const icid = fc.nat({ max: ICIDS - 1 });
  const pick = fc.oneof({ weight: 3, arbitrary: fc.nat({ max: 1000 }) }, { weight: 1, arbitrary: fc.constant(-1) });
  return fc.oneof(
    { weight: 2, arbitrary: fc.record({ op: fc.constant('mapd' as const), dev, bits: fc.integer({ min: 1, max: 5 }), valid: fc.boolean().map((b) => b || Math.random() < 0.7) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('mapc' as const), icid, target: fc.nat({ max: nrVcpus - 1 }), valid: fc.nat({ max: 9 }).map((n) => n > 0) }) },
    { weight: 6, arbitrary: fc.record({ op: fc.constant('mapti' as const), dev, ev, icid }) },
    // pick >= 0: the pick-th currently mapped event (so the command hits); -1: (dev, ev) as given.
    { weight: 2, arbitrary: fc.record({ op: fc.constant('movi' as const), dev, ev, icid, pick }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('discard' as const), dev, ev, pick }) },
    { weight: 6, arbitrary: fc.record({ op: fc.constant('int' as const), dev, ev, pick }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('clear' as const), dev, ev, pick }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('unmapcoll' as const), pick: fc.nat({ max: 1000 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('mapmany' as const), dev, ev: fc.nat({ max: 7 }), count: fc.integer({ min: 8, max: 24 }), icid }) },
  );
}

/** Runs commands; MAPTI INTIDs are fresh (8192 + counter) so no LPI is shared by two ITEs. */
class Driver {
  private nextIntid = 8192;
  /** Collections 0..2 are mapped first (as a guest maps one per CPU); ICIDs 3..6 start unmapped. */
  constructor(readonly t: TestVm) {
    for (let icid = 0; icid < 3; icid++) t.mapc(icid, icid % t.nrVcpus);
  }
  /** Currently mapped (DeviceID, EventID) pairs of the grid, in order. */
  mapped(): [number, number][] {
    const out: [number, number][] = [];
    for (const d of DEVICES) for (let e = 0; e < EVENTS; e++) if (this.t.its.translate(d, e) !== 0) out.push([d, e]);
    return out;
  }
  target(c: { dev: number; ev: number; pick: number }): [number, number] {
    if (c.pick < 0) return [c.dev, c.ev];
    const mapped = this.mapped();
    return mapped.length === 0 ? [c.dev, c.ev] : mapped[c.pick % mapped.length]!;
  }
  run(cmds: readonly Cmd[]): void {
    const t = this.t;
    for (const c of cmds) {
      switch (c.op) {
        case 'mapd': t.mapd(c.dev, c.bits, t.layout.itt(c.dev), c.valid); break;
        case 'mapc': t.mapc(c.icid, c.target, c.valid); break;
        case 'mapti': t.mapti(c.dev, c.ev, this.nextIntid++, c.icid); break;
        case 'movi': { const [d, e] = this.target(c); t.movi(d, e, c.icid); break; }
        case 'discard': { const [d, e] = this.target(c); t.discard(d, e); break; }
        case 'int': { const [d, e] = this.target(c); t.int(d, e); break; }
        case 'clear': { const [d, e] = this.target(c); t.clear(d, e); break; }
        case 'unmapcoll': {
          const mapped = this.mapped();
          if (mapped.length === 0) break;
          const [d, e] = mapped[c.pick % mapped.length]!;
          const icid = t.its.eventCollection(d, e);
          if (icid >= 0 && icid < 0x10000) t.mapc(icid, 0, false);
          break;
        }
        case 'mapmany':
          t.mapd(c.dev, 5, t.layout.itt(c.dev));
          for (let e = c.ev; e < c.ev + c.count && e < EVENTS; e++) t.mapti(c.dev, e, this.nextIntid++, c.icid);
          break;
      }
    }
  }
}

/** Guest RAM outside the pending tables (restore consumes pending bits there). */
function ramWithoutPending(t: TestVm): Uint8Array {
  const bytes = new Uint8Array(t.memory.buffers[0]!.slice(0));
  const L = t.layout;
  const start = L.pend(0) - L.prop;
  bytes.fill(0, start, start + t.nrVcpus * 0x1_0000);
  return bytes;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : Math.min(a.length, b.length);
}

describe('save -> restore round trip (property)', () => {
  it('preserves translations, targets and pending state, and re-saves identical bytes', () => {
    const seen = { translations: 0, orphans: 0, pending: 0 };
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }).chain((n) => fc.tuple(fc.constant(n), fc.array(cmdArb(n), { minLength: 1, maxLength: 60 }), fc.array(cmdArb(n), { maxLength: 30 }))),
        ([nrVcpus, before, after]) => {
          const src = new TestVm({ nrVcpus, layout: smallLayout() });
          const drv = new Driver(src);
          drv.run(before);
          src.saveTables(); // first save: full
          drv.run(after); // then changes: the final save is incremental
          src.savePendingTables();
          src.saveTables();
          const regs = readSavedRegs(src);
          const dst = restoreInto(copyMemory(src.memory), regs, { nrVcpus, layout: smallLayout() });

          const s = src.its;
          const d = dst.its;
          for (const dev of DEVICES) {
            for (let ev = 0; ev < EVENTS; ev++) {
              const intid = s.translate(dev, ev);
              if (intid === 0) {
                expect(d.translate(dev, ev), `dev ${dev} ev ${ev} resurrected`).toBe(0);
                continue;
              }
              const orphan = !s.hasCollection(s.eventCollection(dev, ev));
              if (orphan) {
                // Saved as an invalid ITE (hardening: MAPC V=0 with live ITEs).
                expect(d.translate(dev, ev)).toBe(0);
                seen.orphans++;
                continue;
              }
              seen.translations++;
              expect(d.translate(dev, ev), `dev ${dev} ev ${ev}`).toBe(intid);
              const target = src.vm.lpis!.target(intid);
              expect(dst.vm.lpis!.target(intid)).toBe(target);
              if (target !== NO_VCPU) {
                expect(dst.vm.lpis!.isPending(intid), `pending ${intid}`).toBe(src.vm.lpis!.isPending(intid));
                if (src.vm.lpis!.isPending(intid)) seen.pending++;
              }
            }
          }
          expect(d.deviceCount()).toBe(s.deviceCount());

          // Saving again on the destination writes the same bytes.
          dst.saveTables();
          const a = ramWithoutPending(src);
          const b = ramWithoutPending(dst);
          const at = firstDifference(a, b);
          expect(at, `first differing byte at GPA 0x${(at + src.layout.prop).toString(16)}`).toBe(-1);
        },
      ),
      { numRuns: 60 },
    );
    // The generated states were not trivial.
    expect(seen.translations).toBeGreaterThan(200);
    expect(seen.orphans).toBeGreaterThan(0);
    expect(seen.pending).toBeGreaterThan(5);
  });
});

describe('incremental save (property)', () => {
  it('writes the same bytes as a full save after random changes', () => {
    let incrementalSaves = 0;
    let blocks = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }).chain((n) =>
          fc.tuple(fc.constant(n), fc.array(cmdArb(n), { minLength: 1, maxLength: 60 }), fc.array(fc.array(cmdArb(n), { maxLength: 25 }), { minLength: 1, maxLength: 4 })),
        ),
        ([nrVcpus, setup, rounds]) => {
          // Two identical VMs fed the same commands; one saves incrementally, one fully.
          const inc = new TestVm({ nrVcpus, layout: smallLayout() });
          const full = new TestVm({ nrVcpus, layout: smallLayout() });
          const di = new Driver(inc);
          const df = new Driver(full);
          di.run(setup);
          df.run(setup);
          inc.saveTables();
          full.saveTables();
          for (const cmds of rounds) {
            di.run(cmds);
            df.run(cmds);
            const r = inc.vm.tablesOf(inc.itsId)!.save();
            if (!r.full) incrementalSaves++;
            blocks += r.ittBlocks;
            blocks += full.vm.tablesOf(full.itsId)!.save({ full: true }).ittBlocks;
            const a = new Uint8Array(inc.memory.buffers[0]!);
            const b = new Uint8Array(full.memory.buffers[0]!);
            const at = firstDifference(a, b);
            expect(at, `first differing byte at GPA 0x${(at + inc.layout.prop).toString(16)}`).toBe(-1);
          }
        },
      ),
      { numRuns: 60 },
    );
    // The property must have exercised the incremental path, not only full fallbacks.
    expect(incrementalSaves).toBeGreaterThan(30);
    // ... and ITTs written as blocks as well as entry by entry.
    expect(blocks).toBeGreaterThan(10);
  });
});
