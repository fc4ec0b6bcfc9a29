/**
 * Replays of the recorded Linux 6.1 guest (../shared/traces/linux-6.1-smp4 beside the repository)
 * against vitsd: every one of the 150 MSI translations and 147 acknowledged LPIs must agree,
 * with and without a migration to a fresh vitsd at each of the 18 phase marks.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readQemuTrace } from '../../src/replay/qemu-trace.js';
import { readTableDumps } from '../../src/replay/table-dumps.js';
import { replayQemuTrace } from '../../src/replay/replayer.js';
import { inProcessFactory, spawnDaemonFactory } from '../../src/replay/endpoints.js';
import { formatReport, type ReplayReport } from '../../src/replay/report.js';
import { replayMain } from '../../src/cli/vitsctl/replay.js';
import { TRACE_DIR } from './trace-dir.js';

const present = existsSync(join(TRACE_DIR, 'its-only.log'));
const title = present
  ? 'replay of the recorded Linux 6.1 trace (../shared/traces/linux-6.1-smp4)'
  : 'replay of the recorded Linux 6.1 trace: SKIPPED, ../shared/traces/linux-6.1-smp4 is not beside the repository';

/** The trace's own counts (README section 5), not the replayer's. */
const TRANSLATIONS = 150;
const ACKS = 147;
const COMMANDS = 255;

function expectAllAgree(r: ReplayReport): void {
  const why = formatReport(r);
  expect(r.ok, why).toBe(true);
  expect(r.disagreementCount, why).toBe(0);
  expect(r.categories.translations, why).toEqual({ total: TRANSLATIONS, agree: TRANSLATIONS, disagree: 0 });
  expect(r.categories.acks, why).toEqual({ total: ACKS, agree: ACKS, disagree: 0 });
  expect(r.categories.commands, why).toEqual({ total: COMMANDS, agree: COMMANDS, disagree: 0 });
  expect(r.translationDetail.coalesced).toBe(1); // dev 0x18 event 2 during net-up (README 4.5)
  // the two config MSIs raised after power-off: dev 0x10 ev 0 -> 0x2001 on cpu 3, dev 0x18 ev 0 -> 0x2005 on cpu 0
  expect(r.pendingAtEnd.filter((p) => p.vitsd.length > 0)).toEqual([
    { vcpu: 0, expected: ['0x2005'], vitsd: ['0x2005'] },
    { vcpu: 3, expected: ['0x2001'], vitsd: ['0x2001'] },
  ]);
}

describe.skipIf(!present)(title, () => {
  it('its-only.log with the queue dump and the table dumps, in process', async () => {
    const r = await replayQemuTrace(readQemuTrace(join(TRACE_DIR, 'its-only.log')), {
      factory: inProcessFactory(),
      cmdq: readFileSync(join(TRACE_DIR, 'mem-cmdq.bin')),
      dumps: readTableDumps(TRACE_DIR),
    });
    expectAllAgree(r);
    expect(r.commandSource).toEqual({ fromDump: COMMANDS, encoded: 0, dumpMismatches: 0 });
    expect(r.trace.nrVcpus).toBe(4);
  });

  it('its-only.log migrated to a fresh vitsd at each of the 18 marks', async () => {
    const r = await replayQemuTrace(readQemuTrace(join(TRACE_DIR, 'its-only.log')), {
      factory: inProcessFactory(),
      cmdq: readFileSync(join(TRACE_DIR, 'mem-cmdq.bin')),
      dumps: readTableDumps(TRACE_DIR),
      migrateAtMarks: true,
    });
    expectAllAgree(r);
    expect(r.migrations).toMatchObject({ count: 18, failures: 0 });
  });

  it('the raw log (gzip, console marks, no dumps: commands re-encoded, L1 and configuration synthesized), migrated at every mark', async () => {
    const trace = readQemuTrace(join(TRACE_DIR, 'trace-raw.log.gz'));
    expect(trace.lines).toBe(67566);
    const r = await replayQemuTrace(trace, { factory: inProcessFactory(), migrateAtMarks: true });
    expectAllAgree(r);
    expect(r.commandSource).toEqual({ fromDump: 0, encoded: COMMANDS, dumpMismatches: 0 });
    expect(r.migrations.count).toBe(18);
  });

  it('over the wire, against a spawned vitsd process', async () => {
    const r = await replayQemuTrace(readQemuTrace(join(TRACE_DIR, 'its-only.log')), {
      factory: spawnDaemonFactory(),
      cmdq: readFileSync(join(TRACE_DIR, 'mem-cmdq.bin')),
    });
    expectAllAgree(r);
  }, 120_000);

  it('vitsctl replay: table output, --json, exit status 0', async () => {
    let out = '';
    const io = { stdout: (t: string) => { out += t; }, stderr: (t: string) => { out += t; } };
    const base = {
      qemuTrace: join(TRACE_DIR, 'its-only.log'), cmdq: join(TRACE_DIR, 'mem-cmdq.bin'), tables: TRACE_DIR,
      migrateAtMarks: false, migration: 'orchestrator' as const, spawnDaemon: false, maxDetails: 10,
    };
    expect(await replayMain({ ...base, json: false }, io)).toBe(0);
    expect(out).toMatch(/translations \(MSI -> LPI, vCPU\)\s+150\s+150\s+0\s+100\.0%/);
    expect(out).toMatch(/acknowledged LPIs\s+147\s+147\s+0\s+100\.0%/);
    expect(out).toMatch(/speed: 2644 events in [\d.]+ s = \d+ events\/s/);
    out = '';
    expect(await replayMain({ ...base, json: true }, io)).toBe(0);
    const json = JSON.parse(out) as ReplayReport;
    expect(json.ok).toBe(true);
    expect(json.categories.translations.agree).toBe(150);
  });

  it('vitsctl replay exits 1 on a disagreement and 4 on an unreadable trace', async () => {
    const io = { stdout: () => {}, stderr: () => {} };
    const base = { migrateAtMarks: false, migration: 'orchestrator' as const, spawnDaemon: false, maxDetails: 10, json: false };
    expect(await replayMain({ ...base, qemuTrace: join(TRACE_DIR, 'no-such-file.log') }, io)).toBe(4);
    // with 2 vCPUs instead of 4, the MSIs QEMU sent to CPUs 2 and 3 cannot agree
    expect(await replayMain({ ...base, qemuTrace: join(TRACE_DIR, 'its-only.log'), vcpus: 2 }, io)).toBe(1);
  });

  it('the yargs command module parses its options', async () => {
    const { default: yargs } = await import('yargs');
    const { replayCommand } = await import('../../src/cli/vitsctl/replay.js');
    let seen: Record<string, unknown> = {};
    await yargs(['replay', '--qemu-trace', 'T', '--cmdq', 'Q', '--migrate-at-marks', '--json', '--its-base', '0x0c000000', '--vcpus', '3'])
      .command({ ...replayCommand, handler: (a) => { seen = a as unknown as Record<string, unknown>; } })
      .strict()
      .parseAsync();
    expect(seen).toMatchObject({ qemuTrace: 'T', cmdq: 'Q', migrateAtMarks: true, json: true, itsBase: 0x0c00_0000, vcpus: 3, migration: 'orchestrator', spawnDaemon: false });
  });
});
