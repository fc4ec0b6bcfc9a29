/** The daemon's host over the native shim and src/memory's mapped implementations. */
import { mapDirtyLog } from '../memory/mapped-dirty-log.js';
import { MappedGuestMemory } from '../memory/mapped-guest-memory.js';
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
  mapGuestMemory: (regions) => new MappedGuestMemory(regions),
  mapDirtyLog: (fd, size, offset) => mapDirtyLog(fd, size, offset),
};
