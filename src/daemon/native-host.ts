/** The daemon's host over the native shim and src/memory's mapped implementations. */
import { mapDirtyLog } from '../memory/mapped-dirty-log.js';
import { MappedGuestMemory } from '../memory/mapped-guest-memory.js';
import { readlinkSync } from 'node:fs';
import { native } from '../native/index.js';
import type { DaemonHost } from './host.js';

export const nativeHost: DaemonHost = {
  closeFd(fd) {
    try {
      native.close(fd);
    } catch {
      // already closed: nothing to release
    }
  },
  writeU64: (fd, value) => native.writeU64(fd, value),
  prepareNotifyFd(fd) {
    // A pipe's or socket's write end is a file description of its own, which the VMM does not
    // read from: make it non-blocking so a VMM that stops reading cannot stall the daemon. An
    // eventfd is NOT: both processes share its one description, and O_NONBLOCK would turn the
    // VMM's blocking reads into EAGAIN. An eventfd write of 1 never blocks in practice (the
    // counter would have to reach 2^64 - 2).
    let kind = '';
    try {
      kind = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return;
    }
    if (kind === 'anon_inode:[eventfd]') return;
    try {
      native.setNonBlocking(fd, true);
    } catch {
      // not a descriptor fcntl accepts: writes will report their own error
    }
  },
  mapGuestMemory: (regions) => new MappedGuestMemory(regions),
  mapDirtyLog: (fd, size, offset) => mapDirtyLog(fd, size, offset),
};
