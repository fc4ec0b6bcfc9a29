/** A DaemonHost over ArrayBuffers that records fd operations (unit tests of dispatch). */
import type { DaemonHost, DirtyLogMapping, RegionMapping } from '../../../src/daemon/host.js';
import { ArrayBufferGuestMemory } from '../../../src/memory/array-buffer-guest-memory.js';
import type { GuestMemory } from '../../../src/memory/guest-memory.js';
import { validateRegionTable } from '../../../src/memory/region-table.js';
import { Errno, ErrnoError } from '../../../src/util/errno.js';

export class FakeHost implements DaemonHost {
  readonly closed: number[] = [];
  readonly writes: { fd: number; value: number }[] = [];
  /** writeU64 result per fd (default 8). */
  readonly writeResult = new Map<number, number>();
  readonly mapped: RegionMapping[][] = [];
  logsReleased = 0;

  closeFd(fd: number): void {
    this.closed.push(fd);
  }

  writeU64(fd: number, value: number): number {
    this.writes.push({ fd, value });
    return this.writeResult.get(fd) ?? 8;
  }

  mapGuestMemory(regions: readonly RegionMapping[]): GuestMemory {
    this.mapped.push([...regions]);
    const table = validateRegionTable(regions);
    return new ArrayBufferGuestMemory(table.map((r) => ({ gpa: r.gpa, size: r.size })));
  }

  mapDirtyLog(fd: number, size: number, offset: number): DirtyLogMapping {
    if (size <= 0) throw new ErrnoError(Errno.EINVAL, 'empty log');
    const log = new Uint8Array(size);
    return { log, close: () => void this.logsReleased++ };
  }
}
