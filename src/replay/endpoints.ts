/**
 * Replay targets: a fresh in-process VM (src/attr's VmDevices on ArrayBuffer guest RAM), a
 * vitsd daemon reached over its socket (guest RAM in a memfd passed with SET_MEM_TABLE), and
 * fresh daemon processes spawned for each target (what --migrate-at-marks needs over the wire).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GuestRegion } from '../memory/guest-memory.js';
import { ArrayBufferGuestMemory } from '../memory/array-buffer-guest-memory.js';
import { InProcessTarget } from '../vmm/in-process-target.js';
import { VirtualGic } from '../attr/index.js';
import type { EndpointFactory, EndpointStats, ReplayEndpoint } from './endpoint.js';

/** Fresh in-process VMs (src/attr's VirtualGic on ArrayBuffer guest RAM). */
export function inProcessFactory(): EndpointFactory {
  return async (regions: readonly GuestRegion[]): Promise<ReplayEndpoint> => {
    const memory = new ArrayBufferGuestMemory(regions);
    const vm = new VirtualGic({ memory });
    return {
      target: new InProcessTarget(vm),
      memory,
      description: 'in-process vitsd',
      stats: async (): Promise<EndpointStats> => ({ commands: { ...vm.stats.commands }, commandErrors: { ...vm.stats.commandErrors } }),
      close: async () => {
        memory.close();
      },
    };
  };
}

/** Guest RAM in a memfd, attached to a daemon at `socketPath` with SET_MEM_TABLE. */
async function connectEndpoint(socketPath: string, regions: readonly GuestRegion[], description: string, onClose: () => Promise<void>): Promise<ReplayEndpoint> {
  // loaded lazily: both need the native addon
  const { createMemfdGuestMemory } = await import('../memory/mapped-guest-memory.js');
  const { VitsdClient } = await import('../client/index.js');
  const memory = createMemfdGuestMemory(regions, { name: 'vitsd-replay-ram' });
  let client: Awaited<ReturnType<typeof VitsdClient.connect>> | undefined;
  try {
    client = await VitsdClient.connect(socketPath);
    await client.setMemTable(memory.mappedRegions.map((r) => ({ gpa: r.gpa, size: r.size, fd: r.fd, mmapOffset: r.mmapOffset })));
  } catch (e) {
    client?.close();
    memory.close();
    await onClose();
    throw e;
  }
  const c = client;
  return {
    target: c,
    memory,
    description,
    stats: async (): Promise<EndpointStats> => {
      const s = await c.getStats();
      return { commands: s.commands, commandErrors: s.command_errors };
    },
    close: async () => {
      c.close();
      memory.close();
      await onClose();
    },
  };
}

/** The daemon already listening at `socketPath` (used once: its state is the VM's). */
export function socketFactory(socketPath: string): EndpointFactory {
  return (regions) => connectEndpoint(socketPath, regions, `vitsd at ${socketPath}`, async () => {});
}

export interface SpawnOptions {
  /** The vitsd entry point; default: the cli/vitsd module next to this one (.js or .ts). */
  readonly entry?: string;
  /** Node arguments for the child (default: none for the compiled bin, tsx's loader for the .ts entry). */
  readonly execArgv?: readonly string[];
  readonly logLevel?: string;
  /** How long to wait for the socket (ms). */
  readonly startTimeoutMs?: number;
}

function defaultEntry(): string {
  const here = fileURLToPath(import.meta.url);
  const ext = here.endsWith('.ts') ? '.ts' : '.js';
  return join(here, '..', '..', 'cli', `vitsd${ext}`);
}

async function waitForSocket(path: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const start = Date.now();
  while (!existsSync(path)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`vitsd exited (${child.exitCode ?? child.signalCode}) before listening on ${path}`);
    if (Date.now() - start > timeoutMs) throw new Error(`vitsd did not listen on ${path} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(timer);
}

/** A new vitsd process per target, on a socket in a private temporary directory. */
export function spawnDaemonFactory(options: SpawnOptions = {}): EndpointFactory {
  return async (regions) => {
    const dir = mkdtempSync(join(tmpdir(), 'vitsd-replay-'));
    const socketPath = join(dir, 'vitsd.sock');
    const entry = options.entry ?? defaultEntry();
    const execArgv = options.execArgv ?? (entry.endsWith('.ts') ? ['--import', 'tsx'] : []);
    const child = spawn(process.execPath, [...execArgv, entry,
      '--socket-path', socketPath, '--log-level', options.logLevel ?? 'error'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const cleanup = async (): Promise<void> => {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    };
    try {
      await waitForSocket(socketPath, child, options.startTimeoutMs ?? 15_000);
    } catch (e) {
      await cleanup();
      throw e;
    }
    return connectEndpoint(socketPath, regions, `vitsd pid ${child.pid}`, cleanup);
  };
}

/** First target from `first`, every later one (migration destinations) from `rest`. */
export function firstThen(first: EndpointFactory, rest: EndpointFactory): EndpointFactory {
  let used = false;
  return (regions) => {
    if (used) return rest(regions);
    used = true;
    return first(regions);
  };
}
