/**
 * The VMM's dirty-log bitmap (SET_LOG_BASE: an fd, a size and an mmap offset) mapped shared,
 * as the Uint8Array that GuestMemory.setDirtyLog() takes.
 */
import { fstatSync } from 'node:fs';
import { PROT_READ, PROT_WRITE } from '../native/binding.js';
import { toErrnoError } from '../native/errors.js';
import { native } from '../native/index.js';
import { Errno, ErrnoError } from '../util/errno.js';

/** Largest log one mapping can hold (Node's external-buffer cap); covers 128 TiB of guest memory. */
export const MAX_DIRTY_LOG_BYTES = 2 ** 32 - 2 * 4096;

export interface MappedDirtyLog {
  /** The bitmap: bit n % 8 of byte n / 8 is guest page n. */
  readonly log: Uint8Array;
  /** Unmaps it (detach guest memory from it first: a write would then fail). Idempotent. */
  close(): void;
}

export function mapDirtyLog(fd: number, size: number, mmapOffset: number): MappedDirtyLog {
  if (!Number.isSafeInteger(size) || size <= 0 || size > MAX_DIRTY_LOG_BYTES) {
    throw new ErrnoError(Errno.EINVAL, `dirty log size ${size} must be in [1, ${MAX_DIRTY_LOG_BYTES}]`);
  }
  if (!Number.isSafeInteger(mmapOffset) || mmapOffset < 0 || mmapOffset > Number.MAX_SAFE_INTEGER - size) {
    throw new ErrnoError(Errno.EINVAL, `dirty log mmap_offset ${mmapOffset} is out of range`);
  }
  let st;
  try {
    st = fstatSync(fd);
  } catch (e) {
    throw toErrnoError(e, `dirty log fd ${fd}`);
  }
  // A mapping past the end of the file would SIGBUS on the first write.
  if (st.isFile() && mmapOffset + size > st.size) {
    throw new ErrnoError(Errno.EINVAL, `dirty log [${mmapOffset}, +${size}) is beyond the end of its file (${st.size} bytes)`);
  }
  const page = native.pageSize;
  const aligned = Math.floor(mmapOffset / page) * page;
  const delta = mmapOffset - aligned;
  const length = Math.ceil((delta + size) / page) * page;
  let ab: ArrayBuffer;
  try {
    ab = native.mmap(fd, length, aligned, PROT_READ | PROT_WRITE);
  } catch (e) {
    throw toErrnoError(e, 'dirty log mmap');
  }
  return {
    log: new Uint8Array(ab, delta, size),
    close: () => native.munmap(ab),
  };
}
