/**
 * vitsctl's daemon commands as processes against real vitsd processes: stats, save, inspect
 * (on an image the daemon wrote, and on a corrupted copy of it), restore, migrate, demo.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VitsdClient } from '../../src/client/client.js';
import { startDaemon, type DaemonProcess } from '../../src/cli/vitsctl/daemon-launcher.js';
import { openFileGuestMemory } from '../../src/memory/mapped-guest-memory.js';
import { GuestBus } from '../../src/vmm/guest-bus.js';
import { drainAllVcpus } from '../../src/vmm/guest-cpus.js';
import { GuestItsDriver } from '../../src/vmm/guest-driver.js';
import { GuestRamAllocator } from '../../src/vmm/guest-ram-allocator.js';
import { checkTranslations, compareAcked } from '../../src/vmm/verify.js';
import { VmInstance } from '../../src/vmm/vm-instance.js';
import { virtLayout } from '../../src/vmm/vm-layout.js';

const ROOT = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'vitsctl-e2e-'));
const daemons: DaemonProcess[] = [];
afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  rmSync(dir, { recursive: true, force: true });
});

function vitsctl(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/vitsctl.ts'), ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => res({ code, stdout, stderr }));
  });
}

/** Retries while the daemon still sees the previous owner (HELLO -> EBUSY, exit 3). */
async function vitsctlOwning(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  for (let i = 0; ; i++) {
    const r = await vitsctl(...args);
    if (!(r.code === 3 && /EBUSY: HELLO/.test(r.stderr)) || i >= 10) return r;
    await new Promise((x) => setTimeout(x, 100));
  }
}

async function daemon(name: string): Promise<DaemonProcess> {
  const d = await startDaemon(join(dir, `${name}.sock`));
  daemons.push(d);
  return d;
}

const layout = virtLayout({ nrVcpus: 2, ramSize: 8 * 1024 * 1024 });

