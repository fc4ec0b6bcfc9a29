/**
 * Typed view of the N-API addon in native-shim/ (what TypeScript cannot do by itself).
 *
 * Error convention: functions that do system calls on hot paths return a negative errno
 * instead of throwing (recvmsg, sendmsg, accept, writeU64, readU64); setup functions
 * (mmap, socket creation, memfd) throw an Error with a `code` such as 'ENOENT' and an
 * `errno` number.
 */
export interface NativeBinding {
  /** Page size of the host. */
  readonly pageSize: number;

  /**
   * mmap(NULL, length, prot, MAP_SHARED, fd, offset) as an ArrayBuffer that aliases the
   * pages (no copy). length must be > 0 and <= 2^32 - 4096 (Node's external-buffer cap).
   * The mapping is released by munmap() or, if never unmapped, when the buffer is
   * garbage-collected.
   */
  mmap(fd: number, length: number, offset: number, prot: number): ArrayBuffer;
  /**
   * Detaches the ArrayBuffer (every view of it becomes length 0, so a stale access reads
   * undefined / writes nothing instead of faulting) and then munmaps it. Idempotent.
   */
  munmap(buffer: ArrayBuffer): void;
  /** mprotect over [offset, offset+length) of a mapping (page aligned). */
  mprotect(buffer: ArrayBuffer, prot: number, offset?: number, length?: number): void;
  /** msync(MS_SYNC or given flags) over the whole mapping. */
  msync(buffer: ArrayBuffer, flags?: number): void;

  memfdCreate(name: string, flags: number): number;
  /** eventfd(initval, flags); flags EFD_NONBLOCK|EFD_CLOEXEC by default. */
  eventfd(initval: number, flags?: number): number;
  /** write() of an 8-byte little-endian value (eventfd signal). Returns 8 or -errno. */
  writeU64(fd: number, value: number): number;
  /** read() of an 8-byte value (eventfd counter); -errno on error (e.g. -EAGAIN). */
  readU64(fd: number): number;
  close(fd: number): void;
  /** fcntl(fd, F_GETFD) >= 0: whether the descriptor is open. */
  isOpen(fd: number): boolean;

  /**
   * fcntl(F_SETFL) O_NONBLOCK on or off (e.g. notify fds passed by the VMM, so that a full
   * pipe cannot block the daemon). Throws like other setup functions ('EBADF', ...).
   */
  setNonBlocking(fd: number, on: boolean): void;

  /**
   * socket(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC) + bind, then chmod(path, mode)
   * before listen (on Linux fchmod of the socket fd does not reach the socket file; until
   * listen() every connect() is refused, so no peer gets in under the umask's mode); on a
   * chmod or listen failure the path is unlinked. Throws on failure.
   */
  listenUnix(path: string, backlog: number, mode: number): number;
  /** accept4(fd, SOCK_NONBLOCK|SOCK_CLOEXEC): new fd, or -errno (-EAGAIN when none pending). */
  accept(fd: number): number;
  /** Blocking connect to a UNIX stream socket, then made non-blocking; throws on failure. */
  connectUnix(path: string): number;
  /** socketpair(AF_UNIX, SOCK_STREAM) non-blocking, close-on-exec. */
  socketpair(): [number, number];
  /**
   * recvmsg(fd, MSG_DONTWAIT|MSG_CMSG_CLOEXEC) into buf[offset, offset+length).
   * Returns bytes received (0 = peer closed) or -errno. Received SCM_RIGHTS fds are stored
   * in fds[1..n] and n in fds[0] (fds must have room for 1 + 16 entries; excess fds
   * beyond that are closed by the shim). If the control data was truncated (MSG_CTRUNC),
   * fds[0] is set to -1 after closing what arrived.
   */
  recvmsg(fd: number, buf: Uint8Array, offset: number, length: number, fds: Int32Array): number;
  /** sendmsg(fd, MSG_DONTWAIT|MSG_NOSIGNAL) of buf[offset, offset+length) with optional SCM_RIGHTS fds. Returns bytes sent or -errno. */
  sendmsg(fd: number, buf: Uint8Array, offset: number, length: number, fds: readonly number[] | null): number;
  /**
   * Watches fd on the libuv event loop (uv_poll_t). events: 1 = readable, 2 = writable
   * (bitmask). callback(status, events) runs on the main thread for each readiness; status
   * < 0 is a libuv error. Returns a handle for pollUpdate/pollStop.
   */
  pollStart(fd: number, events: number, callback: (status: number, events: number) => void): PollHandle;
  pollUpdate(handle: PollHandle, events: number): void;
  /** Stops and closes the watcher (the fd itself is not closed). Idempotent. */
  pollStop(handle: PollHandle): void;
  /** Whether the handle keeps the event loop alive (uv_ref / uv_unref). */
  pollRef(handle: PollHandle, ref: boolean): void;
}

/** Opaque handle of a libuv poll watcher. */
export interface PollHandle {
  readonly __pollHandle: unique symbol;
}

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MS_ASYNC = 1;
export const MS_SYNC = 4;
export const MFD_CLOEXEC = 1;
export const MFD_ALLOW_SEALING = 2;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;
/** Most fds one message may carry (vhost-user uses 8; SET_MEM_TABLE needs up to 8). */
export const MAX_FDS_PER_MESSAGE = 16;
