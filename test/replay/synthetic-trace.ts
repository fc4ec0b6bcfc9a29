/**
 * A synthetic QEMU 7.2 trace, written the way QEMU's ITS would trace a guest: it keeps
 * QEMU's view of the mappings, pending LPIs and configuration bytes, and emits exactly the
 * lines QEMU emits (a CWRITER write's line after the commands it caused, a translation_write
 * before its table reads, ICC_IAR1 reads choosing the lowest pending enabled INTID), with noise
 * (timer PPIs, SGIs, console text). Different from the recorded trace on purpose: another CPU
 * count, other DeviceIDs and phases, a flat device table, a 4 KiB command queue that wraps,
 * MAPI/INT/CLEAR, a masked LPI receiving an MSI, MSIs that QEMU drops, an LPI pending across
 * a phase mark.
 */

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

interface Ite {
  intid: number;
  icid: number;
}

export type MarkStyle = 'pl011' | 'comment';

export interface SyntheticCounts {
  translations: number;
  acks: number;
  commands: number;
  marks: number;
  dropped: number;
  /** LPIs left pending at the end, per CPU. */
  pendingAtEnd: number[][];
}

export interface SyntheticTrace {
  text: string;
  counts: SyntheticCounts;
}

export class SyntheticQemu {
  private readonly out: string[] = [];
  private usec = 0;
  private readonly devices = new Map<number, { itt: number; size: number }>();
  private readonly ites = new Map<string, Ite>();
  private readonly collections = new Map<number, number>();
  private readonly pending: Array<Set<number>>;
  private readonly enabled = new Map<number, boolean>();
  private cwriter = 0; // slot
  private readonly counts: SyntheticCounts;
  readonly mainTid = 4100;

  constructor(
    readonly nrCpus: number,
    private readonly markStyle: MarkStyle,
    private readonly queueSlots = 128, // a 4 KiB queue: wraps after 128 commands
  ) {
    this.pending = Array.from({ length: nrCpus }, () => new Set<number>());
    this.counts = { translations: 0, acks: 0, commands: 0, marks: 0, dropped: 0, pendingAtEnd: [] };
  }

  tid(cpu: number): number {
    return 4200 + cpu;
  }

  private emit(tid: number, event: string, message: string): void {
    this.usec += 7;
    const sec = 1_800_000_000 + Math.floor(this.usec / 1e6);
    this.out.push(`${tid}@${sec}.${String(this.usec % 1e6).padStart(6, '0')}:${event} ${message}`);
  }

  // ---- MMIO ----
  itsRead(cpu: number, off: number, data: bigint, size = 8): void {
    this.emit(this.tid(cpu), 'gicv3_its_read', `GICv3 ITS read: offset ${hex(off)} data ${hex(data)} size ${size}`);
  }
  itsWrite(cpu: number, off: number, data: bigint, size = 8): void {
    this.emit(this.tid(cpu), 'gicv3_its_write', `GICv3 ITS write: offset ${hex(off)} data ${hex(data)} size ${size}`);
  }
  redistRead(cpu: number, rd: number, off: number, data: bigint, size = 4): void {
    this.emit(this.tid(cpu), 'gicv3_redist_read', `GICv3 redistributor ${hex(rd)} read: offset ${hex(off)} data ${hex(data)} size ${size} secure 0`);
  }
  redistWrite(cpu: number, rd: number, off: number, data: bigint, size = 4): void {
    this.emit(this.tid(cpu), 'gicv3_redist_write', `GICv3 redistributor ${hex(rd)} write: offset ${hex(off)} data ${hex(data)} size ${size} secure 0`);
  }

