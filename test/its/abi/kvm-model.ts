/**
 * A reference model of KVM's RESTORE_TABLES (kvm-its-abi.md 3.8), written from the spec with
 * BigInt arithmetic straight from the bit layouts, independently of src/its/abi. It is the
 * oracle of the corruption test: for any (possibly corrupted) image it says which errno,
 * table, entry and field the restore must fail with, or which state it must produce.
 *
 * Includes vitsd's documented choices: pINTID >= 2^16 is -EINVAL 'pINTID'; only the first 8
 * level-1 entries of a two-level table are walked. Property/pending bytes are assumed to be
 * in guest memory (the corruption test's images keep them there).
 */
export type ModelOutcome =
  | {
      ok: true;
      collections: [number, number][]; // [icid, target] in table order
      devices: [number, number, number][]; // [devid, itt, bits]
      events: [number, number, number, number][]; // [devid, eventid, intid, icid]
    }
  | { ok: false; errno: number; table: string; index: number; field: string };

const EINVAL = 22;
const EEXIST = 17;
const EFAULT = 14;

class Fail extends Error {
  constructor(readonly errno: number, readonly table: string, readonly index: number, readonly field: string) {
    super(`${table} ${index} ${field}`);
  }
}

export interface ModelInput {
  read64: (gpa: number) => bigint | null; // null: outside guest memory
  baserDevice: bigint;
  baserCollection: bigint;
  nrVcpus: number;
}

function geometry(baser: bigint): { valid: boolean; indirect: boolean; base: number; bytes: number } {
  return {
    valid: (baser >> 63n) === 1n,
    indirect: ((baser >> 62n) & 1n) === 1n,
    base: Number((baser & 0x0000_ffff_ffff_0000n) | (((baser >> 12n) & 0xfn) << 48n)),
    bytes: (Number(baser & 0xffn) + 1) * 65536,
  };
}

export function modelRestore(input: ModelInput): ModelOutcome {
  const { read64, nrVcpus } = input;
  const colls: [number, number][] = [];
  const collSet = new Map<number, number>();
  const devices: [number, number, number][] = [];
  const events: [number, number, number, number][] = [];
  const dev = geometry(input.baserDevice);
  const col = geometry(input.baserCollection);

  const read = (gpa: number, table: string, index: number): bigint => {
    const v = read64(gpa);
    if (v === null) throw new Fail(EFAULT, table, index, 'entry');
    return v;
  };
  const checkId = (g: typeof dev, id: number): boolean => {
    if (id > 0xffff) return false;
    let addr: number;
    if (!g.indirect) {
      if (id >= g.bytes / 8) return false;
      addr = g.base + id * 8;
    } else {
      const idx = Math.floor(id / 8192);
      if (idx >= g.bytes / 8) return false;
      const l1 = read64(g.base + idx * 8);
      if (l1 === null || (l1 >> 63n) === 0n) return false;
      addr = Number(l1 & 0x000f_ffff_ffff_0000n) + (id % 8192) * 8;
    }
    return read64(addr) !== null;
  };
  /** scan_its_table: returns 0 (last found) or 1 (ran off the end). */
  const scan = (base: number, len: number, startId: number, table: string, fn: (id: number, e: bigint) => number): number => {
    let gpa = base;
    let id = startId;
    let remaining = len;
    for (;;) {
      const e = read(gpa, table, id);
      const r = fn(id, e);
      if (r === 0) return 0;
      if (r * 8 >= remaining) return 1;
      id += r;
      gpa += r * 8;
      remaining -= r * 8;
    }
  };

  try {
    if (col.valid) {
      for (let i = 0; i < col.bytes / 8; i++) {
        const e = read(col.base + i * 8, 'collection table', i);
        if ((e >> 63n) === 0n) break;
        const target = Number((e >> 16n) & 0xffff_ffffn);
        const icid = Number(e & 0xffffn);
        if (target !== 0xffff_ffff && target >= nrVcpus) throw new Fail(EINVAL, 'collection table', i, 'RDbase');
        if (collSet.has(icid)) throw new Fail(EEXIST, 'collection table', i, 'ICID');
        if (!checkId(col, icid)) throw new Fail(EINVAL, 'collection table', i, 'ICID');
        collSet.set(icid, target);
        colls.push([icid, target]);
      }
    }
    const restoreDte = (id: number, e: bigint): number => {
      if ((e >> 63n) === 0n) return 1;
      const bits = Number(e & 0x1fn) + 1;
      const itt = Number(((e >> 5n) & ((1n << 44n) - 1n)) << 8n);
      const next = Number((e >> 49n) & 0x3fffn);
      if (bits > 16) throw new Fail(EINVAL, 'device table', id, 'Size');
      if (!checkId(dev, id)) throw new Fail(EINVAL, 'device table', id, 'DeviceID');
      devices.push([id, itt, bits]);
      const table = `ITT of device 0x${id.toString(16)}`;
      scan(itt, 2 ** bits * 8, 0, table, (ev, ite) => {
        const icid = Number(ite & 0xffffn);
        const intid = Number((ite >> 16n) & 0xffff_ffffn);
        const n = Number(ite >> 48n);
        if (intid === 0) return 1;
        if (intid < 8192 || intid >= 65536) throw new Fail(EINVAL, table, ev, 'pINTID');
        if (ev + n >= 2 ** bits) throw new Fail(EINVAL, table, ev, 'next');
        if (!collSet.has(icid)) throw new Fail(EINVAL, table, ev, 'ICID');
        events.push([id, ev, intid, icid]);
        return n;
      });
      return next;
    };
    if (dev.valid) {
      if (!dev.indirect) {
        scan(dev.base, dev.bytes, 0, 'device table', restoreDte);
      } else {
        const n = Math.min(dev.bytes / 8, 8);
        for (let i = 0; i < n; i++) {
          const l1 = read(dev.base + i * 8, 'device table L1', i);
          if ((l1 >> 63n) === 0n) continue;
          if (scan(Number(l1 & 0x000f_ffff_ffff_0000n), 65536, i * 8192, 'device table', restoreDte) === 0) break;
        }
      }
    }
  } catch (e) {
    if (e instanceof Fail) return { ok: false, errno: e.errno, table: e.table, index: e.index, field: e.field };
    throw e;
  }
  return { ok: true, collections: colls, devices, events };
}
