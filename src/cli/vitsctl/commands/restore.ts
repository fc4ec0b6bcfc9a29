/**
 * `vitsctl restore --socket PATH --state STATE.json --ram FILE [--gpa-base ADDR] [--order kvm|qemu] [--no-resume]`:
 * the migration destination's sequence on a fresh daemon, in KVM's order (protocol.md "A
 * destination runs"): SET_MEM_TABLE with the RAM file, SET_VCPUS, vgic-v3 + INIT, each ITS +
 * INIT, the redistributor registers, the ITS registers but CTLR, ITS_RESTORE_TABLES, GITS_CTLR,
 * RESUME. The daemon keeps the VM after the tool disconnects.
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { VitsdClient } from '../../../client/client.js';
import { gicStateFromJson, restoreItsTables, writeItsCtlr, writeItsRegistersExceptCtlr, writeRedistState, type ItsRestoreOrder } from '../../../vmm/gic-state.js';
import { createIts, createVgic } from '../../../vmm/gic-setup.js';
import { VIRT_DIST_BASE, VIRT_REDIST_BASE, type VmLayout } from '../../../vmm/vm-layout.js';
import { ExitCode, FileError, type ExitCodeValue } from '../exit-codes.js';
import type { Output } from '../output.js';

export interface RestoreArgs {
  socket: string;
  state: string;
  ram: string;
  gpaBase: number;
  order: ItsRestoreOrder;
  resume: boolean;
  timeoutMs: number;
}

export async function runRestore(args: RestoreArgs, out: Output): Promise<ExitCodeValue> {
  let text: string;
  try {
    text = readFileSync(args.state, 'utf8');
  } catch (e) {
    throw new FileError(args.state, e instanceof Error ? e.message : String(e));
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new FileError(args.state, `not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  const state = gicStateFromJson(parsed);
  let fd: number;
  try {
    fd = openSync(args.ram, 'r+');
  } catch (e) {
    throw new FileError(args.ram, e instanceof Error ? e.message : String(e));
  }
  try {
    const size = Math.floor(fstatSync(fd).size / 4096) * 4096;
    if (size === 0) throw new FileError(args.ram, 'the RAM image is empty');
    const layout: VmLayout = {
      distBase: state.layout?.distBase ?? VIRT_DIST_BASE,
      redistBase: state.layout?.redistBase ?? VIRT_REDIST_BASE,
      itsBases: state.its.map((r) => r.base),
      ramBase: args.gpaBase,
      ramSize: size,
      nrVcpus: state.nrVcpus,
    };
    const client = await VitsdClient.connect(args.socket, { timeoutMs: args.timeoutMs });
    try {
      const t0 = performance.now();
      out.progress(`SET_MEM_TABLE ${args.ram} at 0x${args.gpaBase.toString(16)} (${size} bytes)`);
      await client.setMemTable([{ gpa: args.gpaBase, size, fd, mmapOffset: 0 }]);
      out.progress(`SET_VCPUS ${layout.nrVcpus}, vgic-v3, ${layout.itsBases.length} ITS(es)`);
      const vgic = await createVgic(client, layout);
      const its: number[] = [];
      for (const base of layout.itsBases) its.push(await createIts(client, base));
      out.progress('redistributor registers');
      await writeRedistState(client, vgic, state.redist);
      for (let i = 0; i < its.length; i++) {
        out.progress(`ITS ${i}: registers (${args.order} order), ITS_RESTORE_TABLES, GITS_CTLR`);
        await writeItsRegistersExceptCtlr(client, its[i]!, state.its[i]!, args.order);
        await restoreItsTables(client, its[i]!);
        await writeItsCtlr(client, its[i]!, state.its[i]!);
      }
      if (args.resume) await client.resume();
      const ms = performance.now() - t0;
      out.result(`restored ${its.length} ITS(es) and ${state.nrVcpus} redistributor(s) in ${ms.toFixed(1)} ms${args.resume ? '' : ' (not resumed)'}`, {
        devices: { vgic, its },
        ms,
        resumed: args.resume,
      });
      return ExitCode.OK;
    } finally {
      client.close();
    }
  } finally {
    closeSync(fd);
  }
}
