/**
 * Parser of QEMU's raw trace text (`-trace ... -D trace.log`, "log" backend) into typed events,
 * for the GICv3 ITS / redistributor / CPU-interface events that a replay needs.
 *
 * Line format: `TID@SECONDS.MICROSECONDS:event message` with `-msg timestamp=on`, or just
 * `event message` without it. Comment lines (`# ...`) are skipped, except `@@MARK <phase> @@`
 * comment lines (as its-only.log writes them). In a raw log the marks are console output: the
 * bytes of pl011_write data-register writes, reassembled into lines here.
 *
 * Field values are read by name from the `key value` pairs of the message, so the parser does
 * not depend on the order of fields or on one QEMU version's exact wording. Unknown events are
 * skipped and counted; a known event whose fields are missing is counted as malformed.
 * Guest-derived text: nothing here throws on bad input except for an unreadable file.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

/** Where an event came from: 1-based line number, thread id and time (null without timestamps). */
export interface TraceEventBase {
  readonly line: number;
  readonly tid: number | null;
  /** Host wall-clock seconds (QEMU prints them per thread; use line order, not time). */
  readonly time: number | null;
}

/** gicv3_its_read / gicv3_its_write: guest MMIO to the ITS control frame. */
export interface ItsRegisterAccess extends TraceEventBase {
  readonly kind: 'its_read' | 'its_write';
  readonly offset: number;
  readonly data: bigint;
  readonly size: number;
}

/** gicv3_its_badread / gicv3_its_badwrite. */
export interface ItsBadAccess extends TraceEventBase {
  readonly kind: 'its_bad_access';
  readonly write: boolean;
  readonly offset: number;
  readonly data: bigint;
  readonly size: number;
}

/** gicv3_its_translation_write: an MSI (data = EventID, requester_id = DeviceID). */
export interface ItsTranslationWrite extends TraceEventBase {
  readonly kind: 'its_translation_write';
  readonly offset: number;
  readonly eventId: number;
  readonly size: number;
  readonly deviceId: number;
}

/** gicv3_its_process_command: the ITS starts the command in queue slot `slot` (32-byte units). */
export interface ItsProcessCommand extends TraceEventBase {
  readonly kind: 'its_process_command';
  readonly slot: number;
  readonly opcode: number;
}

/** Decoded command fields as QEMU traces them (absent when the command has no such field). */
export interface TracedCommandFields {
  deviceId?: number;
  eventId?: number;
  icid?: number;
  pintid?: number;
  /** MAPD Size (EventID bits - 1). */
  size?: number;
  /** MAPD ITT_addr as traced: the address >> 8 (README caveat 3). */
  ittAddrShifted?: number;
  valid?: number;
  rdbase?: number;
  rdbase2?: number;
  /** gicv3_its_cmd_unknown's opcode. */
  opcode?: number;
}

/** gicv3_its_cmd_<name>: decoded fields of the command just started. `name` is upper case (MAPTI). */
export interface ItsCommandDecoded extends TraceEventBase {
  readonly kind: 'its_cmd';
  readonly name: string;
  readonly fields: TracedCommandFields;
}

/** gicv3_its_dte_read / _write. `ittAddr` is always the full address (write lines are shifted back). */
export interface ItsDteAccess extends TraceEventBase {
  readonly kind: 'its_dte_read' | 'its_dte_write';
  readonly deviceId: number;
  readonly valid: boolean;
  readonly size: number;
  readonly ittAddr: number;
}

/** gicv3_its_ite_read / _write. */
export interface ItsIteAccess extends TraceEventBase {
  readonly kind: 'its_ite_read' | 'its_ite_write';
  readonly ittAddr: number;
  readonly eventId: number;
  readonly valid: boolean;
  readonly intType: number;
  readonly intid: number;
  readonly icid: number;
  readonly vpeid: number;
  readonly doorbell: number;
}

/** gicv3_its_cte_read / _write (RDBase = processor number with GITS_TYPER.PTA = 0). */
export interface ItsCteAccess extends TraceEventBase {
  readonly kind: 'its_cte_read' | 'its_cte_write';
  readonly icid: number;
  readonly valid: boolean;
  readonly rdbase: number;
}

/** gicv3_its_{dte,ite,cte,vte}_read_fault. */
export interface ItsTableFault extends TraceEventBase {
  readonly kind: 'its_table_fault';
  readonly table: 'dte' | 'ite' | 'cte' | 'vte';
  readonly id: number;
}

/** gicv3_redist_read / _write: MMIO to redistributor `cpu`'s frames (offset from RD_base). */
export interface RedistRegisterAccess extends TraceEventBase {
  readonly kind: 'redist_read' | 'redist_write';
  readonly cpu: number;
  readonly offset: number;
  readonly data: bigint;
  readonly size: number;
}

