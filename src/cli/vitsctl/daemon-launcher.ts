/**
 * Starting vitsd processes (the demo, tests): the compiled bin next to this file when
 * running from dist/, the TypeScript entry through tsx when running from src/. Readiness is
 * the socket file appearing (the daemon binds and listens in one step), not a log line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface DaemonProcess {
  readonly proc: ChildProcess;
  readonly socketPath: string;
  /** stderr so far (the daemon's JSON log lines). */
  stderr(): string;
  readonly exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after graceMs; resolves with the exit code or signal. */
  stop(graceMs?: number): Promise<number | string>;
}

/** argv (after the node binary) that runs the vitsd bin. */
export function vitsdCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  const cliDir = resolve(dirname(here), '..');
  if (here.endsWith('.js')) return [join(cliDir, 'vitsd.js')];
  return ['--import', 'tsx', join(cliDir, 'vitsd.ts')];
}

function isSocket(path: string): boolean {
  try {
    return existsSync(path) && statSync(path).isSocket();
  } catch {
    return false;
  }
}

export async function startDaemon(socketPath: string, opts: { logLevel?: string; command?: string[]; timeoutMs?: number } = {}): Promise<DaemonProcess> {
  const command = opts.command ?? vitsdCommand();
  const proc = spawn(process.execPath, [...command, '--socket-path', socketPath, '--log-level', opts.logLevel ?? 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 1 << 20) err = err.slice(-(1 << 19));
  });
  const exited = new Promise<number | string>((res) => proc.on('exit', (code, signal) => res(code ?? signal ?? -1)));
  const daemon: DaemonProcess = {
    proc,
    socketPath,
    stderr: () => err,
    exited,
    async stop(graceMs = 3000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  while (!isSocket(socketPath)) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`vitsd exited before listening (${proc.exitCode ?? proc.signalCode}): ${err.trim()}`);
    if (Date.now() > deadline) {
      await daemon.stop();
      throw new Error(`vitsd did not create ${socketPath} in time: ${err.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return daemon;
}
