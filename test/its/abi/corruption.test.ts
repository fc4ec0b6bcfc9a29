/**
 * Corrupted images: every single-bit flip of every entry a save wrote (and of the slots next
 * to them), and a list of single-field corruptions, restored into a real VM. Each must either
 * be rejected with KVM's errno and a message naming the table, the entry and the field, or be
 * accepted with exactly the state KVM's algorithm yields — decided per flip by an independent
 * reference model (./kvm-model.ts) and, per field, by explicit expectations below. Never an
 * exception other than an errno, never a hang, and a rejected restore changes nothing.
 */
import { describe, expect, it } from 'vitest';
import { TableError } from '../../../src/its/abi/errors.js';
import { COLLECTION_NOT_MAPPED } from '../../../src/its/table-state.js';
import { ErrnoError, Errno } from '../../../src/util/errno.js';
import { KVM_DEV_ARM_ITS_CTRL_RESET, KVM_DEV_ARM_VGIC_GRP_CTRL } from '../../../src/attr/types.js';
import { dirtyLogBytesFor } from '../../../src/memory/region-table.js';
import { modelRestore, type ModelOutcome } from './kvm-model.js';
import { GITS_BASER0, GITS_BASER1, GITS_CBASER, GITS_CTLR, TestVm, copyMemory, smallLayout } from './harness.js';

const NR_VCPUS = 2;

interface Image {
  src: TestVm;
  /** Slots worth corrupting: [gpa, label]. */
  slots: [number, string][];
}

function buildImage(): Image {
  const src = new TestVm({ layout: smallLayout(), nrVcpus: NR_VCPUS });
  const L = src.layout;
  src.mapc(1, 1);
  src.mapc(0, 0);
  src.mapd(1, 3, L.itt(1));
  src.mapd(4, 2, L.itt(4));
  src.mapd(9, 4, L.itt(9));
  src.mapti(1, 0, 8192, 0);
  src.mapti(1, 2, 8193, 1);
  src.mapti(1, 7, 8194, 3); // unmapped collection 3
  src.mapti(4, 3, 8195, 1);
  src.mapti(9, 0, 8196, 0);
  src.mapti(9, 15, 8197, 1);
  src.saveTables(); // no pending bits anywhere: a restore writes nothing to guest RAM
  const slots: [number, string][] = [];
  for (let i = 0; i < 4; i++) slots.push([L.collectionTable + i * 8, `CTE ${i}`]);
  for (const d of [0, 1, 2, 4, 9, 10]) slots.push([L.deviceTable + d * 8, `DTE ${d}`]);
  for (const [d, e] of [[1, 0], [1, 1], [1, 2], [1, 7], [4, 3], [9, 0], [9, 15]] as const) slots.push([L.itt(d) + e * 8, `ITE ${d}:${e}`]);
  return { src, slots };
}

/** A destination with the source's registers, ready for RESTORE_TABLES. */
function destination(img: Image): TestVm {
  const dst = new TestVm({ layout: smallLayout(), nrVcpus: NR_VCPUS, memory: copyMemory(img.src.memory), program: false });
  dst.programRedistributors();
  dst.programIts();
  const m = dst.memory;
  m.setDirtyLog(new Uint8Array(dirtyLogBytesFor(m.regions[0]!.gpa + m.regions[0]!.size)));
  return dst;
}

function resetIts(t: TestVm): void {
  t.vm.setDeviceAttr(t.itsId, KVM_DEV_ARM_VGIC_GRP_CTRL, BigInt(KVM_DEV_ARM_ITS_CTRL_RESET), 0n);
  t.setItsReg(GITS_BASER0, t.deviceBaser());
  t.setItsReg(GITS_BASER1, t.collectionBaser());
  t.setItsReg(GITS_CBASER, (1n << 63n) | BigInt(t.layout.cmdq) | 15n);
  t.setItsReg(GITS_CTLR, 1n);
}

function model(t: TestVm): ModelOutcome {
  return modelRestore({
    read64: (gpa) => (t.memory.contains(gpa, 8) ? t.memory.readU64Big(gpa) : null),
    baserDevice: t.its.baserDevice,
    baserCollection: t.its.baserCollection,
    nrVcpus: NR_VCPUS,
  });
}

interface State {
  collections: [number, number][];
  devices: [number, number, number][];
  events: [number, number, number, number][];
}

