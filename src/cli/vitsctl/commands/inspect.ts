/**
 * `vitsctl inspect --ram FILE --baser0 V --baser1 V [--gpa-base ADDR] [--propbaser V]
 * [--nr-vcpus N] [--state FILE [--its N]] [--json] [--verbose]`: decodes the ITS tables that
 * ITS_SAVE_TABLES left in a RAM image and reports every inconsistency (entry, field,
 * address); exits 1 if there is any error-level finding.
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import type { GuestMemory } from '../../../memory/guest-memory.js';
import { ArrayBufferGuestMemory } from '../../../memory/array-buffer-guest-memory.js';
import { gicStateFromJson } from '../../../vmm/gic-state.js';
import { ExitCode, FileError, UsageError, type ExitCodeValue } from '../exit-codes.js';
import type { Output } from '../output.js';
import { formatReport, inspectTables, reportToJson } from '../table-inspector.js';

export interface InspectArgs {
  ram: string;
  gpaBase: number;
  baser0?: bigint;
  baser1?: bigint;
  propbaser?: bigint;
  nrVcpus?: number;
  state?: string;
  its: number;
  verbose: boolean;
}

/** Images up to this size are read into memory; larger ones are mapped (native addon). */
const READ_LIMIT = 256 * 1024 * 1024;

async function openImage(path: string, gpaBase: number): Promise<GuestMemory> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new FileError(path, e instanceof Error ? e.message : String(e));
  }
  try {
    const size = Math.floor(fstatSync(fd).size / 4096) * 4096;
    if (size === 0) throw new FileError(path, 'the RAM image is empty (or smaller than 4 KiB)');
    if (size <= READ_LIMIT) {
      const buf = readFileSync(path);
      // A large read gets its own ArrayBuffer: use it in place; else copy out of Node's pool.
      let ab: ArrayBuffer;
      if (buf.byteOffset === 0 && buf.buffer instanceof ArrayBuffer && buf.buffer.byteLength >= size) ab = buf.buffer;
      else {
        ab = new ArrayBuffer(size);
        new Uint8Array(ab).set(buf.subarray(0, size));
      }
      return new ArrayBufferGuestMemory([{ gpa: gpaBase, size }], [ab]);
    }
    const { openFileGuestMemory } = await import('../../../memory/mapped-guest-memory.js');
    return openFileGuestMemory(path, [{ gpa: gpaBase, size }]);
  } catch (e) {
    if (e instanceof FileError) throw e;
    throw new FileError(path, e instanceof Error ? e.message : String(e));
  } finally {
    closeSync(fd);
  }
}

export async function runInspect(args: InspectArgs, out: Output): Promise<ExitCodeValue> {
  let baser0 = args.baser0;
  let baser1 = args.baser1;
  let propbaser = args.propbaser;
  let nrVcpus = args.nrVcpus;
  if (args.state !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(args.state, 'utf8'));
    } catch (e) {
      throw new FileError(args.state, e instanceof Error ? e.message : String(e));
    }
    const state = gicStateFromJson(parsed);
    const its = state.its[args.its];
    if (!its) throw new UsageError(`--its ${args.its}: the state file has ${state.its.length} ITS(es)`);
    baser0 ??= its.baser[0];
    baser1 ??= its.baser[1];
    propbaser ??= state.redist[0]?.propbaser;
    nrVcpus ??= state.nrVcpus;
  }
  if (baser0 === undefined || baser1 === undefined) throw new UsageError('--baser0 and --baser1 (or --state) are required');
  const memory = await openImage(args.ram, args.gpaBase);
  try {
    const report = inspectTables(memory, { baser0, baser1, ...(propbaser !== undefined ? { propbaser } : {}), ...(nrVcpus !== undefined ? { nrVcpus } : {}) });
    out.result(formatReport(report, { verbose: args.verbose }), reportToJson(report));
    return report.ok ? ExitCode.OK : ExitCode.FAILURE;
  } finally {
    memory.close();
  }
}
