/**
 * Random operation sequences against a tiny reference model written the naive way (maps and
 * full scans). Compared after every step: ack results, hasDeliverable, notification counts,
 * per-LPI state, and the pending-table bytes in guest RAM.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GICR_CTLR, GICR_PENDBASER } from '../../src/redist/registers.js';
import { NO_VCPU } from '../../src/redist/types.js';
import { configAddr, makeFixture, pendAddr, pendBase, pendbaserValue } from './support/fixture.js';

const NR_VCPUS = 3;
/** vCPU 2 uses PTZ = 1 (no sync on enable); 0 and 1 use PTZ = 0. */
const PTZ = [false, false, true];
const INTIDS = [...Array.from({ length: 24 }, (_, k) => 8192 + k), 16383, 40000, 65535];

type Op =
  | { op: 'config'; intid: number; byte: number }
  | { op: 'pendBit'; vcpu: number; intid: number; on: boolean }
  | { op: 'acquire'; intid: number; target: number }
  | { op: 'release'; intid: number }
  | { op: 'setPending'; intid: number }
  | { op: 'clearPending'; intid: number }
  | { op: 'invalidate'; intid: number }
  | { op: 'invalidateAll'; vcpu: number }
  | { op: 'setTarget'; intid: number; target: number }
  | { op: 'moveAll'; from: number; to: number }
  | { op: 'enable'; vcpu: number }
  | { op: 'disable'; vcpu: number }
  | { op: 'ack'; vcpu: number; peek: boolean }
  | { op: 'save' };

const intidArb = fc.constantFrom(...INTIDS);
const vcpuArb = fc.integer({ min: 0, max: NR_VCPUS - 1 });
const targetArb = fc.oneof(vcpuArb, fc.constant(NO_VCPU));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('config' as const), intid: intidArb, byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('pendBit' as const), vcpu: vcpuArb, intid: intidArb, on: fc.boolean() }),
  fc.record({ op: fc.constant('acquire' as const), intid: intidArb, target: targetArb }),
  fc.record({ op: fc.constant('release' as const), intid: intidArb }),
  fc.record({ op: fc.constant('setPending' as const), intid: intidArb }),
  fc.record({ op: fc.constant('setPending' as const), intid: intidArb }),
  fc.record({ op: fc.constant('clearPending' as const), intid: intidArb }),
  fc.record({ op: fc.constant('invalidate' as const), intid: intidArb }),
  fc.record({ op: fc.constant('invalidateAll' as const), vcpu: vcpuArb }),
  fc.record({ op: fc.constant('setTarget' as const), intid: intidArb, target: targetArb }),
  fc.record({ op: fc.constant('moveAll' as const), from: vcpuArb, to: vcpuArb }),
  fc.record({ op: fc.constant('enable' as const), vcpu: vcpuArb }),
  fc.record({ op: fc.constant('disable' as const), vcpu: vcpuArb }),
  fc.record({ op: fc.constant('ack' as const), vcpu: vcpuArb, peek: fc.boolean() }),
  fc.record({ op: fc.constant('ack' as const), vcpu: vcpuArb, peek: fc.boolean() }),
  fc.record({ op: fc.constant('save' as const) }),
);

interface ModelLpi {
  refs: number;
  target: number;
  priority: number;
  enabled: boolean;
  pending: boolean;
}

/** The reference: straightforward, no bitmaps, no caching tricks beyond what KVM specifies. */
class Model {
  lpis = new Map<number, ModelLpi>();
  enabled = new Array<boolean>(NR_VCPUS).fill(false);
  configRam = new Map<number, number>();
  /** Pending-table bytes by address. */
  pendRam = new Map<number, number>();
  notifications = new Array<number>(NR_VCPUS).fill(0);

  pendByte(addr: number): number {
    return this.pendRam.get(addr) ?? 0;
  }
  deliverable(v: number): ModelLpi[] {
    if (!this.enabled[v]) return [];
    return [...this.lpis.values()].filter((l) => l.target === v && l.pending && l.enabled);
  }
  has(v: number): boolean {
    return this.deliverable(v).length > 0;
  }
  sorted(): [number, ModelLpi][] {
    return [...this.lpis.entries()].sort((a, b) => a[0] - b[0]);
  }

