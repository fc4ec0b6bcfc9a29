/**
 * A bare protocol client over the native shim (connectUnix, sendmsg with SCM_RIGHTS,
 * recvmsg on the event loop) — deliberately not src/client, so that the daemon is tested
 * against bytes we build by hand.
 */
import { POLL_READABLE, type PollHandle } from '../../../src/native/binding.js';
import { native } from '../../../src/native/index.js';
import { Errno } from '../../../src/util/errno.js';
import { parseReplies, type Reply } from './wire.js';

export class RawClient {
  readonly fd: number;
  private poll: PollHandle | null;
  private buf = new Uint8Array(1 << 16);
  private len = 0;
  private eof = false;
  private waiters: (() => void)[] = [];
  private readonly slots = new Int32Array(17);
  /** fds received from the daemon (it never sends any: a test may check that). */
  readonly receivedFds: number[] = [];

  private constructor(fd: number) {
    this.fd = fd;
    this.poll = native.pollStart(fd, POLL_READABLE, () => this.onReadable());
  }

  static connect(path: string): RawClient {
    return new RawClient(native.connectUnix(path));
  }

  private onReadable(): void {
    for (;;) {
      if (this.buf.length - this.len < 65536) {
        const grown = new Uint8Array(this.buf.length * 2);
        grown.set(this.buf.subarray(0, this.len));
        this.buf = grown;
      }
      const n = native.recvmsg(this.fd, this.buf, this.len, this.buf.length - this.len, this.slots);
      if (n > 0) {
        this.len += n;
        for (let i = 1; i <= this.slots[0]!; i++) this.receivedFds.push(this.slots[i]!);
        continue;
      }
      if (n === 0 || (n < 0 && n !== -Errno.EAGAIN)) {
        this.eof = true;
        if (this.poll) native.pollStop(this.poll);
        this.poll = null;
      }
      break;
    }
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Sends all of bytes (fds on the first sendmsg). */
  send(bytes: Uint8Array, fds: number[] | null = null): void {
    let at = 0;
    let first = true;
    const deadline = Date.now() + 10_000;
    while (at < bytes.length) {
      const n = native.sendmsg(this.fd, bytes, at, bytes.length - at, first ? fds : null);
      if (n > 0) {
        at += n;
        first = false;
      } else if (n === -Errno.EAGAIN) {
        if (Date.now() > deadline) throw new Error('send timed out');
        // The daemon may be waiting for us to read its replies (back-pressure): drain them here,
        // as the event loop cannot run while we spin.
        this.onReadable();
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      } else {
        throw new Error(`sendmsg failed: errno ${-n}`);
      }
    }
  }

  /** Tries to send; returns false if the peer is gone (EPIPE/ECONNRESET) instead of throwing. */
  trySend(bytes: Uint8Array, fds: number[] | null = null): boolean {
    try {
      this.send(bytes, fds);
      return true;
    } catch (e) {
      if (/errno (32|104)\b/.test(String(e))) return false;
      throw e;
    }
  }

  private async wait(until: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!until()) {
      if (this.eof && !until()) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 50));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Bytes of complete replies buffered, as the number of them. */
  private completeReplies(): number {
    return parseReplies(this.buf.subarray(0, this.len)).length;
  }

  /** Waits for `count` replies and removes them from the buffer. */
  async replies(count: number, timeoutMs = 10_000): Promise<Reply[]> {
    await this.wait(() => this.completeReplies() >= count, timeoutMs, `${count} replies`);
    const all = parseReplies(this.buf.subarray(0, this.len));
    const taken = all.slice(0, count);
    const used = taken.reduce((n, r) => n + 16 + r.size, 0);
    this.buf.copyWithin(0, used, this.len);
    this.len -= used;
    return taken;
  }

  async reply(timeoutMs = 10_000): Promise<Reply> {
    return (await this.replies(1, timeoutMs))[0]!;
  }

  /** Sends a request and waits for its reply. */
  async call(bytes: Uint8Array, fds: number[] | null = null): Promise<Reply> {
    this.send(bytes, fds);
    return this.reply();
  }

  /**
   * Takes replies as they arrive until one satisfies `done`, the daemon closes the
   * connection, or the time is up. Each reply is passed to `seen`.
   */
  async drainUntil(done: (r: Reply) => boolean, seen: (r: Reply) => void, timeoutMs = 60_000): Promise<'done' | 'closed' | 'timeout'> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const all = parseReplies(this.buf.subarray(0, this.len));
      const used = all.reduce((n, r) => n + 16 + r.size, 0);
      this.buf.copyWithin(0, used, this.len);
      this.len -= used;
      for (const r of all) {
        seen(r);
        if (done(r)) return 'done';
      }
      if (this.eof) return 'closed';
      const left = deadline - Date.now();
      if (left <= 0) return 'timeout';
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 50));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves once the daemon closed the connection (after reading anything it sent). */
  async closedByPeer(timeoutMs = 10_000): Promise<void> {
    await this.wait(() => this.eof, timeoutMs, 'the daemon to close the connection');
  }

  get isClosedByPeer(): boolean {
    return this.eof;
  }

  /** Buffered bytes not yet taken as replies. */
  get pendingBytes(): number {
    return this.len;
  }

  close(): void {
    if (this.poll) native.pollStop(this.poll);
    this.poll = null;
    try {
      native.close(this.fd);
    } catch {
      // already closed
    }
  }
}
