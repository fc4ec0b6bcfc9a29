/**
 * Replays of a synthetic trace built in the test (another CPU count, other devices, phases,
 * a flat device table, a wrapping queue, marks as console bytes or comments), in process and
 * over the wire; and proof that the comparison fails when QEMU and vitsd differ.
 */
import { describe, expect, it } from 'vitest';
import { parseQemuTrace } from '../../src/replay/qemu-trace.js';
import { replayQemuTrace } from '../../src/replay/replayer.js';
import { inProcessFactory, spawnDaemonFactory } from '../../src/replay/endpoints.js';
import { copyGuestRam, migrateDirect, restoreDestination, saveSource } from '../../src/replay/migrate.js';
import type { EndpointFactory } from '../../src/replay/endpoint.js';
import { formatReport, type ReplayReport } from '../../src/replay/report.js';
import { buildSyntheticTrace, type SyntheticCounts } from './synthetic-trace.js';

function expectFullAgreement(r: ReplayReport, c: SyntheticCounts): void {
  const why = formatReport(r);
  expect(r.ok, why).toBe(true);
  expect(r.disagreementCount, why).toBe(0);
  expect(r.categories.translations, why).toEqual({ total: c.translations, agree: c.translations, disagree: 0 });
  expect(r.categories.acks, why).toEqual({ total: c.acks, agree: c.acks, disagree: 0 });
  expect(r.categories.commands, why).toEqual({ total: c.commands, agree: c.commands, disagree: 0 });
  expect(r.translationDetail.droppedBoth).toBe(c.dropped);
  expect(r.trace.marks).toBe(c.marks);
  const hex = (n: number): string => `0x${n.toString(16)}`;
  expect(r.pendingAtEnd.map((p) => p.vitsd)).toEqual(c.pendingAtEnd.map((l) => l.map(hex)));
}

describe('synthetic trace, 3 CPUs, marks as pl011 console bytes', () => {
  const { text, counts } = buildSyntheticTrace(3, 'pl011');
  const trace = parseQemuTrace(text);

  it('the scenario exercises what it claims (sanity of the generator)', () => {
    expect(trace.counts['gicv3_its_cmd_mapi']).toBe(1);
    expect(trace.counts['gicv3_its_cmd_int']).toBe(2);
    expect(trace.counts['gicv3_its_cmd_clear']).toBe(1);
    expect(counts.commands).toBeGreaterThan(128); // the 4 KiB queue wrapped
    expect(counts.dropped).toBe(4);
    expect(trace.skipped['gicv3_redist_set_irq']).toBeGreaterThan(0);
  });

  it('agrees on every translation and acknowledge, in process, at a non-default ITS base', async () => {
    const r = await replayQemuTrace(trace, { factory: inProcessFactory(), itsBase: 0x0c00_0000 });
    expectFullAgreement(r, counts);
    expect(r.trace.nrVcpus).toBe(3);
    expect(r.commandSource.encoded).toBe(counts.commands);
    expect(r.deviceTableL1Entries).toBe(0); // flat device table
  });

  it('agrees when migrated to a fresh vitsd at every mark (orchestrator and direct sequences)', async () => {
    const viaOrchestrator = await replayQemuTrace(trace, { factory: inProcessFactory(), migrateAtMarks: true });
    expectFullAgreement(viaOrchestrator, counts);
    expect(viaOrchestrator.migrations).toMatchObject({ count: counts.marks, failures: 0 });
    const direct = await replayQemuTrace(trace, { factory: inProcessFactory(), migrateAtMarks: true, migrate: migrateDirect });
    expectFullAgreement(direct, counts);
    expect(direct.migrations.count).toBe(counts.marks);
  });
});

describe('synthetic trace, 6 CPUs, comment marks, over the wire (spawned vitsd processes)', () => {
  it('agrees on everything', async () => {
    const { text, counts } = buildSyntheticTrace(6, 'comment');
    const r = await replayQemuTrace(parseQemuTrace(text), { factory: spawnDaemonFactory() });
    expectFullAgreement(r, counts);
    expect(r.trace.nrVcpus).toBe(6);
    expect(r.target).toMatch(/^vitsd pid \d+/);
  }, 120_000);
});