/** gicv3_icc_iar1_read: CPU `cpu` acknowledged INTID `value` (>= 8192: an LPI). */
export interface IccIar1Read extends TraceEventBase {
  readonly kind: 'icc_iar1_read';
  readonly cpu: number;
  readonly value: number;
}

/** A guest `@@MARK <phase> [args] @@` line. */
export interface PhaseMark extends TraceEventBase {
  readonly kind: 'mark';
  readonly phase: string;
  /** Whatever follows the phase name inside the mark (e.g. "ncpu=4"). */
  readonly args: string;
}

/** A line of guest console output rebuilt from pl011_write (marks become PhaseMark instead). */
export interface ConsoleLine extends TraceEventBase {
  readonly kind: 'console';
  readonly text: string;
}

export type TraceEvent =
  | ItsRegisterAccess
  | ItsBadAccess
  | ItsTranslationWrite
  | ItsProcessCommand
  | ItsCommandDecoded
  | ItsDteAccess
  | ItsIteAccess
  | ItsCteAccess
  | ItsTableFault
  | RedistRegisterAccess
  | IccIar1Read
  | PhaseMark
  | ConsoleLine;

export type TraceEventKind = TraceEvent['kind'];

export interface ParsedTrace {
  readonly events: TraceEvent[];
  /** Lines read (including blank and comment lines). */
  readonly lines: number;
  /** Parsed events by QEMU event name (plus "mark" and "console"). */
  readonly counts: Record<string, number>;
  /** Events of a kind the parser does not model, by QEMU event name. */
  readonly skipped: Record<string, number>;
  /** Known events whose message lacked a required field, by QEMU event name. */
  readonly malformed: Record<string, number>;
  /** Lines that are neither events nor comments. */
  readonly unparsedLines: number;
}

export interface ParseOptions {
  /** Keep console lines (other than marks) as events; default false. */
  keepConsole?: boolean;
}

// ---- low-level field extraction ----

const LINE_RE = /^(?:(\d+)@(\d+)\.(\d+):)?([A-Za-z_][A-Za-z0-9_]*)(?: (.*))?$/;
const BARE_EVENT_RE = /^[a-z][a-z0-9]*_[a-z0-9_]+$/;
const COMMENT_RE = /^#\s*(?:(\d+)@(\d+)\.(\d+):\s*)?(.*)$/;
const PAIR_RE = /([A-Za-z_][A-Za-z0-9_]*) (0x[0-9a-fA-F]+|-?\d+)\b/g;
const MARK_RE = /@@MARK\s+(\S+)\s*(.*?)\s*@@/;
const PROCESS_COMMAND_RE = /offset (0x[0-9a-fA-F]+|\d+): (0x[0-9a-fA-F]+|\d+)/;

/** `key value` pairs of a message; a later duplicate key does not replace an earlier one. */
export function messageFields(message: string): Map<string, string> {
  const out = new Map<string, string>();
  PAIR_RE.lastIndex = 0;
  for (let m = PAIR_RE.exec(message); m !== null; m = PAIR_RE.exec(message)) {
    if (!out.has(m[1]!)) out.set(m[1]!, m[2]!);
  }
  return out;
}

function toBig(text: string): bigint {
  return text.startsWith('-') ? -BigInt(text.slice(1)) : BigInt(text);
}

/** Numeric value of a field; values above 2^53 lose precision (use big() for register data). */
function toNum(text: string): number {
  if (text.startsWith('0x') || text.startsWith('0X')) return Number.parseInt(text.slice(2), 16);
  return Number.parseInt(text, 10);
}

/** A missing required field: the event is counted as malformed. */
class MissingField extends Error {}

class Fields {
  constructor(private readonly map: Map<string, string>) {}
  num(key: string): number {
    const v = this.map.get(key);
    if (v === undefined) throw new MissingField(key);
    return toNum(v);
  }
  big(key: string): bigint {
    const v = this.map.get(key);
    if (v === undefined) throw new MissingField(key);
    return toBig(v);
  }
  opt(key: string): number | undefined {
    const v = this.map.get(key);
    return v === undefined ? undefined : toNum(v);
  }
}

// ---- one builder per modelled event (dispatch table by QEMU event name) ----

type Builder = (base: TraceEventBase, message: string, f: Fields) => TraceEvent;

const itsAccess = (kind: 'its_read' | 'its_write'): Builder => (base, _m, f) => ({
  ...base, kind, offset: f.num('offset'), data: f.big('data'), size: f.num('size'),
});

const itsBad = (write: boolean): Builder => (base, _m, f) => ({
  ...base, kind: 'its_bad_access', write, offset: f.num('offset'),
  data: write ? f.big('data') : 0n, size: f.num('size'),
});

