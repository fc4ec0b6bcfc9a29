/**
 * The listening socket: created on --socket-path (mode 0600, replacing a stale socket file
 * whose listener is gone, refusing a live one) or inherited as --fd N. Accepts on the
 * event loop.
 */
import { chmodSync, fstatSync, lstatSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { POLL_READABLE, type PollHandle } from '../native/binding.js';
import { native } from '../native/index.js';
import { Errno } from '../util/errno.js';

const BACKLOG = 64;
/** Accepts per readiness event on a socket we created (non-blocking). */
const MAX_ACCEPTS_PER_EVENT = 32;

/** Why the daemon could not listen; the message is meant for the operator. */
export class ListenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ListenError';
  }
}

function errorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Makes `path` free for a new socket: nothing there is fine; a socket nobody listens on
 * (connect gets ECONNREFUSED) is unlinked; a live socket or any other kind of file is an error.
 */
export function clearStaleSocket(path: string): 'absent' | 'replaced' {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (e) {
    if (errorCode(e) === 'ENOENT') return 'absent';
    throw new ListenError(`cannot inspect ${path}: ${(e as Error).message}`);
  }
  if (!isSocket) throw new ListenError(`${path} exists and is not a socket: refusing to replace it`);
  let fd: number;
  try {
    fd = native.connectUnix(path);
  } catch (e) {
    const code = errorCode(e);
    if (code === 'ECONNREFUSED') {
      unlinkSync(path);
      return 'replaced';
    }
    if (code === 'ENOENT') return 'absent';
    throw new ListenError(`cannot probe the existing socket ${path}: ${(e as Error).message}`);
  }
  native.close(fd);
  throw new ListenError(`another process is already listening on ${path} (is another vitsd running?)`);
}

export class Listener {
  readonly fd: number;
  /** The socket file we created (unlinked on close); null for an inherited fd. */
  readonly path: string | null;
  private readonly nonBlocking: boolean;
  private poll: PollHandle | null = null;

  private constructor(fd: number, path: string | null, nonBlocking: boolean) {
    this.fd = fd;
    this.path = path;
    this.nonBlocking = nonBlocking;
  }

  /** Creates the socket file (mode 0600). Returns the listener and whether a stale file was replaced. */
  static onPath(path: string): { listener: Listener; replacedStale: boolean } {
    const replacedStale = clearStaleSocket(path) === 'replaced';
    // Listen on a temporary name in the same directory, then rename it into place: the socket
    // file appears only once it accepts connections, so a VMM (or test) that waits for the
    // file never gets ECONNREFUSED. sun_path holds 107 bytes: fall back to the path itself.
    const tmp = `${path}.${process.pid}.tmp`;
    const bindPath = Buffer.byteLength(tmp) <= 107 ? tmp : path;
    if (bindPath !== path) rmSync(bindPath, { force: true });
    // The umask covers the window between bind() and chmod(): the file is never wider than 0600.
    const oldMask = process.umask(0o177);
    let fd: number;
    try {
      fd = native.listenUnix(bindPath, BACKLOG, 0o600);
    } catch (e) {
      throw new ListenError(`cannot listen on ${path}: ${(e as Error).message}`);
    } finally {
      process.umask(oldMask);
    }
    try {
      chmodSync(bindPath, 0o600);
      if (bindPath !== path) renameSync(bindPath, path);
    } catch (e) {
      native.close(fd);
      rmSync(bindPath, { force: true });
      throw new ListenError(`cannot create ${path}: ${(e as Error).message}`);
    }
    return { listener: new Listener(fd, path, true), replacedStale };
  }

  /** Uses an inherited listening socket (socket activation, a VMM that made it). */
  static onFd(fd: number): Listener {
    let isSocket: boolean;
    try {
      isSocket = fstatSync(fd).isSocket();
    } catch (e) {
      throw new ListenError(`--fd ${fd} is not an open file descriptor: ${(e as Error).message}`);
    }
    if (!isSocket) throw new ListenError(`--fd ${fd} is not a socket`);
    // The inherited socket may be blocking: accept only when poll says a connection waits.
    return new Listener(fd, null, false);
  }

  /** Accepts connections on the event loop; onConnection gets each new (non-blocking) fd. */
  start(onConnection: (fd: number) => void, onError: (errno: number) => void): void {
    this.poll = native.pollStart(this.fd, POLL_READABLE, (status) => {
      if (status < 0) {
        onError(-status);
        return;
      }
      const max = this.nonBlocking ? MAX_ACCEPTS_PER_EVENT : 1;
      for (let i = 0; i < max; i++) {
        const fd = native.accept(this.fd);
        if (fd >= 0) {
          onConnection(fd);
          continue;
        }
        if (fd !== -Errno.EAGAIN) onError(-fd);
        return;
      }
    });
  }

  /** Stops accepting, closes the socket and removes the socket file we created. */
  close(): void {
    if (this.poll !== null) native.pollStop(this.poll);
    this.poll = null;
    try {
      native.close(this.fd);
    } catch {
      // already closed
    }
    if (this.path !== null) {
      try {
        unlinkSync(this.path);
      } catch {
        // removed by someone else: nothing to do
      }
    }
  }
}
