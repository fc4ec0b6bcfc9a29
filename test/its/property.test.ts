/**
 * Property test: 10^5 random commands (valid and hostile fields) written into a real command
 * queue in guest RAM and run through GITS_CWRITER writes. Nothing may throw, and every
 * (DeviceID, EventID) translation, ITE collection, collection list and LPI refcount must
 * agree with the reference model below: plain Maps with KVM's semantics (kvm-its-abi.md 6.3).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ITE_NO_COLLECTION } from '../../src/its/table-state.js';
import { GITS_CTLR } from '../../src/its/types.js';
import { ITT_BASE, NR_VCPUS, RAM_BASE, RAM_END, cmd, type Command, makeVm } from './helpers.js';

// ---- The reference model ----

type Cmd =
  | { op: 'MAPD'; dev: number; size: number; itt: number; v: boolean }
  | { op: 'MAPC'; icid: number; rd: number; v: boolean }
  | { op: 'MAPTI'; dev: number; ev: number; intid: number; icid: number }
  | { op: 'MAPI'; dev: number; ev: number; icid: number }
  | { op: 'DISCARD' | 'INT' | 'CLEAR' | 'INV'; dev: number; ev: number }
  | { op: 'MOVI'; dev: number; ev: number; icid: number }
  | { op: 'MOVALL'; rd1: number; rd2: number }
  | { op: 'INVALL'; icid: number }
  | { op: 'SYNC' }
  | { op: 'RAW'; opcode: number };

interface ModelEvent {
  intid: number;
  /** null: the collection was freed under the ITE. */
  icid: number | null;
}

/** Geometry of the fixture: flat one-page device and collection tables (8192 entries), 16-bit LPIs. */
const DEVICE_SLOTS = 8192;
const COLLECTION_SLOTS = 8192;

class Model {
  readonly devices = new Map<number, { itt: number; bits: number; events: Map<number, ModelEvent> }>();
  /** ICID -> target vCPU (-1: not mapped); Map order = creation order. */
  readonly collections = new Map<number, number>();

  private mapped(icid: number | null): boolean {
    return icid !== null && (this.collections.get(icid) ?? -1) >= 0;
  }

  private find(dev: number, ev: number): ModelEvent | undefined {
    return this.devices.get(dev)?.events.get(ev);
  }

  apply(c: Cmd): void {
    switch (c.op) {
      case 'MAPD': {
        if (c.dev > 0xffff || c.dev >= DEVICE_SLOTS) return; // MAPD_DEVICE_OOR, even for V=0
        if (c.v && c.size + 1 > 16) return; // MAPD_ITTSIZE_OOR
        this.devices.delete(c.dev);
        if (c.v) this.devices.set(c.dev, { itt: c.itt, bits: c.size + 1, events: new Map() });
        return;
      }
      case 'MAPC': {
        if (!c.v) {
          if (!this.collections.has(c.icid)) return;
          this.collections.delete(c.icid);
          for (const d of this.devices.values()) for (const e of d.events.values()) if (e.icid === c.icid) e.icid = null;
          return;
        }
        if (c.rd >= NR_VCPUS) return; // MAPC_PROCNUM_OOR
        if (!this.collections.has(c.icid) && c.icid >= COLLECTION_SLOTS) return; // MAPC_COLLECTION_OOR
        this.collections.set(c.icid, c.rd); // existing keys keep their place
        return;
      }
      case 'MAPTI':
      case 'MAPI': {
        const d = this.devices.get(c.dev);
        if (!d) return;
        if (c.ev >= 2 ** d.bits) return;
        const slot = d.itt + c.ev * 8;
        if (slot < RAM_BASE || slot + 8 > RAM_END) return; // ITE slot not in guest memory
        const intid = c.op === 'MAPTI' ? c.intid : c.ev;
        if (intid < 8192 || intid >= 65536) return;
        if (d.events.has(c.ev)) return;
        if (!this.collections.has(c.icid)) {
          if (c.icid >= COLLECTION_SLOTS) return;
          this.collections.set(c.icid, -1);
        }
        d.events.set(c.ev, { intid, icid: c.icid });
        return;
      }
      case 'DISCARD': {
        const e = this.find(c.dev, c.ev);
        if (e && this.mapped(e.icid)) this.devices.get(c.dev)!.events.delete(c.ev);
        return;
      }
      case 'MOVI': {
        const e = this.find(c.dev, c.ev);
        if (e && this.mapped(e.icid) && this.mapped(c.icid)) e.icid = c.icid;
        return;
      }
      default:
        return; // no effect on translations or collections
    }
  }
}

// ---- Generators: mostly small valid IDs, sometimes values at or past a bound ----

