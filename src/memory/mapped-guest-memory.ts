/**
 * Guest memory mapped from the VMM's shared-memory files (SET_MEM_TABLE): each region maps
 * `size` bytes of its fd from `mmapOffset`, MAP_SHARED and read-write, so the daemon's writes
 * land in the guest's RAM in place. A region larger than one chunk (2 GiB by default) is
 * mapped as several windows of the same file; accesses straddling two windows take the slow
 * path of the base class.
 */
import { closeSync, constants as fsConstants, fstatSync, ftruncateSync, openSync } from 'node:fs';
import { MFD_CLOEXEC, PROT_READ, PROT_WRITE } from '../native/binding.js';
import { toErrnoError } from '../native/errors.js';
import { native } from '../native/index.js';
import { Errno, ErrnoError } from '../util/errno.js';
import { ChunkedGuestMemory, DEFAULT_CHUNK_SIZE, validateChunkSize, type RegionBacking } from './chunked-guest-memory.js';
import type { GuestRegion } from './guest-memory.js';
import { validateRegionTable } from './region-table.js';

/** A region of a mapped guest memory, with where its bytes come from. */
export interface MappedRegion extends GuestRegion {
  readonly fd: number;
  readonly mmapOffset: number;
}

/** A region as the VMM describes it (u64 fields may be bigints straight off the wire). */
export interface MappedRegionInput {
  readonly gpa: number | bigint;
  readonly size: number | bigint;
  readonly fd: number;
  readonly mmapOffset?: number | bigint;
}

export interface MappedGuestMemoryOptions {
  /** Window size per mmap (multiple of 4 KiB, at most 2^32 - 4096); default 2 GiB. */
  readonly chunkSize?: number;
  /** Close the regions' fds in close() (helpers that opened them themselves). Default false. */
  readonly ownFds?: boolean;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * Touching a shared mapping past the end of its file raises SIGBUS, which would kill the
 * daemon: refuse a region that is not backed by the file as it is now. (Only regular files
 * have a meaningful size; memfd, /dev/shm and hugetlbfs files are regular.)
 */
function checkFileCovers(fd: number, index: number, mmapOffset: number, size: number): void {
  let fileSize: number;
  let regular: boolean;
  try {
    const st = fstatSync(fd);
    fileSize = st.size;
    regular = st.isFile();
  } catch (e) {
    throw toErrnoError(e, `region ${index}: fstat of fd ${fd}`);
  }
  if (regular && mmapOffset + size > fileSize) {
    throw new ErrnoError(
      Errno.EINVAL,
      `region ${index}: mmap_offset ${hex(mmapOffset)} + memory_size ${hex(size)} is beyond the end of the file ` +
        `(${hex(fileSize)} bytes)`,
    );
  }
}

export class MappedGuestMemory extends ChunkedGuestMemory {
  /** The region table sorted by gpa, with fds and file offsets. */
  readonly mappedRegions: readonly MappedRegion[];
  private readonly buffers: ArrayBuffer[];
  private readonly ownedFds: number[];

