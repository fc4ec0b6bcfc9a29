/**
 * The 16-byte message header and the framing rules of protocol.md ("Header").
 */
import {
  FLAG_REPLY,
  FLAG_RESERVED_MASK,
  FLAG_VERSION_MASK,
  HEADER_FLAGS_OFFSET,
  HEADER_REQUEST_OFFSET,
  HEADER_SEQ_OFFSET,
  HEADER_SIZE_OFFSET,
  MAX_PAYLOAD_SIZE,
  PROTOCOL_VERSION,
} from './constants.js';

export interface MessageHeader {
  request: number;
  flags: number;
  size: number;
  seq: number;
}

export function encodeHeader(view: DataView, offset: number, h: MessageHeader): void {
  writeHeader(view, offset, h.request, h.flags, h.size, h.seq);
}

/** Allocation-free form of encodeHeader (hot paths). */
export function writeHeader(view: DataView, offset: number, request: number, flags: number, size: number, seq: number): void {
  view.setUint32(offset + HEADER_REQUEST_OFFSET, request >>> 0, true);
  view.setUint32(offset + HEADER_FLAGS_OFFSET, flags >>> 0, true);
  view.setUint32(offset + HEADER_SIZE_OFFSET, size >>> 0, true);
  view.setUint32(offset + HEADER_SEQ_OFFSET, seq >>> 0, true);
}

export function decodeHeader(view: DataView, offset: number): MessageHeader {
  return {
    request: view.getUint32(offset + HEADER_REQUEST_OFFSET, true),
    flags: view.getUint32(offset + HEADER_FLAGS_OFFSET, true),
    size: view.getUint32(offset + HEADER_SIZE_OFFSET, true),
    seq: view.getUint32(offset + HEADER_SEQ_OFFSET, true),
  };
}

/** Why a request header breaks the framing (the connection is then closed after -EPROTO). */
export const FramingError = {
  NONE: 0,
  BAD_VERSION: 1,
  REPLY_FLAG: 2,
  RESERVED_FLAGS: 3,
  OVERSIZED: 4,
  HELLO_NOT_FIRST: 5,
} as const;
export type FramingErrorCode = (typeof FramingError)[keyof typeof FramingError];

const FRAMING_ERROR_TEXT: Readonly<Record<FramingErrorCode, string>> = {
  0: 'none',
  1: 'protocol version bits are not 1',
  2: 'REPLY flag set on a request',
  3: 'reserved flag bits 4-31 are not zero',
  4: `payload size over ${MAX_PAYLOAD_SIZE} bytes`,
  5: 'first request is not HELLO',
};

export function framingErrorText(code: FramingErrorCode): string {
  return FRAMING_ERROR_TEXT[code];
}

/**
 * Checks the header rules a request must satisfy before its payload is even looked at
 * (HELLO-first is a connection rule, checked by the daemon). Pure; never throws.
 */
export function checkRequestHeader(flags: number, size: number): FramingErrorCode {
  if ((flags & FLAG_VERSION_MASK) !== PROTOCOL_VERSION) return FramingError.BAD_VERSION;
  if ((flags & FLAG_REPLY) !== 0) return FramingError.REPLY_FLAG;
  if ((flags & FLAG_RESERVED_MASK) !== 0) return FramingError.RESERVED_FLAGS;
  if (size > MAX_PAYLOAD_SIZE) return FramingError.OVERSIZED;
  return FramingError.NONE;
}

/** Same rules for a reply, as a client checks it (REPLY must be set). */
export function checkReplyHeader(flags: number, size: number): FramingErrorCode {
  if ((flags & FLAG_VERSION_MASK) !== PROTOCOL_VERSION) return FramingError.BAD_VERSION;
  if ((flags & FLAG_REPLY) === 0) return FramingError.REPLY_FLAG;
  if ((flags & FLAG_RESERVED_MASK) !== 0) return FramingError.RESERVED_FLAGS;
  if (size > MAX_PAYLOAD_SIZE) return FramingError.OVERSIZED;
  return FramingError.NONE;
}
