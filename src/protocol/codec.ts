/**
 * The shape every payload codec has, and the little helpers they share.
 *
 * A codec handles one payload (a request's, or the fields of a reply after its 8-byte
 * status). Codecs are pure: encode writes exactly size(value) bytes at offset, decode
 * reads a payload whose length the request table has already validated.
 */
export interface PayloadCodec<T> {
  /** Bytes `value` encodes to. */
  size(value: T): number;
  encode(view: DataView, offset: number, value: T): void;
  /** Decodes the `length` bytes at offset. */
  decode(view: DataView, offset: number, length: number): T;
}

/** A codec of a fixed-size payload. */
export function fixedCodec<T>(
  bytes: number,
  encode: (view: DataView, offset: number, value: T) => void,
  decode: (view: DataView, offset: number) => T,
): PayloadCodec<T> {
  return { size: () => bytes, encode, decode: (view, offset) => decode(view, offset) };
}

/** The empty payload (SUSPEND, RESUME, GET_STATS requests; replies with no fields). */
export type Empty = Record<string, never>;
export const EMPTY: Empty = Object.freeze({}) as Empty;
export const EmptyCodec: PayloadCodec<Empty> = fixedCodec<Empty>(0, () => undefined, () => EMPTY);

export const U64_MASK = (1n << 64n) - 1n;

export function getU64(view: DataView, offset: number): bigint {
  return view.getBigUint64(offset, true);
}

export function setU64(view: DataView, offset: number, value: bigint): void {
  view.setBigUint64(offset, BigInt.asUintN(64, value), true);
}

export function getU32(view: DataView, offset: number): number {
  return view.getUint32(offset, true);
}

export function setU32(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value >>> 0, true);
}

/** A DataView over exactly the bytes of a Uint8Array. */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
