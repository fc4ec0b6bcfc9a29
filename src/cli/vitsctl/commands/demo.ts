/**
 * `vitsctl demo` (what `npm start` runs): two vitsd processes, a reference Linux-like guest
 * with several PCI devices and vCPUs on the first, MSIs delivered and acknowledged, then a
 * live migration to the second daemon while MSIs keep arriving, and checks on the
 * destination. Exits 0 only if every check passes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestBus } from '../../../vmm/guest-bus.js';
import { GuestItsDriver, type ExpectedTranslation, type GuestItsDevice } from '../../../vmm/guest-driver.js';
import { drainAllVcpus } from '../../../vmm/guest-cpus.js';
import { GuestRamAllocator } from '../../../vmm/guest-ram-allocator.js';
import { MsiDevice, MsiRouter, pciRequesterId, type MsiMessage } from '../../../vmm/device-model.js';
import { migrate, type MigrationResult } from '../../../vmm/migration.js';
import { checkTranslations, compareAcked } from '../../../vmm/verify.js';
import { VmInstance } from '../../../vmm/vm-instance.js';
import { doorbell, virtLayout } from '../../../vmm/vm-layout.js';
import { startDaemon, type DaemonProcess } from '../daemon-launcher.js';
import { ExitCode, UsageError, type ExitCodeValue } from '../exit-codes.js';
import type { Output } from '../output.js';

export interface DemoArgs {
  vcpus: number;
  devices: number;
  its: number;
  ramMib: number;
  rounds: number;
  precopy: boolean;
  keep: boolean;
  timeoutMs: number;
}

interface DeviceSpec {
  name: string;
  bus: number;
  dev: number;
  vectors: number;
  its: number;
}

const BASE_DEVICES: readonly Omit<DeviceSpec, 'its'>[] = [
  { name: 'virtio-net', bus: 0, dev: 2, vectors: 4 },
  { name: 'virtio-net', bus: 0, dev: 3, vectors: 4 },
  { name: 'virtio-blk', bus: 0, dev: 4, vectors: 5 },
  { name: 'virtio-blk', bus: 0, dev: 5, vectors: 5 },
  { name: 'virtio-rng', bus: 1, dev: 0, vectors: 1 },
];

function deviceSpecs(count: number, nrIts: number): DeviceSpec[] {
  const out: DeviceSpec[] = [];
  for (let i = 0; i < count; i++) {
    const base = BASE_DEVICES[i % BASE_DEVICES.length]!;
    out.push({ ...base, bus: base.bus + 2 * Math.floor(i / BASE_DEVICES.length), its: i % nrIts });
  }
  return out;
}

function scratchDir(): string {
  try {
    return mkdtempSync(join('/dev/shm', 'vitsd-demo-'));
  } catch {
    return mkdtempSync(join(tmpdir(), 'vitsd-demo-'));
  }
}

const bdf = (s: DeviceSpec): string => `${s.bus.toString(16).padStart(2, '0')}:${s.dev.toString(16).padStart(2, '0')}.0`;
const pause = (): Promise<void> => new Promise((r) => setImmediate(r));

export interface DemoSummary {
  ok: boolean;
  problems: string[];
  vcpus: number;
  its: number;
  devices: { name: string; bdf: string; devid: number; vectors: number; its: number }[];
  eventsMapped: number;
  lpisBefore: number;
  pendingAtSuspend: number;
  windowMsis: { total: number; deliveredOnSource: number; deferredAndReplayed: number };
  lpisAfter: number;
  translationsCheckedAfter: number;
  guestCommandsAfter: string[];
  downtimeMs: number;
  downtime: { phase: string; ms: number }[];
  ram: MigrationResult['ram'];
}

export async function runDemo(args: DemoArgs, out: Output): Promise<ExitCodeValue> {
  if (args.vcpus < 2 || args.vcpus > 64) throw new UsageError('--vcpus must be 2..64');
  if (args.devices < 1 || args.devices > 40) throw new UsageError('--devices must be 1..40');
  if (args.its < 1 || args.its > 4) throw new UsageError('--its must be 1..4');
  if (args.ramMib < 16 || args.ramMib > 4096) throw new UsageError('--ram-mib must be 16..4096');
  const dir = scratchDir();
  const daemons: DaemonProcess[] = [];
  const vms: VmInstance[] = [];
  try {
    out.progress(`starting two vitsd processes (sockets in ${dir})`);
    const srcSock = join(dir, 'source.sock');
    const dstSock = join(dir, 'destination.sock');
    daemons.push(...(await Promise.all([startDaemon(srcSock), startDaemon(dstSock)])));
    const summary = await scenario(args, out, dir, srcSock, dstSock, vms);
    out.result(formatSummary(summary, args), summary);
    return summary.ok ? ExitCode.OK : ExitCode.FAILURE;
  } finally {
    for (const vm of vms) vm.close();
    await Promise.all(daemons.map((d) => d.stop()));
    if (!args.keep) rmSync(dir, { recursive: true, force: true });
    else out.progress(`kept ${dir}`);
  }
}

async function scenario(args: DemoArgs, out: Output, dir: string, srcSock: string, dstSock: string, vms: VmInstance[]): Promise<DemoSummary> {
  const problems: string[] = [];
  const layout = virtLayout({ nrVcpus: args.vcpus, nrIts: args.its, ramSize: args.ramMib * 1024 * 1024 });
  const clientOpts = { timeoutMs: args.timeoutMs };

  // ---- the source VM and its guest ----
  const src = await VmInstance.open({ socketPath: srcSock, layout, ramPath: join(dir, 'ram-source'), dirtyLog: args.precopy, client: clientOpts });
  vms.push(src);
  await src.createGic();
  const bus = new GuestBus(src.client, src.memory);
  const driver = new GuestItsDriver(bus, layout, new GuestRamAllocator(layout.ramBase, layout.ramSize));
  out.progress(`guest: ITS driver probe and ${args.vcpus} vCPU bring-up`);
  await driver.boot();

  const router = new MsiRouter(src.client);
  const specs = deviceSpecs(args.devices, args.its);
  const models = new Map<string, MsiDevice>();
  const guestDevs: GuestItsDevice[] = [];
  for (const s of specs) {
    const rid = pciRequesterId(s.bus, s.dev, 0);
    const dev = await driver.createDevice(s.its, rid, GuestItsDriver.pciMsiNvec(rid, s.vectors));
    await driver.enableAll(dev);
    guestDevs.push(dev);
    models.set(`${s.its}:${rid}`, new MsiDevice(`${s.name} ${bdf(s)}`, router, doorbell(layout.itsBases[s.its]!), rid, dev.nvec));
  }
  // irqbalance: move vector 0 of every device to the next CPU (MOVI + SYNC).
  for (const dev of guestDevs) await driver.setAffinity(dev, 0, (dev.colMap[0]! + 1) % args.vcpus);
  const translations = driver.expectedTranslations();
  out.progress(`guest: ${guestDevs.length} devices, ${translations.length} vectors mapped`);
  const model = (t: ExpectedTranslation): MsiDevice => models.get(`${t.its}:${t.devid}`)!;
  const expectedMap = (ts: readonly ExpectedTranslation[]): Map<number, number> => new Map(ts.map((t) => [t.intid, t.vcpu]));

  // ---- traffic before the migration: every vector, acknowledged each round ----
  let lpisBefore = 0;
  for (let round = 0; round < args.rounds; round++) {
    await Promise.all(translations.map((t) => model(t).raise(t.eventid)));
    const acked = await drainAllVcpus(src.client, args.vcpus);
    lpisBefore += acked.length;
    problems.push(...compareAcked(acked, expectedMap(translations)).map((p) => `before migration, round ${round}: ${p}`));
  }
  out.progress(`${lpisBefore} LPIs delivered and acknowledged before the migration`);

  // ---- leave LPIs pending at suspend; keep MSIs coming during the migration ----
  const pendingSet = translations.filter((_, i) => i % 2 === 0);
  const windowSet = translations.filter((_, i) => i % 2 === 1);
  await Promise.all(pendingSet.map((t) => model(t).raise(t.eventid)));
  const early = windowSet.slice(0, Math.floor(windowSet.length / 2));
  const late = windowSet.slice(early.length);
  let deliveredOnSource = 0;
  // A window MSI delivered while the router still points at the source is pending at SUSPEND.
  router.onOutcome = (_m: MsiMessage, outcome) => {
    if (outcome === 'delivered' && router.target === src.client) deliveredOnSource++;
  };
  const raiseAll = async (ts: readonly ExpectedTranslation[]): Promise<void> => {
    for (const t of ts) {
      await Promise.all([model(t).raise(t.eventid), pause()]);
    }
  };
  const dst = await VmInstance.open({ socketPath: dstSock, layout, ramPath: join(dir, 'ram-destination'), client: clientOpts });
  vms.push(dst);
  let lateTraffic: Promise<void> = Promise.resolve();
  const earlyTraffic = raiseAll(early);
  out.progress('migrating (MSIs keep arriving)');
  const result = await migrate(src.asMigrationSource(), dst.asMigrationDestination(), {
    layout,
    msiRouter: router,
    ...(args.precopy ? { precopy: true } : {}),
    onPhase: (phase) => {
      out.progress(`  ${phase}`);
      // Fire the second half of the traffic as SUSPEND goes out: these are refused with
      // -EBUSY and must be replayed on the destination after RESUME.
      if (phase === 'suspend') lateTraffic = raiseAll(late);
    },
  });
  await earlyTraffic;
  await lateTraffic;
  router.onOutcome = null;
  bus.attach(dst.client, dst.memory);
  const deferred = router.stats.replayed;

  // ---- on the destination: pending LPIs and window MSIs, each exactly once ----
  const afterAcked = await drainAllVcpus(dst.client, args.vcpus);
  let lpisAfter = afterAcked.length;
  problems.push(...compareAcked(afterAcked, expectedMap([...pendingSet, ...windowSet])).map((p) => `after migration: ${p}`));
  const pendingAtSuspend = pendingSet.length + deliveredOnSource;

  // ---- every mapping still translates, to the same vCPU ----
  const check = await checkTranslations(dst.client, driver.expectedTranslations(), args.vcpus);
  lpisAfter += check.delivered;
  problems.push(...check.problems.map((p) => `destination mapping: ${p}`));
  if (check.leftovers.length > 0) problems.push(`destination: ${check.leftovers.length} unexpected LPI(s) pending before the mapping check`);

  // ---- the guest keeps programming the ITS on the destination ----
  const guestCommandsAfter: string[] = [];
  const newRid = pciRequesterId(0, 8, 0);
  const newDev = await driver.createDevice(0, newRid, 4);
  await driver.enableAll(newDev);
  guestCommandsAfter.push('MAPD', 'MAPTI', 'INV');
  const moved = guestDevs[0]!;
  const moveTo = (moved.colMap[1]! + 1) % args.vcpus;
  await driver.setAffinity(moved, 1, moveTo);
  guestCommandsAfter.push('MOVI');
  const removed = guestDevs[guestDevs.length - 1]!;
  await driver.teardownDevice(removed);
  guestCommandsAfter.push('DISCARD', 'MAPD V=0');
  const check2 = await checkTranslations(dst.client, driver.expectedTranslations(), args.vcpus);
  lpisAfter += check2.delivered;
  problems.push(...check2.problems.map((p) => `destination after new commands: ${p}`));
  if (moved.colMap[1] !== moveTo) problems.push('MOVI did not update the guest mapping');
  const gone = await dst.client.signalMsi(doorbell(removed.its.base), removed.devid, 0);
  if (gone !== 0) problems.push(`MSI to the unmapped device 0x${removed.devid.toString(16)} returned ${gone}, expected 0 (dropped)`);

  return {
    ok: problems.length === 0,
    problems,
    vcpus: args.vcpus,
    its: args.its,
    devices: specs.map((s, i) => ({ name: s.name, bdf: bdf(s), devid: guestDevs[i]!.devid, vectors: guestDevs[i]!.nvec, its: s.its })),
    eventsMapped: translations.length,
    lpisBefore,
    pendingAtSuspend,
    windowMsis: { total: windowSet.length, deliveredOnSource, deferredAndReplayed: deferred },
    lpisAfter,
    translationsCheckedAfter: check.checked + check2.checked,
    guestCommandsAfter,
    downtimeMs: result.downtimeMs,
    downtime: result.phases.filter((p) => p.downtime).map((p) => ({ phase: p.phase, ms: p.ms })),
    ram: result.ram,
  };
}

function formatSummary(s: DemoSummary, args: DemoArgs): string {
  const lines: string[] = [];
  lines.push(`vitsd demo: 2 daemons, ${s.vcpus} vCPUs, ${s.its} ITS${s.its > 1 ? 'es' : ''}, ${args.ramMib} MiB guest RAM`);
  lines.push(`  devices (${s.devices.length}): ${s.devices.map((d) => `${d.name} ${d.bdf} [DeviceID 0x${d.devid.toString(16)}, ${d.vectors} vectors]`).join(', ')}`);
  lines.push(`  events mapped: ${s.eventsMapped}`);
  lines.push(`  LPIs delivered before migration: ${s.lpisBefore} (${args.rounds} round(s) over every vector, each on its vCPU)`);
  lines.push(`  LPIs pending at suspend, carried over: ${s.pendingAtSuspend} (via SAVE_PENDING_TABLES / RESTORE_TABLES)`);
  lines.push(
    `  MSIs during migration: ${s.windowMsis.total} (${s.windowMsis.deliveredOnSource} before SUSPEND, ${s.windowMsis.deferredAndReplayed} refused with EBUSY and replayed after RESUME)`,
  );
  lines.push(`  LPIs delivered after migration: ${s.lpisAfter} (${s.translationsCheckedAfter} mappings checked; guest then ran ${s.guestCommandsAfter.join(', ')})`);
  lines.push(`  downtime ${s.downtimeMs.toFixed(2)} ms: ${s.downtime.map((p) => `${p.phase} ${p.ms.toFixed(2)}`).join(', ')}`);
  lines.push(
    `  RAM: ${s.ram.precopyBytes > 0 ? `pre-copied ${(s.ram.precopyBytes / 1048576).toFixed(0)} MiB, then ` : ''}${s.ram.finalPassPages} page(s) copied during the downtime` +
      (s.ram.dirtyPages >= 0 ? ` (${s.ram.dirtyPages} dirty)` : ''),
  );
  if (s.problems.length > 0) {
    lines.push(`  PROBLEMS (${s.problems.length}):`);
    for (const p of s.problems.slice(0, 50)) lines.push(`    - ${p}`);
  }
  lines.push(s.ok ? 'RESULT: OK' : 'RESULT: MISMATCH');
  return lines.join('\n');
}
