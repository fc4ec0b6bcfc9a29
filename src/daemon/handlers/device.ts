/** CREATE_DEVICE, SET/GET/HAS_DEVICE_ATTR and MMIO: one for one onto VmDevices (KVM's ioctls). */
import { CREATE_DEVICE_TEST } from '../../protocol/constants.js';
import {
  AttrValueReplyCodec,
  CreateDeviceReplyCodec,
  CreateDeviceRequestCodec,
  DeviceAttrRequestCodec,
  MmioReplyCodec,
  MmioRequestCodec,
} from '../../protocol/device.js';
import { invalid, type RequestContext } from '../context.js';

export function handleCreateDevice(ctx: RequestContext): number {
  const req = CreateDeviceRequestCodec.decode(ctx.view, ctx.payload, ctx.size);
  // As KVM_CREATE_DEVICE: unknown flags are refused.
  if ((req.flags & ~CREATE_DEVICE_TEST) !== 0) throw invalid(`CREATE_DEVICE flags 0x${req.flags.toString(16)}`);
  const test = (req.flags & CREATE_DEVICE_TEST) !== 0;
  const deviceId = ctx.state.vm.createDevice(req.type, test);
  CreateDeviceReplyCodec.encode(ctx.out, ctx.fields, { deviceId });
  if (!test) ctx.state.log.info({ conn: ctx.session.id, type: req.type, deviceId }, 'device created');
  return 0;
}

export function handleSetDeviceAttr(ctx: RequestContext): number {
  const req = DeviceAttrRequestCodec.decode(ctx.view, ctx.payload, ctx.size);
  const value = ctx.state.vm.setDeviceAttr(req.deviceId, req.group, req.attr, req.value);
  AttrValueReplyCodec.encode(ctx.out, ctx.fields, { value });
  return 0;
}

export function handleGetDeviceAttr(ctx: RequestContext): number {
  const req = DeviceAttrRequestCodec.decode(ctx.view, ctx.payload, ctx.size);
  const value = ctx.state.vm.getDeviceAttr(req.deviceId, req.group, req.attr);
  AttrValueReplyCodec.encode(ctx.out, ctx.fields, { value });
  return 0;
}

export function handleHasDeviceAttr(ctx: RequestContext): number {
  const req = DeviceAttrRequestCodec.decode(ctx.view, ctx.payload, ctx.size);
  ctx.state.vm.hasDeviceAttr(req.deviceId, req.group, req.attr);
  return 0;
}

function lengthMask(length: number): bigint {
  return (1n << BigInt(length * 8)) - 1n;
}

export function handleMmio(ctx: RequestContext): number {
  const req = MmioRequestCodec.decode(ctx.view, ctx.payload, ctx.size);
  if (req.length !== 1 && req.length !== 2 && req.length !== 4 && req.length !== 8) throw invalid(`MMIO length ${req.length}`);
  if (req.isWrite > 1) throw invalid(`MMIO is_write ${req.isWrite}`);
  // Above 2^53 no ITS frame or redistributor can live: the exact value does not matter.
  const gpa = req.address > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(req.address);
  if (req.isWrite === 1) {
    ctx.state.vm.mmioWrite(gpa, req.length, req.data & lengthMask(req.length));
    return 0;
  }
  const data = ctx.state.vm.mmioRead(gpa, req.length);
  MmioReplyCodec.encode(ctx.out, ctx.fields, { data: data & lengthMask(req.length) });
  return 0;
}
