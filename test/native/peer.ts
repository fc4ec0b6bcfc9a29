/** Parent side of test/native/fixtures/peer.ts: a child process driven by JSON lines. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { packageRoot } from '../../src/native/index.js';

export const PEER_SCRIPT = fileURLToPath(new URL('./fixtures/peer.ts', import.meta.url));

export interface PeerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class Peer {
  readonly child: ChildProcess;
  readonly exited: Promise<PeerExit>;
  private readonly lines: Interface;
  private readonly pending: Array<(line: string) => void> = [];
  private readonly buffered: string[] = [];
  stderr = '';

  /** Starts the peer; `socketFd`, if given, becomes its fd 3. */
  constructor(script: string, socketFd?: number, args: string[] = []) {
    const stdio: Array<'pipe' | 'inherit' | number> = ['pipe', 'pipe', 'pipe'];
    if (socketFd !== undefined) stdio.push(socketFd);
    this.child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: packageRoot(), stdio });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.lines = createInterface({ input: this.child.stdout! });
    this.lines.on('line', (line) => {
      const waiter = this.pending.shift();
      if (waiter) waiter(line);
      else this.buffered.push(line);
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Next line the peer prints (JSON-decoded). */
  next(): Promise<Record<string, unknown>> {
    const line = this.buffered.shift();
    if (line !== undefined) return Promise.resolve(JSON.parse(line) as Record<string, unknown>);
    return new Promise((resolve, reject) => {
      this.pending.push((l) => resolve(JSON.parse(l) as Record<string, unknown>));
      void this.exited.then((e) => reject(new Error(`peer exited (${e.code ?? e.signal}) before replying; stderr: ${this.stderr}`)));
    });
  }

  send(command: Record<string, unknown>): void {
    this.child.stdin!.write(JSON.stringify(command) + '\n');
  }

  async request(command: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.send(command);
    const reply = await this.next();
    if ('error' in reply) throw new Error(`peer: ${String(reply['error'])}`);
    return reply;
  }

  async close(): Promise<PeerExit> {
    this.child.stdin!.end();
    return this.exited;
  }
}
