/**
 * Turns a parsed QEMU trace into a replay plan: what to do at each event and what to expect.
 *
 * - Commands: a CWRITER (or CTLR) write's trace line comes AFTER the commands it caused
 *   (README caveat 1), on the same thread. The process_command, cmd_* and table lines seen on a
 *   thread are collected and attributed to that thread's next ITS register write: they are the
 *   write's expected results, and the queue slots they name are the ones to fill before it.
 * - Translations: a translation_write line comes BEFORE its dte/ite/cte reads (caveat 5); the
 *   reads that follow on the same thread are QEMU's result for that MSI.
 * - The LPI configuration table is never traced (caveat 6). The plan decides, for each point
 *   where the ITS reads an LPI's configuration byte (MAPTI/MAPI creating it, INV, INVALL), the
 *   byte the guest must have written just before: see configByteAt below.
 * - Guest RAM: the address ranges the ITS and redistributors will touch.
 */
import type { TraceEvent, TracedCommandFields } from './qemu-trace.js';
import { attachDecoded, QemuItsMirror, type CommandEffects, type TableEvent, type TracedCommand } from './qemu-mirror.js';
import { ItsOpcode } from './its-commands.js';

export const LPI_BASE = 8192;
/** Linux's default LPI priority (LPI_PROP_DEFAULT_PRIO 0xa0) with the Group 1 bit it always sets. */
export const DEFAULT_LPI_CONFIG = 0xa2;
export const LPI_ENABLE = 0x1;

/** GITS register offsets the plan cares about. */
export const GITS_CTLR = 0x0;
export const GITS_CBASER = 0x80;
export const GITS_CWRITER = 0x88;
export const GITS_CREADR = 0x90;
export const GITS_BASER0 = 0x100;
export const GICR_CTLR = 0x0;
export const GICR_PROPBASER = 0x70;
export const GICR_PENDBASER = 0x78;

/** Commands QEMU processed within one ITS register write (usually CWRITER). */
export interface CommandBatch {
  /** Index of the its_write event that caused them. */
  readonly writeIndex: number;
  readonly commands: readonly PlannedCommand[];
  /** Configuration bytes the guest wrote before this write: [intid, byte] pairs. */
  readonly configWrites: ReadonlyArray<readonly [number, number]>;
}

export interface PlannedCommand extends TracedCommand {
  readonly effects: CommandEffects;
  /** INVALL's ICID / SYNC's RDbase when the trace does not carry them (inferred). */
  readonly hintIcid: number;
  readonly hintRdbase: number;
}

export type TranslationOutcome = 'pending' | 'dropped' | 'unknown';

/** What QEMU did with one MSI (from the table reads after its translation_write). */
export interface ExpectedTranslation {
  readonly eventIndex: number;
  readonly deviceId: number;
  readonly eventId: number;
  readonly outcome: TranslationOutcome;
  readonly intid: number;
  readonly rdbase: number;
  readonly icid: number;
  /** Why QEMU dropped it (which lookup failed), when it did. */
  readonly reason: string;
}

export interface AddressRange {
  readonly gpa: number;
  readonly size: number;
  readonly what: string;
}

export interface ReplayPlan {
  readonly events: readonly TraceEvent[];
  readonly nrVcpus: number;
  /** By the event index of the ITS write that caused them. */
  readonly batches: ReadonlyMap<number, CommandBatch>;
  /** By the event index of the translation_write. */
  readonly translations: ReadonlyMap<number, ExpectedTranslation>;
  /** Guest RAM the replay must map (not yet page-aligned or merged). */
  readonly ranges: readonly AddressRange[];
  /** DeviceIDs that MAPD names (for indirect device tables). */
  readonly mappedDeviceIds: readonly number[];
  /** Commands seen with no later register write on their thread to attribute them to. */
  readonly orphanCommands: number;
  /** Table lines seen outside any command or translation. */
  readonly orphanTableEvents: number;
  readonly counts: PlanCounts;
}

