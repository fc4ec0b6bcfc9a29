/** SUSPEND, RESUME and GET_STATS. */
import { buildStats } from '../stats.js';
import type { RequestContext } from '../context.js';

const utf8 = new TextEncoder();

export function handleSuspend(ctx: RequestContext): number {
  ctx.state.vm.suspend();
  ctx.state.log.info({ conn: ctx.session.id }, 'VM suspended');
  return 0;
}

export function handleResume(ctx: RequestContext): number {
  const was = ctx.state.vm.suspended;
  ctx.state.vm.resume();
  if (was) ctx.state.log.info({ conn: ctx.session.id }, 'VM resumed');
  return 0;
}

export function handleGetStats(ctx: RequestContext): number {
  const { state } = ctx;
  const stats = buildStats({
    counters: state.counters,
    vm: state.vm.stats,
    connectionsOpen: state.connectionsOpen,
    ownerConnected: state.owner !== null,
    suspended: state.vm.suspended,
    nrVcpus: state.vm.nrVcpus,
    notifyFds: state.notifyFdCount,
    dirtyLog: state.dirtyLog !== null,
    memoryRegions: state.vm.memory.regions.length,
  });
  ctx.variableFields = utf8.encode(JSON.stringify(stats));
  return 0;
}
