/**
 * QEMU's view of the ITS mappings, rebuilt from the table lines a traced command left behind
 * (dte/ite/cte writes and reads), and what each command did to LPI pending state in QEMU.
 * The replay uses it as the reference: which LPIs an INVALL re-reads, where a MOVI moved a
 * pending LPI, which pending LPI a DISCARD dropped.
 *
 * QEMU semantics (hw/intc/arm_gicv3_its.c, 7.2): DISCARD and CLEAR clear the LPI's pending bit
 * in the target redistributor, INT sets it, MOVI moves it, MOVALL moves every pending LPI from
 * RDbase1 to RDbase2; MAPD and MAPC leave pending state alone.
 */
import type { ItsCommandDecoded, ItsCteAccess, ItsDteAccess, ItsIteAccess, ItsTableFault, TracedCommandFields } from './qemu-trace.js';

export type TableEvent = ItsDteAccess | ItsIteAccess | ItsCteAccess | ItsTableFault;

/** One command as QEMU processed it: process_command + cmd_* + the table lines that followed. */
export interface TracedCommand {
  /** Index of the process_command event in the trace. */
  readonly eventIndex: number;
  readonly line: number;
  readonly tid: number | null;
  readonly slot: number;
  readonly opcode: number;
  /** Upper-case name from cmd_* (or UNKNOWN when QEMU traced no cmd_* line). */
  name: string;
  fields: TracedCommandFields;
  readonly tableEvents: TableEvent[];
}

/** A change of LPI pending state caused by a command (QEMU semantics). */
export type PendingEffect =
  | { readonly op: 'set'; readonly intid: number; readonly rd: number }
  | { readonly op: 'clear'; readonly intid: number; readonly rd: number }
  | { readonly op: 'move'; readonly intid: number; readonly from: number; readonly to: number }
  | { readonly op: 'moveAll'; readonly from: number; readonly to: number };

export interface CommandEffects {
  readonly pending: PendingEffect[];
  /** LPIs whose configuration byte the ITS (re)reads: MAPTI/MAPI creation, INV, INVALL. */
  readonly configReads: number[];
  /** For INV/MAPTI/DISCARD/...: the (DeviceID, EventID) the command is about. */
  readonly ite?: { deviceId: number; eventId: number };
  /** True when the command changed a mapping (QEMU wrote a table entry). */
  readonly mapped: boolean;
}

interface MirrorIte {
  intid: number;
  icid: number;
}

const iteKey = (devid: number, eventid: number): number => devid * 0x1_0000_0000 + eventid;

type KindOf<T> = T extends { kind: infer K } ? K : never;
type TableEventOf<K> = K extends KindOf<ItsDteAccess> ? ItsDteAccess
  : K extends KindOf<ItsIteAccess> ? ItsIteAccess
  : K extends KindOf<ItsCteAccess> ? ItsCteAccess
  : ItsTableFault;

/** The nth table line of a kind that a command left. */
function find<K extends TableEvent['kind']>(events: readonly TableEvent[], kind: K, nth = 0): TableEventOf<K> | undefined {
  let seen = 0;
  for (const e of events) {
    if (e.kind === kind) {
      if (seen === nth) return e as TableEventOf<K>;
      seen++;
    }
  }
  return undefined;
}

type EffectBuilder = (mirror: QemuItsMirror, cmd: TracedCommand, hints: { invallIcid: number }) => CommandEffects;

const NO_EFFECT: CommandEffects = { pending: [], configReads: [], mapped: false };

/** ite_read (intid) + cte_read (rd) of a command that looked an event up. */
function lookedUp(cmd: TracedCommand): { intid: number; rd: number } | undefined {
  const ite = find(cmd.tableEvents, 'its_ite_read');
  const cte = find(cmd.tableEvents, 'its_cte_read');
  if (!ite || !ite.valid || !cte || !cte.valid) return undefined;
  return { intid: ite.intid, rd: cte.rdbase };
}

function iteOf(cmd: TracedCommand): { deviceId: number; eventId: number } {
  return { deviceId: cmd.fields.deviceId ?? 0, eventId: cmd.fields.eventId ?? 0 };
}

