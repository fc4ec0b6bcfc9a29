/**
 * The `vitsd` command, as a function of its arguments and of how the VM's devices are
 * made (the bin passes the real ones; tests of the socket layer may pass others).
 * Nothing native is loaded before the arguments are understood, so --help, --version and
 * --print-capabilities work even without the addon.
 */
import yargs from 'yargs';
import type { VmDevices } from '../attr/types.js';
import { capabilities } from '../daemon/capabilities.js';
import { LOG_LEVELS, type LogLevel } from '../daemon/logger.js';
import { packageVersion } from './package-info.js';

export interface VitsdMainOptions {
  /** Makes the VM's devices (loaded lazily: it may need the native addon). */
  createVm: () => Promise<VmDevices>;
}

const EXIT_USAGE = 2;
const EXIT_FAILURE = 1;

export async function vitsdMain(argv: string[], options: VitsdMainOptions): Promise<void> {
  const args = await yargs(argv)
    .scriptName('vitsd')
    .usage(
      '$0 (--socket-path PATH | --fd N) [options]\n\n' +
        'A userspace Arm GICv3 ITS and LPI redistributor backend for a VMM. It serves the vitsd ' +
        'protocol (vhost-user-like, with KVM device-ioctl semantics) on a UNIX socket, maps the ' +
        "VMM's guest RAM from shared-memory fds, and saves/restores ITS state into guest RAM in " +
        "Linux KVM's table layout (ABI rev 0).",
    )
    .option('socket-path', { type: 'string', describe: 'listen on this UNIX socket path (created mode 0600; a stale socket file is replaced)' })
    .option('fd', { type: 'number', describe: 'listen on this inherited listening socket fd instead' })
    .option('print-capabilities', { type: 'boolean', describe: 'print the backend capabilities as JSON and exit' })
    .option('log-level', { choices: LOG_LEVELS as unknown as string[], default: 'info', describe: 'log level (logs are JSON lines on stderr)' })
    .example('$0 --socket-path /run/vitsd/vm1.sock', 'serve one VM on a socket')
    .example('$0 --fd 3 --log-level debug', 'serve on a listening socket inherited as fd 3')
    .example('$0 --print-capabilities', 'print {"type":"gicv3-its",...} and exit')
    .version(packageVersion())
    .help()
    .alias('h', 'help')
    .strict()
    .parseAsync();

  if (args['print-capabilities'] === true) {
    process.stdout.write(JSON.stringify(capabilities()) + '\n');
    process.exit(0);
  }
  const socketPath = args['socket-path'];
  const fd = args.fd;
  if ((socketPath === undefined) === (fd === undefined)) {
    process.stderr.write('vitsd: exactly one of --socket-path PATH and --fd N is required (see --help)\n');
    process.exit(EXIT_USAGE);
  }
  if (fd !== undefined && (!Number.isInteger(fd) || fd < 0)) {
    process.stderr.write(`vitsd: --fd must be a non-negative integer, got ${String(fd)}\n`);
    process.exit(EXIT_USAGE);
  }
  if (socketPath !== undefined && socketPath.length === 0) {
    process.stderr.write('vitsd: --socket-path must not be empty\n');
    process.exit(EXIT_USAGE);
  }

  const { createLogger } = await import('../daemon/logger.js');
  const log = createLogger(args['log-level'] as LogLevel);
  // A daemon holding a VM's interrupt state must not die on one bug: log it and go on.
  process.on('uncaughtException', (err) => log.fatal({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.fatal({ err }, 'unhandled rejection'));

  let server;
  try {
    const [{ VitsdServer }, { nativeHost }] = await Promise.all([import('../daemon/server.js'), import('../daemon/native-host.js')]);
    const vm = await options.createVm();
    server = VitsdServer.start({ vm, host: nativeHost, log, ...(socketPath !== undefined ? { socketPath } : { fd: fd! }) });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    log.error({ err: e }, 'cannot start');
    process.stderr.write(`vitsd: ${message}\n`);
    process.exit(EXIT_FAILURE);
  }
  const started = server;
  const shutdown = (signal: string): void => {
    // Signal handlers run between event-loop callbacks, so no request is ever half-handled here.
    log.info({ signal }, 'shutting down');
    started.stop(signal);
    process.exit(0);
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}
