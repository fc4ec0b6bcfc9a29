/**
 * The replay's agreement report: counts per category, details of every disagreement (up to a
 * limit), and a plain-text table for people.
 */

export const CATEGORY_NAMES = ['translations', 'acks', 'commands', 'registers', 'pendingAtEnd'] as const;
export type CategoryName = (typeof CATEGORY_NAMES)[number];

export interface CategoryResult {
  total: number;
  agree: number;
  disagree: number;
}

export interface Disagreement {
  /** 'replay': a target failure outside the compared operations. */
  category: CategoryName | 'migrations' | 'replay';
  /** Trace line (0: end of trace). */
  line: number;
  phase: string;
  message: string;
}

export interface ReplayReport {
  ok: boolean;
  target: string;
  trace: {
    lines: number;
    events: number;
    marks: number;
    nrVcpus: number;
    skippedEvents: number;
    malformedEvents: number;
    orphanCommands: number;
    orphanTableEvents: number;
  };
  memory: { regions: Array<{ gpa: number; size: number }>; bytes: number };
  categories: Record<CategoryName, CategoryResult>;
  translationDetail: {
    verifiedByPeek: number;
    verifiedByAck: number;
    verifiedByDrain: number;
    droppedBoth: number;
    coalesced: number;
    noExpectation: number;
  };
  registers: {
    writesApplied: number;
    writeErrors: number;
    readsCompared: number;
    readsAgree: number;
    readsDisagree: number;
    readsInformational: number;
    /** Redistributor accesses to registers the VMM emulates (not vitsd's): not replayed. */
    vmmOwned: number;
    /** Differences where the implementations legitimately differ, by register. */
    differencesByDesign: Record<string, { count: number; firstLine: number; qemu: string; vitsd: string; note: string }>;
  };
  commandSource: { fromDump: number; encoded: number; dumpMismatches: number };
  batches: number;
  configBytesWritten: number;
  deviceTableL1Entries: number;
  pendingAtEnd: Array<{ vcpu: number; expected: string[]; vitsd: string[] }>;
  migrations: { count: number; failures: number; totalMs: number; bytesCopied: number; phases: string[] };
  disagreementCount: number;
  disagreements: Disagreement[];
  /**
   * seconds: the replay of the events (migrations included), from the first event to the end
   * drain; setupSeconds: creating the first target and its devices (a daemon start, for one).
   */
  timing: { seconds: number; events: number; eventsPerSecond: number; setupSeconds: number };
}

export function emptyReport(): ReplayReport {
  const cat = (): CategoryResult => ({ total: 0, agree: 0, disagree: 0 });
  return {
    ok: false,
    target: '',
    trace: { lines: 0, events: 0, marks: 0, nrVcpus: 0, skippedEvents: 0, malformedEvents: 0, orphanCommands: 0, orphanTableEvents: 0 },
    memory: { regions: [], bytes: 0 },
    categories: { translations: cat(), acks: cat(), commands: cat(), registers: cat(), pendingAtEnd: cat() },
    translationDetail: { verifiedByPeek: 0, verifiedByAck: 0, verifiedByDrain: 0, droppedBoth: 0, coalesced: 0, noExpectation: 0 },
    registers: {
      writesApplied: 0, writeErrors: 0, readsCompared: 0, readsAgree: 0, readsDisagree: 0, readsInformational: 0, vmmOwned: 0,
      differencesByDesign: {},
    },
    commandSource: { fromDump: 0, encoded: 0, dumpMismatches: 0 },
    batches: 0,
    configBytesWritten: 0,
    deviceTableL1Entries: 0,
    pendingAtEnd: [],
    migrations: { count: 0, failures: 0, totalMs: 0, bytesCopied: 0, phases: [] },
    disagreementCount: 0,
    disagreements: [],
    timing: { seconds: 0, events: 0, eventsPerSecond: 0, setupSeconds: 0 },
  };
}

const LABELS: Record<CategoryName, string> = {
  translations: 'translations (MSI -> LPI, vCPU)',
  acks: 'acknowledged LPIs',
  commands: 'commands replayed',
  registers: 'registers (writes + compared reads)',
  pendingAtEnd: 'LPIs pending at end',
};