const dteAccess = (kind: 'its_dte_read' | 'its_dte_write'): Builder => (base, _m, f) => ({
  ...base, kind, deviceId: f.num('DeviceID'), valid: f.num('valid') !== 0, size: f.num('size'),
  // caveat 3: dte_write prints ITT_addr >> 8, dte_read the full address
  ittAddr: kind === 'its_dte_write' ? f.num('ITTaddr') * 256 : f.num('ITTaddr'),
});

const iteAccess = (kind: 'its_ite_read' | 'its_ite_write'): Builder => (base, _m, f) => ({
  ...base, kind, ittAddr: f.num('ITTaddr'), eventId: f.num('EventID'), valid: f.num('valid') !== 0,
  intType: f.num('inttype'), intid: f.num('intid'), icid: f.num('ICID'),
  vpeid: f.opt('vPEID') ?? 0, doorbell: f.opt('doorbell') ?? 0,
});

const cteAccess = (kind: 'its_cte_read' | 'its_cte_write'): Builder => (base, _m, f) => ({
  ...base, kind, icid: f.num('ICID'), valid: f.num('valid') !== 0, rdbase: f.num('RDBase'),
});

const tableFault = (table: 'dte' | 'ite' | 'cte' | 'vte', key: string): Builder => (base, _m, f) => ({
  ...base, kind: 'its_table_fault', table, id: f.num(key),
});

const redistAccess = (kind: 'redist_read' | 'redist_write'): Builder => (base, _m, f) => ({
  ...base, kind, cpu: f.num('redistributor'), offset: f.num('offset'), data: f.big('data'), size: f.num('size'),
});

/** Command field names as QEMU prints them → TracedCommandFields keys. */
const COMMAND_FIELD_KEYS: ReadonlyArray<[string, keyof TracedCommandFields]> = [
  ['DeviceID', 'deviceId'],
  ['EventID', 'eventId'],
  ['ICID', 'icid'],
  ['pINTID', 'pintid'],
  ['Size', 'size'],
  ['ITT_addr', 'ittAddrShifted'],
  ['V', 'valid'],
  ['RDbase', 'rdbase'],
  ['RDbase1', 'rdbase'],
  ['RDbase2', 'rdbase2'],
];

const commandDecoded = (name: string): Builder => (base, message, f) => {
  const fields: TracedCommandFields = {};
  for (const [traced, key] of COMMAND_FIELD_KEYS) {
    const v = f.opt(traced);
    if (v !== undefined && fields[key] === undefined) fields[key] = v;
  }
  if (name === 'UNKNOWN') {
    const m = /command (0x[0-9a-fA-F]+|\d+)/.exec(message);
    if (m) fields.opcode = toNum(m[1]!);
  }
  return { ...base, kind: 'its_cmd', name, fields };
};

const BUILDERS: Record<string, Builder> = {
  gicv3_its_read: itsAccess('its_read'),
  gicv3_its_write: itsAccess('its_write'),
  gicv3_its_badread: itsBad(false),
  gicv3_its_badwrite: itsBad(true),
  gicv3_its_translation_write: (base, _m, f) => ({
    ...base, kind: 'its_translation_write', offset: f.num('offset'), eventId: f.num('data'),
    size: f.num('size'), deviceId: f.num('requester_id'),
  }),
  gicv3_its_process_command: (base, message) => {
    const m = PROCESS_COMMAND_RE.exec(message);
    if (!m) throw new MissingField('offset');
    return { ...base, kind: 'its_process_command', slot: toNum(m[1]!), opcode: toNum(m[2]!) };
  },
  gicv3_its_dte_read: dteAccess('its_dte_read'),
  gicv3_its_dte_write: dteAccess('its_dte_write'),
  gicv3_its_ite_read: iteAccess('its_ite_read'),
  gicv3_its_ite_write: iteAccess('its_ite_write'),
  gicv3_its_cte_read: cteAccess('its_cte_read'),
  gicv3_its_cte_write: cteAccess('its_cte_write'),
  gicv3_its_dte_read_fault: tableFault('dte', 'DeviceID'),
  gicv3_its_ite_read_fault: tableFault('ite', 'EventID'),
  gicv3_its_cte_read_fault: tableFault('cte', 'ICID'),
  gicv3_its_vte_read_fault: tableFault('vte', 'vPEID'),
  gicv3_redist_read: redistAccess('redist_read'),
  gicv3_redist_write: redistAccess('redist_write'),
  gicv3_icc_iar1_read: (base, _m, f) => ({ ...base, kind: 'icc_iar1_read', cpu: f.num('cpu'), value: f.num('value') }),
};