  apply(o: Op): { intid: number; priority: number } | null {
    const before = Array.from({ length: NR_VCPUS }, (_, v) => this.has(v));
    let result: { intid: number; priority: number } | null = null;
    switch (o.op) {
      case 'config':
        this.configRam.set(o.intid, o.byte);
        break;
      case 'pendBit': {
        const a = pendAddr(o.vcpu, o.intid);
        const bit = 1 << o.intid % 8;
        this.pendRam.set(a, o.on ? this.pendByte(a) | bit : this.pendByte(a) & ~bit);
        break;
      }
      case 'acquire': {
        const l = this.lpis.get(o.intid);
        if (l) {
          l.refs++;
          break;
        }
        const byte = this.configRam.get(o.intid) ?? 0;
        let pending = false;
        if (o.target !== NO_VCPU) {
          const a = pendAddr(o.target, o.intid);
          const bit = 1 << o.intid % 8;
          pending = (this.pendByte(a) & bit) !== 0;
          if (pending) this.pendRam.set(a, this.pendByte(a) & ~bit);
        }
        this.lpis.set(o.intid, { refs: 1, target: o.target, priority: byte & 0xfc, enabled: (byte & 1) === 1, pending });
        break;
      }
      case 'release': {
        const l = this.lpis.get(o.intid);
        if (l && --l.refs === 0) this.lpis.delete(o.intid);
        break;
      }
      case 'setPending':
      case 'clearPending': {
        const l = this.lpis.get(o.intid);
        if (l) l.pending = o.op === 'setPending';
        break;
      }
      case 'invalidate':
      case 'invalidateAll':
        for (const [intid, l] of this.lpis) {
          if (o.op === 'invalidate' ? intid !== o.intid : l.target !== o.vcpu) continue;
          const byte = this.configRam.get(intid) ?? 0;
          l.priority = byte & 0xfc;
          l.enabled = (byte & 1) === 1;
        }
        break;
      case 'setTarget': {
        const l = this.lpis.get(o.intid);
        if (l) l.target = o.target;
        break;
      }
      case 'moveAll':
        for (const l of this.lpis.values()) if (l.target === o.from) l.target = o.to;
        break;
      case 'enable':
        if (this.enabled[o.vcpu]) break;
        if (!PTZ[o.vcpu]) {
          for (const [intid, l] of this.lpis) {
            if (l.target === o.vcpu) l.pending = (this.pendByte(pendAddr(o.vcpu, intid)) & (1 << intid % 8)) !== 0;
          }
        }
        this.enabled[o.vcpu] = true;
        break;
      case 'disable':
        this.enabled[o.vcpu] = false;
        break;
      case 'ack': {
        const cands = this.deliverable(o.vcpu);
        const entries = [...this.lpis.entries()].filter(([, l]) => cands.includes(l));
        entries.sort((a, b) => a[1].priority - b[1].priority || a[0] - b[0]);
        const best = entries[0];
        if (!best) {
          result = { intid: 1023, priority: 0xff };
          break;
        }
        result = { intid: best[0], priority: best[1].priority };
        if (!o.peek) {
          best[1].pending = false;
          if (this.has(o.vcpu)) this.notifications[o.vcpu]!++;
        }
        break;
      }
      case 'save':
        for (const [intid, l] of this.sorted()) {
          if (l.target === NO_VCPU) continue;
          const a = pendAddr(l.target, intid);
          const bit = 1 << intid % 8;
          this.pendRam.set(a, l.pending ? this.pendByte(a) | bit : this.pendByte(a) & ~bit);
        }
        break;
    }
    for (let v = 0; v < NR_VCPUS; v++) if (!before[v] && this.has(v)) this.notifications[v]!++;
    return result;
  }
}

const PEND_ADDRS = [...new Set(INTIDS.flatMap((i) => [0, 1, 2].map((v) => pendAddr(v, i))))];