function stateOf(t: TestVm): State {
  const s: State = { collections: [], devices: [], events: [] };
  t.its.forEachCollection((icid, target) => s.collections.push([icid, target === COLLECTION_NOT_MAPPED ? 0xffffffff : target]));
  t.its.forEachDevice((d, itt, bits) => s.devices.push([d, itt, bits]));
  for (const [d] of s.devices) t.its.forEachEvent(d, (e, intid, icid) => s.events.push([d, e, intid, icid]));
  return s;
}

function lpiCount(t: TestVm): number {
  let n = 0;
  t.vm.lpis!.forEachLpi(() => n++);
  return n;
}

type Outcome = { ok: true; state: State } | { ok: false; errno: number; table: string; index: number; field: string; message: string };

/** Restores, checks the invariants every outcome must satisfy, and resets the ITS afterwards. */
function attempt(t: TestVm): Outcome {
  // Every write to guest RAM sets a dirty-log bit: start from a clean log.
  const log = t.memory.dirtyLog!;
  log.fill(0);
  let out: Outcome;
  try {
    t.restoreTables();
    out = { ok: true, state: stateOf(t) };
  } catch (e) {
    if (!(e instanceof ErrnoError)) throw new Error(`restore threw a non-errno exception: ${String(e)}`);
    expect(e).toBeInstanceOf(TableError);
    const te = e as TableError;
    out = { ok: false, errno: te.errno, table: te.table, index: te.index, field: te.field, message: te.message };
    // Nothing half-built.
    expect(t.its.deviceCount()).toBe(0);
    expect(t.its.eventCount()).toBe(0);
    expect(stateOf(t).collections).toEqual([]);
    expect(lpiCount(t)).toBe(0);
  }
  // No pending bits in the image: a restore never writes guest RAM, failed or not.
  expect(log.every((b) => b === 0)).toBe(true);
  resetIts(t);
  return out;
}

function expectMatchesModel(got: Outcome, want: ModelOutcome, what: string): void {
  if (want.ok) {
    expect(got.ok, `${what}: ${got.ok ? '' : got.message}`).toBe(true);
    if (got.ok) {
      expect(got.state.collections, what).toEqual(want.collections);
      expect(got.state.devices, what).toEqual(want.devices);
      expect([...got.state.events].sort(cmp), what).toEqual([...want.events].sort(cmp));
    }
  } else {
    expect(got.ok, `${what}: should fail with ${want.errno} ${want.table} ${want.index} ${want.field}`).toBe(false);
    if (!got.ok) {
      expect({ errno: got.errno, table: got.table, index: got.index, field: got.field }, what).toEqual({
        errno: want.errno, table: want.table, index: want.index, field: want.field,
      });
      expect(got.message).toContain(`${want.table} entry ${want.index}: ${want.field}`);
    }
  }
}