const COMMAND_EVENT_PREFIX = 'gicv3_its_cmd_';

function builderFor(event: string): Builder | undefined {
  const b = BUILDERS[event];
  if (b !== undefined) return b;
  if (event.startsWith(COMMAND_EVENT_PREFIX)) {
    // the name comes from the event, not the message (QEMU's vmapti prints "VMAPI")
    const name = event.slice(COMMAND_EVENT_PREFIX.length).toUpperCase();
    const built = commandDecoded(name);
    BUILDERS[event] = built;
    return built;
  }
  return undefined;
}

// ---- console (pl011) reassembly ----

const PL011_RE = /addr (0x[0-9a-fA-F]+|\d+) value (0x[0-9a-fA-F]+|\d+)/;
/** Longest console line kept; a guest that never prints a newline must not grow memory without bound. */
const MAX_CONSOLE_LINE = 4096;

function markOrConsole(base: TraceEventBase, text: string): PhaseMark | ConsoleLine {
  const m = MARK_RE.exec(text);
  if (m) return { ...base, kind: 'mark', phase: m[1]!, args: m[2]! };
  return { ...base, kind: 'console', text };
}

// ---- the parser ----

function bump(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

/** Parses QEMU trace text (already decompressed). */
export function parseQemuTrace(text: string, options: ParseOptions = {}): ParsedTrace {
  const events: TraceEvent[] = [];
  const counts: Record<string, number> = {};
  const skipped: Record<string, number> = {};
  const malformed: Record<string, number> = {};
  let unparsedLines = 0;
  let console = '';
  let lineNo = 0;

  const emitConsole = (base: TraceEventBase, line: string): void => {
    const ev = markOrConsole(base, line.replace(/\r$/, ''));
    if (ev.kind === 'mark' || options.keepConsole) {
      events.push(ev);
      bump(counts, ev.kind);
    }
  };

  let start = 0;
  const len = text.length;
  while (start < len) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = len;
    const line = text.charCodeAt(end - 1) === 13 ? text.slice(start, end - 1) : text.slice(start, end);
    start = end + 1;
    lineNo++;
    if (line.length === 0) continue;

    if (line.charCodeAt(0) === 35 /* # */) {
      const c = COMMENT_RE.exec(line);
      if (c && c[4]!.includes('@@MARK')) {
        const base = baseOf(lineNo, c[1], c[2], c[3]);
        const ev = markOrConsole(base, c[4]!);
        if (ev.kind === 'mark') {
          events.push(ev);
          bump(counts, 'mark');
        }
      }
      continue;
    }

    const m = LINE_RE.exec(line);
    if (!m) {
      unparsedLines++;
      continue;
    }
    const event = m[4]!;
    // without the TID@time prefix, only something shaped like a trace event name counts
    if (m[1] === undefined && !BARE_EVENT_RE.test(event)) {
      unparsedLines++;
      continue;
    }
    const message = m[5] ?? '';
    const base = baseOf(lineNo, m[1], m[2], m[3]);

    if (event === 'pl011_write') {
      const p = PL011_RE.exec(message);
      if (!p) {
        bump(malformed, event);
        continue;
      }
      if (toNum(p[1]!) !== 0) continue; // not the data register
      const ch = toNum(p[2]!) & 0xff;
      if (ch === 10) {
        emitConsole(base, console);
        console = '';
      } else if (console.length < MAX_CONSOLE_LINE) {
        console += String.fromCharCode(ch);
      }
      continue;
    }

    const builder = builderFor(event);
    if (builder === undefined) {
      bump(skipped, event);
      continue;
    }
    try {
      events.push(builder(base, message, new Fields(messageFields(message))));
      bump(counts, event);
    } catch (e) {
      if (!(e instanceof MissingField)) throw e;
      bump(malformed, event);
    }
  }
  return { events, lines: lineNo, counts, skipped, malformed, unparsedLines };
}

function baseOf(line: number, tid: string | undefined, sec: string | undefined, usec: string | undefined): TraceEventBase {
  return {
    line,
    tid: tid === undefined ? null : Number.parseInt(tid, 10),
    time: sec === undefined ? null : Number.parseInt(sec, 10) + Number.parseInt(usec!, 10) / 1e6,
  };
}

/** Text of a trace given as bytes: gzip (detected by its magic number) or plain UTF-8. */
export function decodeTraceBytes(bytes: Uint8Array): string {
  const gz = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
  const raw = gz ? gunzipSync(bytes) : bytes;
  return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8');
}

/** Reads and parses a trace file (plain or gzip). */
export function readQemuTrace(path: string, options: ParseOptions = {}): ParsedTrace {
  return parseQemuTrace(decodeTraceBytes(readFileSync(path)), options);
}