export interface PlanCounts {
  translations: number;
  lpiAcks: number;
  commands: number;
  commandsByName: Record<string, number>;
  itsWrites: number;
  itsReads: number;
  redistWrites: number;
  redistReads: number;
  marks: number;
}

export interface PlanOptions {
  /** The guest's final LPI configuration table (mem-lpi_prop.bin): byte i = INTID 8192 + i. */
  finalConfig?: Uint8Array;
}

/** Bounded lookahead for the reads that follow a translation_write. */
const MAX_TRANSLATION_LOOKAHEAD = 64;

// ---- 64-bit guest-written register values (32-bit halves merged) ----

/** Values the guest wrote to 64-bit registers, with 32-bit (or smaller) writes merged in. */
export class GuestRegisterFile {
  private readonly values = new Map<string, bigint>();
  write(key: string, offsetInReg: number, size: number, data: bigint): bigint {
    const old = this.values.get(key) ?? 0n;
    let v: bigint;
    if (size >= 8) v = data & 0xffff_ffff_ffff_ffffn;
    else {
      const shift = BigInt(offsetInReg * 8);
      const mask = ((1n << BigInt(size * 8)) - 1n) << shift;
      v = (old & ~mask) | ((data << shift) & mask);
    }
    this.values.set(key, v);
    return v;
  }
  get(key: string): bigint | undefined {
    return this.values.get(key);
  }
}

export const bits = (v: bigint, hi: number, lo: number): number => Number((v >> BigInt(lo)) & ((1n << BigInt(hi - lo + 1)) - 1n));

/** GITS_BASER page size in bytes (Page_Size field 9:8). */
export function baserPageSize(v: bigint): number {
  return [0x1000, 0x4000, 0x10000, 0x10000][bits(v, 9, 8)]!;
}

/** GITS_BASER table address for a given page size (64 KiB pages carry PA[51:48] in bits 15:12). */
export function baserAddress(v: bigint, pageSize: number): number {
  if (pageSize === 0x10000) return bits(v, 47, 16) * 0x10000 + bits(v, 15, 12) * 2 ** 48;
  return bits(v, 47, 12) * 0x1000;
}

export const cbaserAddress = (v: bigint): number => bits(v, 51, 12) * 0x1000;
export const cbaserBytes = (v: bigint): number => (bits(v, 7, 0) + 1) * 0x1000;
export const propbaserAddress = (v: bigint): number => bits(v, 51, 12) * 0x1000;
export const propbaserIdBits = (v: bigint): number => Math.min(bits(v, 4, 0) + 1, 16);
export const pendbaserAddress = (v: bigint): number => bits(v, 51, 16) * 0x10000;
export const isValid = (v: bigint): boolean => (v >> 63n) === 1n;

/** Which 64-bit register (base offset) an access at `offset` falls in, for the registers tracked. */
export function itsReg64(offset: number): number | undefined {
  const base = offset & ~7;
  if (base === GITS_CBASER || base === GITS_CWRITER || (base >= GITS_BASER0 && base < GITS_BASER0 + 0x40)) return base;
  return undefined;
}

export function redistReg64(offset: number): number | undefined {
  const base = offset & ~7;
  return base === GICR_PROPBASER || base === GICR_PENDBASER ? base : undefined;
}

// ---- configuration-byte inference ----

interface ConfigPoint {
  readonly batch: number; // index into batch order
  readonly writeIndex: number;
  /** Next command (after this point) that touches this LPI is a DISCARD/CLEAR. */
  unmappedNext: boolean;
}

