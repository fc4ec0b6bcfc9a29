/**
 * The migration orchestrator in process: two real VirtualGic instances, each over its own
 * ArrayBuffer guest RAM, the reference guest moving from one to the other.
 */
import { describe, expect, it } from 'vitest';
import { VirtualGic } from '../../src/attr/index.js';
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { dirtyLogBytesFor } from '../../src/memory/region-table.js';
import { Errno } from '../../src/util/errno.js';
import { MsiDevice, MsiRouter } from '../../src/vmm/device-model.js';
import { createGic, type GicDevices } from '../../src/vmm/gic-setup.js';
import { GuestBus } from '../../src/vmm/guest-bus.js';
import { drainAllVcpus } from '../../src/vmm/guest-cpus.js';
import { GuestItsDriver } from '../../src/vmm/guest-driver.js';
import { GuestRamAllocator } from '../../src/vmm/guest-ram-allocator.js';
import { InProcessTarget } from '../../src/vmm/in-process-target.js';
import { buildMapc, buildMapti } from '../../src/vmm/its-command.js';
import { migrate, DOWNTIME_PHASES, type MigrationDestination, type MigrationSource } from '../../src/vmm/migration.js';
import { firstDifferentPage } from '../../src/vmm/ram-copy.js';
import { checkTranslations, compareAcked } from '../../src/vmm/verify.js';
import { doorbell, virtLayout, type VmLayout } from '../../src/vmm/vm-layout.js';

const RAM = 8 * 1024 * 1024;

interface Host {
  mem: ArrayBufferGuestMemory;
  vm: VirtualGic;
  target: InProcessTarget;
}

function host(layout: VmLayout, ramSize = RAM): Host {
  const mem = new ArrayBufferGuestMemory([{ gpa: layout.ramBase, size: ramSize }]);
  const vm = new VirtualGic({ memory: mem });
  return { mem, vm, target: new InProcessTarget(vm) };
}

async function sourceVm(nrVcpus = 4, withLog = true): Promise<{ layout: VmLayout; src: Host; devices: GicDevices; bus: GuestBus; driver: GuestItsDriver; log: Uint8Array | null }> {
  const layout = virtLayout({ nrVcpus, ramSize: RAM });
  const src = host(layout);
  const log = withLog ? new Uint8Array(dirtyLogBytesFor(layout.ramBase + RAM)) : null;
  src.mem.setDirtyLog(log);
  const devices = await createGic(src.target, layout);
  const bus = new GuestBus(src.target, src.mem);
  const driver = new GuestItsDriver(bus, layout, new GuestRamAllocator(layout.ramBase, RAM));
  await driver.boot();
  return { layout, src, devices, bus, driver, log };
}

const asSource = (h: Host, devices: GicDevices, log: Uint8Array | null): MigrationSource => ({ target: h.target, memory: h.mem, devices, dirtyLog: log });
const asDestination = (h: Host): MigrationDestination => ({ target: h.target, memory: h.mem, attachMemory: async () => undefined });