  // ---- console and noise ----
  console(cpu: number, text: string): void {
    for (const ch of `${text}\n`) this.emit(this.tid(cpu), 'pl011_write', `pl011_write addr 0x00000000 value ${hex(ch.charCodeAt(0)).replace('0x', '0x000000')}`);
  }
  mark(cpu: number, phase: string): void {
    this.counts.marks++;
    if (this.markStyle === 'pl011') this.console(cpu, `@@MARK ${phase} @@`);
    else this.out.push(`# ${this.tid(cpu)}@1800000000.000000: @@MARK ${phase} @@`);
  }
  noise(cpu: number): void {
    this.emit(this.tid(cpu), 'gicv3_redist_set_irq', `GICv3 redistributor ${hex(cpu)} interrupt 27 level changed to 1`);
    this.emit(this.tid(cpu), 'gicv3_icc_iar1_read', `GICv3 ICC_IAR1 read cpu ${hex(cpu)} value 0x1b`);
    this.emit(this.tid(cpu), 'gicv3_redist_send_sgi', `GICv3 redistributor ${hex((cpu + 1) % this.nrCpus)} pending SGI 1`);
    this.emit(this.tid(cpu), 'gicv3_icc_iar1_read', `GICv3 ICC_IAR1 read cpu ${hex(cpu)} value 0x3ff`);
  }

  // ---- table lines as QEMU prints them ----
  private dteRead(tid: number, dev: number): { itt: number; size: number } | undefined {
    const d = this.devices.get(dev);
    this.emit(tid, 'gicv3_its_dte_read', `GICv3 ITS: Device Table read for DeviceID ${hex(dev)}: valid ${d ? 1 : 0} size ${hex(d?.size ?? 0)} ITTaddr ${hex(d?.itt ?? 0)}`);
    return d;
  }
  private iteLine(tid: number, write: boolean, itt: number, ev: number, ite: Ite | undefined): void {
    const v = ite ? `valid 1 inttype 1 intid ${hex(ite.intid)} ICID ${hex(ite.icid)} vPEID 0x0 doorbell 0x3ff` : 'valid 0 inttype 0 intid 0x0 ICID 0x0 vPEID 0x0 doorbell 0x0';
    this.emit(tid, write ? 'gicv3_its_ite_write' : 'gicv3_its_ite_read', `GICv3 ITS: Interrupt Table ${write ? 'write' : 'read'} for ITTaddr ${hex(itt)} EventID ${hex(ev)}: ${v}`);
  }
  private cteRead(tid: number, icid: number): number | undefined {
    const rd = this.collections.get(icid);
    this.emit(tid, 'gicv3_its_cte_read', `GICv3 ITS: Collection Table read for ICID ${hex(icid)}: valid ${rd === undefined ? 0 : 1} RDBase ${hex(rd ?? 0)}`);
    return rd;
  }

  // ---- commands (QEMU semantics) ----
  private cmdLine(tid: number, name: string, fields: string): void {
    this.emit(tid, `gicv3_its_cmd_${name.toLowerCase()}`, `GICv3 ITS: command ${name}${fields ? ' ' + fields : ''}`);
  }

  /** dte_read + ite_read (+ cte_read) of a command on an existing event. */
  private lookup(tid: number, dev: number, ev: number): { ite: Ite; rd: number; itt: number } {
    const d = this.dteRead(tid, dev)!;
    const ite = this.ites.get(`${dev}:${ev}`)!;
    this.iteLine(tid, false, d.itt, ev, ite);
    const rd = this.cteRead(tid, ite.icid)!;
    return { ite, rd, itt: d.itt };
  }

