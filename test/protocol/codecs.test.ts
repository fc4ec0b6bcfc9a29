/**
 * Codecs against byte vectors built by hand from protocol.md's tables (every offset is
 * written out: little-endian, u64 fields 8-byte aligned).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AckLpiReplyCodec,
  AckLpiRequestCodec,
  AttrValueReplyCodec,
  CreateDeviceReplyCodec,
  CreateDeviceRequestCodec,
  DeviceAttrRequestCodec,
  HelloReplyCodec,
  HelloRequestCodec,
  KvmMsiCodec,
  MmioReplyCodec,
  MmioRequestCodec,
  MsiBatchReplyCodec,
  MsiBatchRequestCodec,
  SetLogBaseRequestCodec,
  SetMemTableRequestCodec,
  SetVcpuNotifyFdRequestCodec,
  SetVcpusRequestCodec,
  StatsReplyCodec,
  type PayloadCodec,
} from '../../src/protocol/index.js';

/** Little-endian bytes of an unsigned integer of `width` bytes. */
function le(value: bigint | number, width: number): number[] {
  let v = BigInt(value);
  const out: number[] = [];
  for (let i = 0; i < width; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}

function encode<T>(codec: PayloadCodec<T>, value: T): number[] {
  const bytes = new Uint8Array(codec.size(value));
  codec.encode(new DataView(bytes.buffer), 0, value);
  return [...bytes];
}

function decode<T>(codec: PayloadCodec<T>, bytes: number[], at = 0): T {
  // Put the payload at an odd offset inside a bigger buffer: codecs must honour `offset`.
  const buf = new Uint8Array(at + bytes.length + 5);
  buf.set(bytes, at);
  return codec.decode(new DataView(buf.buffer), at, bytes.length);
}

describe('HELLO', () => {
  // request: u32 version @0, u32 reserved @4, u64 features @8 (16 bytes)
  const reqBytes = [...le(1, 4), ...le(0, 4), ...le(0x8000_0000_0000_000bn, 8)];
  it('request encodes and decodes', () => {
    expect(reqBytes.length).toBe(16);
    expect(encode(HelloRequestCodec, { version: 1, features: 0x8000_0000_0000_000bn })).toEqual(reqBytes);
    expect(decode(HelloRequestCodec, reqBytes, 3)).toEqual({ version: 1, features: 0x8000_0000_0000_000bn });
  });
  // reply fields: u32 version @0, u32 resumed @4, u64 granted @8
  const repBytes = [...le(1, 4), ...le(1, 4), ...le(0b1011, 8)];
  it('reply fields encode and decode', () => {
    expect(encode(HelloReplyCodec, { version: 1, resumed: 1, features: 0b1011n })).toEqual(repBytes);
    expect(decode(HelloReplyCodec, repBytes, 1)).toEqual({ version: 1, resumed: 1, features: 11n });
  });
});

describe('SET_MEM_TABLE / SET_LOG_BASE', () => {
  it('mem table: u32 nregions, u32 reserved, then 24-byte regions', () => {
    const regions = [
      { guestPhysAddr: 0x4000_0000n, memorySize: 0x1000_0000n, mmapOffset: 0n },
      { guestPhysAddr: 0x1_0000_0000n, memorySize: 0x2000n, mmapOffset: 0x1000_0000n },
    ];
    const bytes = [
      ...le(2, 4), ...le(0, 4), // head: 8 bytes
      ...le(0x4000_0000n, 8), ...le(0x1000_0000n, 8), ...le(0, 8), // region 0 at 8
      ...le(0x1_0000_0000n, 8), ...le(0x2000, 8), ...le(0x1000_0000n, 8), // region 1 at 8 + 24 = 32
    ];
    expect(bytes.length).toBe(8 + 2 * 24);
    expect(encode(SetMemTableRequestCodec, { regions })).toEqual(bytes);
    expect(decode(SetMemTableRequestCodec, bytes, 7)).toEqual({ regions });
  });
  it('log base: u64 log_size, u64 mmap_offset', () => {
    const bytes = [...le(0x20_0000, 8), ...le(0x3000, 8)];
    expect(encode(SetLogBaseRequestCodec, { logSize: 0x20_0000n, mmapOffset: 0x3000n })).toEqual(bytes);
    expect(decode(SetLogBaseRequestCodec, bytes)).toEqual({ logSize: 0x20_0000n, mmapOffset: 0x3000n });
  });
});

describe('devices and MMIO', () => {
  it('CREATE_DEVICE request and reply', () => {
    const req = [...le(8, 4), ...le(1, 4)]; // type @0, flags @4
    expect(encode(CreateDeviceRequestCodec, { type: 8, flags: 1 })).toEqual(req);
    expect(decode(CreateDeviceRequestCodec, req)).toEqual({ type: 8, flags: 1 });
    const rep = [...le(3, 4), ...le(0, 4)]; // device_id @0, reserved @4
    expect(encode(CreateDeviceReplyCodec, { deviceId: 3 })).toEqual(rep);
    expect(decode(CreateDeviceReplyCodec, rep)).toEqual({ deviceId: 3 });
  });
  it('device attr: u32 device_id, u32 group, u64 attr, u64 value', () => {
    const v = { deviceId: 2, group: 8, attr: 0x1_0000_0080n, value: 0xfedc_ba98_7654_3210n };
    const bytes = [...le(2, 4), ...le(8, 4), ...le(0x1_0000_0080n, 8), ...le(0xfedc_ba98_7654_3210n, 8)];
    expect(bytes.length).toBe(24);
    expect(encode(DeviceAttrRequestCodec, v)).toEqual(bytes);
    expect(decode(DeviceAttrRequestCodec, bytes, 2)).toEqual(v);
    expect(encode(AttrValueReplyCodec, { value: 0xffff_ffff_ffff_ffffn })).toEqual(le(0xffff_ffff_ffff_ffffn, 8));
    expect(decode(AttrValueReplyCodec, le(5n, 8))).toEqual({ value: 5n });
  });
  it('MMIO: u64 address, u32 length, u32 is_write, u64 data', () => {
    const v = { address: 0x0808_0000n + 0x8n, length: 8, isWrite: 1, data: 0x1234_5678_9abc_def0n };
    const bytes = [...le(0x0808_0008n, 8), ...le(8, 4), ...le(1, 4), ...le(0x1234_5678_9abc_def0n, 8)];
    expect(encode(MmioRequestCodec, v)).toEqual(bytes);
    expect(decode(MmioRequestCodec, bytes)).toEqual(v);
    expect(encode(MmioReplyCodec, { data: 0x4000_0000n })).toEqual(le(0x4000_0000n, 8));
  });
});

describe('MSIs', () => {
  // struct kvm_msi: address_lo @0, address_hi @4, data @8, flags @12, devid @16, pad[12] @20
  const msi = { addressLo: 0x0809_0040, addressHi: 0x1, data: 17, flags: 1, devid: 0xabcd };
  const msiBytes = [...le(0x0809_0040, 4), ...le(1, 4), ...le(17, 4), ...le(1, 4), ...le(0xabcd, 4), ...new Array<number>(12).fill(0)];
  it('struct kvm_msi is 32 bytes with a zeroed pad', () => {
    expect(msiBytes.length).toBe(32);
    expect(encode(KvmMsiCodec, msi)).toEqual(msiBytes);
    expect(decode(KvmMsiCodec, msiBytes, 4)).toEqual(msi);
  });
  it('batch: u32 count, u32 reserved, then count x kvm_msi', () => {
    const second = { ...msi, data: 18, devid: 7 };
    const secondBytes = [...le(0x0809_0040, 4), ...le(1, 4), ...le(18, 4), ...le(1, 4), ...le(7, 4), ...new Array<number>(12).fill(0)];
    const bytes = [...le(2, 4), ...le(0, 4), ...msiBytes, ...secondBytes];
    expect(bytes.length).toBe(8 + 2 * 32);
    expect(encode(MsiBatchRequestCodec, { msis: [msi, second] })).toEqual(bytes);
    expect(decode(MsiBatchRequestCodec, bytes)).toEqual({ msis: [msi, second] });
    expect(encode(MsiBatchReplyCodec, { processed: 300, delivered: 299 })).toEqual([...le(300, 4), ...le(299, 4)]);
  });
});

describe('vCPUs', () => {
  it('SET_VCPUS, SET_VCPU_NOTIFY_FD and ACK_LPI', () => {
    expect(encode(SetVcpusRequestCodec, { count: 512 })).toEqual([...le(512, 4), ...le(0, 4)]);
    expect(decode(SetVcpusRequestCodec, [...le(4, 4), ...le(0, 4)])).toEqual({ count: 4 });
    expect(encode(SetVcpuNotifyFdRequestCodec, { vcpu: 3 })).toEqual([...le(3, 4), ...le(0, 4)]);
    expect(encode(AckLpiRequestCodec, { vcpu: 2, flags: 1 })).toEqual([...le(2, 4), ...le(1, 4)]);
    expect(decode(AckLpiRequestCodec, [...le(2, 4), ...le(1, 4)])).toEqual({ vcpu: 2, flags: 1 });
    expect(encode(AckLpiReplyCodec, { intid: 1023, priority: 0xff })).toEqual([...le(1023, 4), ...le(0xff, 4)]);
    expect(decode(AckLpiReplyCodec, [...le(8200, 4), ...le(0xa0, 4)])).toEqual({ intid: 8200, priority: 0xa0 });
  });
});

describe('GET_STATS', () => {
  it('is UTF-8 JSON to the end of the payload', () => {
    const text = '{"requests":{"HELLO":1},"errors":{},"msi":{"delivered":0,"dropped":0,"dropped_by_reason":{}},"commands":{},"command_errors":{},"saves":{"count":0,"last_ms":0},"restores":{"count":0,"last_ms":0},"note":"é"}';
    const bytes = [...Buffer.from(text, 'utf8')];
    const decoded = decode(StatsReplyCodec, bytes, 3);
    expect(decoded.requests['HELLO']).toBe(1);
    expect(decoded['note']).toBe('é');
    expect(Buffer.from(encode(StatsReplyCodec, decoded)).toString('utf8')).toBe(text);
  });
});

describe('round trips', () => {
  const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
  const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  it('device attr and MMIO survive encode/decode for any field values', () => {
    fc.assert(
      fc.property(u32, u32, u64, u64, (deviceId, group, attr, value) => {
        const v = { deviceId, group, attr, value };
        expect(decode(DeviceAttrRequestCodec, encode(DeviceAttrRequestCodec, v))).toEqual(v);
        const m = { address: attr, length: group, isWrite: deviceId, data: value };
        expect(decode(MmioRequestCodec, encode(MmioRequestCodec, m))).toEqual(m);
      }),
    );
  });
  it('kvm_msi batches survive encode/decode', () => {
    const msi = fc.record({ addressLo: u32, addressHi: u32, data: u32, flags: u32, devid: u32 });
    fc.assert(
      fc.property(fc.array(msi, { minLength: 1, maxLength: 40 }), (msis) => {
        expect(decode(MsiBatchRequestCodec, encode(MsiBatchRequestCodec, { msis }))).toEqual({ msis });
      }),
    );
  });
});