describe('the comparison can fail', () => {
  const { text } = buildSyntheticTrace(3, 'comment');

  it('a translation QEMU resolved differently is a disagreement', async () => {
    // QEMU's ITE read for the first MSI of device 0x8 event 2 claims LPI 0x2003 instead of 0x2002
    const lines = text.split('\n');
    const tw = lines.findIndex((l) => l.includes('TRANSLATER write') && l.includes('data 0x2 size 4 requester_id 0x8'));
    const ite = lines.findIndex((l, i) => i > tw && l.includes('gicv3_its_ite_read'));
    lines[ite] = lines[ite]!.replace('intid 0x2002', 'intid 0x2003');
    const r = await replayQemuTrace(parseQemuTrace(lines.join('\n')), { factory: inProcessFactory() });
    expect(r.ok).toBe(false);
    expect(r.categories.translations.disagree).toBeGreaterThanOrEqual(1);
    expect(r.disagreements[0]!.message).toMatch(/LPI 0x2003/);
  });

  it('an acknowledge of another LPI is a disagreement', async () => {
    const lines = text.split('\n');
    const ack = lines.findIndex((l) => l.includes('ICC_IAR1 read cpu 0x1 value 0x2001'));
    lines[ack] = lines[ack]!.replace('value 0x2001', 'value 0x2003');
    const r = await replayQemuTrace(parseQemuTrace(lines.join('\n')), { factory: inProcessFactory() });
    expect(r.ok).toBe(false);
    expect(r.categories.acks.disagree).toBeGreaterThanOrEqual(1);
  });

  it('a target that loses MSIs of one device is caught', async () => {
    const base = inProcessFactory();
    const lossy: EndpointFactory = async (regions) => {
      const e = await base(regions);
      const t = e.target;
      const target = Object.create(t) as typeof t;
      target.signalMsi = async (doorbell, devid, eventid) => (devid === 0x1fff ? 0 : t.signalMsi.call(t, doorbell, devid, eventid));
      return { ...e, target };
    };
    const r = await replayQemuTrace(parseQemuTrace(text), { factory: lossy });
    expect(r.ok).toBe(false);
    expect(r.categories.translations.disagree).toBeGreaterThan(0);
    expect(r.disagreements.some((d) => d.message.includes('dev 0x1fff') && d.message.includes('vitsd status 0'))).toBe(true);
  });

  it('a migration that loses the saved pending tables is caught', async () => {
    // the direct sequence, but the pending tables are zeroed in the copy: the LPI the synthetic
    // guest leaves pending across the "cross" mark is gone on the destination
    const r = await replayQemuTrace(parseQemuTrace(text), {
      factory: inProcessFactory(),
      migrateAtMarks: true,
      migrate: async (src, handles, vm, factory) => {
        const saved = await saveSource(src, handles, vm.nrVcpus);
        const dst = await factory(src.memory.regions);
        const bytesCopied = copyGuestRam(src.memory, dst.memory);
        for (let cpu = 0; cpu < vm.nrVcpus; cpu++) dst.memory.fill(0x8010_0000 + cpu * 0x1_0000, 0x2000, 0);
        const dstHandles = await restoreDestination(dst, vm, saved);
        await src.close();
        return { endpoint: dst, handles: dstHandles, ms: 0, bytesCopied };
      },
    });
    expect(r.ok).toBe(false);
    expect(r.categories.acks.disagree).toBe(1);
    expect(r.disagreements.find((d) => d.category === 'acks')).toMatchObject({ phase: 'cross' });
  });

  it('a migration that restores nothing is caught', async () => {
    // a "migration" that hands over a fresh, unrestored target: everything after the first mark breaks
    const r = await replayQemuTrace(parseQemuTrace(text), {
      factory: inProcessFactory(),
      migrateAtMarks: true,
      migrate: async (src, _handles, _vm, factory) => {
        const dst = await factory(src.memory.regions);
        await src.close();
        return { endpoint: dst, handles: { vgicId: 1, itsId: 2 }, ms: 0, bytesCopied: 0 };
      },
    });
    expect(r.ok).toBe(false);
    expect(r.disagreementCount).toBeGreaterThan(10);
  });
});
