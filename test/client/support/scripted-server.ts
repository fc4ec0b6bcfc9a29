/**
 * A minimal UNIX-socket peer for client tests that need a misbehaving daemon (silent, late,
 * or answering with a wrong seq). Real sockets through the native shim; the script decides
 * what to send back for each request frame.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { POLL_READABLE, type PollHandle } from '../../../src/native/binding.js';
import { native } from '../../../src/native/index.js';

export interface ReceivedFrame {
  request: number;
  flags: number;
  seq: number;
  payload: Uint8Array;
}

export type Script = (frame: ReceivedFrame, reply: (bytes: Uint8Array) => void) => void;

export function replyBytes(request: number, seq: number, status: number, fields: Uint8Array = new Uint8Array(0)): Uint8Array {
  const b = new Uint8Array(16 + 8 + fields.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, 1 | 4, true);
  v.setUint32(8, 8 + fields.length, true);
  v.setUint32(12, seq, true);
  v.setInt32(16, status, true);
  b.set(fields, 24);
  return b;
}

/** HELLO reply fields: version 1, resumed 0, features 0xf. */
export function helloFields(): Uint8Array {
  const f = new Uint8Array(16);
  const v = new DataView(f.buffer);
  v.setUint32(0, 1, true);
  v.setBigUint64(8, 0xfn, true);
  return f;
}

export class ScriptedServer {
  readonly path: string;
  private readonly listenFd: number;
  private readonly listenPoll: PollHandle;
  private conns: { fd: number; poll: PollHandle; buf: Uint8Array; len: number }[] = [];
  readonly frames: ReceivedFrame[] = [];

  constructor(private readonly script: Script) {
    this.path = join(mkdtempSync(join(tmpdir(), 'vitsd-scripted-')), 's.sock');
    this.listenFd = native.listenUnix(this.path, 8, 0o600);
    this.listenPoll = native.pollStart(this.listenFd, POLL_READABLE, () => this.accept());
  }

  private accept(): void {
    for (;;) {
      const fd = native.accept(this.listenFd);
      if (fd < 0) return;
      const c = { fd, poll: null as unknown as PollHandle, buf: new Uint8Array(1 << 16), len: 0 };
      c.poll = native.pollStart(fd, POLL_READABLE, () => this.read(c));
      this.conns.push(c);
    }
  }

  private read(c: { fd: number; poll: PollHandle; buf: Uint8Array; len: number }): void {
    const fds = new Int32Array(17);
    const n = native.recvmsg(c.fd, c.buf, c.len, c.buf.length - c.len, fds);
    for (let i = 1; i <= fds[0]!; i++) native.close(fds[i]!);
    if (n <= 0) {
      if (n === 0) this.drop(c);
      return;
    }
    c.len += n;
    const v = new DataView(c.buf.buffer);
    let off = 0;
    while (c.len - off >= 16) {
      const size = v.getUint32(off + 8, true);
      if (c.len - off < 16 + size) break;
      const frame: ReceivedFrame = { request: v.getUint32(off, true), flags: v.getUint32(off + 4, true), seq: v.getUint32(off + 12, true), payload: c.buf.slice(off + 16, off + 16 + size) };
      this.frames.push(frame);
      this.script(frame, (bytes) => native.sendmsg(c.fd, bytes, 0, bytes.length, null));
      off += 16 + size;
    }
    c.buf.copyWithin(0, off, c.len);
    c.len -= off;
  }

  private drop(c: { fd: number; poll: PollHandle }): void {
    native.pollStop(c.poll);
    native.close(c.fd);
    this.conns = this.conns.filter((x) => x !== c);
  }

  /** Sends raw bytes on every open connection (late replies). */
  sendAll(bytes: Uint8Array): void {
    for (const c of this.conns) native.sendmsg(c.fd, bytes, 0, bytes.length, null);
  }

  closeConnections(): void {
    for (const c of [...this.conns]) this.drop(c);
  }

  close(): void {
    this.closeConnections();
    native.pollStop(this.listenPoll);
    native.close(this.listenFd);
  }
}
