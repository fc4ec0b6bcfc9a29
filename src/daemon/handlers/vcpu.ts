/** SET_VCPUS, SET_VCPU_NOTIFY_FD and ACK_LPI. */
import { ACK_LPI_PEEK, MAX_VCPUS } from '../../protocol/constants.js';
import { AckLpiReplyCodec, AckLpiRequestCodec, SetVcpuNotifyFdRequestCodec, SetVcpusRequestCodec } from '../../protocol/vcpu.js';
import { invalid, takeFd, type RequestContext } from '../context.js';

export function handleSetVcpus(ctx: RequestContext): number {
  const { count } = SetVcpusRequestCodec.decode(ctx.view, ctx.payload, ctx.size);
  if (count < 1 || count > MAX_VCPUS) throw invalid(`SET_VCPUS count ${count} not in 1..${MAX_VCPUS}`);
  ctx.state.vm.setVcpus(count);
  ctx.state.log.info({ conn: ctx.session.id, count }, 'vCPUs declared');
  return 0;
}

export function handleSetVcpuNotifyFd(ctx: RequestContext): number {
  const { vcpu } = SetVcpuNotifyFdRequestCodec.decode(ctx.view, ctx.payload, ctx.size);
  if (vcpu >= ctx.state.vm.nrVcpus || vcpu >= MAX_VCPUS) throw invalid(`vCPU ${vcpu} out of range (${ctx.state.vm.nrVcpus} vCPUs)`);
  ctx.state.setNotifyFd(vcpu, takeFd(ctx, 0));
  ctx.state.log.debug({ conn: ctx.session.id, vcpu }, 'notify fd set');
  return 0;
}

export function handleAckLpi(ctx: RequestContext): number {
  const req = AckLpiRequestCodec.decode(ctx.view, ctx.payload, ctx.size);
  if ((req.flags & ~ACK_LPI_PEEK) !== 0) throw invalid(`ACK_LPI flags 0x${req.flags.toString(16)}`);
  if (req.vcpu >= ctx.state.vm.nrVcpus) throw invalid(`vCPU ${req.vcpu} out of range (${ctx.state.vm.nrVcpus} vCPUs)`);
  const r = ctx.state.vm.ackLpi(req.vcpu, (req.flags & ACK_LPI_PEEK) !== 0);
  AckLpiReplyCodec.encode(ctx.out, ctx.fields, { intid: r.intid, priority: r.priority });
  return 0;
}
