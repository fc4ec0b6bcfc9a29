/**
 * Whole messages (header + payload) from payload codecs: what a client sends and what the
 * daemon answers. Cold paths allocate; see msi.ts for the allocation-free MSI forms.
 */
import { HEADER_SIZE, PROTOCOL_VERSION, REPLY_FLAGS, REPLY_STATUS_SIZE } from './constants.js';
import type { PayloadCodec } from './codec.js';
import { decodeHeader, writeHeader, type MessageHeader } from './header.js';
import type { RequestName } from './constants.js';
import { REQUESTS, type RequestSpec, type RequestTypes } from './requests.js';

/** Encodes a request message. flags defaults to the protocol version alone. */
export function encodeRequest<T>(code: number, seq: number, codec: PayloadCodec<T>, value: T, flags: number = PROTOCOL_VERSION): Uint8Array {
  const size = codec.size(value);
  const bytes = new Uint8Array(HEADER_SIZE + size);
  const view = new DataView(bytes.buffer);
  writeHeader(view, 0, code, flags, size, seq);
  codec.encode(view, HEADER_SIZE, value);
  return bytes;
}

/** Writes a reply's header and status word; the fields follow at offset + 24. No allocation. */
export function writeReplyHead(view: DataView, offset: number, code: number, seq: number, fieldsSize: number, status: number): void {
  writeHeader(view, offset, code, REPLY_FLAGS, REPLY_STATUS_SIZE + fieldsSize, seq);
  view.setInt32(offset + HEADER_SIZE, status | 0, true);
  view.setUint32(offset + HEADER_SIZE + 4, 0, true);
}

/**
 * Encodes a reply message. With fields === null the reply carries `zeroFields` zero bytes
 * of fields (protocol.md: fields are present, zero-filled, even on failure).
 */
export function encodeReply<T>(code: number, seq: number, status: number, codec: PayloadCodec<T>, fields: T | null, zeroFields = 0): Uint8Array {
  const fieldsSize = fields === null ? zeroFields : codec.size(fields);
  const bytes = new Uint8Array(HEADER_SIZE + REPLY_STATUS_SIZE + fieldsSize);
  const view = new DataView(bytes.buffer);
  writeReplyHead(view, 0, code, seq, fieldsSize, status);
  if (fields !== null) codec.encode(view, HEADER_SIZE + REPLY_STATUS_SIZE, fields);
  return bytes;
}

export interface DecodedReply<T> {
  header: MessageHeader;
  status: number;
  /** null when the payload holds only the status (framing errors, unknown codes). */
  fields: T | null;
}

/**
 * Decodes a complete reply message at offset (header.size bytes of payload must be present).
 * Fields are decoded when the payload holds more than the status.
 */
export function decodeReply<T>(view: DataView, offset: number, codec: PayloadCodec<T>): DecodedReply<T> {
  const header = decodeHeader(view, offset);
  const status = header.size >= 4 ? view.getInt32(offset + HEADER_SIZE, true) : 0;
  const fieldsSize = header.size - REPLY_STATUS_SIZE;
  const fields = fieldsSize > 0 ? codec.decode(view, offset + HEADER_SIZE + REPLY_STATUS_SIZE, fieldsSize) : null;
  return { header, status, fields };
}

/** encodeRequest through the request table: `encodeRequestFor('HELLO', 1, { version: 1, features: 15n })`. */
export function encodeRequestFor<N extends RequestName>(name: N, seq: number, value: RequestTypes[N]['request'], flags: number = PROTOCOL_VERSION): Uint8Array {
  const spec: RequestSpec<N> = REQUESTS[name];
  return encodeRequest(spec.code, seq, spec.requestCodec, value, flags);
}

/** decodeReply through the request table. */
export function decodeReplyFor<N extends RequestName>(name: N, view: DataView, offset: number): DecodedReply<RequestTypes[N]['reply']> {
  const spec: RequestSpec<N> = REQUESTS[name];
  return decodeReply(view, offset, spec.replyCodec);
}
