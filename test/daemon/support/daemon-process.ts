/** Spawning a vitsd process for integration tests, and waiting for it. */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** The real daemon, run from the TypeScript sources. */
export const REAL_DAEMON = ['--import', 'tsx', join(ROOT, 'src/cli/vitsd.ts')];

const tempDirs: string[] = [];
// Registered while the importing test file is collected: runs after all of its tests.
afterAll(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory, removed after the test file's tests. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vitsd-test-'));
  tempDirs.push(dir);
  return dir;
}

export interface Daemon {
  proc: ChildProcess;
  socketPath: string;
  /** Everything the daemon wrote to stderr so far (JSON log lines). */
  stderr(): string;
  stdout(): string;
  /** Resolves with the exit code (or the signal name). */
  exited: Promise<number | string>;
  stop(): Promise<number | string>;
}

/**
 * Spawns vitsd. Its stderr (the JSON logs) goes to a file, not a pipe: the daemon writes
 * logs synchronously, and a test that spins on a socket would not drain a pipe, stalling
 * the daemon on a full pipe.
 */
export function spawnVitsd(entry: string[], args: string[], options: { extraFds?: number[]; socketPath?: string } = {}): Daemon {
  const logPath = join(tempDir(), 'vitsd.log');
  const logFd = openSync(logPath, 'w');
  const stdio: StdioOptions = ['ignore', 'pipe', logFd, ...(options.extraFds ?? [])];
  const proc = spawn(process.execPath, [...entry, ...args], { cwd: ROOT, stdio });
  closeSync(logFd);
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const err = (): string => readFileSync(logPath, 'utf8');
  const exited = new Promise<number | string>((res) => proc.on('exit', (code, signal) => res(code ?? signal ?? -1)));
  return {
    proc,
    socketPath: options.socketPath ?? '',
    stderr: err,
    stdout: () => out,
    exited,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

/** Starts a daemon on a fresh socket path and waits until it listens. */
export async function startDaemon(entry: string[] = REAL_DAEMON, extra: string[] = [], socketPath = join(tempDir(), 'vitsd.sock')): Promise<Daemon> {
  const d = spawnVitsd(entry, ['--socket-path', socketPath, ...extra], { socketPath });
  await waitFor(() => d.stderr().includes('"msg":"listening"'), 30_000, () => `daemon did not start: ${d.stderr()}`, d);
  return d;
}

export async function waitFor(cond: () => boolean, timeoutMs: number, message: () => string, daemon?: Daemon): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (daemon && (daemon.proc.exitCode !== null || daemon.proc.signalCode !== null)) throw new Error(`daemon exited: ${message()}`);
    if (Date.now() > deadline) throw new Error(message());
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Open fds of a process (Linux /proc). */
export function openFds(pid: number): number[] {
  return readdirSync(`/proc/${pid}/fd`).map(Number).sort((a, b) => a - b);
}

export function socketExists(path: string): boolean {
  return existsSync(path);
}
