/**
 * The `vitsctl` command line: the VMM-side tool of vitsd. Results go to stdout (text, or
 * JSON with --json), progress and errors to stderr; exit codes are in exit-codes.ts.
 * Commands load the native addon only when they need it (--help and --version never do).
 */
import yargs, { type Argv } from 'yargs';
import { packageVersion } from '../package-info.js';
import { EXIT_CODES_HELP, ExitCode, exitCodeFor, UsageError, type ExitCodeValue } from './exit-codes.js';
import { makeOutput, type Output } from './output.js';
import { parseAddressArg, parseU64Arg } from './parse.js';
import { replayCommand, replayMain, type ReplayArgs } from './replay.js';

const DEFAULT_GPA_BASE = '0x40000000';

interface CommonArgs {
  json?: boolean;
  quiet?: boolean;
  timeout: number;
}

type Handler = (out: Output) => Promise<ExitCodeValue>;

/** Runs vitsctl with argv (without the node and script paths); resolves with the exit code. */
export async function vitsctlMain(argv: string[]): Promise<number> {
  let handler: Handler | null = null;
  let common: CommonArgs = { timeout: 30_000 };
  let usageProblem: string | null = null;

  const parser = yargs(argv)
    .scriptName('vitsctl')
    .usage(
      '$0 <command> [options]\n\nThe VMM-side tool of vitsd: statistics, save/restore of ITS state, live migration between two ' +
        'daemons, offline inspection of ITS tables in a guest RAM image, replay of real QEMU ITS traces, and a self-contained demo.',
    )
    .option('json', { type: 'boolean', describe: 'print the result as JSON on stdout' })
    .option('quiet', { type: 'boolean', alias: 'q', describe: 'no progress lines on stderr' })
    .option('timeout', { type: 'number', default: 30_000, describe: 'per-request timeout in ms' })
    .command(
      'stats',
      'print the statistics of a daemon (GET_STATS)',
      (y: Argv) => y.option('socket', { type: 'string', demandOption: true, describe: "the daemon's socket" }),
      (a) => {
        handler = async (out) => (await import('./commands/stats.js')).runStats({ socket: a.socket as string, timeoutMs: common.timeout }, out);
      },
    )
    .command(
      'save',
      'suspend the VM held by a daemon, save its ITS tables and pending tables into guest RAM, write its registers to a state file',
      (y: Argv) =>
        y
          .option('socket', { type: 'string', demandOption: true, describe: "the daemon's socket" })
          .option('out', { type: 'string', demandOption: true, describe: 'state file to write (JSON)' })
          .option('resume', { type: 'boolean', default: false, describe: 'RESUME the VM afterwards (default: leave it suspended)' })
          .option('ram', { type: 'string', describe: "the VM's RAM file, copied to --ram-out while suspended" })
          .option('ram-out', { type: 'string', describe: 'where to copy the RAM file' }),
      (a) => {
        handler = async (out) =>
          (await import('./commands/save.js')).runSave(
            {
              socket: a.socket as string,
              out: a.out as string,
              resume: a.resume === true,
              ...(a.ram !== undefined ? { ram: a.ram as string } : {}),
              ...(a['ram-out'] !== undefined ? { ramOut: a['ram-out'] as string } : {}),
              timeoutMs: common.timeout,
            },
            out,
          );
      },
    )
    .command(
      'restore',
      'recreate a VM on a fresh daemon from a state file and a RAM image, in KVM\'s restore order',
      (y: Argv) =>
        y
          .option('socket', { type: 'string', demandOption: true, describe: "the (fresh) daemon's socket" })
          .option('state', { type: 'string', demandOption: true, describe: 'state file written by `vitsctl save`' })
          .option('ram', { type: 'string', demandOption: true, describe: 'RAM image (mapped by the daemon from offset 0)' })
          .option('gpa-base', { type: 'string', default: DEFAULT_GPA_BASE, describe: 'guest physical address of the first byte of the image' })
          .option('order', { choices: ['kvm', 'qemu'], default: 'kvm', describe: 'ITS register restore order' })
          .option('resume', { type: 'boolean', default: true, describe: 'RESUME at the end (--no-resume to leave it stopped)' }),
      (a) => {
        handler = async (out) =>
          (await import('./commands/restore.js')).runRestore(
            {
              socket: a.socket as string,
              state: a.state as string,
              ram: a.ram as string,
              gpaBase: parseAddressArg('gpa-base', a['gpa-base']),
              order: a.order as 'kvm' | 'qemu',
              resume: a.resume !== false,
              timeoutMs: common.timeout,
            },
            out,
          );
      },
    )
    .command(
      'migrate',
      'live-migrate the VM held by one daemon to a fresh one, with its RAM file; prints the downtime by phase',
      (y: Argv) =>
        y
          .option('from', { type: 'string', demandOption: true, describe: "source daemon's socket" })
          .option('to', { type: 'string', demandOption: true, describe: "destination daemon's socket (fresh)" })
          .option('ram-from', { type: 'string', demandOption: true, describe: "source VM's RAM file" })
          .option('ram-to', { type: 'string', demandOption: true, describe: "destination RAM file (created or truncated)" })
          .option('gpa-base', { type: 'string', default: DEFAULT_GPA_BASE, describe: 'guest physical address of the first byte of the RAM files' })
          .option('precopy', { type: 'boolean', default: false, describe: 'copy RAM once while the source runs, then only dirty pages (SET_LOG_BASE)' })
          .option('order', { choices: ['kvm', 'qemu'], default: 'kvm', describe: 'ITS register restore order' }),
      (a) => {
        handler = async (out) =>
          (await import('./commands/migrate.js')).runMigrate(
            {
              from: a.from as string,
              to: a.to as string,
              ramFrom: a['ram-from'] as string,
              ramTo: a['ram-to'] as string,
              gpaBase: parseAddressArg('gpa-base', a['gpa-base']),
              precopy: a.precopy === true,
              order: a.order as 'kvm' | 'qemu',
              timeoutMs: common.timeout,
            },
            out,
          );
      },
    )
    .command(
      'inspect',
      'decode the ITS tables saved in a RAM image and report every inconsistency (exit 1 on any)',
      (y: Argv) =>
        y
          .option('ram', { type: 'string', demandOption: true, describe: 'RAM image' })
          .option('gpa-base', { type: 'string', default: DEFAULT_GPA_BASE, describe: 'guest physical address of the first byte of the image' })
          .option('baser0', { type: 'string', describe: 'GITS_BASER0 (device table) value' })
          .option('baser1', { type: 'string', describe: 'GITS_BASER1 (collection table) value' })
          .option('propbaser', { type: 'string', describe: 'GICR_PROPBASER value (checks INTIDs and property bytes)' })
          .option('nr-vcpus', { type: 'number', describe: 'number of vCPUs (checks collection targets)' })
          .option('state', { type: 'string', describe: 'take the register values from a `vitsctl save` state file' })
          .option('its', { type: 'number', default: 0, describe: 'which ITS of the state file' })
          .option('verbose', { type: 'boolean', alias: 'v', default: false, describe: 'show addresses and next fields of every ITE' }),
      (a) => {
        handler = async (out) =>
          (await import('./commands/inspect.js')).runInspect(
            {
              ram: a.ram as string,
              gpaBase: parseAddressArg('gpa-base', a['gpa-base']),
              ...(a.baser0 !== undefined ? { baser0: parseU64Arg('baser0', a.baser0) } : {}),
              ...(a.baser1 !== undefined ? { baser1: parseU64Arg('baser1', a.baser1) } : {}),
              ...(a.propbaser !== undefined ? { propbaser: parseU64Arg('propbaser', a.propbaser) } : {}),
              ...(a['nr-vcpus'] !== undefined ? { nrVcpus: Number(a['nr-vcpus']) } : {}),
              ...(a.state !== undefined ? { state: a.state as string } : {}),
              its: Number(a.its),
              verbose: a.verbose === true,
            },
            out,
          );
      },
    )
    .command(
      'demo',
      'run the demo: two daemons, a reference guest, MSIs, a live migration under traffic, checks',
      (y: Argv) =>
        y
          .option('vcpus', { type: 'number', default: 4, describe: 'vCPUs (2..64)' })
          .option('devices', { type: 'number', default: 5, describe: 'PCI devices with MSI-X (1..40)' })
          .option('its', { type: 'number', default: 1, describe: 'ITSes (1..4); devices are spread over them' })
          .option('ram-mib', { type: 'number', default: 64, describe: 'guest RAM in MiB' })
          .option('rounds', { type: 'number', default: 3, describe: 'rounds of MSIs on every vector before migrating' })
          .option('precopy', { type: 'boolean', default: true, describe: 'pre-copy RAM with a dirty log (--no-precopy: copy it all in the downtime)' })
          .option('keep', { type: 'boolean', default: false, describe: 'keep the scratch directory (sockets, RAM files)' }),
      (a) => {
        handler = async (out) =>
          (await import('./commands/demo.js')).runDemo(
            {
              vcpus: Number(a.vcpus),
              devices: Number(a.devices),
              its: Number(a.its),
              ramMib: Number(a['ram-mib']),
              rounds: Number(a.rounds),
              precopy: a.precopy !== false,
              keep: a.keep === true,
              timeoutMs: common.timeout,
            },
            out,
          );
      },
    )
    .command(
      replayCommand.command as string,
      replayCommand.describe as string,
      replayCommand.builder as (y: Argv) => Argv,
      (a) => {
        handler = async () =>
          replayMain(a as unknown as ReplayArgs, {
            stdout: (t) => process.stdout.write(t),
            stderr: (t) => process.stderr.write(t),
          }) as Promise<ExitCodeValue>;
      },
    )
    .demandCommand(1, 'a command is required')
    .epilogue(EXIT_CODES_HELP)
    .example('$0 demo', 'what `npm start` runs')
    .example('$0 stats --socket /run/vitsd/vm1.sock --json', 'statistics as JSON')
    .example('$0 inspect --ram guest.ram --baser0 0xf907000040010600 --baser1 0xbc07000040020600', 'check saved tables offline')
    .version(packageVersion())
    .help()
    .alias('h', 'help')
    .strict()
    .exitProcess(false)
    .fail((msg, err) => {
      usageProblem = msg ?? (err instanceof Error ? err.message : String(err));
    })
    .middleware((a) => {
      common = { json: a.json === true, quiet: a.quiet === true, timeout: Number(a.timeout) };
    });

  let helpOrVersion = false;
  try {
    const parsed = await parser.parseAsync();
    helpOrVersion = parsed['help'] === true || parsed['version'] === true;
  } catch (e) {
    usageProblem ??= e instanceof Error ? e.message : String(e);
  }
  if (usageProblem !== null) {
    process.stderr.write(`vitsctl: ${usageProblem}\n(see vitsctl --help)\n`);
    return ExitCode.USAGE;
  }
  if (handler === null) return helpOrVersion ? ExitCode.OK : ExitCode.USAGE;
  const out = makeOutput(common);
  const run: Handler = handler;
  try {
    return await run(out);
  } catch (e) {
    const code = exitCodeFor(e);
    const message = e instanceof Error ? e.message : String(e);
    out.error(e instanceof UsageError ? `${message}\n(see vitsctl --help)` : message);
    if (code === ExitCode.INTERNAL && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return code;
  }
}
