/** SET_VCPUS (11), SET_VCPU_NOTIFY_FD (12) and ACK_LPI (13). */
import { fixedCodec, getU32, setU32, type PayloadCodec } from './codec.js';

/** SET_VCPUS request: u32 count (1..512), u32 reserved. */
export interface SetVcpusRequest {
  count: number;
}
export const SET_VCPUS_SIZE = 8;
export const SetVcpusRequestCodec: PayloadCodec<SetVcpusRequest> = fixedCodec<SetVcpusRequest>(
  SET_VCPUS_SIZE,
  (view, o, v) => {
    setU32(view, o, v.count);
    setU32(view, o + 4, 0);
  },
  (view, o) => ({ count: getU32(view, o) }),
);

/** SET_VCPU_NOTIFY_FD request: u32 vcpu, u32 reserved; the fd travels with it. */
export interface SetVcpuNotifyFdRequest {
  vcpu: number;
}
export const SET_VCPU_NOTIFY_FD_SIZE = 8;
export const SetVcpuNotifyFdRequestCodec: PayloadCodec<SetVcpuNotifyFdRequest> = fixedCodec<SetVcpuNotifyFdRequest>(
  SET_VCPU_NOTIFY_FD_SIZE,
  (view, o, v) => {
    setU32(view, o, v.vcpu);
    setU32(view, o + 4, 0);
  },
  (view, o) => ({ vcpu: getU32(view, o) }),
);

/** ACK_LPI request: u32 vcpu, u32 flags (bit 0 PEEK). */
export interface AckLpiRequest {
  vcpu: number;
  flags: number;
}
export const ACK_LPI_SIZE = 8;
export const AckLpiRequestCodec: PayloadCodec<AckLpiRequest> = fixedCodec<AckLpiRequest>(
  ACK_LPI_SIZE,
  (view, o, v) => {
    setU32(view, o, v.vcpu);
    setU32(view, o + 4, v.flags);
  },
  (view, o) => ({ vcpu: getU32(view, o), flags: getU32(view, o + 4) }),
);

/** ACK_LPI reply fields: u32 intid (1023 = none), u32 priority (0xff when none). */
export interface AckLpiReply {
  intid: number;
  priority: number;
}
export const ACK_LPI_REPLY_SIZE = 8;
export const AckLpiReplyCodec: PayloadCodec<AckLpiReply> = fixedCodec<AckLpiReply>(
  ACK_LPI_REPLY_SIZE,
  (view, o, v) => {
    setU32(view, o, v.intid);
    setU32(view, o + 4, v.priority);
  },
  (view, o) => ({ intid: getU32(view, o), priority: getU32(view, o + 4) }),
);