/**
 * The configuration byte the guest had written for `intid` at point k (the ITS reads it there).
 * Evidence first: an acknowledge of the LPI before its next configuration read proves it was
 * enabled; an MSI to it in that interval that nobody acknowledged before the next read shows it
 * was disabled (pending but not delivered: the guest unmasks it later). Linux masks an LPI
 * (clears Enable, INV) before DISCARDing it, so a point whose next command on the LPI is a
 * DISCARD is a disable. With no evidence: the guest's final byte for the last point when the
 * table dump is given, else enabled. Priority and group bits come from the final dump when
 * given, else Linux's default (0xa0 | Group1).
 */
function configByteAt(
  points: readonly ConfigPoint[], k: number, evidence: LpiEvidence | undefined, finalByte: number | undefined,
): number {
  const base = (finalByte ?? DEFAULT_LPI_CONFIG) & ~LPI_ENABLE & 0xff;
  const from = points[k]!.writeIndex;
  const last = k === points.length - 1;
  const to = last ? Number.POSITIVE_INFINITY : points[k + 1]!.writeIndex;
  const within = (list: readonly number[] | undefined): boolean => list !== undefined && list.some((a) => a > from && a < to);
  if (within(evidence?.acks)) return base | LPI_ENABLE;
  if (!last && within(evidence?.msis)) return base;
  if (points[k]!.unmappedNext) return base;
  if (last && finalByte !== undefined) return base | (finalByte & LPI_ENABLE);
  return base | LPI_ENABLE;
}

/** Event indices of the acknowledges of an LPI and of the MSIs QEMU translated to it. */
interface LpiEvidence {
  acks: number[];
  msis: number[];
}

// ---- the analysis ----

interface ThreadState {
  /** Commands processed on this thread, waiting for the register write that caused them. */
  pending: TracedCommand[];
  /** What table lines on this thread currently belong to. */
  context: 'none' | 'command' | 'translation';
}

