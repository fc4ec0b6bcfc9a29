import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  commandWordsAt, decodeCollection, decodeTarget, encodeCommand, ItsOpcode,
} from '../../src/replay/its-commands.js';
import { readQemuTrace } from '../../src/replay/qemu-trace.js';
import { TRACE_DIR } from './trace-dir.js';

/** Encodes and returns [DW0.lo, DW0.hi, DW1.lo, DW1.hi, DW2.lo, DW2.hi, DW3.lo, DW3.hi] in hex. */
function enc(opcode: number, name: string, fields: object, hints: { icid?: number; rdbase?: number } = {}): string[] {
  const w = encodeCommand(new Uint32Array(8), opcode, name, { fields, ...hints });
  return [...w].map((x) => x.toString(16));
}

describe('ITS command encoders (its-model.md 2.1 bit positions)', () => {
  it('MAPD: DeviceID DW0[63:32], Size DW1[4:0], ITT_addr>>8 at DW2[51:8], V DW2[63]', () => {
    // DW0 = 0x08 | 0x28 << 32; DW1 = 2; DW2 = 1 << 63 | 0x423a6a << 8 = 0x80000000_423a6a00
    expect(enc(0x08, 'MAPD', { deviceId: 0x28, size: 2, ittAddrShifted: 0x423a6a, valid: 1 }))
      .toEqual(['8', '28', '2', '0', '423a6a00', '80000000', '0', '0']);
    // a 52-bit ITT address 0x1234_5678_9a00: field 0x12_3456_789a << 8 -> lo 0x56789a00, hi 0x1234
    expect(enc(0x08, 'MAPD', { deviceId: 1, size: 0, ittAddrShifted: 0x123456789a, valid: 0 }))
      .toEqual(['8', '1', '0', '0', '56789a00', '1234', '0', '0']);
  });

  it('MAPC: ICID DW2[15:0], RDbase DW2[51:16], V DW2[63]', () => {
    // DW2 = 1 << 63 | 2 << 16 | 2 = 0x80000000_00020002
    expect(enc(0x09, 'MAPC', { icid: 2, rdbase: 2, valid: 1 })).toEqual(['9', '0', '0', '0', '20002', '80000000', '0', '0']);
  });

  it('MAPTI, MAPI, MOVI, DISCARD, INV, INT, CLEAR', () => {
    // MAPTI: DW1 = pINTID 0x2000 << 32 | EventID 0
    expect(enc(0x0a, 'MAPTI', { deviceId: 0x30, eventId: 0, icid: 1, pintid: 0x2000 })).toEqual(['a', '30', '0', '2000', '1', '0', '0', '0']);
    expect(enc(0x0b, 'MAPI', { deviceId: 0x30, eventId: 5, icid: 2 })).toEqual(['b', '30', '5', '0', '2', '0', '0', '0']);
    expect(enc(0x01, 'MOVI', { deviceId: 0x10, eventId: 1, icid: 3 })).toEqual(['1', '10', '1', '0', '3', '0', '0', '0']);
    for (const [op, name] of [[0x0f, 'DISCARD'], [0x0c, 'INV'], [0x03, 'INT'], [0x04, 'CLEAR']] as const) {
      expect(enc(op, name, { deviceId: 0x20, eventId: 3 })).toEqual([op.toString(16), '20', '3', '0', '0', '0', '0', '0']);
    }
  });

  it('INVALL and SYNC take the ICID / RDbase QEMU does not trace from hints', () => {
    expect(enc(0x0d, 'INVALL', {}, { icid: 3 })).toEqual(['d', '0', '0', '0', '3', '0', '0', '0']);
    // SYNC RDbase 3 -> DW2 = 3 << 16
    expect(enc(0x05, 'SYNC', {}, { rdbase: 3 })).toEqual(['5', '0', '0', '0', '30000', '0', '0', '0']);
  });

  it('MOVALL: RDbase1 DW2[51:16], RDbase2 DW3[51:16]', () => {
    // 0x12345 << 16 = 0x1_2345_0000 -> lo 0x23450000, hi 0x1
    expect(enc(0x0e, 'MOVALL', { rdbase: 1, rdbase2: 0x12345 })).toEqual(['e', '0', '0', '0', '10000', '0', '23450000', '1']);
  });

  it('an opcode that does not match the name (or an unknown command) encodes the opcode only', () => {
    expect(enc(0x1f, 'UNKNOWN', { deviceId: 5 })).toEqual(['1f', '0', '0', '0', '0', '0', '0', '0']);
    expect(enc(0x2a, 'VMAPTI', { deviceId: 5 })).toEqual(['2a', '0', '0', '0', '0', '0', '0', '0']);
    expect(ItsOpcode.MAPTI).toBe(0x0a);
  });

  it('zeroes the words first, as Linux zeroes the slot', () => {
    const w = new Uint32Array(8).fill(0xffffffff);
    encodeCommand(w, 0x05, 'SYNC', { fields: {}, rdbase: 0 });
    expect([...w]).toEqual([5, 0, 0, 0, 0, 0, 0, 0]);
  });
});

describe.skipIf(!existsSync(join(TRACE_DIR, 'mem-cmdq.bin')))('encoders against the real Linux command queue', () => {
  it('re-encoding every traced command gives the bytes Linux wrote (255 slots)', () => {
    const dump = readFileSync(join(TRACE_DIR, 'mem-cmdq.bin'));
    const trace = readQemuTrace(join(TRACE_DIR, 'its-only.log'));
    let slot = -1;
    let opcode = 0;
    let checked = 0;
    for (const e of trace.events) {
      if (e.kind === 'its_process_command') {
        slot = e.slot;
        opcode = e.opcode;
      } else if (e.kind === 'its_cmd') {
        const real = commandWordsAt(dump, slot * 32);
        // INVALL's ICID and SYNC's RDbase are not in the trace: take them from the real command
        const ours = encodeCommand(new Uint32Array(8), opcode, e.name, { fields: e.fields, icid: decodeCollection(real), rdbase: decodeTarget(real) });
        expect([...ours], `slot ${slot} ${e.name}`).toEqual([...real]);
        checked++;
      }
    }
    expect(checked).toBe(255);
  });
});
