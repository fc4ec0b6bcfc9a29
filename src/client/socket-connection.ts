/**
 * A UNIX stream socket driven by the native shim on the libuv loop: messages out with
 * optional SCM_RIGHTS fds (sendmsg; the rest queued on EAGAIN or a short write, fds always
 * riding on a message's first byte), messages in as whole frames (16-byte header + payload)
 * cut out of a receive buffer. Node's `net` cannot carry fds, hence the shim.
 *
 * The receive side is hostile-input-safe: a header announcing more than 1 MiB is a protocol
 * error, and fds arriving from the daemon (which never sends any) are closed at once.
 */
import { POLL_READABLE, POLL_WRITABLE, type PollHandle } from '../native/binding.js';
import { native } from '../native/index.js';
import { HEADER_SIZE, MAX_PAYLOAD_SIZE } from '../protocol/constants.js';
import { ClientErrno } from './errors.js';
import { Errno } from '../util/errno.js';

const EAGAIN = Errno.EAGAIN;
const INITIAL_RECEIVE_BUFFER = 64 * 1024;
const RECEIVE_LIMIT = HEADER_SIZE + MAX_PAYLOAD_SIZE;

export interface FrameSink {
  /** One complete frame: header at `offset`, `HEADER_SIZE + size` bytes valid. Called synchronously. */
  onFrame(view: DataView, offset: number): void;
  /** The connection is gone (errno and why). Called once. */
  onClose(errno: number, reason: string): void;
}

interface Outbound {
  bytes: Uint8Array;
  offset: number;
  fds: number[] | null;
}

export class SocketConnection {
  private fd: number;
  private poll: PollHandle | null;
  private readonly sink: FrameSink;
  private rbuf = new Uint8Array(INITIAL_RECEIVE_BUFFER);
  private rview = new DataView(this.rbuf.buffer);
  private rlen = 0;
  private readonly fdScratch = new Int32Array(1 + 16);
  private readonly outq: Outbound[] = [];
  private events = POLL_READABLE;
  private closedReason: string | null = null;
  private referenced = true;
  /** Bytes sent and received (statistics). */
  bytesOut = 0;
  bytesIn = 0;

  /** Takes ownership of a connected, non-blocking socket fd. */
  constructor(fd: number, sink: FrameSink) {
    this.fd = fd;
    this.sink = sink;
    this.poll = native.pollStart(fd, POLL_READABLE, (status, events) => this.onPoll(status, events));
  }

  static connect(path: string, sink: FrameSink): SocketConnection {
    const fd = native.connectUnix(path);
    try {
      return new SocketConnection(fd, sink);
    } catch (e) {
      native.close(fd);
      throw e;
    }
  }

  get closed(): boolean {
    return this.closedReason !== null;
  }

  /** Whether the socket keeps the event loop alive (true while requests are in flight). */
  setRef(ref: boolean): void {
    if (this.poll && ref !== this.referenced) {
      native.pollRef(this.poll, ref);
      this.referenced = ref;
    }
  }

  /**
   * Sends a message. The bytes are copied only if they cannot all go out now (so a caller
   * may reuse its buffer as soon as this returns). fds must stay open until the message is
   * out (immediately unless queued). Returns false if the connection is closed.
   */
  send(bytes: Uint8Array, offset: number, length: number, fds: number[] | null): boolean {
    if (this.closedReason !== null) return false;
    let sent = 0;
    if (this.outq.length === 0) {
      const n = native.sendmsg(this.fd, bytes, offset, length, fds && fds.length > 0 ? fds : null);
      if (n < 0 && n !== -EAGAIN) {
        this.fail(-n, `sendmsg failed (errno ${-n})`);
        return false;
      }
      if (n === length) {
        this.bytesOut += n;
        return true;
      }
      if (n > 0) {
        sent = n;
        this.bytesOut += n;
      }
    }
    // Queue the rest; fds only if nothing went out yet (they travelled with the first byte).
    this.outq.push({ bytes: bytes.slice(offset + sent, offset + length), offset: 0, fds: sent === 0 && fds && fds.length > 0 ? fds : null });
    this.want(POLL_READABLE | POLL_WRITABLE);
    return true;
  }

