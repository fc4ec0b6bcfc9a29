/** Hand-rolled request bytes and reply parsing for tests (independent of the codecs under test where it matters). */

export function header(request: number, size: number, seq: number, flags = 1): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size, true);
  v.setUint32(12, seq, true);
  return h;
}

/** A request: header + payload built from [type, value] fields in order. */
export type Field = ['u32', number] | ['u64', bigint] | ['bytes', Uint8Array];

export function payload(...fields: Field[]): Uint8Array {
  const size = fields.reduce((n, f) => n + (f[0] === 'u32' ? 4 : f[0] === 'u64' ? 8 : f[1].length), 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let at = 0;
  for (const f of fields) {
    if (f[0] === 'u32') {
      v.setUint32(at, f[1] >>> 0, true);
      at += 4;
    } else if (f[0] === 'u64') {
      v.setBigUint64(at, BigInt.asUintN(64, f[1]), true);
      at += 8;
    } else {
      out.set(f[1], at);
      at += f[1].length;
    }
  }
  return out;
}

export function request(code: number, seq: number, body: Uint8Array = new Uint8Array(0), flags = 1): Uint8Array {
  const m = new Uint8Array(16 + body.length);
  m.set(header(code, body.length, seq, flags));
  m.set(body, 16);
  return m;
}

export const hello = (seq = 1, features = 0xfn, version = 1): Uint8Array =>
  request(1, seq, payload(['u32', version], ['u32', 0], ['u64', features]));

/** struct kvm_msi: address_lo, address_hi, data, flags, devid, pad[12]. */
export function kvmMsi(addressLo: number, data: number, devid: number, flags = 1, addressHi = 0): Uint8Array {
  return payload(['u32', addressLo], ['u32', addressHi], ['u32', data], ['u32', flags], ['u32', devid], ['bytes', new Uint8Array(12)]);
}

export function msiBatch(seq: number, msis: Uint8Array[], flags = 1): Uint8Array {
  const body = new Uint8Array(8 + msis.length * 32);
  new DataView(body.buffer).setUint32(0, msis.length, true);
  msis.forEach((m, i) => body.set(m, 8 + 32 * i));
  return request(10, seq, body, flags);
}

export interface Reply {
  request: number;
  flags: number;
  size: number;
  seq: number;
  status: number;
  /** Bytes after the 8-byte status. */
  fields: Uint8Array;
  u32(at: number): number;
  u64(at: number): bigint;
}

/** Splits a byte stream of replies. */
export function parseReplies(bytes: Uint8Array): Reply[] {
  const out: Reply[] = [];
  let at = 0;
  while (at + 16 <= bytes.length) {
    const v = new DataView(bytes.buffer, bytes.byteOffset + at);
    const size = v.getUint32(8, true);
    if (at + 16 + size > bytes.length) break;
    const fields = bytes.slice(at + 24, at + 16 + size);
    const fv = new DataView(fields.buffer);
    out.push({
      request: v.getUint32(0, true),
      flags: v.getUint32(4, true),
      size,
      seq: v.getUint32(12, true),
      status: size >= 4 ? v.getInt32(16, true) : NaN,
      fields,
      u32: (o) => fv.getUint32(o, true),
      u64: (o) => fv.getBigUint64(o, true),
    });
    at += 16 + size;
  }
  return out;
}
