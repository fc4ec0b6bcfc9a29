/**
 * SET_MEM_TABLE and SET_LOG_BASE: the daemon maps the VMM's memory file(s) and dirty log.
 * Region rules (alignment, overlap, file size) are src/memory's; the -EBUSY rule of a
 * replacement table is VmDevices.setMemory's.
 */
import { MEM_REGION_SIZE, MEM_TABLE_HEAD_SIZE } from '../../protocol/constants.js';
import { SetLogBaseRequestCodec, decodeMemRegion } from '../../protocol/memory.js';
import { invalid, takeFd, type RequestContext } from '../context.js';
import type { RegionMapping } from '../host.js';

/** The wire's region table, region i with fd i. */
function regionsOf(ctx: RequestContext, fds: readonly number[]): RegionMapping[] {
  const count = ctx.view.getUint32(ctx.payload, true);
  const regions: RegionMapping[] = [];
  for (let i = 0; i < count; i++) {
    const d = decodeMemRegion(ctx.view, ctx.payload + MEM_TABLE_HEAD_SIZE + i * MEM_REGION_SIZE);
    regions.push({ gpa: d.guestPhysAddr, size: d.memorySize, mmapOffset: d.mmapOffset, fd: fds[i]! });
  }
  return regions;
}

export function handleSetMemTable(ctx: RequestContext): number {
  const { state } = ctx;
  // The fds are the handler's from here on; mapped or not, they are closed at the end
  // (a mapping keeps its file alive by itself).
  const fds = ctx.fds.map((_, i) => takeFd(ctx, i));
  try {
    const regions = regionsOf(ctx, fds);
    const memory = state.host.mapGuestMemory(regions);
    try {
      // The current dirty log must cover the new table too (else EINVAL, nothing changes).
      if (state.dirtyLog !== null) memory.setDirtyLog(state.dirtyLog.log);
      state.vm.setMemory(memory);
    } catch (e) {
      memory.close();
      throw e;
    }
    const previous = state.memory;
    state.memory = memory;
    if (previous !== null && previous !== memory) previous.close();
    state.log.info(
      { conn: ctx.session.id, regions: memory.regions.map((r) => ({ gpa: `0x${r.gpa.toString(16)}`, size: r.size })) },
      'guest memory table set',
    );
  } finally {
    for (const fd of fds) state.host.closeFd(fd);
  }
  return 0;
}

export function handleSetLogBase(ctx: RequestContext): number {
  const { state } = ctx;
  const fd = takeFd(ctx, 0);
  try {
    const req = SetLogBaseRequestCodec.decode(ctx.view, ctx.payload, ctx.size);
    if (req.logSize > BigInt(Number.MAX_SAFE_INTEGER) || req.mmapOffset > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw invalid(`dirty log size 0x${req.logSize.toString(16)} / offset 0x${req.mmapOffset.toString(16)} out of range`);
    }
    const size = Number(req.logSize);
    const offset = Number(req.mmapOffset);
    const log = state.host.mapDirtyLog(fd, size, offset);
    try {
      // EINVAL when it does not cover every region.
      state.vm.memory.setDirtyLog(log.log);
    } catch (e) {
      log.close();
      throw e;
    }
    const previous = state.dirtyLog;
    state.dirtyLog = log;
    if (previous !== null) previous.close();
    state.log.info({ conn: ctx.session.id, size, offset }, 'dirty log attached');
  } finally {
    state.host.closeFd(fd);
  }
  return 0;
}