  private want(events: number): void {
    if (this.events !== events && this.poll) {
      native.pollUpdate(this.poll, events);
      this.events = events;
    }
  }

  private flush(): void {
    while (this.outq.length > 0) {
      const o = this.outq[0]!;
      const len = o.bytes.length - o.offset;
      const n = native.sendmsg(this.fd, o.bytes, o.offset, len, o.fds);
      if (n === -EAGAIN) return;
      if (n < 0) {
        this.fail(-n, `sendmsg failed (errno ${-n})`);
        return;
      }
      this.bytesOut += n;
      o.fds = null;
      o.offset += n;
      if (o.offset < o.bytes.length) return;
      this.outq.shift();
    }
    this.want(POLL_READABLE);
  }

  private onPoll(status: number, events: number): void {
    if (this.closedReason !== null) return;
    if (status < 0) {
      this.fail(ClientErrno.ECONNRESET, `poll error ${status}`);
      return;
    }
    if (events & POLL_WRITABLE) this.flush();
    if (events & POLL_READABLE) this.receive();
  }

  private ensureRoom(needed: number): void {
    if (this.rbuf.length - this.rlen >= needed) return;
    const size = Math.min(Math.max(this.rbuf.length * 2, this.rlen + needed), RECEIVE_LIMIT + INITIAL_RECEIVE_BUFFER);
    const next = new Uint8Array(size);
    next.set(this.rbuf.subarray(0, this.rlen));
    this.rbuf = next;
    this.rview = new DataView(next.buffer);
  }

  private receive(): void {
    // Bounded: at most this many reads per readiness, then yield to the loop.
    for (let reads = 0; reads < 64 && this.closedReason === null; reads++) {
      this.ensureRoom(4096);
      const n = native.recvmsg(this.fd, this.rbuf, this.rlen, this.rbuf.length - this.rlen, this.fdScratch);
      const nfds = this.fdScratch[0]!;
      for (let i = 1; i <= nfds && i < this.fdScratch.length; i++) native.close(this.fdScratch[i]!);
      if (n === -EAGAIN) return;
      if (n < 0) {
        this.fail(ClientErrno.ECONNRESET, `recvmsg failed (errno ${-n})`);
        return;
      }
      if (n === 0) {
        this.fail(ClientErrno.EPIPE, 'the daemon closed the connection');
        return;
      }
      this.bytesIn += n;
      this.rlen += n;
      this.parse();
    }
  }

  private parse(): void {
    let off = 0;
    while (this.rlen - off >= HEADER_SIZE && this.closedReason === null) {
      const size = this.rview.getUint32(off + 8, true);
      if (size > MAX_PAYLOAD_SIZE) {
        this.fail(Errno.EPROTO, `reply announces ${size} payload bytes (limit ${MAX_PAYLOAD_SIZE})`);
        return;
      }
      if (this.rlen - off < HEADER_SIZE + size) {
        if (off === 0) this.ensureRoom(HEADER_SIZE + size - this.rlen);
        break;
      }
      this.sink.onFrame(this.rview, off);
      off += HEADER_SIZE + size;
    }
    if (off > 0) {
      this.rbuf.copyWithin(0, off, this.rlen);
      this.rlen -= off;
    }
  }

  private fail(errno: number, reason: string): void {
    if (this.closedReason !== null) return;
    this.teardown(reason);
    this.sink.onClose(errno, reason);
  }

  private teardown(reason: string): void {
    this.closedReason = reason;
    if (this.poll) {
      native.pollStop(this.poll);
      this.poll = null;
    }
    if (this.fd >= 0) {
      native.close(this.fd);
      this.fd = -1;
    }
    this.outq.length = 0;
  }

  /** Closes the socket; the sink's onClose runs with `errno` (EPIPE by default) and `reason`. Idempotent. */
  close(reason = 'closed by the client', errno: number = ClientErrno.EPIPE): void {
    this.fail(errno, reason);
  }
}