  constructor(regions: readonly MappedRegionInput[], options: MappedGuestMemoryOptions = {}) {
    const chunkSize = validateChunkSize(options.chunkSize ?? DEFAULT_CHUNK_SIZE);
    const table = validateRegionTable(regions);
    const buffers: ArrayBuffer[] = [];
    const mapped: MappedRegion[] = [];
    let backing: RegionBacking[];
    try {
      backing = table.map((r) => {
        const fd = regions[r.index]!.fd;
        if (!Number.isInteger(fd) || fd < 0) throw new ErrnoError(Errno.EBADF, `region ${r.index}: fd ${String(fd)} is invalid`);
        checkFileCovers(fd, r.index, r.mmapOffset, r.size);
        const chunks: DataView[] = [];
        for (let off = 0; off < r.size; off += chunkSize) {
          const len = Math.min(chunkSize, r.size - off);
          let ab: ArrayBuffer;
          try {
            ab = native.mmap(fd, len, r.mmapOffset + off, PROT_READ | PROT_WRITE);
          } catch (e) {
            throw toErrnoError(e, `region ${r.index}: mmap of ${hex(len)} bytes at file offset ${hex(r.mmapOffset + off)}`);
          }
          buffers.push(ab);
          chunks.push(new DataView(ab));
        }
        mapped.push(Object.freeze({ gpa: r.gpa, size: r.size, fd, mmapOffset: r.mmapOffset }));
        return { gpa: r.gpa, size: r.size, chunkSize, chunks };
      });
    } catch (e) {
      for (const ab of buffers) native.munmap(ab);
      throw e;
    }
    super(backing);
    this.mappedRegions = Object.freeze(mapped);
    this.buffers = buffers;
    this.ownedFds = options.ownFds === true ? [...new Set(mapped.map((r) => r.fd))] : [];
  }

  /** msync(MS_SYNC) of every mapping (for file-backed memory that must reach the disk). */
  sync(): void {
    for (const ab of this.buffers) native.msync(ab);
  }

  protected override releaseBacking(): void {
    // munmap detaches each buffer first: a view kept anywhere becomes length 0, not a SIGSEGV.
    for (const ab of this.buffers) native.munmap(ab);
    this.buffers.length = 0;
    for (const fd of this.ownedFds) {
      try {
        native.close(fd);
      } catch {
        // already closed by its owner: nothing left to release
      }
    }
    this.ownedFds.length = 0;
  }
}

/**
 * Guest memory in a fresh memfd (tests, tools, the demo VMM): the regions are laid out in the
 * file one after another in the order given. The memfd is closed by close(); until then
 * `mappedRegions[i].fd` can be sent to another process.
 */
export function createMemfdGuestMemory(
  regions: readonly GuestRegion[],
  options: { readonly name?: string; readonly chunkSize?: number } = {},
): MappedGuestMemory {
  let fileOffset = 0;
  const fd = native.memfdCreate(options.name ?? 'vitsd-guest-ram', MFD_CLOEXEC);
  try {
    const table = regions.map((r) => {
      const entry = { gpa: r.gpa, size: r.size, fd, mmapOffset: fileOffset };
      fileOffset += r.size;
      return entry;
    });
    ftruncateSync(fd, fileOffset);
    return new MappedGuestMemory(table, { chunkSize: options.chunkSize ?? DEFAULT_CHUNK_SIZE, ownFds: true });
  } catch (e) {
    native.close(fd);
    throw e;
  }
}

/**
 * Guest memory in a file (a /dev/shm file or any path). Each region's mmapOffset defaults to
 * the regions laid out one after another. With `create`, a missing file is created (mode
 * 0600) and the file is grown to cover every region. The fd is closed by close().
 */
export function openFileGuestMemory(
  path: string,
  regions: readonly (GuestRegion & { readonly mmapOffset?: number })[],
  options: { readonly create?: boolean; readonly chunkSize?: number } = {},
): MappedGuestMemory {
  const flags = fsConstants.O_RDWR | (options.create === true ? fsConstants.O_CREAT : 0);
  let fd: number;
  try {
    fd = openSync(path, flags, 0o600);
  } catch (e) {
    throw toErrnoError(e, `open ${path}`);
  }
  try {
    let next = 0;
    const table = regions.map((r) => {
      const mmapOffset = r.mmapOffset ?? next;
      next = mmapOffset + r.size;
      return { gpa: r.gpa, size: r.size, fd, mmapOffset };
    });
    if (options.create === true) {
      const needed = Math.max(0, ...table.map((r) => r.mmapOffset + r.size));
      if (fstatSync(fd).size < needed) ftruncateSync(fd, needed);
    }
    return new MappedGuestMemory(table, { chunkSize: options.chunkSize ?? DEFAULT_CHUNK_SIZE, ownFds: true });
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}