const devArb = fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 0, max: 5 }) }, { weight: 1, arbitrary: fc.constantFrom(8191, 8192, 0xffff, 0x10000, 0xffff_ffff) });
const evArb = fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 0, max: 20 }) }, { weight: 1, arbitrary: fc.constantFrom(255, 256, 1023, 65535, 65536, 0xffff_ffff) });
const sizeArb = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 5 }) }, { weight: 1, arbitrary: fc.constantFrom(9, 15, 16, 31) });
const ittArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 7 }).map((n) => ITT_BASE + n * 0x1_0000) },
  { weight: 1, arbitrary: fc.constantFrom(RAM_END - 256, RAM_BASE - 0x1_0000, 0x7_0000_0000, 0) },
);
const intidArb = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 8192, max: 8200 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 8191, 65535, 65536, 0xffff_ffff) });
const icidArb = fc.oneof({ weight: 10, arbitrary: fc.integer({ min: 0, max: 4 }) }, { weight: 1, arbitrary: fc.constantFrom(8191, 8192, 0xffff) });
const rdArb = fc.oneof({ weight: 10, arbitrary: fc.integer({ min: 0, max: NR_VCPUS }) }, { weight: 1, arbitrary: fc.constant(0xffff_ffff) });
const vArb = fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) });

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('MAPD' as const), dev: devArb, size: sizeArb, itt: ittArb, v: vArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('MAPC' as const), icid: icidArb, rd: rdArb, v: vArb }) },
  { weight: 8, arbitrary: fc.record({ op: fc.constant('MAPTI' as const), dev: devArb, ev: evArb, intid: intidArb, icid: icidArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('MAPI' as const), dev: devArb, ev: fc.oneof(evArb, fc.integer({ min: 8190, max: 8200 })), icid: icidArb }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constantFrom('DISCARD' as const, 'INT' as const, 'CLEAR' as const, 'INV' as const), dev: devArb, ev: evArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('MOVI' as const), dev: devArb, ev: evArb, icid: icidArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('MOVALL' as const), rd1: rdArb, rd2: rdArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('INVALL' as const), icid: icidArb }) },
  { weight: 1, arbitrary: fc.constant({ op: 'SYNC' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('RAW' as const), opcode: fc.constantFrom(0x00, 0x02, 0x07, 0x21, 0x2a, 0xff) }) },
);

function encode(c: Cmd): Command {
  switch (c.op) {
    case 'MAPD': return cmd.mapd(c.dev, c.size, c.itt, c.v);
    case 'MAPC': return cmd.mapc(c.icid, c.rd, c.v);
    case 'MAPTI': return cmd.mapti(c.dev, c.ev, c.intid, c.icid);
    case 'MAPI': return cmd.mapi(c.dev, c.ev, c.icid);
    case 'DISCARD': return cmd.discard(c.dev, c.ev);
    case 'INT': return cmd.int(c.dev, c.ev);
    case 'CLEAR': return cmd.clear(c.dev, c.ev);
    case 'INV': return cmd.inv(c.dev, c.ev);
    case 'MOVI': return cmd.movi(c.dev, c.ev, c.icid);
    case 'MOVALL': return cmd.movall(c.rd1, c.rd2);
    case 'INVALL': return cmd.invall(c.icid);
    case 'SYNC': return cmd.sync();
    case 'RAW': return cmd.raw(c.opcode);
  }
}

const CHECK_DEVS = [0, 1, 2, 3, 4, 5, 8191, 0xffff];
const CHECK_EVENTS = [...Array.from({ length: 21 }, (_, i) => i), 255, 256, 1023, 65535, 8190, 8191, 8192, 8200];

/** Compares the ITS with the model (one expect per aspect, so that a check stays cheap). */
function checkAgainst(model: Model, vm: ReturnType<typeof makeVm>): void {
  const { its, lpis } = vm;
  const actual: number[] = [];
  const expected: number[] = [];
  for (const dev of CHECK_DEVS) {
    actual.push(its.hasDevice(dev) ? 1 : 0);
    expected.push(model.devices.has(dev) ? 1 : 0);
    const events = model.devices.get(dev)?.events;
    for (const ev of CHECK_EVENTS) {
      const e = events?.get(ev);
      actual.push(its.translate(dev, ev), its.eventCollection(dev, ev));
      expected.push(e?.intid ?? 0, e ? (e.icid ?? ITE_NO_COLLECTION) : -1);
    }
  }
  expect(actual).toEqual(expected);
  let events = 0;
  const refs = new Map<number, number>();
  for (const d of model.devices.values()) {
    events += d.events.size;
    for (const e of d.events.values()) refs.set(e.intid, (refs.get(e.intid) ?? 0) + 1);
  }
  const counts = [its.deviceCount(), its.eventCount()];
  const modelCounts = [model.devices.size, events];
  for (let intid = 8190; intid <= 8200; intid++) {
    counts.push(lpis.refcount(intid));
    modelCounts.push(refs.get(intid) ?? 0);
  }
  expect(counts).toEqual(modelCounts);
  const cols: [number, number][] = [];
  its.forEachCollection((icid, target) => cols.push([icid, target]));
  expect(cols).toEqual([...model.collections.entries()]);
}

describe('random command streams vs the reference model', () => {
  it('10^5 commands: nothing throws, translations agree', () => {
    let total = 0;
    fc.assert(
      fc.property(fc.array(cmdArb, { minLength: 900, maxLength: 1100 }), fc.integer({ min: 40, max: 400 }), fc.boolean(), (cmds, chunk, viaEnable) => {
        const vm = makeVm();
        const model = new Model();
        for (let i = 0; i < cmds.length; i += chunk) {
          const part = cmds.slice(i, i + chunk);
          if (viaEnable) vm.its.mmioWrite(GITS_CTLR, 4, 0n); // queue while disabled, run on enable
          expect(() => vm.q.submit(...part.map(encode))).not.toThrow();
          if (viaEnable) vm.its.mmioWrite(GITS_CTLR, 4, 1n);
          for (const c of part) model.apply(c);
          expect(vm.q.creadr).toBe(vm.q.cwriter);
          checkAgainst(model, vm);
        }
        const s = vm.its.stats;
        expect(s.commands['total']).toBe(cmds.length);
        expect(s.commandErrors['internal_error']).toBe(0);
        total += cmds.length;
      }),
      { numRuns: 100 },
    );
    expect(total).toBeGreaterThanOrEqual(90_000);
  }, 600_000);
});
