/**
 * Decodes the ITS tables that ITS_SAVE_TABLES left in guest RAM (KVM table ABI rev 0,
 * kvm-its-abi.md 3), given the GITS_BASER0/1 values, and reports every inconsistency with
 * its entry, field and address.
 *
 * The walk follows KVM's RESTORE_TABLES (3.8) — collection table first, then the device
 * table (flat or two-level) and each ITT, following the `next` fields — so what is listed
 * is what a restore would read. Unlike a restore it does not stop at the first problem:
 * it notes it and carries on where that is meaningful. Every loop is bounded by the table
 * geometry; nothing read from the image is trusted.
 *
 * Severity: `error` = a restore would fail (-EINVAL/-EFAULT) or the tables contradict
 * themselves (a `next` that points at nothing, overlapping ITTs); `warning` = legal for KVM
 * but not what a save writes or what Linux does (RES0 bits set, an LPI mapped twice).
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { decodeBaser, BASER_TYPE_COLLECTION, BASER_TYPE_DEVICE, type TableGeometry } from '../../its/abi/baser.js';
import { CollectionTableEntry, CTE_TARGET_NOT_MAPPED } from '../../its/abi/cte.js';
import { DeviceTableEntry } from '../../its/abi/dte.js';
import { InterruptTranslationEntry } from '../../its/abi/ite.js';
import { L2_ENTRIES, L2_PAGE_SIZE, Level1Entry } from '../../its/abi/level1.js';

export const LPI_BASE = 8192;
/** KVM: DeviceIDs and ICIDs are 16 bits (vgic_its_check_id). */
const MAX_ID = 0xffff;
/** KVM rejects a restored DTE Size above 15 (16 EventID bits). */
const MAX_EVENT_ID_BITS = 16;

export type Severity = 'error' | 'warning';

export interface Issue {
  severity: Severity;
  /** "GITS_BASER0", "CTE[3]", "L1[0]", "DTE[0x10]", "ITE[0x10:5]". */
  entry: string;
  field: string;
  message: string;
  /** Guest physical address of the entry, when it has one. */
  address?: number;
}

export interface CollectionEntryInfo {
  index: number;
  address: number;
  icid: number;
  /** vCPU id, or -1 for an existing but unmapped collection (RDBase 0xffffffff). */
  target: number;
}

export interface EventInfo {
  eventid: number;
  address: number;
  intid: number;
  icid: number;
  next: number;
}

export interface DeviceInfo {
  devid: number;
  address: number;
  ittAddr: number;
  eventIdBits: number;
  next: number;
  events: EventInfo[];
}

export interface Level1Info {
  index: number;
  address: number;
  valid: boolean;
  l2Addr: number;
}

export interface TableInfo {
  valid: boolean;
  indirect: boolean;
  type: number;
  base: number;
  bytes: number;
  slots: number;
}

export interface InspectionReport {
  collectionTable: TableInfo & { collections: CollectionEntryInfo[] };
  deviceTable: TableInfo & { level1: Level1Info[]; devices: DeviceInfo[] };
  issues: Issue[];
  /** No error-severity issue. */
  ok: boolean;
}

