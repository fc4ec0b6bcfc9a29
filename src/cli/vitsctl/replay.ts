/**
 * `vitsctl replay`: replays a real QEMU trace of a guest driving an ITS against vitsd and
 * reports, per category, how far vitsd agrees with QEMU (exit status 1 on any disagreement,
 * the other codes as in exit-codes.ts).
 *
 *   vitsctl replay --qemu-trace FILE [--cmdq FILE] [--tables DIR] [--migrate-at-marks] [--json]
 *                  [--socket PATH | --spawn-daemon | in process by default]
 *
 * The vitsctl entry point registers `replayCommand`.
 */
import { readFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { readQemuTrace } from '../../replay/qemu-trace.js';
import { readTableDumps } from '../../replay/table-dumps.js';
import { firstThen, inProcessFactory, socketFactory, spawnDaemonFactory } from '../../replay/endpoints.js';
import { migrateDirect, migrateWithOrchestrator } from '../../replay/migrate.js';
import { replayQemuTrace, type ReplayOptions } from '../../replay/replayer.js';
import { formatReport, type ReplayReport } from '../../replay/report.js';
import type { EndpointFactory } from '../../replay/endpoint.js';
import type { ParsedTrace } from '../../replay/qemu-trace.js';
import { ExitCode, exitCodeFor, FileError } from './exit-codes.js';

export interface ReplayArgs {
  qemuTrace: string;
  cmdq?: string;
  tables?: string;
  migrateAtMarks: boolean;
  migration: 'orchestrator' | 'direct';
  json: boolean;
  socket?: string;
  spawnDaemon: boolean;
  itsBase?: number;
  redistBase?: number;
  vcpus?: number;
  maxDetails: number;
}

export interface ReplayIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const parseAddress = (v: unknown): number | undefined => {
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : Number(String(v));
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`not an address: ${String(v)}`);
  return n;
};

function pickFactory(args: ReplayArgs): EndpointFactory {
  if (args.socket !== undefined) {
    // the given daemon serves the first target; migration destinations need fresh daemons
    return args.migrateAtMarks ? firstThen(socketFactory(args.socket), spawnDaemonFactory()) : socketFactory(args.socket);
  }
  return args.spawnDaemon ? spawnDaemonFactory() : inProcessFactory();
}

/** Runs the replay; returns the report (the caller prints it and sets the exit status). */
function readInput<T>(path: string, read: (p: string) => T): T {
  try {
    return read(path);
  } catch (e) {
    throw new FileError(path, e instanceof Error ? e.message : String(e));
  }
}

export async function runReplay(args: ReplayArgs): Promise<ReplayReport> {
  const trace: ParsedTrace = readInput(args.qemuTrace, (p) => readQemuTrace(p));
  const options: ReplayOptions = {
    factory: pickFactory(args),
    migrateAtMarks: args.migrateAtMarks,
    migrate: args.migration === 'direct' ? migrateDirect : migrateWithOrchestrator,
    maxDetails: args.maxDetails,
  };
  if (args.cmdq !== undefined) options.cmdq = readInput(args.cmdq, (p) => readFileSync(p));
  if (args.tables !== undefined) options.dumps = readInput(args.tables, (p) => readTableDumps(p));
  if (args.itsBase !== undefined) options.itsBase = args.itsBase;
  if (args.redistBase !== undefined) options.redistBase = args.redistBase;
  if (args.vcpus !== undefined) options.nrVcpus = args.vcpus;
  return replayQemuTrace(trace, options);
}

/**
 * The command's body: prints the report and returns vitsctl's exit status: 0 full agreement,
 * 1 any disagreement, 3 a daemon error, 4 an unreadable input file, 5 an internal error.
 */
export async function replayMain(args: ReplayArgs, io: ReplayIo): Promise<number> {
  let report: ReplayReport;
  try {
    report = await runReplay(args);
  } catch (e) {
    io.stderr(`vitsctl replay: ${e instanceof Error ? e.message : String(e)}\n`);
    return exitCodeFor(e);
  }
  io.stdout(args.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
  return report.ok ? ExitCode.OK : ExitCode.FAILURE;
}

export const replayCommand: CommandModule<object, ReplayArgs> = {
  command: 'replay',
  describe: 'replay a QEMU ITS trace against vitsd and report agreement (translations, acknowledges, commands, registers)',
  builder: (y: Argv<object>) =>
    y
      .option('qemu-trace', { type: 'string', demandOption: true, describe: 'raw QEMU trace log (its-only.log or the full log; .gz accepted)' })
      .option('cmdq', { type: 'string', describe: 'command queue read back from guest RAM (mem-cmdq.bin); default: commands re-encoded from the trace' })
      .option('tables', { type: 'string', describe: 'directory of end-of-run memory dumps with memdump-index.txt (LPI configuration table, L1 device table, queue)' })
      .option('migrate-at-marks', { type: 'boolean', default: false, describe: 'migrate to a fresh vitsd at every @@MARK phase line' })
      .option('migration', { choices: ['orchestrator', 'direct'] as const, default: 'orchestrator' as const, describe: 'migration code: the VMM orchestrator (src/vmm/migration.ts) or the replay\'s own sequence' })
      .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON' })
      .option('socket', { type: 'string', describe: 'replay against the vitsd listening here (migration destinations are spawned daemons)' })
      .option('spawn-daemon', { type: 'boolean', default: false, describe: 'replay against freshly spawned vitsd processes instead of in process' })
      .option('its-base', { type: 'string', coerce: parseAddress, describe: 'ITS base address (default QEMU virt 0x08080000)' })
      .option('redist-base', { type: 'string', coerce: parseAddress, describe: 'first redistributor (default QEMU virt 0x080a0000)' })
      .option('vcpus', { type: 'number', describe: 'vCPU count (default: from the redistributors in the trace)' })
      .option('max-details', { type: 'number', default: 100, describe: 'disagreements listed in detail' })
      .conflicts('socket', 'spawn-daemon')
      .example('$0 replay --qemu-trace ../shared/traces/linux-6.1-smp4/its-only.log --cmdq ../shared/traces/linux-6.1-smp4/mem-cmdq.bin', '')
      .example('$0 replay --qemu-trace trace-raw.log.gz --tables DIR --migrate-at-marks --json', '') as unknown as Argv<ReplayArgs>,
  handler: async (argv) => {
    const code = await replayMain(argv, {
      stdout: (t) => process.stdout.write(t),
      stderr: (t) => process.stderr.write(t),
    });
    if (code !== 0) process.exitCode = code;
  },
};