function cmp(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

function xorAt(t: TestVm, gpa: number, bit: number): void {
  const v = t.memory.readU64Big(gpa) ^ (1n << BigInt(bit));
  t.memory.writeU64Big(gpa, v);
}

describe('corrupted saved tables', () => {
  const img = buildImage();

  it('the uncorrupted image restores to the source state (and the model agrees)', () => {
    const t = destination(img);
    const want = model(t);
    expect(want.ok).toBe(true);
    const got = attempt(t);
    expectMatchesModel(got, want, 'clean');
    expect(got.ok && got.state.events.length).toBe(6);
  });

  it('every single-bit flip of every table entry: KVM errno + message, or exactly the model state', () => {
    const t = destination(img);
    let rejected = 0;
    let accepted = 0;
    for (const [gpa, label] of img.slots) {
      for (let bit = 0; bit < 64; bit++) {
        xorAt(t, gpa, bit);
        const want = model(t);
        const got = attempt(t);
        expectMatchesModel(got, want, `${label} bit ${bit}`);
        if (got.ok) accepted++;
        else rejected++;
        xorAt(t, gpa, bit);
      }
    }
    // Both kinds of outcome occur (the test can fail either way).
    expect(rejected).toBeGreaterThan(100);
    expect(accepted).toBeGreaterThan(100);
  });

  it('per field: CTE bits 62:48 are irrelevant (RES0 and RDBase[51:48] are ignored)', () => {
    const t = destination(img);
    const clean = attempt(t);
    for (const i of [0, 1, 2]) {
      for (let bit = 48; bit <= 62; bit++) {
        const gpa = t.layout.collectionTable + i * 8;
        xorAt(t, gpa, bit);
        expect(attempt(t), `CTE ${i} bit ${bit}`).toEqual(clean);
        xorAt(t, gpa, bit);
      }
    }
  });

  describe('single-field corruptions', () => {
    const L = smallLayout();
    const cases: { name: string; gpa: number; value: bigint; errno?: number; table?: string; index?: number; field?: string }[] = [
      // DTE of device 4: ITT(4) = 0x4080_2000 -> field 0x40_8020 << 5 = 0x0810_0400; Size 16 (= 17 bits): | 0x10
      { name: 'DTE Size 16 (17 EventID bits, 2026 fix)', gpa: L.deviceTable + 4 * 8, value: 0x8000_0000_0810_0410n, errno: Errno.EINVAL, table: 'device table', index: 4, field: 'Size' },
      { name: 'DTE Size 31', gpa: L.deviceTable + 4 * 8, value: 0x8000_0000_0810_041fn, errno: Errno.EINVAL, table: 'device table', index: 4, field: 'Size' },
      // ITT at 0x1_0000_0000 (outside RAM): field 0x100_0000 << 5 = 0x2000_0000; Size 1
      { name: 'DTE ITT outside RAM', gpa: L.deviceTable + 4 * 8, value: 0x8000_0000_2000_0001n, errno: Errno.EFAULT, table: 'ITT of device 0x4', index: 0, field: 'entry' },
      // ITE 4:3 -> pINTID 8191 (0x1FFF), ICID 1
      { name: 'ITE pINTID below 8192', gpa: L.itt(4) + 24, value: 0x0000_0000_1fff_0001n, errno: Errno.EINVAL, table: 'ITT of device 0x4', index: 3, field: 'pINTID' },
      { name: 'ITE pINTID 65536', gpa: L.itt(4) + 24, value: 0x0000_0001_0000_0001n, errno: Errno.EINVAL, table: 'ITT of device 0x4', index: 3, field: 'pINTID' },
      // next 1 from event 3 of a 4-event ITT: 3 + 1 >= 4
      { name: 'ITE next leaving the ITT', gpa: L.itt(4) + 24, value: 0x0001_0000_2003_0001n, errno: Errno.EINVAL, table: 'ITT of device 0x4', index: 3, field: 'next' },
      { name: 'ITE naming a missing collection', gpa: L.itt(4) + 24, value: 0x0000_0000_2003_0006n, errno: Errno.EINVAL, table: 'ITT of device 0x4', index: 3, field: 'ICID' },
      { name: 'ITE pINTID 0 (invalid entry: skipped)', gpa: L.itt(4) + 24, value: 0x0000_0000_0000_0001n },
      // CTE 0 (ICID 1 -> vCPU 1) retargeted to vCPU 2 = nrVcpus
      { name: 'CTE RDbase = number of vCPUs', gpa: L.collectionTable, value: 0x8000_0000_0002_0001n, errno: Errno.EINVAL, table: 'collection table', index: 0, field: 'RDbase' },
      { name: 'CTE RDbase 0xFFFFFFFE', gpa: L.collectionTable, value: 0x8000_ffff_fffe_0001n, errno: Errno.EINVAL, table: 'collection table', index: 0, field: 'RDbase' },
      // CTE 1 (ICID 0) renamed ICID 1: duplicate of CTE 0
      { name: 'CTE duplicate ICID', gpa: L.collectionTable + 8, value: 0x8000_0000_0000_0001n, errno: Errno.EEXIST, table: 'collection table', index: 1, field: 'ICID' },
      // ICID 8192 does not fit a one-page (8192-entry) collection table (since 5.19: -EINVAL)
      { name: 'CTE ICID past the table', gpa: L.collectionTable + 24, value: 0x8000_0000_0000_2000n, errno: Errno.EINVAL, table: 'collection table', index: 3, field: 'ICID' },
      // DTE V bit cleared: that device is simply not restored.
      { name: 'DTE V=0', gpa: L.deviceTable + 4 * 8, value: 0x0000_0000_0810_0401n },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const t = destination(img);
        t.memory.writeU64Big(c.gpa, c.value);
        const want = model(t);
        const got = attempt(t);
        expectMatchesModel(got, want, c.name);
        if (c.errno === undefined) {
          expect(got.ok).toBe(true);
        } else {
          expect(got).toMatchObject({ ok: false, errno: c.errno, table: c.table, index: c.index, field: c.field });
        }
      });
    }
  });
});
