/** CREATE_DEVICE (4), SET/GET/HAS_DEVICE_ATTR (5/6/7) and MMIO (8). */
import { fixedCodec, getU32, getU64, setU32, setU64, type PayloadCodec } from './codec.js';

/** CREATE_DEVICE request: u32 type, u32 flags (bit 0 KVM_CREATE_DEVICE_TEST). */
export interface CreateDeviceRequest {
  type: number;
  flags: number;
}
export const CREATE_DEVICE_SIZE = 8;
export const CreateDeviceRequestCodec: PayloadCodec<CreateDeviceRequest> = fixedCodec<CreateDeviceRequest>(
  CREATE_DEVICE_SIZE,
  (view, o, v) => {
    setU32(view, o, v.type);
    setU32(view, o + 4, v.flags);
  },
  (view, o) => ({ type: getU32(view, o), flags: getU32(view, o + 4) }),
);

/** CREATE_DEVICE reply fields: u32 device_id, u32 reserved. */
export interface CreateDeviceReply {
  deviceId: number;
}
export const CREATE_DEVICE_REPLY_SIZE = 8;
export const CreateDeviceReplyCodec: PayloadCodec<CreateDeviceReply> = fixedCodec<CreateDeviceReply>(
  CREATE_DEVICE_REPLY_SIZE,
  (view, o, v) => {
    setU32(view, o, v.deviceId);
    setU32(view, o + 4, 0);
  },
  (view, o) => ({ deviceId: getU32(view, o) }),
);

/**
 * SET/GET/HAS_DEVICE_ATTR request: u32 device_id, u32 group, u64 attr, u64 value
 * (reserved, sent as 0, for GET and HAS).
 */
export interface DeviceAttrRequest {
  deviceId: number;
  group: number;
  attr: bigint;
  value: bigint;
}
export const DEVICE_ATTR_SIZE = 24;
export const DeviceAttrRequestCodec: PayloadCodec<DeviceAttrRequest> = fixedCodec<DeviceAttrRequest>(
  DEVICE_ATTR_SIZE,
  (view, o, v) => {
    setU32(view, o, v.deviceId);
    setU32(view, o + 4, v.group);
    setU64(view, o + 8, v.attr);
    setU64(view, o + 16, v.value);
  },
  (view, o) => ({ deviceId: getU32(view, o), group: getU32(view, o + 4), attr: getU64(view, o + 8), value: getU64(view, o + 16) }),
);

/** SET/GET_DEVICE_ATTR reply fields: u64 value. */
export interface AttrValueReply {
  value: bigint;
}
export const ATTR_VALUE_REPLY_SIZE = 8;
export const AttrValueReplyCodec: PayloadCodec<AttrValueReply> = fixedCodec<AttrValueReply>(
  ATTR_VALUE_REPLY_SIZE,
  (view, o, v) => setU64(view, o, v.value),
  (view, o) => ({ value: getU64(view, o) }),
);

/** MMIO request: u64 address, u32 length (1, 2, 4, 8), u32 is_write (0, 1), u64 data. */
export interface MmioRequest {
  address: bigint;
  length: number;
  isWrite: number;
  data: bigint;
}
export const MMIO_SIZE = 24;
export const MmioRequestCodec: PayloadCodec<MmioRequest> = fixedCodec<MmioRequest>(
  MMIO_SIZE,
  (view, o, v) => {
    setU64(view, o, v.address);
    setU32(view, o + 8, v.length);
    setU32(view, o + 12, v.isWrite);
    setU64(view, o + 16, v.data);
  },
  (view, o) => ({ address: getU64(view, o), length: getU32(view, o + 8), isWrite: getU32(view, o + 12), data: getU64(view, o + 16) }),
);

/** MMIO reply fields: u64 data (reads; 0 for writes). */
export interface MmioReply {
  data: bigint;
}
export const MMIO_REPLY_SIZE = 8;
export const MmioReplyCodec: PayloadCodec<MmioReply> = fixedCodec<MmioReply>(
  MMIO_REPLY_SIZE,
  (view, o, v) => setU64(view, o, v.data),
  (view, o) => ({ data: getU64(view, o) }),
);