export interface InspectOptions {
  baser0: bigint;
  baser1: bigint;
  /** When known: CTE targets must be < nrVcpus. */
  nrVcpus?: number;
  /** When known: each ITE's property byte must be in RAM, and its INTID below 2^(IDbits+1). */
  propbaser?: bigint;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

function tableInfo(g: TableGeometry): TableInfo {
  return { valid: g.valid, indirect: g.indirect, type: g.type, base: g.base, bytes: g.bytes, slots: g.slots };
}

export function inspectTables(memory: GuestMemory, opts: InspectOptions): InspectionReport {
  const issues: Issue[] = [];
  const issue = (severity: Severity, entry: string, field: string, message: string, address?: number): void => {
    issues.push(address === undefined ? { severity, entry, field, message } : { severity, entry, field, message, address });
  };
  const dt = decodeBaser(opts.baser0);
  const ct = decodeBaser(opts.baser1);
  const report: InspectionReport = {
    collectionTable: { ...tableInfo(ct), collections: [] },
    deviceTable: { ...tableInfo(dt), level1: [], devices: [] },
    issues,
    ok: true,
  };

  // ---- collection table ----
  const icids = new Map<number, number>(); // icid -> CTE index
  if (ct.valid) {
    if (ct.type !== BASER_TYPE_COLLECTION) issue('error', 'GITS_BASER1', 'Type', `type ${ct.type}, expected ${BASER_TYPE_COLLECTION} (collections)`);
    if (ct.indirect) issue('error', 'GITS_BASER1', 'Indirect', 'two-level collection tables are not supported by KVM');
    for (let i = 0; i < ct.slots; i++) {
      const at = ct.base + i * 8;
      const entry = `CTE[${i}]`;
      if (!memory.contains(at, 8)) {
        issue('error', entry, 'address', `entry at ${hex(at)} is outside guest RAM (restore: -EFAULT)`, at);
        break;
      }
      const lo = memory.readU64Lo(at);
      const hi = memory.readU64Hi(at);
      if (!CollectionTableEntry.valid(hi)) break; // the terminator
      const icid = CollectionTableEntry.icid(lo);
      const target = CollectionTableEntry.target(lo, hi);
      if ((hi & 0x7ff00000) !== 0) issue('warning', entry, 'RES0', `bits 62:52 are ${hex((hi >>> 20) & 0x7ff)}, should be 0`, at);
      if ((hi & 0x000f0000) !== 0) issue('warning', entry, 'RDBase', `bits 51:48 are ${hex((hi >>> 16) & 0xf)} (KVM ignores them)`, at);
      if (target !== CTE_TARGET_NOT_MAPPED && opts.nrVcpus !== undefined && target >= opts.nrVcpus) {
        issue('error', entry, 'RDBase', `target vCPU ${target} does not exist (${opts.nrVcpus} vCPUs; restore: -EINVAL)`, at);
      }
      const prev = icids.get(icid);
      if (prev !== undefined) issue('error', entry, 'ICID', `collection ${icid} is already defined by CTE[${prev}] (restore: -EEXIST)`, at);
      if (icid >= ct.slots) issue('error', entry, 'ICID', `ICID ${icid} is beyond the table's ${ct.slots} slots (restore: -EINVAL)`, at);
      icids.set(icid, i);
      report.collectionTable.collections.push({ index: i, address: at, icid, target: target === CTE_TARGET_NOT_MAPPED ? -1 : target });
    }
  }

  // ---- device table ----
  const itts: { devid: number; start: number; end: number }[] = [];
  const intidOwners = new Map<number, string>();
  const tables = [
    { name: 'device table', start: dt.base, end: dt.base + dt.bytes, valid: dt.valid },
    { name: 'collection table', start: ct.base, end: ct.base + ct.bytes, valid: ct.valid },
  ];
  let idBits = MAX_EVENT_ID_BITS;
  let propBase = -1;
  if (opts.propbaser !== undefined) {
    idBits = Math.min(Number(opts.propbaser & 0x1fn) + 1, 16);
    propBase = Number(opts.propbaser & 0x000ffffffffff000n);
  }

  const inspectItt = (dev: DeviceInfo): void => {
    const nevents = 2 ** dev.eventIdBits;
    const len = nevents * 8;
    if (!memory.contains(dev.ittAddr, Math.min(len, 8))) {
      issue('error', `DTE[${hex(dev.devid)}]`, 'ITT_addr', `ITT at ${hex(dev.ittAddr)} is outside guest RAM (restore: -EFAULT)`, dev.address);
      return;
    }
    if (!memory.contains(dev.ittAddr, len)) {
      issue('error', `DTE[${hex(dev.devid)}]`, 'ITT_addr', `ITT [${hex(dev.ittAddr)}, +${hex(len)}) runs past the end of guest RAM`, dev.address);
    }
    for (const other of itts) {
      if (dev.ittAddr < other.end && other.start < dev.ittAddr + len) {
        issue('error', `DTE[${hex(dev.devid)}]`, 'ITT_addr', `ITT [${hex(dev.ittAddr)}, +${hex(len)}) overlaps the ITT of device ${hex(other.devid)}`, dev.address);
      }
    }
    for (const t of tables) {
      if (t.valid && dev.ittAddr < t.end && t.start < dev.ittAddr + len) {
        issue('error', `DTE[${hex(dev.devid)}]`, 'ITT_addr', `ITT [${hex(dev.ittAddr)}, +${hex(len)}) overlaps the ${t.name}`, dev.address);
      }
    }
    itts.push({ devid: dev.devid, start: dev.ittAddr, end: dev.ittAddr + len });

    let event = 0;
    let expectValidAt = -1; // the slot a previous `next` pointed at
    let expectFrom = -1;
    while (event < nevents) {
      const at = dev.ittAddr + event * 8;
      const entry = `ITE[${hex(dev.devid)}:${event}]`;
      if (!memory.contains(at, 8)) {
        issue('error', entry, 'address', `entry at ${hex(at)} is outside guest RAM (restore: -EFAULT)`, at);
        return;
      }
      const lo = memory.readU64Lo(at);
      const hi = memory.readU64Hi(at);
      const intid = InterruptTranslationEntry.intid(lo, hi);
      if (intid === 0) {
        if (expectValidAt === event) issue('error', `ITE[${hex(dev.devid)}:${expectFrom}]`, 'next', `points at EventID ${event}, whose ITE is not valid`, dev.ittAddr + expectFrom * 8);
        expectValidAt = -1;
        event++;
        continue;
      }
      const icid = InterruptTranslationEntry.icid(lo);
      const next = InterruptTranslationEntry.next(hi);
      dev.events.push({ eventid: event, address: at, intid, icid, next });
      if (intid < LPI_BASE) issue('error', entry, 'pINTID', `INTID ${intid} is not an LPI (< 8192; restore: -EINVAL)`, at);
      else if (intid >= 2 ** idBits) issue('warning', entry, 'pINTID', `INTID ${intid} is at or above 2^${idBits} (GICR_PROPBASER.IDbits)`, at);
      if (propBase >= 0 && intid >= LPI_BASE && !memory.contains(propBase + intid - LPI_BASE, 1)) {
        issue('error', entry, 'pINTID', `the property byte of INTID ${intid} (${hex(propBase + intid - LPI_BASE)}) is outside guest RAM (restore: -EFAULT)`, at);
      }
      if (next !== 0 && event + next >= nevents) issue('error', entry, 'next', `EventID ${event} + next ${next} is beyond the device's ${nevents} events (restore: -EINVAL)`, at);
      if (!icids.has(icid)) issue('error', entry, 'ICID', `collection ${icid} is not in the collection table (restore: -EINVAL)`, at);
      const owner = intidOwners.get(intid);
      if (owner !== undefined) issue('warning', entry, 'pINTID', `INTID ${intid} is also mapped by ${owner}`, at);
      else intidOwners.set(intid, entry);
      if (next === 0) return;
      expectValidAt = event + next;
      expectFrom = event;
      event += next;
    }
  };

  /** restore_dte for one slot; returns the scan step (0 = last, -1 = stop on a fatal read). */
  const visitDte = (devid: number, at: number): number => {
    const lo = memory.readU64Lo(at);
    const hi = memory.readU64Hi(at);
    if (!DeviceTableEntry.valid(hi)) return 1;
    const entry = `DTE[${hex(devid)}]`;
    const eventIdBits = DeviceTableEntry.eventIdBits(lo);
    const next = DeviceTableEntry.next(hi);
    const ittAddr = DeviceTableEntry.ittAddr(lo, hi);
    const dev: DeviceInfo = { devid, address: at, ittAddr, eventIdBits, next, events: [] };
    report.deviceTable.devices.push(dev);
    if (devid > MAX_ID) issue('error', entry, 'DeviceID', `DeviceID ${hex(devid)} is above 16 bits (restore: -EINVAL)`, at);
    if (eventIdBits > MAX_EVENT_ID_BITS) {
      issue('error', entry, 'Size', `${eventIdBits} EventID bits, at most ${MAX_EVENT_ID_BITS} (restore: -EINVAL)`, at);
    } else {
      inspectItt(dev);
    }
    return next;
  };

  /** scan_its_table over one region; returns false when a `next` of 0 ended everything. */
  const scan = (base: number, bytes: number, firstId: number, table: string): boolean => {
    let off = 0;
    let id = firstId;
    let pointedAt = -1;
    let pointedFrom = -1;
    for (let guard = 0; guard <= bytes / 8 && off < bytes; guard++) {
      const at = base + off;
      if (!memory.contains(at, 8)) {
        issue('error', `${table}[${hex(id)}]`, 'address', `entry at ${hex(at)} is outside guest RAM (restore: -EFAULT)`, at);
        return false;
      }
      if (pointedAt === id && !DeviceTableEntry.valid(memory.readU64Hi(at))) {
        issue('error', `DTE[${hex(pointedFrom)}]`, 'next', `points at DeviceID ${hex(id)}, whose DTE is not valid`, base + (pointedFrom - firstId) * 8);
      }
      const step = visitDte(id, at);
      if (step === 0) return false;
      if (step > 1) {
        pointedAt = id + step;
        pointedFrom = id;
      }
      if (step * 8 >= bytes - off) return true; // ran off the end: KVM moves on
      off += step * 8;
      id += step;
    }
    return true;
  };

  if (dt.valid) {
    if (dt.type !== BASER_TYPE_DEVICE) issue('error', 'GITS_BASER0', 'Type', `type ${dt.type}, expected ${BASER_TYPE_DEVICE} (devices)`);
    if (!dt.indirect) {
      scan(dt.base, dt.bytes, 0, 'DTE');
    } else {
      for (let i = 0; i < dt.slots; i++) {
        const at = dt.base + i * 8;
        if (!memory.contains(at, 8)) {
          issue('error', `L1[${i}]`, 'address', `level-1 entry at ${hex(at)} is outside guest RAM (restore: -EFAULT)`, at);
          break;
        }
        const lo = memory.readU64Lo(at);
        const hi = memory.readU64Hi(at);
        const valid = Level1Entry.valid(hi);
        const l2Addr = Level1Entry.l2Addr(lo, hi);
        if (!valid) continue;
        report.deviceTable.level1.push({ index: i, address: at, valid, l2Addr });
        if (i * L2_ENTRIES > MAX_ID) {
          issue('error', `L1[${i}]`, 'index', `level-1 entry ${i} covers DeviceIDs from ${hex(i * L2_ENTRIES)}, above 16 bits`, at);
          break;
        }
        if (!memory.contains(l2Addr, L2_PAGE_SIZE)) {
          issue('error', `L1[${i}]`, 'L2_addr', `level-2 page at ${hex(l2Addr)} is not entirely in guest RAM (restore: -EFAULT)`, at);
          continue;
        }
        if (!scan(l2Addr, L2_PAGE_SIZE, i * L2_ENTRIES, 'DTE')) break;
      }
    }
  }

  report.ok = !issues.some((x) => x.severity === 'error');
  return report;
}

// ---- rendering ----

export function formatReport(r: InspectionReport, opts: { verbose?: boolean } = {}): string {
  const out: string[] = [];
  const ct = r.collectionTable;
  if (!ct.valid) out.push('Collection table: GITS_BASER1 not valid (not restored)');
  else {
    out.push(`Collection table @${hex(ct.base)} (${ct.bytes / 1024} KiB, ${ct.slots} slots): ${ct.collections.length} collection(s)`);
    for (const c of ct.collections) out.push(`  CTE[${c.index}] ICID ${c.icid} -> ${c.target < 0 ? 'unmapped' : `vCPU ${c.target}`}`);
  }
  const dt = r.deviceTable;
  if (!dt.valid) out.push('Device table: GITS_BASER0 not valid (not restored)');
  else {
    const events = dt.devices.reduce((n, d) => n + d.events.length, 0);
    out.push(
      `Device table @${hex(dt.base)} (${dt.indirect ? `two-level, ${dt.slots} L1 entries` : `flat, ${dt.slots} slots`}): ${dt.devices.length} device(s), ${events} mapped event(s)`,
    );
    for (const l1 of dt.level1) out.push(`  L1[${l1.index}] -> level-2 page @${hex(l1.l2Addr)} (DeviceIDs ${hex(l1.index * L2_ENTRIES)}..${hex(l1.index * L2_ENTRIES + L2_ENTRIES - 1)})`);
    for (const d of dt.devices) {
      out.push(`  DTE[${hex(d.devid)}] @${hex(d.address)} ITT @${hex(d.ittAddr)} ${d.eventIdBits} EventID bit(s), next ${d.next}: ${d.events.length} event(s)`);
      for (const e of d.events) out.push(`    ITE[${e.eventid}] INTID ${e.intid} ICID ${e.icid}${opts.verbose ? ` next ${e.next} @${hex(e.address)}` : ''}`);
    }
  }
  const errors = r.issues.filter((i) => i.severity === 'error').length;
  const warnings = r.issues.length - errors;
  out.push('');
  if (r.issues.length === 0) out.push('No inconsistencies.');
  else {
    out.push(`${errors} error(s), ${warnings} warning(s):`);
    for (const i of r.issues) out.push(`  ${i.severity.padEnd(7)} ${i.entry} field ${i.field}${i.address !== undefined ? ` @${hex(i.address)}` : ''}: ${i.message}`);
  }
  return out.join('\n');
}

/** JSON-safe form (addresses as hex strings). */
export function reportToJson(r: InspectionReport): unknown {
  return JSON.parse(JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v)));
}
