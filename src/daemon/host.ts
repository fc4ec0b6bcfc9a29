/**
 * What the daemon needs from the operating system, as an interface so that dispatch can be
 * unit-tested without mappings (test/daemon uses a fake; native-host.ts is the real one).
 */
import type { GuestMemory } from '../memory/guest-memory.js';

/** One SET_MEM_TABLE region as it came off the wire, with its fd (shape of MappedRegionInput). */
export interface RegionMapping {
  readonly gpa: bigint;
  readonly size: bigint;
  readonly mmapOffset: bigint;
  readonly fd: number;
}

/** A mapped dirty-page log (SET_LOG_BASE). */
export interface DirtyLogMapping {
  /** The bitmap: bit n % 8 of byte n / 8 is guest page n. */
  readonly log: Uint8Array;
  /** Unmaps it. Idempotent. */
  close(): void;
}

export interface DaemonHost {
  closeFd(fd: number): void;
  /** write() of an 8-byte little-endian value: 8 or -errno. */
  writeU64(fd: number, value: number): number;
  /**
   * Prepares a notify fd received from the VMM so that signalling it can never block the
   * daemon (a full pipe or socket). Optional: hosts without it leave the fd as it is.
   */
  prepareNotifyFd?(fd: number): void;
  /**
   * Validates the region table (protocol.md "Memory": EINVAL for misaligned, empty,
   * overlapping regions or a file that does not back them), maps every region MAP_SHARED
   * and returns guest memory over them. Does not close the fds. Throws ErrnoError.
   */
  mapGuestMemory(regions: readonly RegionMapping[]): GuestMemory;
  /** Maps `size` bytes of fd at offset read/write, MAP_SHARED. Does not close fd. Throws ErrnoError. */
  mapDirtyLog(fd: number, size: number, offset: number): DirtyLogMapping;
}
