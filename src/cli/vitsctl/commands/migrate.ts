/**
 * `vitsctl migrate --from SOCK --to SOCK --ram-from FILE --ram-to FILE [--gpa-base ADDR]
 * [--precopy] [--order kvm|qemu] [--json]`: migrates the interrupt controller of the VM held
 * by one daemon to a fresh daemon, with its guest RAM file, and prints the downtime by phase.
 * With --precopy, a dirty log is given to the source (SET_LOG_BASE), RAM is copied once while
 * the source runs, and only the pages marked dirty are copied inside the downtime.
 */
import { ftruncateSync, fstatSync, openSync, closeSync } from 'node:fs';
import { VitsdClient } from '../../../client/client.js';
import { mapDirtyLog, type MappedDirtyLog } from '../../../memory/mapped-dirty-log.js';
import { openFileGuestMemory, type MappedGuestMemory } from '../../../memory/mapped-guest-memory.js';
import { dirtyLogBytesFor } from '../../../memory/region-table.js';
import { MFD_CLOEXEC } from '../../../native/binding.js';
import { native } from '../../../native/index.js';
import type { ItsRestoreOrder } from '../../../vmm/gic-state.js';
import { migrate, type MigrationResult } from '../../../vmm/migration.js';
import { discoverVm, layoutOf } from '../discover.js';
import { ExitCode, FileError, type ExitCodeValue } from '../exit-codes.js';
import type { Output } from '../output.js';

export interface MigrateArgs {
  from: string;
  to: string;
  ramFrom: string;
  ramTo: string;
  gpaBase: number;
  precopy: boolean;
  order: ItsRestoreOrder;
  timeoutMs: number;
}

function fileSize(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new FileError(path, e instanceof Error ? e.message : String(e));
  }
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

function mapRam(path: string, base: number, size: number, create: boolean): MappedGuestMemory {
  try {
    if (create) {
      const fd = openSync(path, 'w+', 0o600);
      try {
        ftruncateSync(fd, size);
      } finally {
        closeSync(fd);
      }
    }
    return openFileGuestMemory(path, [{ gpa: base, size }], { create });
  } catch (e) {
    if (e instanceof FileError) throw e;
    throw new FileError(path, e instanceof Error ? e.message : String(e));
  }
}

export function formatMigration(r: MigrationResult): string {
  const lines = [`downtime ${r.downtimeMs.toFixed(2)} ms (total ${r.totalMs.toFixed(2)} ms)`];
  for (const p of r.phases) lines.push(`  ${p.downtime ? '*' : ' '} ${p.phase.padEnd(24)} ${p.ms.toFixed(2).padStart(9)} ms`);
  lines.push('  (* = inside the downtime)');
  const ram = r.ram;
  lines.push(
    `RAM: ${ram.precopyBytes > 0 ? `pre-copy ${(ram.precopyBytes / 1048576).toFixed(1)} MiB, ` : ''}final pass ${ram.finalPassPages} page(s)` +
      (ram.dirtyPages >= 0 ? ` (${ram.dirtyPages} marked dirty)` : ''),
  );
  return lines.join('\n');
}

export async function runMigrate(args: MigrateArgs, out: Output): Promise<ExitCodeValue> {
  const size = Math.floor(fileSize(args.ramFrom) / 4096) * 4096;
  if (size === 0) throw new FileError(args.ramFrom, 'the RAM image is empty');
  const srcMem = mapRam(args.ramFrom, args.gpaBase, size, false);
  const dstMem = mapRam(args.ramTo, args.gpaBase, size, true);
  let log: MappedDirtyLog | null = null;
  let logFd = -1;
  const source = await VitsdClient.connect(args.from, { timeoutMs: args.timeoutMs });
  let destination: VitsdClient | null = null;
  try {
    destination = await VitsdClient.connect(args.to, { timeoutMs: args.timeoutMs });
    const vm = await discoverVm(source);
    out.progress(`source: vgic-v3 ${vm.devices.vgic}, ${vm.devices.its.length} ITS(es), ${vm.nrVcpus} vCPU(s)`);
    if (args.precopy) {
      const bytes = dirtyLogBytesFor(args.gpaBase + size);
      logFd = native.memfdCreate('vitsctl-dirty-log', MFD_CLOEXEC);
      ftruncateSync(logFd, Math.ceil(bytes / 4096) * 4096);
      log = mapDirtyLog(logFd, bytes, 0);
      await source.setLogBase(logFd, bytes, 0);
    }
    const dst = destination;
    const result = await migrate(
      { target: source, memory: srcMem, devices: vm.devices, dirtyLog: log?.log ?? null },
      { target: dst, memory: dstMem, attachMemory: () => dst.setMemTable(dstMem.mappedRegions.map((r) => ({ gpa: r.gpa, size: r.size, fd: r.fd, mmapOffset: r.mmapOffset }))) },
      {
        layout: layoutOf(vm, { base: args.gpaBase, size }),
        precopy: args.precopy,
        itsRestoreOrder: args.order,
        onPhase: (p) => out.progress(p),
      },
    );
    out.result(formatMigration(result), result);
    return ExitCode.OK;
  } finally {
    source.close();
    destination?.close();
    srcMem.close();
    dstMem.close();
    log?.close();
    if (logFd >= 0) native.close(logFd);
  }
}
