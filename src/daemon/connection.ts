/**
 * One accepted UNIX-socket connection: non-blocking recvmsg straight into the session's
 * receive buffer when the event loop says it is readable, replies sent after each read,
 * and writable polling only while a partial send left bytes queued. While the queue is
 * over the session's high-water mark no more requests are read (back-pressure).
 */
import { MAX_FDS_PER_MESSAGE, POLL_READABLE, POLL_WRITABLE, type PollHandle } from '../native/binding.js';
import { native } from '../native/index.js';
import { Errno } from '../util/errno.js';
import { Session } from './session.js';
import type { DaemonState } from './state.js';

/** Linux ECONNRESET: a peer that died with our replies unread. */
const ECONNRESET = 104;
/** Smallest read offered to recvmsg. */
const MIN_READ = 64 * 1024;
/** Reads per readiness event before yielding to other connections. */
const MAX_READS_PER_EVENT = 16;

export interface ConnectionRegistry {
  connectionClosed(conn: Connection): void;
}

export class Connection {
  readonly fd: number;
  readonly session: Session;
  private readonly state: DaemonState;
  private readonly registry: ConnectionRegistry;
  private readonly fdSlots = new Int32Array(1 + MAX_FDS_PER_MESSAGE);
  private poll: PollHandle | null = null;
  private watching = 0;
  private closed = false;

  constructor(state: DaemonState, registry: ConnectionRegistry, fd: number, id: number) {
    this.state = state;
    this.registry = registry;
    this.fd = fd;
    this.session = new Session(state, id);
  }

  get id(): number {
    return this.session.id;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  start(): void {
    this.watching = POLL_READABLE;
    this.poll = native.pollStart(this.fd, POLL_READABLE, this.onPoll);
  }

  private readonly onPoll = (status: number, events: number): void => {
    if (this.closed) return;
    try {
      if (status < 0) {
        // libuv reports POLLERR (e.g. a peer that died with replies unread: ECONNRESET) as a
        // status: take what was received before closing.
        this.readAvailable();
        if (!this.closed) this.closePeer(`poll error ${status}`);
        return;
      }
      if ((events & POLL_WRITABLE) !== 0) this.flush();
      // Replies sent may have lifted back-pressure: requests already buffered go first.
      if (!this.closed) this.processBuffered();
      if (!this.closed && (events & POLL_READABLE) !== 0) this.readAvailable();
      if (!this.closed) this.flush();
      if (!this.closed) this.settle();
    } catch (e) {
      this.state.counters.internalErrors++;
      this.state.log.error({ conn: this.id, err: e }, 'internal error on a connection: closing it');
      this.close('internal error');
    }
  };

  private processBuffered(): void {
    const session = this.session;
    if (session.acceptingInput && session.parser.buffered > 0) session.processBuffered();
  }

  private readAvailable(): void {
    const session = this.session;
    const parser = session.parser;
    const slots = this.fdSlots;
    for (let i = 0; i < MAX_READS_PER_EVENT && session.acceptingInput; i++) {
      parser.reserve(MIN_READ);
      const room = parser.free;
      if (room === 0) return; // a full buffer of unhandled requests: back-pressure
      const n = native.recvmsg(this.fd, parser.buf, parser.writeOffset, room, slots);
      if (n > 0) {
        const nfds = slots[0]!;
        let fds: number[] | null = null;
        if (nfds > 0) {
          fds = [];
          for (let k = 1; k <= nfds; k++) fds.push(slots[k]!);
        }
        session.received(n, fds, nfds < 0);
        // A short read almost always means the socket is drained; the poll is level-triggered anyway.
        if (n < room) return;
      } else if (n === 0) {
        this.flush();
        this.closePeer('peer closed');
        return;
      } else if (n === -Errno.EAGAIN) {
        return;
      } else {
        this.closePeer(n === -ECONNRESET ? 'peer closed (connection reset)' : `recvmsg failed: errno ${-n}`);
        return;
      }
    }
  }

  /** The peer went away: say whether it left a message half-sent. */
  private closePeer(reason: string): void {
    const pending = this.session.parser.buffered;
    this.close(pending > 0 && !this.session.closing ? `${reason} in the middle of a message (${pending} bytes pending)` : reason);
  }

  /** Sends queued replies until done or the socket is full. */
  private flush(): void {
    const out = this.session.out;
    while (out.pending > 0) {
      const n = native.sendmsg(this.fd, out.buf, out.start, out.pending, null);
      if (n > 0) {
        this.state.counters.bytesSent += n;
        out.consume(n);
      } else if (n === -Errno.EAGAIN) {
        return;
      } else {
        this.closePeer(`sendmsg failed: errno ${-n}`);
        return;
      }
    }
  }

  /** Closes a finished session, or watches exactly the events needed. */
  private settle(): void {
    const session = this.session;
    if (session.closing && session.out.pending === 0) {
      this.close('closed by the daemon after an error reply');
      return;
    }
    const want = (session.acceptingInput ? POLL_READABLE : 0) | (session.out.pending > 0 ? POLL_WRITABLE : 0);
    if (want !== this.watching && this.poll !== null) {
      native.pollUpdate(this.poll, want);
      this.watching = want;
    }
  }

  /** Sends what can be sent without waiting (shutdown). */
  flushNow(): void {
    if (!this.closed) this.flush();
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.poll !== null) native.pollStop(this.poll);
    this.poll = null;
    this.session.closed();
    try {
      native.close(this.fd);
    } catch {
      // already gone
    }
    this.state.counters.connectionsClosed++;
    this.state.connectionsOpen--;
    this.state.log.info({ conn: this.id, reason }, 'connection closed');
    this.registry.connectionClosed(this);
  }
}