export function planReplay(events: readonly TraceEvent[], options: PlanOptions = {}): ReplayPlan {
  const threads = new Map<string, ThreadState>();
  const thread = (tid: number | null): ThreadState => {
    const key = String(tid);
    let t = threads.get(key);
    if (!t) {
      t = { pending: [], context: 'none' };
      threads.set(key, t);
    }
    return t;
  };

  const rawBatches: Array<{ writeIndex: number; commands: TracedCommand[] }> = [];
  const translations = new Map<number, ExpectedTranslation>();
  const ranges: AddressRange[] = [];
  const mappedDeviceIds = new Set<number>();
  const evidence = new Map<number, LpiEvidence>();
  const evidenceOf = (intid: number): LpiEvidence => {
    let ev = evidence.get(intid);
    if (!ev) evidence.set(intid, (ev = { acks: [], msis: [] }));
    return ev;
  };
  const itsRegs = new GuestRegisterFile();
  const redistRegs = new GuestRegisterFile();
  let maxCpu = 0;
  let lastPropbaser: bigint | undefined;
  let orphanTableEvents = 0;
  const counts: PlanCounts = {
    translations: 0, lpiAcks: 0, commands: 0, commandsByName: {}, itsWrites: 0, itsReads: 0,
    redistWrites: 0, redistReads: 0, marks: 0,
  };

  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    switch (e.kind) {
      case 'its_process_command': {
        const t = thread(e.tid);
        t.pending.push({
          eventIndex: i, line: e.line, tid: e.tid, slot: e.slot, opcode: e.opcode, name: 'UNKNOWN', fields: {}, tableEvents: [],
        });
        t.context = 'command';
        break;
      }
      case 'its_cmd': {
        const t = thread(e.tid);
        const cmd = t.pending[t.pending.length - 1];
        if (t.context === 'command' && cmd && cmd.tableEvents.length === 0) attachDecoded(cmd, e);
        else orphanTableEvents++;
        if (e.name === 'MAPD' && e.fields.deviceId !== undefined) mappedDeviceIds.add(e.fields.deviceId);
        if (e.name === 'MAPD' && e.fields.valid === 1 && e.fields.ittAddrShifted !== undefined) {
          // Linux sizes ITTs for QEMU's 12-byte ITEs (at least 256 bytes); KVM's 8-byte ITEs fit inside
          const events2 = 2 ** ((e.fields.size ?? 0) + 1);
          ranges.push({ gpa: e.fields.ittAddrShifted * 256, size: Math.max(256, events2 * 12), what: `ITT dev 0x${(e.fields.deviceId ?? 0).toString(16)}` });
        }
        if (e.name === 'MAPC' && e.fields.rdbase !== undefined) maxCpu = Math.max(maxCpu, e.fields.rdbase);
        break;
      }
      case 'its_dte_read': case 'its_dte_write': case 'its_ite_read': case 'its_ite_write':
      case 'its_cte_read': case 'its_cte_write': case 'its_table_fault': {
        const t = thread(e.tid);
        const cmd = t.pending[t.pending.length - 1];
        if (t.context === 'command' && cmd) cmd.tableEvents.push(e as TableEvent);
        else if (t.context !== 'translation') orphanTableEvents++;
        if (e.kind === 'its_cte_read' || e.kind === 'its_cte_write') maxCpu = Math.max(maxCpu, e.valid ? e.rdbase : 0);
        break;
      }
      case 'its_translation_write': {
        counts.translations++;
        thread(e.tid).context = 'translation';
        const expected = expectTranslation(events, i);
        translations.set(i, expected);
        if (expected.outcome === 'pending') evidenceOf(expected.intid).msis.push(i);
        break;
      }
      case 'its_write': {
        counts.itsWrites++;
        const t = thread(e.tid);
        t.context = 'none';
        if (t.pending.length > 0) {
          rawBatches.push({ writeIndex: i, commands: t.pending });
          t.pending = [];
        }
        const reg = itsReg64(e.offset);
        if (reg !== undefined) {
          const v = itsRegs.write(String(reg), e.offset - reg, e.size, e.data);
          addItsTableRange(ranges, reg, v);
        }
        break;
      }
      case 'its_read':
        counts.itsReads++;
        thread(e.tid).context = 'none';
        break;
      case 'redist_write': {
        counts.redistWrites++;
        maxCpu = Math.max(maxCpu, e.cpu);
        thread(e.tid).context = 'none';
        const reg = redistReg64(e.offset);
        if (reg !== undefined) {
          const v = redistRegs.write(`${e.cpu}:${reg}`, e.offset - reg, e.size, e.data);
          if (reg === GICR_PROPBASER) {
            lastPropbaser = v;
            const idBits = propbaserIdBits(v);
            if (idBits > 13) ranges.push({ gpa: propbaserAddress(v), size: 2 ** idBits - LPI_BASE, what: 'LPI configuration table' });
          } else {
            const idBits = lastPropbaser === undefined ? 16 : Math.max(propbaserIdBits(lastPropbaser), 14);
            ranges.push({ gpa: pendbaserAddress(v), size: 2 ** idBits / 8, what: `LPI pending table cpu ${e.cpu}` });
          }
        }
        break;
      }
      case 'redist_read':
        counts.redistReads++;
        maxCpu = Math.max(maxCpu, e.cpu);
        thread(e.tid).context = 'none';
        break;
      case 'icc_iar1_read':
        thread(e.tid).context = 'none';
        if (e.value >= LPI_BASE && e.value < 0x100_0000) {
          counts.lpiAcks++;
          maxCpu = Math.max(maxCpu, e.cpu);
          evidenceOf(e.value).acks.push(i);
        }
        break;
      case 'mark':
        counts.marks++;
        break;
      default:
        break;
    }
  }

  let orphanCommands = 0;
  for (const t of threads.values()) orphanCommands += t.pending.length;

  // Second pass over the batches, in order: QEMU's mappings and what each command did.
  const mirror = new QemuItsMirror();
  let lastMapcIcid = 0;
  let lastRdbase = 0;
  const planned: Array<{ writeIndex: number; commands: PlannedCommand[] }> = [];
  for (const b of rawBatches) {
    const cmds: PlannedCommand[] = [];
    for (const c of b.commands) {
      if (c.name === 'MAPC' && c.fields.icid !== undefined) {
        lastMapcIcid = c.fields.icid;
        lastRdbase = c.fields.rdbase ?? lastRdbase;
      }
      const hintIcid = c.fields.icid ?? lastMapcIcid;
      const cteRead = c.tableEvents.find((t) => t.kind === 'its_cte_read');
      if (cteRead && cteRead.kind === 'its_cte_read' && cteRead.valid) lastRdbase = cteRead.rdbase;
      const effects = mirror.apply(c, { invallIcid: hintIcid });
      cmds.push({ ...c, effects, hintIcid, hintRdbase: lastRdbase });
      counts.commands++;
      counts.commandsByName[c.name] = (counts.commandsByName[c.name] ?? 0) + 1;
    }
    planned.push({ writeIndex: b.writeIndex, commands: cmds });
  }

  const configWrites = inferConfigWrites(planned, evidence, options.finalConfig);
  const batches = new Map<number, CommandBatch>();
  planned.forEach((b, n) => batches.set(b.writeIndex, { writeIndex: b.writeIndex, commands: b.commands, configWrites: configWrites[n]! }));

  return {
    events, nrVcpus: maxCpu + 1, batches, translations, ranges, mappedDeviceIds: [...mappedDeviceIds].sort((a, b) => a - b),
    orphanCommands, orphanTableEvents, counts,
  };
}