  private readonly handlers: Record<string, (tid: number, a: number[]) => void> = {
    MAPD: (tid, [dev, size, itt, v]) => {
      this.cmdLine(tid, 'MAPD', `DeviceID ${hex(dev!)} Size ${hex(size!)} ITT_addr ${hex(itt! / 256)} V ${v}`);
      this.emit(tid, 'gicv3_its_dte_write', `GICv3 ITS: Device Table write for DeviceID ${hex(dev!)}: valid ${v} size ${hex(size!)} ITTaddr ${hex(itt! / 256)}`);
      for (const k of [...this.ites.keys()]) if (k.startsWith(`${dev}:`)) this.ites.delete(k);
      if (v) this.devices.set(dev!, { itt: itt!, size: size! });
      else this.devices.delete(dev!);
    },
    MAPC: (tid, [icid, rd]) => {
      this.cmdLine(tid, 'MAPC', `ICID ${hex(icid!)} RDbase ${hex(rd!)} V 1`);
      this.emit(tid, 'gicv3_its_cte_write', `GICv3 ITS: Collection Table write for ICID ${hex(icid!)}: valid 1 RDBase ${hex(rd!)}`);
      this.collections.set(icid!, rd!);
    },
    MAPTI: (tid, [dev, ev, intid, icid]) => {
      this.cmdLine(tid, 'MAPTI', `DeviceID ${hex(dev!)} EventID ${hex(ev!)} ICID ${hex(icid!)} pINTID ${hex(intid!)}`);
      const d = this.dteRead(tid, dev!)!;
      const ite = { intid: intid!, icid: icid! };
      this.iteLine(tid, true, d.itt, ev!, ite);
      this.ites.set(`${dev}:${ev}`, ite);
    },
    MAPI: (tid, [dev, ev, icid]) => {
      this.cmdLine(tid, 'MAPI', `DeviceID ${hex(dev!)} EventID ${hex(ev!)} ICID ${hex(icid!)}`);
      const d = this.dteRead(tid, dev!)!;
      const ite = { intid: ev!, icid: icid! };
      this.iteLine(tid, true, d.itt, ev!, ite);
      this.ites.set(`${dev}:${ev}`, ite);
    },
    INV: (tid, [dev, ev]) => {
      this.cmdLine(tid, 'INV', `DeviceID ${hex(dev!)} EventID ${hex(ev!)}`);
      this.lookup(tid, dev!, ev!);
    },
    MOVI: (tid, [dev, ev, icid]) => {
      this.cmdLine(tid, 'MOVI', `DeviceID ${hex(dev!)} EventID ${hex(ev!)} ICID ${hex(icid!)}`);
      const { ite, rd, itt } = this.lookup(tid, dev!, ev!);
      const to = this.cteRead(tid, icid!)!;
      const moved = { intid: ite.intid, icid: icid! };
      this.iteLine(tid, true, itt, ev!, moved);
      this.ites.set(`${dev}:${ev}`, moved);
      if (this.pending[rd]!.delete(ite.intid)) this.pending[to]!.add(ite.intid);
    },
    DISCARD: (tid, [dev, ev]) => {
      this.cmdLine(tid, 'DISCARD', `DeviceID ${hex(dev!)} EventID ${hex(ev!)}`);
      const { ite, rd, itt } = this.lookup(tid, dev!, ev!);
      this.pending[rd]!.delete(ite.intid);
      this.iteLine(tid, true, itt, ev!, undefined);
      this.ites.delete(`${dev}:${ev}`);
    },
    INT: (tid, [dev, ev]) => {
      this.cmdLine(tid, 'INT', `DeviceID ${hex(dev!)} EventID ${hex(ev!)}`);
      const { ite, rd } = this.lookup(tid, dev!, ev!);
      this.pending[rd]!.add(ite.intid);
    },
    CLEAR: (tid, [dev, ev]) => {
      this.cmdLine(tid, 'CLEAR', `DeviceID ${hex(dev!)} EventID ${hex(ev!)}`);
      const { ite, rd } = this.lookup(tid, dev!, ev!);
      this.pending[rd]!.delete(ite.intid);
    },
    SYNC: (tid) => this.cmdLine(tid, 'SYNC', ''),
    INVALL: (tid) => this.cmdLine(tid, 'INVALL', ''),
  };

  private static readonly OPCODES: Record<string, number> = {
    MOVI: 0x1, INT: 0x3, CLEAR: 0x4, SYNC: 0x5, MAPD: 0x8, MAPC: 0x9, MAPTI: 0xa, MAPI: 0xb, INV: 0xc, INVALL: 0xd, DISCARD: 0xf,
  };

