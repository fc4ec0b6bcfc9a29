/**
 * `vitsctl save --socket PATH --out STATE.json [--resume] [--ram FILE --ram-out FILE]`:
 * the migration source's sequence on a running daemon — SUSPEND, SAVE_PENDING_TABLES,
 * ITS_SAVE_TABLES on each ITS, the register reads — written as a state file; optionally a copy
 * of the RAM file taken while the VM is still suspended; optionally RESUME at the end.
 */
import { copyFileSync, writeFileSync } from 'node:fs';
import { VitsdClient } from '../../../client/client.js';
import { gicStateToJson, readGicState, saveItsTables, savePendingTables } from '../../../vmm/gic-state.js';
import { discoverVm } from '../discover.js';
import { ExitCode, FileError, UsageError, type ExitCodeValue } from '../exit-codes.js';
import type { Output } from '../output.js';

export interface SaveArgs {
  socket: string;
  out: string;
  resume: boolean;
  ram?: string;
  ramOut?: string;
  timeoutMs: number;
}

export async function runSave(args: SaveArgs, out: Output): Promise<ExitCodeValue> {
  if ((args.ram === undefined) !== (args.ramOut === undefined)) throw new UsageError('--ram and --ram-out go together');
  const client = await VitsdClient.connect(args.socket, { timeoutMs: args.timeoutMs });
  try {
    const vm = await discoverVm(client);
    out.progress(`found vgic-v3 ${vm.devices.vgic}, ${vm.devices.its.length} ITS(es), ${vm.nrVcpus} vCPU(s)`);
    const t0 = performance.now();
    out.progress('SUSPEND');
    await client.suspend();
    out.progress('SAVE_PENDING_TABLES');
    await savePendingTables(client, vm.devices.vgic);
    for (const its of vm.devices.its) {
      out.progress(`ITS_SAVE_TABLES (device ${its})`);
      await saveItsTables(client, its);
    }
    const state = await readGicState(client, vm.devices, vm.itsBases, vm.nrVcpus);
    state.layout = { distBase: vm.distBase, redistBase: vm.redistBase };
    const json = gicStateToJson(state);
    try {
      writeFileSync(args.out, JSON.stringify(json, null, 2) + '\n', { mode: 0o600 });
    } catch (e) {
      throw new FileError(args.out, e instanceof Error ? e.message : String(e));
    }
    if (args.ram !== undefined && args.ramOut !== undefined) {
      out.progress(`copying ${args.ram} to ${args.ramOut}`);
      try {
        copyFileSync(args.ram, args.ramOut);
      } catch (e) {
        throw new FileError(args.ram, e instanceof Error ? e.message : String(e));
      }
    }
    const ms = performance.now() - t0;
    if (args.resume) {
      out.progress('RESUME');
      await client.resume();
    }
    out.result(
      `saved ${state.its.length} ITS(es) and ${state.nrVcpus} redistributor(s) to ${args.out} in ${ms.toFixed(1)} ms` +
        (args.resume ? ' (VM resumed)' : ' (VM left suspended)'),
      { state: json, ms, resumed: args.resume },
    );
    return ExitCode.OK;
  } finally {
    client.close();
  }
}
