import { describe, expect, it } from 'vitest';
import {
  Feature,
  REQUESTS,
  REQUEST_RULES,
  Request,
  expectedFdCount,
  payloadSizeOk,
  requestName,
  requestRule,
} from '../../src/protocol/index.js';

function payload(bytes: number, count?: number): DataView {
  const v = new DataView(new ArrayBuffer(Math.max(bytes, 8)));
  if (count !== undefined) v.setUint32(0, count, true);
  return v;
}

describe('request table', () => {
  it('has one rule per protocol.md code, 1..16, named as the spec', () => {
    expect(REQUEST_RULES.map((r) => [r.code, r.name])).toEqual([
      [1, 'HELLO'], [2, 'SET_MEM_TABLE'], [3, 'SET_LOG_BASE'], [4, 'CREATE_DEVICE'], [5, 'SET_DEVICE_ATTR'],
      [6, 'GET_DEVICE_ATTR'], [7, 'HAS_DEVICE_ATTR'], [8, 'MMIO'], [9, 'SIGNAL_MSI'], [10, 'SIGNAL_MSI_BATCH'],
      [11, 'SET_VCPUS'], [12, 'SET_VCPU_NOTIFY_FD'], [13, 'ACK_LPI'], [14, 'SUSPEND'], [15, 'RESUME'], [16, 'GET_STATS'],
    ]);
    expect(requestRule(0)).toBeUndefined();
    expect(requestRule(17)).toBeUndefined();
    expect(requestRule(0xffff_ffff)).toBeUndefined();
    expect(requestName(99)).toBe('UNKNOWN');
  });

  it('exact sizes follow the payload tables', () => {
    // HELLO 4+4+8; SET_LOG_BASE 8+8; CREATE_DEVICE 4+4; attrs 4+4+8+8; MMIO 8+4+4+8; kvm_msi 32; vcpu requests 4+4; none 0
    const sizes: Record<string, number> = {
      HELLO: 16, SET_LOG_BASE: 16, CREATE_DEVICE: 8, SET_DEVICE_ATTR: 24, GET_DEVICE_ATTR: 24, HAS_DEVICE_ATTR: 24,
      MMIO: 24, SIGNAL_MSI: 32, SET_VCPUS: 8, SET_VCPU_NOTIFY_FD: 8, ACK_LPI: 8, SUSPEND: 0, RESUME: 0, GET_STATS: 0,
    };
    for (const [name, size] of Object.entries(sizes)) {
      const rule = REQUESTS[name as keyof typeof REQUESTS];
      expect(payloadSizeOk(rule.payload, payload(64), 0, size), name).toBe(true);
      expect(payloadSizeOk(rule.payload, payload(64), 0, size + 1), name).toBe(false);
      if (size > 0) expect(payloadSizeOk(rule.payload, payload(64), 0, size - 1), name).toBe(false);
    }
  });

  it('counted payloads: SET_MEM_TABLE 8 + 24 n (n 1..8), SIGNAL_MSI_BATCH 8 + 32 n (n 1..16384)', () => {
    const mem = REQUESTS.SET_MEM_TABLE.payload;
    expect(payloadSizeOk(mem, payload(8, 1), 0, 8 + 24)).toBe(true);
    expect(payloadSizeOk(mem, payload(8, 8), 0, 8 + 8 * 24)).toBe(true);
    expect(payloadSizeOk(mem, payload(8, 9), 0, 8 + 9 * 24)).toBe(false);
    expect(payloadSizeOk(mem, payload(8, 0), 0, 8)).toBe(false);
    expect(payloadSizeOk(mem, payload(8, 2), 0, 8 + 24)).toBe(false); // count and size disagree
    expect(payloadSizeOk(mem, payload(8, 1), 0, 4)).toBe(false); // shorter than the head
    const batch = REQUESTS.SIGNAL_MSI_BATCH.payload;
    expect(payloadSizeOk(batch, payload(8, 16384), 0, 8 + 16384 * 32)).toBe(true);
    expect(payloadSizeOk(batch, payload(8, 16385), 0, 8 + 16385 * 32)).toBe(false);
    expect(payloadSizeOk(batch, payload(8, 256), 0, 8 + 255 * 32)).toBe(false);
  });

  it('fd counts, features and NO_REPLY', () => {
    expect(expectedFdCount(REQUESTS.SET_MEM_TABLE, payload(8, 3), 0)).toBe(3);
    expect(expectedFdCount(REQUESTS.SET_LOG_BASE, payload(8), 0)).toBe(1);
    expect(expectedFdCount(REQUESTS.SET_VCPU_NOTIFY_FD, payload(8), 0)).toBe(1);
    for (const r of REQUEST_RULES) {
      if (r.code !== Request.SET_MEM_TABLE && r.code !== Request.SET_LOG_BASE && r.code !== Request.SET_VCPU_NOTIFY_FD) {
        expect(expectedFdCount(r, payload(8), 0), r.name).toBe(0);
      }
    }
    expect(REQUESTS.SET_LOG_BASE.feature).toBe(Feature.DIRTY_LOG);
    expect(REQUESTS.SIGNAL_MSI_BATCH.feature).toBe(Feature.MSI_BATCH);
    expect(REQUESTS.SET_VCPU_NOTIFY_FD.feature).toBe(Feature.NOTIFY_FD);
    expect(REQUEST_RULES.filter((r) => r.noReplyAllowed).map((r) => r.name)).toEqual(['SIGNAL_MSI', 'SIGNAL_MSI_BATCH']);
  });
});