  /** Posts commands from `cpu` the way Linux does: CREADR poll, commands, CWRITER, CREADR wait. */
  post(cpu: number, cmds: Array<[string, ...number[]]>): void {
    const tid = this.tid(cpu);
    const bytes = (slot: number): bigint => BigInt((slot % this.queueSlots) * 32);
    this.itsRead(cpu, 0x90, bytes(this.cwriter), 4);
    for (const [name, ...args] of cmds) {
      this.emit(tid, 'gicv3_its_process_command', `GICv3 ITS: processing command at offset ${hex(this.cwriter % this.queueSlots)}: ${hex(SyntheticQemu.OPCODES[name]!)}`);
      this.handlers[name]!(tid, args);
      this.cwriter = (this.cwriter + 1) % this.queueSlots;
      this.counts.commands++;
    }
    this.itsWrite(cpu, 0x88, bytes(this.cwriter), 4);
    this.itsRead(cpu, 0x90, bytes(this.cwriter), 4);
  }

  /** The guest rewrites an LPI's configuration byte (not traced) and invalidates it. */
  inv(cpu: number, dev: number, ev: number, enable: boolean): void {
    this.enabled.set(this.ites.get(`${dev}:${ev}`)!.intid, enable);
    this.post(cpu, [['INV', dev, ev], ['SYNC']]);
  }
  setEnabled(intid: number, enable: boolean): void {
    this.enabled.set(intid, enable);
  }

  /** A device MSI, raised from QEMU's main loop: translation_write, then the lookups. */
  msi(dev: number, ev: number): void {
    const tid = this.mainTid;
    this.counts.translations++;
    this.emit(tid, 'gicv3_its_translation_write', `GICv3 ITS TRANSLATER write: offset 0x40 data ${hex(ev)} size 4 requester_id ${hex(dev)}`);
    const d = this.dteRead(tid, dev);
    if (!d || ev >= 2 ** (d.size + 1)) {
      this.counts.dropped++;
      return;
    }
    const ite = this.ites.get(`${dev}:${ev}`);
    this.iteLine(tid, false, d.itt, ev, ite);
    if (!ite) {
      this.counts.dropped++;
      return;
    }
    const rd = this.cteRead(tid, ite.icid);
    if (rd === undefined) {
      this.counts.dropped++;
      return;
    }
    this.pending[rd]!.add(ite.intid);
  }

  /** The CPU takes its highest-priority pending enabled LPI (all priorities equal: lowest INTID). */
  ack(cpu: number): number {
    const ready = [...this.pending[cpu]!].filter((i) => this.enabled.get(i) === true).sort((a, b) => a - b);
    if (ready.length === 0) throw new Error(`synthetic guest bug: nothing to acknowledge on cpu ${cpu}`);
    const intid = ready[0]!;
    this.pending[cpu]!.delete(intid);
    this.counts.acks++;
    this.emit(this.tid(cpu), 'gicv3_icc_iar1_read', `GICv3 ICC_IAR1 read cpu ${hex(cpu)} value ${hex(intid)}`);
    return intid;
  }

  rdOf(icid: number): number {
    return this.collections.get(icid)!;
  }

  finish(): SyntheticTrace {
    this.counts.pendingAtEnd = this.pending.map((s) => [...s].filter((i) => this.enabled.get(i) === true).sort((a, b) => a - b));
    return { text: this.out.join('\n') + '\n', counts: { ...this.counts } };
  }
}

// ---- the guest ----

/** Guest RAM layout of the synthetic guest (64 KiB aligned tables above 2 GiB). */
const DEV_TABLE = 0x8001_0000;
const COLL_TABLE = 0x8002_0000;
const CMDQ = 0x8003_0000;
const PROP = 0x8004_0000;
const PEND = (cpu: number): number => 0x8010_0000 + cpu * 0x1_0000;

const BASER_COMMON = (7n << 59n) | (7n << 48n) | (1n << 10n) | (2n << 8n); // RaWaWb, esz 8, InnerShareable, 64K pages

/**
 * Builds the trace of a guest with `nrCpus` CPUs (at least 3) and four devices that boots,
 * probes, takes interrupts, masks and unmasks, moves, INTs/CLEARs, discards pending LPIs,
 * unbinds and rebinds a device, and leaves two LPIs pending at the end.
 */