const EFFECTS: Record<string, EffectBuilder> = {
  MAPD: (m, cmd) => {
    const dte = find(cmd.tableEvents, 'its_dte_write');
    if (!dte) return NO_EFFECT;
    m.dropDevice(dte.deviceId);
    if (dte.valid) m.devices.set(dte.deviceId, { ittAddr: dte.ittAddr, size: dte.size });
    return { ...NO_EFFECT, mapped: true };
  },
  MAPC: (m, cmd) => {
    const cte = find(cmd.tableEvents, 'its_cte_write');
    if (!cte) return NO_EFFECT;
    if (cte.valid) m.collections.set(cte.icid, cte.rdbase);
    else m.collections.delete(cte.icid);
    return { ...NO_EFFECT, mapped: true };
  },
  MAPTI: (m, cmd) => mapEvent(m, cmd),
  MAPI: (m, cmd) => mapEvent(m, cmd),
  MOVI: (m, cmd) => {
    const write = find(cmd.tableEvents, 'its_ite_write');
    const ite = find(cmd.tableEvents, 'its_ite_read');
    const oldCte = find(cmd.tableEvents, 'its_cte_read', 0);
    const newCte = find(cmd.tableEvents, 'its_cte_read', 1);
    if (!write || !write.valid || !ite || !oldCte || !newCte) return { ...NO_EFFECT, ite: iteOf(cmd) };
    const key = iteOf(cmd);
    m.ites.set(iteKey(key.deviceId, key.eventId), { intid: write.intid, icid: write.icid });
    return {
      pending: [{ op: 'move', intid: ite.intid, from: oldCte.rdbase, to: newCte.rdbase }],
      configReads: [], ite: key, mapped: true,
    };
  },
  DISCARD: (m, cmd) => {
    const hit = lookedUp(cmd);
    const write = find(cmd.tableEvents, 'its_ite_write');
    const key = iteOf(cmd);
    if (write) m.ites.delete(iteKey(key.deviceId, key.eventId));
    if (!hit) return { ...NO_EFFECT, ite: key, mapped: write !== undefined };
    return { pending: [{ op: 'clear', ...hit }], configReads: [], ite: key, mapped: write !== undefined };
  },
  CLEAR: (_m, cmd) => {
    const hit = lookedUp(cmd);
    return { pending: hit ? [{ op: 'clear', ...hit }] : [], configReads: [], ite: iteOf(cmd), mapped: false };
  },
  INT: (_m, cmd) => {
    const hit = lookedUp(cmd);
    return { pending: hit ? [{ op: 'set', ...hit }] : [], configReads: [], ite: iteOf(cmd), mapped: false };
  },
  INV: (_m, cmd) => {
    const ite = find(cmd.tableEvents, 'its_ite_read');
    return { pending: [], configReads: ite && ite.valid ? [ite.intid] : [], ite: iteOf(cmd), mapped: false };
  },
  INVALL: (m, cmd, hints) => {
    const icid = cmd.fields.icid ?? hints.invallIcid;
    const rd = m.collections.get(icid);
    return { pending: [], configReads: rd === undefined ? [] : m.lpisTargeting(rd), mapped: false };
  },
  MOVALL: (_m, cmd) => {
    const from = cmd.fields.rdbase;
    const to = cmd.fields.rdbase2;
    if (from === undefined || to === undefined || from === to) return NO_EFFECT;
    return { pending: [{ op: 'moveAll', from, to }], configReads: [], mapped: false };
  },
};

function mapEvent(m: QemuItsMirror, cmd: TracedCommand): CommandEffects {
  const write = find(cmd.tableEvents, 'its_ite_write');
  const key = iteOf(cmd);
  if (!write || !write.valid) return { ...NO_EFFECT, ite: key };
  m.ites.set(iteKey(key.deviceId, key.eventId), { intid: write.intid, icid: write.icid });
  return { pending: [], configReads: [write.intid], ite: key, mapped: true };
}

export class QemuItsMirror {
  readonly devices = new Map<number, { ittAddr: number; size: number }>();
  readonly ites = new Map<number, MirrorIte>();
  readonly collections = new Map<number, number>();

  dropDevice(devid: number): void {
    const lo = iteKey(devid, 0);
    const hi = iteKey(devid + 1, 0);
    for (const key of [...this.ites.keys()]) if (key >= lo && key < hi) this.ites.delete(key);
  }

  /** LPIs of mapped events whose collection targets `rd`, ascending, without duplicates. */
  lpisTargeting(rd: number): number[] {
    const out = new Set<number>();
    for (const ite of this.ites.values()) if (this.collections.get(ite.icid) === rd) out.add(ite.intid);
    return [...out].sort((a, b) => a - b);
  }

  /** Applies one command and returns what it did (QEMU semantics). */
  apply(cmd: TracedCommand, hints: { invallIcid: number }): CommandEffects {
    const builder = EFFECTS[cmd.name];
    return builder === undefined ? NO_EFFECT : builder(this, cmd, hints);
  }
}

/** Attaches a cmd_* line to its command. */
export function attachDecoded(cmd: TracedCommand, decoded: ItsCommandDecoded): void {
  cmd.name = decoded.name;
  cmd.fields = decoded.fields;
}