function snapshot(
  ack: { intid: number; priority: number } | null,
  vcpu: (v: number) => unknown[],
  lpi: (intid: number) => unknown[],
  ram: (addr: number) => number,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ack };
  for (let v = 0; v < NR_VCPUS; v++) out[`vcpu ${v} [deliverable, notifications]`] = vcpu(v);
  for (const i of INTIDS) out[`LPI ${i} [refs, target, pending, priority, enabled]`] = lpi(i);
  for (const a of PEND_ADDRS) out[`RAM 0x${a.toString(16)}`] = ram(a);
  return out;
}

function run(ops: Op[]): void {
  const f = makeFixture({ nrVcpus: NR_VCPUS, enable: false });
  for (let v = 0; v < NR_VCPUS; v++) f.rd.mmioWrite(v, GICR_PENDBASER, 8, pendbaserValue(pendBase(v), PTZ[v]));
  const m = new Model();

  ops.forEach((o, step) => {
    const where = `step ${step}: ${JSON.stringify(o)}`;
    let got: { intid: number; priority: number } | null = null;
    switch (o.op) {
      case 'config': f.mem.poke(configAddr(o.intid), o.byte); break;
      case 'pendBit': f.setPendBit(o.vcpu, o.intid, o.on); break;
      case 'acquire': expect(f.rd.acquire(o.intid, o.target), where).toBe(true); break;
      case 'release': f.rd.release(o.intid); break;
      case 'setPending': f.rd.setPending(o.intid); break;
      case 'clearPending': f.rd.clearPending(o.intid); break;
      case 'invalidate': f.rd.invalidate(o.intid); break;
      case 'invalidateAll': f.rd.invalidateAll(o.vcpu); break;
      case 'setTarget': f.rd.setTarget(o.intid, o.target); break;
      case 'moveAll': f.rd.moveAll(o.from, o.to); break;
      case 'enable': f.rd.mmioWrite(o.vcpu, GICR_CTLR, 4, 1n); break;
      case 'disable': f.rd.mmioWrite(o.vcpu, GICR_CTLR, 4, 0n); break;
      case 'ack': got = f.rd.ack(o.vcpu, o.peek); break;
      case 'save': f.rd.savePendingTables(); break;
    }
    const want = m.apply(o);
    // Cheap comparison of full snapshots; expect() only on a mismatch, for a readable diff.
    const actual = snapshot(
      got,
      (v) => [f.rd.hasDeliverable(v), f.notifyCount(v)],
      (i) => [f.rd.refcount(i), f.rd.target(i), f.rd.isPending(i), f.rd.priority(i), f.rd.enabled(i)],
      (a) => f.mem.peek(a),
    );
    const expected = snapshot(
      want,
      (v) => [m.has(v), m.notifications[v]!],
      (i) => {
        const l = m.lpis.get(i);
        return l ? [l.refs, l.target, l.pending, l.priority, l.enabled] : [0, NO_VCPU, false, 0, false];
      },
      (a) => m.pendByte(a),
    );
    if (JSON.stringify(actual) !== JSON.stringify(expected)) expect(actual, where).toEqual(expected);
  });
}

describe('LPI system vs reference model (property)', () => {
  it('agrees on acks, delivery, notifications, LPI state and pending-table bytes', () => {
    fc.assert(fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => run(ops)), { numRuns: 300 });
  });

  it('agrees on a long sequence dominated by MSIs and acks', () => {
    const hot = fc.oneof(
      { weight: 1, arbitrary: opArb },
      { weight: 3, arbitrary: fc.record({ op: fc.constant('setPending' as const), intid: intidArb }) },
      { weight: 3, arbitrary: fc.record({ op: fc.constant('ack' as const), vcpu: vcpuArb, peek: fc.constant(false) }) },
    );
    const setup: Op[] = INTIDS.flatMap((intid, k): Op[] => [
      { op: 'config', intid, byte: ((k * 37) & 0xfc) | 1 },
      { op: 'acquire', intid, target: k % NR_VCPUS },
    ]);
    const enableAll: Op[] = [0, 1, 2].map((vcpu) => ({ op: 'enable', vcpu }));
    fc.assert(fc.property(fc.array(hot, { minLength: 50, maxLength: 300 }), (ops) => run([...setup, ...enableAll, ...ops])), { numRuns: 60 });
  });
});
