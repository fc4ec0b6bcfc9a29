/**
 * The reference guest driver in process, against the real VmDevices (src/attr VirtualGic)
 * over guest RAM in an ArrayBuffer: it must program the ITS the way Linux does and leave it
 * translating every mapped vector to the LPI and vCPU the guest chose.
 */
import { readFileSync } from 'node:fs';
import { beforeEach, describe, expect, it } from 'vitest';
import { VirtualGic } from '../../src/attr/index.js';
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { inspectTables } from '../../src/cli/vitsctl/table-inspector.js';
import { createGic, type GicDevices } from '../../src/vmm/gic-setup.js';
import { GuestBus, type GuestTraceEvent } from '../../src/vmm/guest-bus.js';
import { GuestItsDriver } from '../../src/vmm/guest-driver.js';
import { drainAllVcpus } from '../../src/vmm/guest-cpus.js';
import { GuestRamAllocator } from '../../src/vmm/guest-ram-allocator.js';
import { InProcessTarget } from '../../src/vmm/in-process-target.js';
import { readGicState, saveItsTables, savePendingTables } from '../../src/vmm/gic-state.js';
import { checkTranslations } from '../../src/vmm/verify.js';
import { doorbell, virtLayout, type VmLayout } from '../../src/vmm/vm-layout.js';

const RAM_SIZE = 16 * 1024 * 1024;

let layout: VmLayout;
let mem: ArrayBufferGuestMemory;
let vm: VirtualGic;
let target: InProcessTarget;
let trace: GuestTraceEvent[];
let driver: GuestItsDriver;
let devices: GicDevices;

async function boot(nrVcpus = 4, nrIts = 1): Promise<void> {
  layout = virtLayout({ nrVcpus, nrIts, ramSize: RAM_SIZE });
  mem = new ArrayBufferGuestMemory([{ gpa: layout.ramBase, size: RAM_SIZE }]);
  vm = new VirtualGic({ memory: mem });
  target = new InProcessTarget(vm);
  devices = await createGic(target, layout);
  trace = [];
  const bus = new GuestBus(target, mem, (e) => trace.push(e));
  driver = new GuestItsDriver(bus, layout, new GuestRamAllocator(layout.ramBase, RAM_SIZE));
  await driver.boot();
}

/** ITS-frame accesses as "R/W offset size" (values left out: they differ between ITS models). */
function itsAccesses(events: readonly GuestTraceEvent[], base: number): string[] {
  const out: string[] = [];
  for (const e of events) {
    if ((e.kind === 'mmio-read' || e.kind === 'mmio-write') && e.gpa >= base && e.gpa < base + 0x20000) {
      out.push(`${e.kind === 'mmio-read' ? 'R' : 'W'} 0x${(e.gpa - base).toString(16)} ${e.size}`);
    }
  }
  return out;
}

