/** HELLO (code 1): version and feature negotiation. */
import { fixedCodec, getU32, getU64, setU32, setU64, type PayloadCodec } from './codec.js';

/** Request: u32 version, u32 reserved, u64 features wanted. */
export interface HelloRequest {
  version: number;
  features: bigint;
}
export const HELLO_REQUEST_SIZE = 16;
export const HelloRequestCodec: PayloadCodec<HelloRequest> = fixedCodec<HelloRequest>(
  HELLO_REQUEST_SIZE,
  (view, o, v) => {
    setU32(view, o, v.version);
    setU32(view, o + 4, 0);
    setU64(view, o + 8, v.features);
  },
  (view, o) => ({ version: getU32(view, o), features: getU64(view, o + 8) }),
);

/** Reply fields: u32 version, u32 resumed, u64 features granted. */
export interface HelloReply {
  version: number;
  resumed: number;
  features: bigint;
}
export const HELLO_REPLY_SIZE = 16;
export const HelloReplyCodec: PayloadCodec<HelloReply> = fixedCodec<HelloReply>(
  HELLO_REPLY_SIZE,
  (view, o, v) => {
    setU32(view, o, v.version);
    setU32(view, o + 4, v.resumed);
    setU64(view, o + 8, v.features);
  },
  (view, o) => ({ version: getU32(view, o), resumed: getU32(view, o + 4), features: getU64(view, o + 8) }),
);
