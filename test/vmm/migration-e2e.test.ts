/**
 * Live migration with three processes: this test is the VMM (guest RAM in shared files, the
 * reference guest, device models), and two vitsd daemons are the source and the destination.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/cli/vitsctl/daemon-launcher.js';
import { inspectTables } from '../../src/cli/vitsctl/table-inspector.js';
import { MsiDevice, MsiRouter, type MsiMessage, type MsiOutcome } from '../../src/vmm/device-model.js';
import { GuestBus } from '../../src/vmm/guest-bus.js';
import { drainAllVcpus } from '../../src/vmm/guest-cpus.js';
import { GuestItsDriver, type ExpectedTranslation } from '../../src/vmm/guest-driver.js';
import { GuestRamAllocator } from '../../src/vmm/guest-ram-allocator.js';
import { migrate } from '../../src/vmm/migration.js';
import { firstDifferentPage } from '../../src/vmm/ram-copy.js';
import { checkTranslations, compareAcked } from '../../src/vmm/verify.js';
import { VmInstance } from '../../src/vmm/vm-instance.js';
import { doorbell, virtLayout } from '../../src/vmm/vm-layout.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function twoDaemons(): Promise<{ dir: string; srcSock: string; dstSock: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'vitsd-e2e-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const srcSock = join(dir, 'src.sock');
  const dstSock = join(dir, 'dst.sock');
  const ds = await Promise.all([startDaemon(srcSock), startDaemon(dstSock)]);
  for (const d of ds) cleanups.push(() => d.stop());
  return { dir, srcSock, dstSock };
}

const layout = virtLayout({ nrVcpus: 4, nrIts: 2, ramSize: 16 * 1024 * 1024 });

describe('live migration between two vitsd processes', { timeout: 180_000 }, () => {
  it('mappings, pending LPIs and MSIs of the suspend window all survive exactly once; the guest keeps programming the ITS', async () => {
    const { dir, srcSock, dstSock } = await twoDaemons();
    const src = await VmInstance.open({ socketPath: srcSock, layout, ramPath: join(dir, 'ram-src'), dirtyLog: true });
    cleanups.push(() => src.close());
    await src.createGic();
    const bus = new GuestBus(src.client, src.memory);
    const driver = new GuestItsDriver(bus, layout, new GuestRamAllocator(layout.ramBase, layout.ramSize));
    await driver.boot();
    const router = new MsiRouter(src.client);
    const models = new Map<string, MsiDevice>();
    for (const [its, devid, nvec] of [
      [0, 0x10, 4],
      [0, 0x18, 8],
      [1, 0x20, 8],
      [1, 0x100, 2],
    ] as const) {
      const d = await driver.createDevice(its, devid, nvec);
      await driver.enableAll(d);
      models.set(`${its}:${devid}`, new MsiDevice(`dev${devid}`, router, doorbell(layout.itsBases[its]!), devid, d.nvec));
    }
    await driver.setAffinity(driver.device(0, 0x18), 0, 3);
    const all = driver.expectedTranslations();
    const raise = (t: ExpectedTranslation): Promise<MsiOutcome> => models.get(`${t.its}:${t.devid}`)!.raise(t.eventid);

    // Before: every vector once, acknowledged on its vCPU.
    await Promise.all(all.map(raise));
    expect(compareAcked(await drainAllVcpus(src.client, 4), new Map(all.map((t) => [t.intid, t.vcpu])))).toEqual([]);

    // Pending at suspend: a third of the vectors, on all four vCPUs.
    const pending = all.filter((_, i) => i % 3 === 0);
    const window = all.filter((_, i) => i % 3 !== 0);
    expect(new Set(pending.map((t) => t.vcpu)).size).toBe(4);
    for (const t of pending) expect(await raise(t)).toBe('delivered');

    // The window MSIs, each raised once: half just before SUSPEND goes out (they reach the
    // running source and are pending at suspend), half once the source is suspended.
    const outcomes: MsiOutcome[] = [];
    router.onOutcome = (_m: MsiMessage, o) => outcomes.push(o);
    const traffic: Promise<unknown>[] = [];
    const half = Math.floor(window.length / 2);
    const dst = await VmInstance.open({ socketPath: dstSock, layout, ramPath: join(dir, 'ram-dst') });
    cleanups.push(() => dst.close());
    const result = await migrate(src.asMigrationSource(), dst.asMigrationDestination(), {
      layout,
      msiRouter: router,
      onPhase: (p) => {
        if (p === 'suspend') traffic.push(...window.slice(0, half).map(raise));
        if (p === 'save-pending-tables') traffic.push(...window.slice(half).map(raise));
      },
    });
    await Promise.all(traffic);
    bus.attach(dst.client, dst.memory);

    // The second half reached a suspended source: refused with EBUSY, kept, replayed once.
    expect(router.stats.deferred).toBe(window.length - half);
    expect(router.stats.replayed).toBe(router.stats.deferred);
    expect(router.stats.busy + router.stats.errors + router.stats.dropped).toBe(0);
    expect(outcomes.filter((o) => o === 'delivered').length).toBe(window.length);

    // Every pending LPI and every window MSI, exactly once, on its vCPU.
    const after = await drainAllVcpus(dst.client, 4);
    expect(compareAcked(after, new Map([...pending, ...window].map((t) => [t.intid, t.vcpu])))).toEqual([]);

    // Every mapped (DeviceID, EventID) delivers the same LPI to the same vCPU.
    const check = await checkTranslations(dst.client, all, 4);
    expect(check.problems).toEqual([]);
    expect(check.delivered).toBe(all.length);

    // The saved tables in the destination's RAM decode to exactly the guest's mappings.
    for (let i = 0; i < 2; i++) {
      const regs = result.state.its[i]!;
      const report = inspectTables(dst.memory, { baser0: regs.baser[0]!, baser1: regs.baser[1]!, nrVcpus: 4 });
      expect(report.issues).toEqual([]);
      const decoded = report.deviceTable.devices.flatMap((d) => d.events.map((e) => `${d.devid}:${e.eventid}:${e.intid}:${e.icid}`));
      expect(decoded).toEqual(all.filter((t) => t.its === i).map((t) => `${t.devid}:${t.eventid}:${t.intid}:${t.vcpu}`));
    }

    // The guest goes on: MAPD + MAPTI on a new device, MOVI, DISCARD, MAPD V=0.
    const fresh = await driver.createDevice(1, 0x200, 4);
    await driver.enableAll(fresh);
    await driver.setAffinity(driver.device(0, 0x10), 2, (driver.device(0, 0x10).colMap[2]! + 2) % 4);
    await driver.deactivate(driver.device(1, 0x20), 7);
    await driver.teardownDevice(driver.device(1, 0x100));
    const check2 = await checkTranslations(dst.client, driver.expectedTranslations(), 4);
    expect(check2.problems).toEqual([]);
    expect(await dst.client.signalMsi(doorbell(layout.itsBases[1]!), 0x100, 0)).toBe(0);
    expect(await dst.client.signalMsi(doorbell(layout.itsBases[1]!), 0x20, 7)).toBe(0);
    const stats = await dst.client.getStats();
    expect(stats.command_errors).toEqual({});
    expect(stats.restores.count).toBe(2);
    const srcStats = await src.client.getStats();
    expect(srcStats.saves.count).toBe(2);
  });

  it('the final pass copies only the pages in the dirty log, and source and destination RAM end identical', async () => {
    const { dir, srcSock, dstSock } = await twoDaemons();
    const src = await VmInstance.open({ socketPath: srcSock, layout, ramPath: join(dir, 'ram-src'), dirtyLog: true });
    cleanups.push(() => src.close());
    await src.createGic();
    const driver = new GuestItsDriver(new GuestBus(src.client, src.memory), layout, new GuestRamAllocator(layout.ramBase, layout.ramSize));
    await driver.boot();
    const dev = await driver.createDevice(0, 0x10, 8);
    await driver.enableAll(dev);
    // Pending LPIs make SAVE_PENDING_TABLES write pending-table pages inside the downtime.
    for (let e = 0; e < 8; e++) expect(await src.client.signalMsi(doorbell(layout.itsBases[0]!), 0x10, e)).toBe(1);
    const dst = await VmInstance.open({ socketPath: dstSock, layout, ramPath: join(dir, 'ram-dst') });
    cleanups.push(() => dst.close());
    const marker = layout.ramBase + layout.ramSize - 0x1000;
    const result = await migrate(src.asMigrationSource(), dst.asMigrationDestination(), {
      layout,
      afterPrecopy: async () => {
        dst.memory.writeU32(marker, 0xfeedface); // a page nobody dirties: must not be re-copied
        await driver.setAffinity(dev, 0, 2); // guest writes a command slot; the ITS processes it
      },
      afterRamCopy: () => {
        expect(firstDifferentPage(src.memory, dst.memory)).toBe(marker);
        dst.memory.writeU32(marker, 0);
        expect(firstDifferentPage(src.memory, dst.memory)).toBe(-1);
      },
    });
    expect(result.ram.precopyBytes).toBe(layout.ramSize);
    expect(result.ram.finalPassPages).toBe(result.ram.dirtyPages);
    // Command queue page + pending tables + device/collection tables + ITTs: a handful of pages.
    expect(result.ram.finalPassPages).toBeGreaterThan(2);
    expect(result.ram.finalPassPages).toBeLessThan(32);
    const acked = await drainAllVcpus(dst.client, 4);
    expect(acked.length).toBe(8);
  });
});