describe('migrate() between two in-process VirtualGics', () => {
  it('carries every mapping, and every pending LPI on every vCPU (each with its own PENDBASER), exactly once', async () => {
    const { layout, src, devices, bus, driver, log } = await sourceVm(4);
    for (const devid of [0x10, 0x18, 0x20]) await driver.enableAll(await driver.createDevice(0, devid, 8));
    const t = driver.expectedTranslations();
    // Distinct pending tables per vCPU (the field bug: every vCPU saved vCPU 0's PENDBASER).
    expect(new Set(driver.cpus.map((c) => c.pendTable)).size).toBe(4);
    // Make every LPI pending, acknowledge none.
    for (const x of t) expect(await src.target.signalMsi(x.doorbell, x.devid, x.eventid)).toBe(1);
    expect(new Set(t.map((x) => x.vcpu))).toEqual(new Set([0, 1, 2, 3]));

    const dst = host(layout);
    const result = await migrate(asSource(src, devices, log), asDestination(dst), { layout });
    bus.attach(dst.target, dst.mem);
    expect(result.phases.map((p) => p.phase)).toEqual(['prepare-destination', 'precopy', ...DOWNTIME_PHASES]);
    expect(result.downtimeMs).toBeGreaterThan(0);
    // The source stays suspended.
    expect(src.vm.suspended).toBe(true);

    const acked = await drainAllVcpus(dst.target, 4);
    expect(compareAcked(acked, new Map(t.map((x) => [x.intid, x.vcpu])))).toEqual([]);
    const check = await checkTranslations(dst.target, driver.expectedTranslations(), 4);
    expect(check.problems).toEqual([]);
    expect(check.delivered).toBe(t.length);
  });

  it('the guest keeps issuing MAPD/MAPTI/MOVI/DISCARD on the destination', async () => {
    const { layout, src, devices, bus, driver, log } = await sourceVm(2);
    const d = await driver.createDevice(0, 0x10, 4);
    await driver.enableAll(d, () => 0);
    const dst = host(layout);
    await migrate(asSource(src, devices, log), asDestination(dst), { layout });
    bus.attach(dst.target, dst.mem);
    await driver.setAffinity(d, 1, 1);
    await driver.deactivate(d, 3);
    const e = await driver.createDevice(0, 0x20, 2);
    await driver.enableAll(e);
    expect(dst.vm.stats.commandErrors).toEqual({});
    const check = await checkTranslations(dst.target, driver.expectedTranslations(), 2);
    expect(check.problems).toEqual([]);
    expect(check.checked).toBe(3 + 2);
    expect(await dst.target.signalMsi(doorbell(layout.itsBases[0]!), 0x10, 3)).toBe(0);
    // The MOVI'd vector now lands on vCPU 1.
    expect(driver.expectedTranslations().find((x) => x.devid === 0x10 && x.eventid === 1)!.vcpu).toBe(1);
  });

  it('QEMU\'s ITS register order restores as well as KVM\'s', async () => {
    const { layout, src, devices, bus, driver, log } = await sourceVm(2);
    await driver.enableAll(await driver.createDevice(0, 0x10, 4));
    const dst = host(layout);
    await migrate(asSource(src, devices, log), asDestination(dst), { layout, itsRestoreOrder: 'qemu', pipelined: false });
    bus.attach(dst.target, dst.mem);
    const check = await checkTranslations(dst.target, driver.expectedTranslations(), 2);
    expect(check.problems).toEqual([]);
  });

  it('MAPTI onto a collection never mapped, migrate, then MAPC on the destination: the LPI is delivered there', async () => {
    const { layout, src, devices, bus, driver, log } = await sourceVm(2);
    const d = await driver.createDevice(0, 0x10, 2);
    const its = driver.its(0);
    // Raw commands (Linux never does this): ICID 5 has no MAPC.
    await its.queue.post(buildMapti(0x10, 0, d.lpis.base, 5), null);
    driver.bus.memory.writeU8(driver.propertyByteAddress(d.lpis.base), 0xa0 | 0x3);
    const db = doorbell(layout.itsBases[0]!);
    expect(await src.target.signalMsi(db, 0x10, 0)).toBe(0); // unmapped collection: dropped
    const dst = host(layout);
    await migrate(asSource(src, devices, log), asDestination(dst), { layout });
    bus.attach(dst.target, dst.mem);
    await its.queue.post(buildMapc(5, 1n << 16n, true), null);
    expect(await dst.target.signalMsi(db, 0x10, 0)).toBe(1);
    expect((await dst.target.ackLpi(1)).intid).toBe(d.lpis.base);
  });

  it('with a dirty log the final pass copies only dirty pages and the RAMs end identical', async () => {
    const { layout, src, devices, driver, log } = await sourceVm(2);
    await driver.enableAll(await driver.createDevice(0, 0x10, 4));
    const dst = host(layout);
    // A page of destination RAM the source never touches after the pre-copy: if the final pass
    // copied clean pages, this marker would be overwritten.
    const untouched = layout.ramBase + RAM - 0x1000;
    let dirtyAtStop = -1;
    const result = await migrate(asSource(src, devices, log), asDestination(dst), {
      layout,
      afterPrecopy: async () => {
        dst.mem.writeU32(untouched, 0xdeadbeef);
        // The guest runs on: a command (queue slot + ITS side effects), a property byte.
        await driver.setAffinity(driver.device(0, 0x10), 0, 1);
        driver.bus.memory.writeU8(driver.propertyByteAddress(8192 + 3), 0xa0 | 2);
      },
      afterRamCopy: () => {
        const page = firstDifferentPage(src.mem, dst.mem);
        // Only the marker page differs: every page the guest or the daemon wrote was copied.
        expect(page).toBe(untouched);
        dst.mem.writeU32(untouched, 0);
        expect(firstDifferentPage(src.mem, dst.mem)).toBe(-1);
        dirtyAtStop = 0;
      },
    });
    expect(dirtyAtStop).toBe(0);
    expect(result.ram.precopyBytes).toBe(RAM);
    expect(result.ram.finalPassPages).toBe(result.ram.dirtyPages);
    expect(result.ram.finalPassPages).toBeGreaterThan(0);
    expect(result.ram.finalPassPages).toBeLessThan(16);
  });

  it('MSIs refused during the suspend window are replayed once on the destination', async () => {
    const { layout, src, devices, bus, driver, log } = await sourceVm(2);
    const d = await driver.createDevice(0, 0x10, 8);
    await driver.enableAll(d);
    const router = new MsiRouter(src.target);
    const dev = new MsiDevice('dev', router, doorbell(layout.itsBases[0]!), 0x10, 8);
    const dst = host(layout);
    const sent: Promise<unknown>[] = [];
    await migrate(asSource(src, devices, log), asDestination(dst), {
      layout,
      msiRouter: router,
      onPhase: (p) => {
        if (p === 'save-its-tables') for (let e = 0; e < 8; e++) sent.push(dev.raise(e));
      },
    });
    await Promise.all(sent);
    bus.attach(dst.target, dst.mem);
    expect(router.stats.deferred).toBe(8);
    expect(router.stats.replayed).toBe(8);
    expect(router.stats.delivered).toBe(8);
    const acked = await drainAllVcpus(dst.target, 2);
    expect(compareAcked(acked, new Map(driver.expectedTranslations().map((x) => [x.intid, x.vcpu])))).toEqual([]);
  });

  it('a failure inside the downtime resumes the source and gives it back its held MSIs', async () => {
    const { layout, src, devices, driver } = await sourceVm(2);
    await driver.enableAll(await driver.createDevice(0, 0x10, 2));
    const router = new MsiRouter(src.target);
    const small = host(layout, RAM / 2); // cannot hold the source's RAM
    await expect(migrate(asSource(src, devices, null), asDestination(small), { layout, msiRouter: router })).rejects.toMatchObject({ errno: Errno.EINVAL });
    expect(src.vm.suspended).toBe(false);
    expect(router.isHeld).toBe(false);
    expect(router.target).toBe(src.target);
    expect(await src.target.signalMsi(doorbell(layout.itsBases[0]!), 0x10, 0)).toBe(1);
  });
});