export function buildSyntheticTrace(nrCpus: number, markStyle: MarkStyle = 'pl011'): SyntheticTrace {
  if (nrCpus < 3) throw new Error('the scenario needs 3 CPUs or more');
  const g = new SyntheticQemu(nrCpus, markStyle);
  const last = nrCpus - 1;

  // ---- ITS probe (CPU 0): a flat device table, a 4 KiB queue ----
  g.console(0, 'synthetic guest booting');
  g.itsRead(0, 0xffe8, 0x3bn, 4);
  g.itsRead(0, 0x0, 0x8000_0000n, 4);
  for (let n = 0; n < 8; n++) g.itsWrite(0, 0x100 + 8 * n, 0n);
  g.itsRead(0, 0x8, 0x1f0001efb1n);
  const baser0 = (1n << 63n) | BASER_COMMON | (1n << 56n) | BigInt(DEV_TABLE);
  const baser1 = (1n << 63n) | BASER_COMMON | (4n << 56n) | BigInt(COLL_TABLE);
  g.itsWrite(0, 0x100, baser0);
  g.itsRead(0, 0x100, baser0);
  g.itsWrite(0, 0x108, baser1);
  g.itsRead(0, 0x108, baser1);
  for (let n = 2; n < 8; n++) g.itsRead(0, 0x100 + 8 * n, 0n);
  const cbaser = (1n << 63n) | (7n << 59n) | (1n << 10n) | BigInt(CMDQ); // Size 0: one 4 KiB page
  g.itsWrite(0, 0x80, cbaser);
  g.itsRead(0, 0x80, cbaser);
  g.itsWrite(0, 0x88, 0n);
  g.itsWrite(0, 0x0, 0x8000_0001n, 4);
  g.itsRead(0, 0x0, 0x8000_0001n, 4);

  // ---- per CPU: LPI registers, then MAPC + INVALL ----
  for (let cpu = 0; cpu < nrCpus; cpu++) {
    g.noise(cpu);
    const typer = (BigInt(cpu) << 32n) | BigInt(cpu << 8) | (cpu === last ? 0x10n : 0n) | 0x1n;
    g.redistRead(cpu, cpu, 0x8, typer, 8);
    g.redistWrite(cpu, cpu, 0x14, 0x0n); // GICR_WAKER: the VMM's
    g.redistRead(cpu, cpu, 0x0, 0x0n);
    const prop = BigInt(PROP) | 0x780n | 0xfn;
    g.redistWrite(cpu, cpu, 0x70, prop, 8);
    g.redistRead(cpu, cpu, 0x70, prop, 8);
    const pend = BigInt(PEND(cpu)) | 0x780n;
    g.redistWrite(cpu, cpu, 0x78, pend, 8);
    g.redistRead(cpu, cpu, 0x78, pend, 8);
    g.redistWrite(cpu, cpu, 0x0, 0x1n);
    g.redistRead(cpu, cpu, 0x0, 0x1n);
    g.post(cpu, [['MAPC', cpu, cpu], ['SYNC']]);
    g.post(cpu, [['INVALL'], ['SYNC']]);
  }

  // ---- probe: four devices ----
  g.mark(0, 'probe');
  const A = 0x8;
  const B = 0x200;
  const C = 0x1fff;
  const D = 0x40;
  const icidA = [0, 1, 2, 1];
  g.post(1, [['MAPD', A, 1, 0x8020_0100, 1]]);
  for (let ev = 0; ev < 4; ev++) {
    g.post(1, [['MAPTI', A, ev, 0x2000 + ev, icidA[ev]!], ['SYNC']]);
    g.inv(1, A, ev, true);
  }
  g.post(2, [['MAPD', B, 0, 0x8020_0400, 1]]);
  for (let ev = 0; ev < 2; ev++) {
    g.post(2, [['MAPTI', B, ev, 0x2010 + ev, 1], ['SYNC']]);
    g.inv(2, B, ev, true);
  }
  g.post(0, [['MAPD', C, 2, 0x8020_0600, 1]]);
  for (let ev = 0; ev < 8; ev++) {
    g.post(0, [['MAPTI', C, ev, 0x2020 + ev, ev % nrCpus], ['SYNC']]);
    g.inv(0, C, ev, true);
  }
  g.post(last, [['MAPD', D, 13, 0x8030_0000, 1]]);
  g.post(last, [['MAPI', D, 0x2100, last], ['SYNC']]);
  g.inv(last, D, 0x2100, true);

  // ---- traffic ----
  g.mark(1, 'traffic');
  for (let round = 0; round < 3; round++) {
    for (let ev = 0; ev < 4; ev++) {
      g.msi(A, ev);
      g.ack(g.rdOf(icidA[ev]!));
    }
    for (let ev = 0; ev < 8; ev++) {
      g.msi(C, ev);
      g.ack(ev % nrCpus);
      g.noise(ev % nrCpus);
    }
    g.msi(D, 0x2100);
    g.ack(last);
  }
  // coalesced: the second MSI finds the LPI still pending
  g.msi(A, 1);
  g.msi(A, 1);
  g.ack(1);
  // two pending on CPU 1, the higher INTID first: acknowledged lowest first
  g.msi(A, 3); // 0x2003 on cpu 1
  g.msi(A, 1); // 0x2001 on cpu 1
  g.ack(1);
  g.ack(1);
  // pending across a phase mark (and a migration, with --migrate-at-marks)
  g.msi(C, 4);
  g.mark(0, 'cross');
  g.ack(4 % nrCpus);

  // ---- a masked LPI takes an MSI; unmasked later ----
  g.mark(0, 'mask');
  g.inv(1, A, 1, false); // 0x2001 (cpu 1) disabled
  g.msi(A, 1); // pending, not delivered
  g.msi(B, 0); // 0x2010 on cpu 1: delivered first although its INTID is higher
  g.ack(1);
  g.inv(1, A, 1, true);
  g.ack(1);

  // ---- MOVI of a pending LPI; enough MOVIs to wrap the 128-slot queue ----
  g.mark(2, 'move');
  g.msi(A, 2); // 0x2002 on cpu 2
  g.post(2, [['MOVI', A, 2, 0], ['SYNC']]);
  g.ack(0);
  for (let i = 0; i < 30; i++) g.post(i % nrCpus, [['MOVI', C, 7, (i + 1) % nrCpus], ['SYNC']]);
  g.msi(C, 7);
  g.ack(30 % nrCpus);

  // ---- INT and CLEAR ----
  g.mark(0, 'int-clear');
  g.post(0, [['INT', C, 3], ['SYNC']]);
  g.ack(3 % nrCpus);
  g.post(0, [['INT', C, 5], ['SYNC']]);
  g.post(0, [['CLEAR', C, 5], ['SYNC']]);

  // ---- pending LPIs discarded ----
  g.mark(1, 'discard-pending');
  g.msi(C, 6);
  g.inv(0, C, 6, false);
  g.post(0, [['DISCARD', C, 6], ['SYNC']]);
  g.msi(C, 1);
  g.post(0, [['DISCARD', C, 1], ['SYNC']]); // no mask first: dropped while pending and enabled

  // ---- unbind B; MSIs QEMU drops ----
  g.mark(1, 'unbind');
  for (let ev = 0; ev < 2; ev++) {
    g.inv(2, B, ev, false);
    g.post(2, [['DISCARD', B, ev], ['SYNC']]);
  }
  g.post(2, [['MAPD', B, 0, 0x8020_0400, 0]]);
  g.msi(B, 0); // unmapped device
  g.msi(A, 9); // EventID beyond A's 4 events
  g.msi(C, 6); // discarded event
  g.msi(0x777, 0); // never mapped

  // ---- rebind B with a new ITT, same LPIs ----
  g.mark(2, 'rebind');
  g.post(2, [['MAPD', B, 0, 0x8020_0a00, 1]]);
  for (let ev = 0; ev < 2; ev++) {
    g.post(2, [['MAPTI', B, ev, 0x2010 + ev, ev === 0 ? 0 : last], ['SYNC']]);
    g.inv(2, B, ev, true);
  }
  g.msi(B, 0);
  g.ack(0);
  g.msi(B, 1);
  g.ack(last);

  // ---- the end: two MSIs nobody acknowledges ----
  g.mark(0, 'end');
  g.msi(A, 0);
  g.msi(D, 0x2100);
  g.console(0, 'reboot: Power down');
  return g.finish();
}
