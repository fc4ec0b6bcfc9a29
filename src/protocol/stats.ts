/** GET_STATS (16): the reply fields are a UTF-8 JSON object filling the rest of the payload. */
import type { PayloadCodec } from './codec.js';

/** The JSON object of GET_STATS (protocol.md "GET_STATS"; more keys may be present). */
export interface StatsReply {
  requests: Record<string, number>;
  errors: Record<string, number>;
  msi: { delivered: number; dropped: number; dropped_by_reason: Record<string, number> };
  commands: Record<string, number>;
  command_errors: Record<string, number>;
  saves: { count: number; last_ms: number };
  restores: { count: number; last_ms: number };
  [key: string]: unknown;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: false });

/** Codec of a JSON object as UTF-8 text (cold path). */
export const StatsReplyCodec: PayloadCodec<StatsReply> = {
  size: (v) => utf8Encoder.encode(JSON.stringify(v)).length,
  encode(view, o, v) {
    const bytes = utf8Encoder.encode(JSON.stringify(v));
    new Uint8Array(view.buffer, view.byteOffset + o, bytes.length).set(bytes);
  },
  decode(view, o, length) {
    const text = utf8Decoder.decode(new Uint8Array(view.buffer, view.byteOffset + o, length));
    return JSON.parse(text) as StatsReply;
  },
};