describe('GuestItsDriver against VirtualGic', () => {
  beforeEach(async () => {
    await boot();
  });

  it('boots with the ITS register access sequence of the real Linux 6.1 trace', () => {
    // ../shared/traces/linux-6.1-smp4/its-only.log: the guest's ITS accesses from the reset
    // pass to the CTLR enable, then CPU0's collection set-up (MAPC+SYNC, INVALL+SYNC).
    const log = readFileSync('/work/shared/traces/linux-6.1-smp4/its-only.log', 'utf8').split('\n');
    const recorded: string[] = [];
    for (const line of log) {
      const m = /gicv3_its_(read|write) GICv3 ITS (?:read|write): offset (0x[0-9a-f]+) data 0x[0-9a-f]+ size (\d)/.exec(line);
      if (m) recorded.push(`${m[1] === 'read' ? 'R' : 'W'} ${m[2]} ${m[3]}`);
      if (line.includes('command INVALL')) break;
    }
    // Up to and including CPU0's second posting (INVALL + SYNC): CWRITER write then CREADR polls.
    const mine = itsAccesses(trace, layout.itsBases[0]!);
    const cut = recorded.length;
    expect(recorded.length).toBeGreaterThan(40);
    expect(mine.slice(0, cut)).toEqual(recorded);
  });

  it('leaves the ITS enabled with Linux-shaped tables: two-level device table, flat collection table', async () => {
    const its = driver.its(0);
    const dt = its.tables[0]!;
    const ct = its.tables[1]!;
    expect(dt.indirect).toBe(true);
    expect(dt.psz).toBe(0x10000);
    expect(ct.indirect).toBe(false);
    // Valid | Indirect | RaWaWb (7 << 59) | Type 1 | Entry_Size 7 | InnerShareable | 64K | Size 0:
    // 0x8000... | 0x4000... | 0x3800... | 0x0100... | 0x0007... = 0xf907000000000600 | PA
    expect(dt.val).toBe(0xf907_0000_0000_0600n | BigInt(dt.gpa));
    expect(ct.val).toBe(0xbc07_0000_0000_0600n | BigInt(ct.gpa));
    expect((await target.mmioRead(its.base, 4)) & 1n).toBe(1n);
    // Command queue: RaWaWb | InnerShareable | Size 15 | Valid = 0xb80000000000040f | PA
    expect(await target.getDeviceAttr(devices.its[0]!, 8, 0x80n)).toBe(0xb800_0000_0000_040fn | BigInt(its.cmdQueueGpa));
    expect(driver.log.join('\n')).toMatch(/allocated 8192 Devices .* \(indirect, esz 8, psz 64K, shr 1\)/);
  });

  it('maps every vector: the ITS translates each (DeviceID, EventID) to the guest\'s LPI on the guest\'s vCPU', async () => {
    const devs = [];
    for (const [devid, nvec] of [
      [0x10, 4],
      [0x18, 4],
      [0x20, 8],
      [0x100, 1],
    ] as const) {
      const d = await driver.createDevice(0, devid, GuestItsDriver.pciMsiNvec(devid, nvec));
      await driver.enableAll(d);
      devs.push(d);
    }
    const expected = driver.expectedTranslations();
    expect(expected.length).toBe(4 + 4 + 8 + 1);
    // LPIs are handed out first-fit from 8192: 0x10 gets 8192..8195, 0x18 8196..8199, ...
    expect(expected.slice(0, 5).map((t) => t.intid)).toEqual([8192, 8193, 8194, 8195, 8196]);
    const its = vm.itsOf(devices.its[0]!)!;
    for (const t of expected) {
      expect(its.translate(t.devid, t.eventid), `dev ${t.devid} ev ${t.eventid}`).toBe(t.intid);
      expect(vm.lpis!.target(t.intid)).toBe(t.vcpu);
      expect(vm.lpis!.enabled(t.intid)).toBe(true);
    }
    // Least-loaded CPU selection spreads the vectors over the 4 vCPUs.
    const perCpu = [0, 1, 2, 3].map((c) => expected.filter((t) => t.vcpu === c).length);
    expect(Math.max(...perCpu) - Math.min(...perCpu)).toBeLessThanOrEqual(1);
    const check = await checkTranslations(target, expected, 4);
    expect(check.problems).toEqual([]);
    expect(check.delivered).toBe(expected.length);
    // Nothing the guest posted was refused by the ITS.
    expect(vm.stats.commandErrors).toEqual({});
    const cmds = trace.filter((e) => e.kind === 'command').map((e) => (e as { text: string }).text.split(' ')[0]);
    // MAPD is never followed by SYNC; MAPTI and INV always are.
    cmds.forEach((c, i) => {
      if (c === 'MAPD') expect(cmds[i + 1]).not.toBe('SYNC');
      if (c === 'MAPTI' || c === 'INV' || c === 'MAPC' || c === 'INVALL') expect(cmds[i + 1]).toBe('SYNC');
    });
  });

  it('MOVI moves the LPI to the new vCPU; mask stops delivery; teardown unmaps (DISCARD, MAPD V=0)', async () => {
    const d = await driver.createDevice(0, 0x28, 4);
    await driver.enableAll(d, () => 0);
    await driver.setAffinity(d, 2, 3);
    const its = vm.itsOf(devices.its[0]!)!;
    expect(vm.lpis!.target(d.lpis.base + 2)).toBe(3);
    expect(await target.signalMsi(doorbell(its === null ? 0 : layout.itsBases[0]!), 0x28, 2)).toBe(1);
    expect(await target.ackLpi(3)).toEqual({ intid: d.lpis.base + 2, priority: 0xa0 });
    // Masked: the MSI makes it pending, but it is not deliverable.
    await driver.mask(d, 1);
    expect(await target.signalMsi(doorbell(layout.itsBases[0]!), 0x28, 1)).toBe(1);
    expect((await target.ackLpi(0)).intid).toBe(1023);
    await driver.unmask(d, 1);
    expect((await target.ackLpi(0)).intid).toBe(d.lpis.base + 1);
    await driver.teardownDevice(d);
    for (let e = 0; e < 4; e++) expect(its.translate(0x28, e)).toBe(0);
    expect(await target.signalMsi(doorbell(layout.itsBases[0]!), 0x28, 0)).toBe(0);
    const cmds = trace.filter((e) => e.kind === 'command').map((e) => (e as { text: string }).text);
    expect(cmds.slice(-2)[1]).toMatch(/^MAPD dev=0x28 .* V=0$/);
    expect(cmds.filter((c) => c.startsWith('DISCARD dev=0x28')).length).toBe(4);
    expect(vm.stats.commandErrors).toEqual({});
    // Its LPIs went back to the allocator.
    expect(driver.lpis.alloc(4)).toEqual({ base: d.lpis.base, count: 4 });
  });

  it('two ITSes share the LPI space; each device is reached through its own doorbell', async () => {
    await boot(2, 2);
    const a = await driver.createDevice(0, 0x10, 2);
    const b = await driver.createDevice(1, 0x10, 2);
    await driver.enableAll(a);
    await driver.enableAll(b);
    expect(b.lpis.base).toBe(a.lpis.base + 2);
    const check = await checkTranslations(target, driver.expectedTranslations(), 2);
    expect(check.problems).toEqual([]);
    expect(check.delivered).toBe(4);
  });

  it('ITS_SAVE_TABLES writes tables that decode to exactly the guest\'s mappings', async () => {
    for (const [devid, nvec] of [
      [0x10, 4],
      [0x2000, 2], // second L2 page of the device table
    ] as const) await driver.enableAll(await driver.createDevice(0, devid, nvec));
    const d = driver.device(0, 0x10);
    await driver.setAffinity(d, 0, 3);
    await target.suspend();
    await savePendingTables(target, devices.vgic);
    await saveItsTables(target, devices.its[0]!);
    const state = await readGicState(target, devices, layout.itsBases, 4);
    const report = inspectTables(mem, { baser0: state.its[0]!.baser[0]!, baser1: state.its[0]!.baser[1]!, propbaser: state.redist[0]!.propbaser, nrVcpus: 4 });
    expect(report.issues).toEqual([]);
    expect(report.collectionTable.collections.map((c) => [c.icid, c.target])).toEqual([
      [0, 0],
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    const decoded = report.deviceTable.devices.flatMap((dev) => dev.events.map((e) => `${dev.devid}:${e.eventid}->${e.intid}@${e.icid}`));
    const want = driver.expectedTranslations().map((t) => `${t.devid}:${t.eventid}->${t.intid}@${t.vcpu}`);
    expect(decoded).toEqual(want);
    expect(report.deviceTable.level1.map((l) => l.index)).toEqual([0, 1]);
    await target.resume();
  });

  it('vCPUs drain nothing when no MSI was sent', async () => {
    expect(await drainAllVcpus(target, 4)).toEqual([]);
  });
});
