import { describe, expect, it } from 'vitest';
import {
  FramingError,
  MAX_PAYLOAD_SIZE,
  Request,
  checkReplyHeader,
  checkRequestHeader,
  decodeHeader,
  decodeReplyFor,
  encodeHeader,
  encodeReply,
  encodeRequestFor,
  HelloReplyCodec,
  msiBatchMessageEntryOffset,
  readKvmMsiInto,
  writeKvmMsi,
  writeMsiBatchMessageHead,
  writeSignalMsiMessage,
} from '../../src/protocol/index.js';

const u32At = (b: Uint8Array, o: number): number => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

describe('header', () => {
  it('is u32 request @0, u32 flags @4, u32 size @8, u32 seq @12, little-endian', () => {
    const bytes = new Uint8Array(16);
    encodeHeader(new DataView(bytes.buffer), 0, { request: 10, flags: 0x9, size: 0x1_0008, seq: 0xdead_beef });
    expect([...bytes]).toEqual([10, 0, 0, 0, 0x9, 0, 0, 0, 0x08, 0x00, 0x01, 0, 0xef, 0xbe, 0xad, 0xde]);
    expect(decodeHeader(new DataView(bytes.buffer), 0)).toEqual({ request: 10, flags: 9, size: 0x10008, seq: 0xdeadbeef });
  });

  it('framing rules: version bits 1, no REPLY, bits 4-31 zero, size <= 1 MiB', () => {
    expect(checkRequestHeader(1, 0)).toBe(FramingError.NONE);
    expect(checkRequestHeader(1 | 8, MAX_PAYLOAD_SIZE)).toBe(FramingError.NONE); // NO_REPLY is legal; exactly 1 MiB too
    expect(checkRequestHeader(0, 0)).toBe(FramingError.BAD_VERSION);
    expect(checkRequestHeader(2, 0)).toBe(FramingError.BAD_VERSION);
    expect(checkRequestHeader(3, 0)).toBe(FramingError.BAD_VERSION);
    expect(checkRequestHeader(1 | 4, 0)).toBe(FramingError.REPLY_FLAG);
    for (let bit = 4; bit < 32; bit++) expect(checkRequestHeader((1 | (1 << bit)) >>> 0, 0)).toBe(FramingError.RESERVED_FLAGS);
    expect(checkRequestHeader(1, MAX_PAYLOAD_SIZE + 1)).toBe(FramingError.OVERSIZED);
    expect(checkReplyHeader(1 | 4, 8)).toBe(FramingError.NONE);
    expect(checkReplyHeader(1, 8)).toBe(FramingError.REPLY_FLAG);
  });
});

describe('whole messages', () => {
  it('encodeRequestFor builds header + payload', () => {
    const m = encodeRequestFor('HELLO', 7, { version: 1, features: 0xfn });
    expect(m.length).toBe(16 + 16);
    expect(u32At(m, 0)).toBe(Request.HELLO);
    expect(u32At(m, 4)).toBe(1);
    expect(u32At(m, 8)).toBe(16);
    expect(u32At(m, 12)).toBe(7);
    expect(u32At(m, 16)).toBe(1); // version
    expect(u32At(m, 24)).toBe(0xf); // features, low word
  });

  it('a reply is header (flags 1|REPLY) + i32 status + u32 reserved + fields', () => {
    const r = encodeReply(Request.HELLO, 7, -22, HelloReplyCodec, null, 16);
    expect(r.length).toBe(16 + 8 + 16);
    expect(u32At(r, 4)).toBe(5);
    expect(u32At(r, 8)).toBe(24);
    expect(u32At(r, 16)).toBe(0xffff_ffea); // -22 as i32
    expect([...r.subarray(24)]).toEqual(new Array<number>(16).fill(0));
    const d = decodeReplyFor('HELLO', new DataView(r.buffer), 0);
    expect(d.status).toBe(-22);
    expect(d.fields).toEqual({ version: 0, resumed: 0, features: 0n });
  });

  it('SIGNAL_MSI and batch writers work on a reused buffer', () => {
    const buf = new Uint8Array(4096);
    const view = new DataView(buf.buffer);
    const n = writeSignalMsiMessage(view, 100, 9, true, 0x0809_0040, 0, 5, 1, 77);
    expect(n).toBe(48);
    expect(u32At(buf, 100)).toBe(Request.SIGNAL_MSI);
    expect(u32At(buf, 104)).toBe(1 | 8);
    expect(u32At(buf, 108)).toBe(32);
    expect(u32At(buf, 116 + 8)).toBe(5); // data at payload + 8
    expect(u32At(buf, 116 + 16)).toBe(77); // devid at payload + 16

    const total = writeMsiBatchMessageHead(view, 0, 3, false, 3);
    expect(total).toBe(16 + 8 + 3 * 32);
    expect(u32At(buf, 8)).toBe(8 + 96);
    expect(u32At(buf, 16)).toBe(3);
    for (let i = 0; i < 3; i++) writeKvmMsi(view, msiBatchMessageEntryOffset(0, i), 0x0809_0040, 0, i, 1, 1000 + i);
    // entry i at 16 (header) + 8 (count) + 32 i
    expect(msiBatchMessageEntryOffset(0, 2)).toBe(16 + 8 + 64);
    expect(u32At(buf, 16 + 8 + 64 + 16)).toBe(1002);
    const out = { addressLo: 0, addressHi: 0, data: 0, flags: 0, devid: 0 };
    readKvmMsiInto(view, msiBatchMessageEntryOffset(0, 1), out);
    expect(out).toEqual({ addressLo: 0x0809_0040, addressHi: 0, data: 1, flags: 1, devid: 1001 });
  });
});