describe('vitsctl against vitsd processes', { timeout: 180_000 }, () => {
  it('stats, save, inspect, restore and migrate carry a VM from daemon to daemon', async () => {
    const a = await daemon('a');
    const ramA = join(dir, 'ram-a');
    const vm = await VmInstance.open({ socketPath: a.socketPath, layout, ramPath: ramA });
    await vm.createGic();
    const bus = new GuestBus(vm.client, vm.memory);
    const driver = new GuestItsDriver(bus, layout, new GuestRamAllocator(layout.ramBase, layout.ramSize));
    await driver.boot();
    await driver.enableAll(await driver.createDevice(0, 0x10, 4));
    await driver.enableAll(await driver.createDevice(0, 0x18, 2));
    const all = driver.expectedTranslations();
    const pending = all.filter((_, i) => i % 2 === 0);
    for (const t of pending) expect(await vm.client.signalMsi(t.doorbell, t.devid, t.eventid)).toBe(1);
    vm.client.close(); // the VMM lets go; the daemon keeps the VM

    const stats = await vitsctlOwning('stats', '--socket', a.socketPath, '--json');
    expect(stats.code).toBe(0);
    const s = JSON.parse(stats.stdout) as { requests: Record<string, number>; commands: Record<string, number> };
    expect(s.requests['MMIO']).toBeGreaterThan(10);
    expect(s.commands['MAPTI']).toBe(6);
    const text = await vitsctlOwning('stats', '--socket', a.socketPath);
    expect(text.stdout).toMatch(/msi: \d+ delivered/);

    const state = join(dir, 'state.json');
    const ramB = join(dir, 'ram-b');
    const save = await vitsctlOwning('save', '--socket', a.socketPath, '--out', state, '--ram', ramA, '--ram-out', ramB);
    expect(save.stderr).toMatch(/ITS_SAVE_TABLES/);
    expect(save.code).toBe(0);
    const saved = JSON.parse(readFileSync(state, 'utf8')) as { its: { baser: string[] }[]; nrVcpus: number };
    expect(saved.nrVcpus).toBe(2);
    expect(BigInt(saved.its[0]!.baser[0]!) >> 62n).toBe(3n); // Valid | Indirect

    // Offline inspection of the image the daemon wrote.
    const insp = await vitsctl('inspect', '--ram', ramB, '--state', state, '--json');
    expect(insp.code).toBe(0);
    const report = JSON.parse(insp.stdout) as { ok: boolean; deviceTable: { devices: { devid: number; events: unknown[] }[] } };
    expect(report.ok).toBe(true);
    expect(report.deviceTable.devices.map((d) => [d.devid, d.events.length])).toEqual([
      [0x10, 4],
      [0x18, 2],
    ]);
    // Corrupt DTE[0x10].Size in a copy: two-level table, L1[0] -> L2 page, DTE at L2 + 0x10 * 8.
    const img = readFileSync(ramB);
    const baser0 = BigInt(saved.its[0]!.baser[0]!);
    const l1 = Number(baser0 & 0x0000_ffff_ffff_0000n) - layout.ramBase;
    const l2 = Number(img.readBigUInt64LE(l1) & 0x000f_ffff_ffff_0000n) - layout.ramBase;
    const dte = img.readBigUInt64LE(l2 + 0x10 * 8);
    img.writeBigUInt64LE((dte & ~0x1fn) | 19n, l2 + 0x10 * 8); // 20 EventID bits
    const ramBad = join(dir, 'ram-bad');
    writeFileSync(ramBad, img);
    const bad = await vitsctl('inspect', '--ram', ramBad, '--state', state);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/error\s+DTE\[0x10\] field Size .*20 EventID bits/);

    // Restore into a fresh daemon from the state file and the RAM copy.
    const b = await daemon('b');
    const restore = await vitsctl('restore', '--socket', b.socketPath, '--state', state, '--ram', ramB);
    expect(restore.stderr).toMatch(/redistributor registers/);
    expect(restore.code).toBe(0);
    let clientB: VitsdClient | null = null;
    for (let i = 0; i < 20 && clientB === null; i++) {
      clientB = await VitsdClient.connect(b.socketPath).catch(() => null);
      if (!clientB) await new Promise((x) => setTimeout(x, 100));
    }
    expect(clientB!.resumed).toBe(true);
    const memB = openFileGuestMemory(ramB, [{ gpa: layout.ramBase, size: layout.ramSize }]);
    bus.attach(clientB!, memB);
    expect(compareAcked(await drainAllVcpus(clientB!, 2), new Map(pending.map((t) => [t.intid, t.vcpu])))).toEqual([]);
    expect((await checkTranslations(clientB!, all, 2)).problems).toEqual([]);
    // The guest goes on after the restore.
    await driver.setAffinity(driver.device(0, 0x10), 0, 1);
    for (const t of pending) expect(await clientB!.signalMsi(t.doorbell, t.devid, t.eventid)).toBe(1);
    clientB!.close();

    // And on again to a third daemon with `vitsctl migrate --precopy`.
    const c = await daemon('c');
    const ramC = join(dir, 'ram-c');
    const mig = await vitsctlOwning('migrate', '--from', b.socketPath, '--to', c.socketPath, '--ram-from', ramB, '--ram-to', ramC, '--precopy', '--json');
    expect(mig.code).toBe(0);
    const r = JSON.parse(mig.stdout) as { downtimeMs: number; phases: { phase: string }[]; ram: { precopyBytes: number; finalPassPages: number } };
    expect(r.downtimeMs).toBeGreaterThan(0);
    expect(r.phases.map((p) => p.phase)).toContain('restore-its-tables');
    expect(r.ram.precopyBytes).toBe(layout.ramSize);
    const clientC = await VitsdClient.connect(c.socketPath);
    const memC = openFileGuestMemory(ramC, [{ gpa: layout.ramBase, size: layout.ramSize }]);
    bus.attach(clientC, memC);
    const expectedAfterMove = driver.expectedTranslations();
    expect(compareAcked(await drainAllVcpus(clientC, 2), new Map(pending.map((t) => [t.intid, expectedAfterMove.find((x) => x.intid === t.intid)!.vcpu])))).toEqual([]);
    expect((await checkTranslations(clientC, expectedAfterMove, 2)).problems).toEqual([]);
    clientC.close();
    memB.close();
    memC.close();
    vm.close();
  });

  it('`vitsctl demo` runs the whole scenario and exits 0 with a summary', async () => {
    const r = await vitsctl('demo', '--vcpus', '2', '--devices', '3', '--ram-mib', '16', '--rounds', '1');
    expect(r.stdout).toMatch(/RESULT: OK/);
    expect(r.stdout).toMatch(/downtime [\d.]+ ms: suspend/);
    expect(r.stdout).toMatch(/LPIs pending at suspend, carried over: \d+/);
    expect(r.stderr).toMatch(/starting two vitsd processes/);
    expect(r.code).toBe(0);
    const j = await vitsctl('demo', '--vcpus', '2', '--devices', '2', '--ram-mib', '16', '--rounds', '1', '--json', '--quiet', '--no-precopy');
    expect(j.code).toBe(0);
    expect(j.stderr).toBe('');
    const summary = JSON.parse(j.stdout) as { ok: boolean; problems: string[]; ram: { precopyBytes: number; dirtyPages: number } };
    expect(summary.ok).toBe(true);
    expect(summary.problems).toEqual([]);
    expect(summary.ram.precopyBytes).toBe(0);
  });
});