const pct = (a: number, t: number): string => (t === 0 ? '-' : `${((100 * a) / t).toFixed(1)}%`);
const pad = (s: string, n: number): string => s.padEnd(n);
const lpad = (s: string, n: number): string => s.padStart(n);

/** Human-readable report. */
export function formatReport(r: ReplayReport): string {
  const out: string[] = [];
  out.push(`replay against ${r.target}: ${r.ok ? 'AGREE' : 'DISAGREE'}`);
  out.push(`trace: ${r.trace.events} events from ${r.trace.lines} lines, ${r.trace.marks} marks, ${r.trace.nrVcpus} vCPUs` +
    (r.trace.skippedEvents ? `, ${r.trace.skippedEvents} events of other kinds skipped` : '') +
    (r.trace.malformedEvents ? `, ${r.trace.malformedEvents} malformed` : ''));
  out.push('');
  out.push(`${pad('category', 38)}${lpad('total', 8)}${lpad('agree', 8)}${lpad('disagree', 10)}${lpad('agreement', 11)}`);
  for (const n of CATEGORY_NAMES) {
    const c = r.categories[n];
    out.push(`${pad(LABELS[n], 38)}${lpad(String(c.total), 8)}${lpad(String(c.agree), 8)}${lpad(String(c.disagree), 10)}${lpad(pct(c.agree, c.total), 11)}`);
  }
  out.push('');
  const t = r.translationDetail;
  out.push(`translations: ${t.verifiedByPeek} seen pending at once, ${t.verifiedByAck} at their acknowledge, ${t.verifiedByDrain} in the end drain, ` +
    `${t.droppedBoth} dropped by both, ${t.coalesced} coalesced with an LPI still pending` + (t.noExpectation ? `, ${t.noExpectation} without a traced QEMU result` : ''));
  out.push(`commands: ${r.batches} batches; ${r.commandSource.fromDump} from the queue dump, ${r.commandSource.encoded} encoded from the trace` +
    (r.commandSource.dumpMismatches ? ` (${r.commandSource.dumpMismatches} dump slots did not match)` : ''));
  out.push(`registers: ${r.registers.writesApplied} writes applied, ${r.registers.readsCompared} reads compared, ` +
    `${r.registers.readsInformational} informational, ${r.registers.vmmOwned} VMM-owned accesses not replayed`);
  for (const [name, d] of Object.entries(r.registers.differencesByDesign)) {
    out.push(`  by design: ${name} x${d.count} (first line ${d.firstLine}: QEMU ${d.qemu}, vitsd ${d.vitsd}) - ${d.note}`);
  }
  out.push(`guest RAM: ${r.memory.regions.length} regions, ${(r.memory.bytes / 1048576).toFixed(2)} MiB; ` +
    `${r.configBytesWritten} LPI configuration bytes written, ${r.deviceTableL1Entries} device-table L1 entries`);
  for (const p of r.pendingAtEnd) {
    if (p.expected.length || p.vitsd.length) out.push(`pending at end, cpu ${p.vcpu}: QEMU [${p.expected.join(', ')}], vitsd [${p.vitsd.join(', ')}]`);
  }
  if (r.migrations.count || r.migrations.failures) {
    out.push(`migrations: ${r.migrations.count} (${r.migrations.failures} failed), ${r.migrations.totalMs.toFixed(1)} ms in all, ` +
      `${(r.migrations.bytesCopied / 1048576).toFixed(1)} MiB copied`);
  }
  out.push(`speed: ${r.timing.events} events in ${r.timing.seconds.toFixed(3)} s = ${Math.round(r.timing.eventsPerSecond)} events/s` +
    `${r.migrations.count ? ' (migrations included)' : ''}; setup ${(r.timing.setupSeconds * 1000).toFixed(0)} ms`);
  if (r.disagreementCount > 0) {
    out.push('');
    out.push(`${r.disagreementCount} disagreement(s)${r.disagreements.length < r.disagreementCount ? `, first ${r.disagreements.length}` : ''}:`);
    for (const d of r.disagreements) out.push(`  [${d.category}] line ${d.line} (${d.phase}): ${d.message}`);
  }
  return out.join('\n');
}