function addItsTableRange(ranges: AddressRange[], reg: number, v: bigint): void {
  if (!isValid(v)) return;
  if (reg === GITS_CBASER) {
    ranges.push({ gpa: cbaserAddress(v), size: cbaserBytes(v), what: 'command queue' });
    return;
  }
  if (reg >= GITS_BASER0 && reg < GITS_BASER0 + 0x40) {
    const n = (reg - GITS_BASER0) / 8;
    const pages = bits(v, 7, 0) + 1;
    const guestPage = baserPageSize(v);
    ranges.push({ gpa: baserAddress(v, guestPage), size: pages * guestPage, what: `GITS_BASER${n} table` });
    // a KVM-like ITS forces 64 KiB pages: cover its reading of the same register too
    if (guestPage !== 0x10000) ranges.push({ gpa: baserAddress(v, 0x10000), size: pages * 0x10000, what: `GITS_BASER${n} table (64K pages)` });
  }
}

/** QEMU's result for the translation_write at index i, from the reads that follow on its thread. */
function expectTranslation(events: readonly TraceEvent[], i: number): ExpectedTranslation {
  const tw = events[i]!;
  if (tw.kind !== 'its_translation_write') throw new Error('not a translation_write');
  const base = { eventIndex: i, deviceId: tw.deviceId, eventId: tw.eventId, intid: 0, rdbase: -1, icid: -1 };
  let stage: 'dte' | 'ite' | 'cte' = 'dte';
  let intid = 0;
  let icid = -1;
  let sameThreadSeen = 0;
  for (let j = i + 1; j < events.length && j <= i + MAX_TRANSLATION_LOOKAHEAD; j++) {
    const e = events[j]!;
    if (e.tid !== tw.tid) continue;
    if (++sameThreadSeen > 8) break;
    if (e.kind === 'its_dte_read' && stage === 'dte') {
      if (!e.valid) return { ...base, outcome: 'dropped', reason: 'unmapped_device' };
      if (tw.eventId >= 2 ** (e.size + 1)) return { ...base, outcome: 'dropped', reason: 'event_out_of_range' };
      stage = 'ite';
    } else if (e.kind === 'its_ite_read' && stage === 'ite') {
      if (!e.valid) return { ...base, outcome: 'dropped', reason: 'unmapped_event' };
      intid = e.intid;
      icid = e.icid;
      stage = 'cte';
    } else if (e.kind === 'its_cte_read' && stage === 'cte') {
      if (!e.valid) return { ...base, intid, icid, outcome: 'dropped', reason: 'unmapped_collection' };
      return { ...base, intid, icid, rdbase: e.rdbase, outcome: 'pending', reason: '' };
    } else if (e.kind === 'its_table_fault') {
      return { ...base, intid, icid, outcome: 'dropped', reason: `${e.table}_read_fault` };
    } else {
      break;
    }
  }
  // No lookup traced at all: QEMU had nothing to look up with (ITS disabled) or the table
  // events were not enabled; a partial chain means the lookup stopped there.
  if (stage === 'dte') return { ...base, outcome: 'unknown', reason: 'no table reads traced' };
  return { ...base, intid, icid, outcome: 'dropped', reason: stage === 'ite' ? 'unmapped_event' : 'unmapped_collection' };
}

function inferConfigWrites(
  planned: ReadonlyArray<{ writeIndex: number; commands: readonly PlannedCommand[] }>,
  evidence: ReadonlyMap<number, LpiEvidence>,
  finalConfig: Uint8Array | undefined,
): Array<Array<[number, number]>> {
  const points = new Map<number, ConfigPoint[]>();
  planned.forEach((b, n) => {
    for (const c of b.commands) {
      const unmaps = c.opcode === ItsOpcode.DISCARD ? c.effects.pending.flatMap((p) => (p.op === 'clear' ? [p.intid] : [])) : [];
      for (const intid of unmaps) {
        const list = points.get(intid);
        const last = list?.[list.length - 1];
        if (last) last.unmappedNext = true;
      }
      for (const intid of c.effects.configReads) {
        let list = points.get(intid);
        if (!list) points.set(intid, (list = []));
        const last = list[list.length - 1];
        if (last && last.batch === n) continue; // same write: one byte read twice
        list.push({ batch: n, writeIndex: b.writeIndex, unmappedNext: false });
      }
    }
  });
  const out: Array<Array<[number, number]>> = planned.map(() => []);
  for (const [intid, list] of points) {
    const idx = intid - LPI_BASE;
    const finalByte = finalConfig && idx >= 0 && idx < finalConfig.length ? finalConfig[idx] : undefined;
    list.forEach((p, k) => out[p.batch]!.push([intid, configByteAt(list, k, evidence.get(intid), finalByte)]));
  }
  for (const w of out) w.sort((a, b) => a[0] - b[0]);
  return out;
}

/** The fields a batch's command carries plus the hints the encoder needs. */
export function encoderInput(c: PlannedCommand): { fields: TracedCommandFields; icid: number; rdbase: number } {
  return { fields: c.fields, icid: c.hintIcid, rdbase: c.hintRdbase };
}

/** The last GICR_PROPBASER the guest wrote (any redistributor; KVM keeps one per VM). */
export function lastGuestPropbaser(events: readonly TraceEvent[]): bigint | undefined {
  const regs = new GuestRegisterFile();
  let last: bigint | undefined;
  for (const e of events) {
    if (e.kind === 'redist_write' && redistReg64(e.offset) === GICR_PROPBASER) last = regs.write(String(e.cpu), e.offset - GICR_PROPBASER, e.size, e.data);
  }
  return last;
}

/** The last valid GITS_CBASER the guest wrote. */
export function lastGuestCbaser(events: readonly TraceEvent[]): bigint | undefined {
  const regs = new GuestRegisterFile();
  let last: bigint | undefined;
  for (const e of events) {
    if (e.kind === 'its_write' && itsReg64(e.offset) === GITS_CBASER) {
      const v = regs.write('cbaser', e.offset - GITS_CBASER, e.size, e.data);
      if (isValid(v)) last = v;
    }
  }
  return last;
}
