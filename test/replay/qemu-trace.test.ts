import { describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { decodeTraceBytes, parseQemuTrace, type TraceEvent } from '../../src/replay/qemu-trace.js';

/** One line through the parser; the single event it produced. */
function one(line: string): TraceEvent {
  const p = parseQemuTrace(line + '\n');
  expect(p.events).toHaveLength(1);
  return p.events[0]!;
}

describe('parseQemuTrace: one event of each kind (QEMU 7.2 wording)', () => {
  it('gicv3_its_read / _write keep 64-bit data exactly', () => {
    const r = one('8741@1795568511.287201:gicv3_its_read GICv3 ITS read: offset 0x100 data 0xf907000042190600 size 8');
    expect(r).toMatchObject({ kind: 'its_read', offset: 0x100, size: 8, tid: 8741, line: 1 });
    // 0xf907000042190600 is above 2^53: must be a BigInt, not a rounded number
    expect(r.kind === 'its_read' && r.data).toBe(0xf907000042190600n);
    expect(r.time).toBeCloseTo(1795568511.287201, 6);
    const w = one('8741@1795568511.288632:gicv3_its_write GICv3 ITS write: offset 0x88 data 0x40 size 4');
    expect(w).toMatchObject({ kind: 'its_write', offset: 0x88, data: 0x40n, size: 4 });
  });

  it('gicv3_its_badread / badwrite', () => {
    expect(one('1@2.000001:gicv3_its_badread GICv3 ITS read: offset 0x18 size 4: error')).toMatchObject({ kind: 'its_bad_access', write: false, offset: 0x18, size: 4 });
    expect(one('1@2.000001:gicv3_its_badwrite GICv3 ITS write: offset 0x18 data 0x5 size 4: error')).toMatchObject({ kind: 'its_bad_access', write: true, offset: 0x18, data: 5n });
  });

  it('gicv3_its_translation_write: data is the EventID, requester_id the DeviceID', () => {
    expect(one('8734@1795568512.856100:gicv3_its_translation_write GICv3 ITS TRANSLATER write: offset 0x40 data 0x1 size 4 requester_id 0x20'))
      .toMatchObject({ kind: 'its_translation_write', offset: 0x40, eventId: 1, size: 4, deviceId: 0x20, tid: 8734 });
  });

  it('gicv3_its_process_command: offset is a slot number, then the opcode', () => {
    expect(one('8744@1.5:gicv3_its_process_command GICv3 ITS: processing command at offset 0x7c: 0xf'))
      .toMatchObject({ kind: 'its_process_command', slot: 0x7c, opcode: 0xf });
  });

  it('gicv3_its_cmd_*: fields by name, ITT_addr kept >> 8 as traced', () => {
    expect(one('1@1.1:gicv3_its_cmd_mapd GICv3 ITS: command MAPD DeviceID 0x28 Size 0x2 ITT_addr 0x423a6a V 1'))
      .toMatchObject({ kind: 'its_cmd', name: 'MAPD', fields: { deviceId: 0x28, size: 2, ittAddrShifted: 0x423a6a, valid: 1 } });
    expect(one('1@1.1:gicv3_its_cmd_mapc GICv3 ITS: command MAPC ICID 0x2 RDbase 0x2 V 1'))
      .toMatchObject({ name: 'MAPC', fields: { icid: 2, rdbase: 2, valid: 1 } });
    expect(one('1@1.1:gicv3_its_cmd_mapti GICv3 ITS: command MAPTI DeviceID 0x30 EventID 0x0 ICID 0x0 pINTID 0x2000'))
      .toMatchObject({ name: 'MAPTI', fields: { deviceId: 0x30, eventId: 0, icid: 0, pintid: 0x2000 } });
    expect(one('1@1.1:gicv3_its_cmd_mapi GICv3 ITS: command MAPI DeviceID 0x7 EventID 0x2 ICID 0x1'))
      .toMatchObject({ name: 'MAPI', fields: { deviceId: 7, eventId: 2, icid: 1 } });
    expect(one('1@1.1:gicv3_its_cmd_movi GICv3 ITS: command MOVI DeviceID 0x10 EventID 0x1 ICID 0x1'))
      .toMatchObject({ name: 'MOVI', fields: { deviceId: 0x10, eventId: 1, icid: 1 } });
    for (const name of ['discard', 'inv', 'int', 'clear']) {
      expect(one(`1@1.1:gicv3_its_cmd_${name} GICv3 ITS: command ${name.toUpperCase()} DeviceID 0x20 EventID 0x3`))
        .toMatchObject({ name: name.toUpperCase(), fields: { deviceId: 0x20, eventId: 3 } });
    }
    expect(one('1@1.1:gicv3_its_cmd_invall GICv3 ITS: command INVALL')).toMatchObject({ name: 'INVALL', fields: {} });
    expect(one('1@1.1:gicv3_its_cmd_sync GICv3 ITS: command SYNC')).toMatchObject({ name: 'SYNC', fields: {} });
    expect(one('1@1.1:gicv3_its_cmd_movall GICv3 ITS: command MOVALL RDbase1 0x1 RDbase2 0x3'))
      .toMatchObject({ name: 'MOVALL', fields: { rdbase: 1, rdbase2: 3 } });
    expect(one('1@1.1:gicv3_its_cmd_unknown GICv3 ITS: unknown command 0x1f')).toMatchObject({ name: 'UNKNOWN', fields: { opcode: 0x1f } });
    // QEMU prints "VMAPI" for vmapti: the name comes from the event
    expect(one('1@1.1:gicv3_its_cmd_vmapti GICv3 ITS: command VMAPI DeviceID 0x1 EventID 0x2 vPEID 0x3 vINTID 0x4 Dbell_pINTID 0x5'))
      .toMatchObject({ name: 'VMAPTI' });
  });

  it('dte read/write: the write line ITTaddr is >> 8, the read line is the full address', () => {
    expect(one('1@1.1:gicv3_its_dte_read GICv3 ITS: Device Table read for DeviceID 0x30: valid 1 size 0x0 ITTaddr 0x42b6d200'))
      .toMatchObject({ kind: 'its_dte_read', deviceId: 0x30, valid: true, size: 0, ittAddr: 0x42b6d200 });
    expect(one('1@1.1:gicv3_its_dte_write GICv3 ITS: Device Table write for DeviceID 0x28: valid 0 size 0x2 ITTaddr 0x423a6a'))
      .toMatchObject({ kind: 'its_dte_write', deviceId: 0x28, valid: false, size: 2, ittAddr: 0x423a6a00 });
  });

  it('ite and cte read/write', () => {
    expect(one('1@1.1:gicv3_its_ite_read GICv3 ITS: Interrupt Table read for ITTaddr 0x42b6d200 EventID 0x0: valid 1 inttype 1 intid 0x2000 ICID 0x0 vPEID 0x0 doorbell 0x3ff'))
      .toMatchObject({ kind: 'its_ite_read', ittAddr: 0x42b6d200, eventId: 0, valid: true, intType: 1, intid: 0x2000, icid: 0, vpeid: 0, doorbell: 0x3ff });
    expect(one('1@1.1:gicv3_its_ite_write GICv3 ITS: Interrupt Table write for ITTaddr 0x48375c00 EventID 0x3: valid 0 inttype 0 intid 0x0 ICID 0x0 vPEID 0x0 doorbell 0x0'))
      .toMatchObject({ kind: 'its_ite_write', eventId: 3, valid: false });
    expect(one('1@1.1:gicv3_its_cte_read GICv3 ITS: Collection Table read for ICID 0x3: valid 1 RDBase 0x3'))
      .toMatchObject({ kind: 'its_cte_read', icid: 3, valid: true, rdbase: 3 });
    expect(one('1@1.1:gicv3_its_cte_write GICv3 ITS: Collection Table write for ICID 0x0: valid 1 RDBase 0x0'))
      .toMatchObject({ kind: 'its_cte_write', icid: 0, valid: true, rdbase: 0 });
  });

  it('table read faults', () => {
    expect(one('1@1.1:gicv3_its_dte_read_fault GICv3 ITS: Device Table read for DeviceID 0x99: faulted')).toMatchObject({ kind: 'its_table_fault', table: 'dte', id: 0x99 });
    expect(one('1@1.1:gicv3_its_cte_read_fault GICv3 ITS: Collection Table read for ICID 0x4: faulted')).toMatchObject({ table: 'cte', id: 4 });
  });

  it('gicv3_redist_read / _write: the first number is the redistributor', () => {
    expect(one('8741@1.1:gicv3_redist_write GICv3 redistributor 0x2 write: offset 0x78 data 0x421e0780 size 8 secure 0'))
      .toMatchObject({ kind: 'redist_write', cpu: 2, offset: 0x78, data: 0x421e0780n, size: 8 });
    expect(one('8741@1.1:gicv3_redist_read GICv3 redistributor 0x3 read: offset 0x8 data 0x301000311 size 8 secure 0'))
      .toMatchObject({ kind: 'redist_read', cpu: 3, offset: 8, data: 0x301000311n });
  });

  it('gicv3_icc_iar1_read', () => {
    expect(one('8743@1.1:gicv3_icc_iar1_read GICv3 ICC_IAR1 read cpu 0x2 value 0x2003')).toMatchObject({ kind: 'icc_iar1_read', cpu: 2, value: 0x2003 });
  });

  it('lines without a timestamp prefix', () => {
    expect(one('gicv3_icc_iar1_read GICv3 ICC_IAR1 read cpu 0x1 value 0x2005')).toMatchObject({ kind: 'icc_iar1_read', cpu: 1, tid: null, time: null });
  });
});

describe('parseQemuTrace: marks and console', () => {
  it('reads its-only.log comment marks, with arguments', () => {
    const p = parseQemuTrace('# 8744@1795568512.635413: @@MARK init-start ncpu=4 @@\n# just a comment\n');
    expect(p.events).toEqual([expect.objectContaining({ kind: 'mark', phase: 'init-start', args: 'ncpu=4', tid: 8744, line: 1 })]);
  });

  it('reassembles pl011_write data bytes into lines; other UART registers are ignored', () => {
    const bytes = (s: string, tid: number): string[] => [...s].map((c) => `${tid}@1.000001:pl011_write addr 0x00000000 value 0x000000${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
    const lines = [
      ...bytes('hello\n', 1),
      '1@1.000002:pl011_write addr 0x00000030 value 0x00000301', // UARTCR: not data
      ...bytes('@@MARK net', 1),
      '5@1.000003:gicv3_icc_iar1_read GICv3 ICC_IAR1 read cpu 0x0 value 0x2001', // interleaved event
      ...bytes('-up @@\r\n', 2), // one console stream whichever vCPU writes
    ];
    const p = parseQemuTrace(lines.join('\n'), { keepConsole: true });
    expect(p.events.map((e) => e.kind)).toEqual(['console', 'icc_iar1_read', 'mark']);
    expect(p.events[0]).toMatchObject({ text: 'hello' });
    expect(p.events[2]).toMatchObject({ phase: 'net-up', args: '', tid: 2 });
    // without keepConsole only the mark is kept
    expect(parseQemuTrace(lines.join('\n')).events.map((e) => e.kind)).toEqual(['icc_iar1_read', 'mark']);
  });

  it('accepts the newer pl011_write wording (register name suffix)', () => {
    const text = [...'@@MARK x @@\n'].map((c) => `pl011_write addr 0x000 value 0x${c.charCodeAt(0).toString(16)} reg DR`).join('\n');
    expect(parseQemuTrace(text).events).toEqual([expect.objectContaining({ kind: 'mark', phase: 'x' })]);
  });
});

describe('parseQemuTrace: robustness and accounting', () => {
  it('counts parsed, skipped (unknown) and malformed events, and unparsed lines', () => {
    const text = [
      '1@1.1:gicv3_redist_set_irq GICv3 redistributor 0x0 interrupt 27 level changed to 1',
      '1@1.1:gicv3_redist_send_sgi GICv3 redistributor 0x1 pending SGI 0',
      '1@1.1:gicv3_its_read GICv3 ITS read: offset 0x90 size 4', // no data: malformed
      '1@1.1:gicv3_its_read GICv3 ITS read: offset 0x90 data 0x40 size 4',
      'this is not a trace line!',
      '',
    ].join('\r\n');
    const p = parseQemuTrace(text);
    expect(p.events).toHaveLength(1);
    expect(p.counts).toEqual({ gicv3_its_read: 1 });
    expect(p.skipped).toEqual({ gicv3_redist_set_irq: 1, gicv3_redist_send_sgi: 1 });
    expect(p.malformed).toEqual({ gicv3_its_read: 1 });
    expect(p.unparsedLines).toBe(1);
    expect(p.lines).toBe(5); // the text ends with a line break, no sixth line
  });

  it('decodes gzip input by its magic number', () => {
    const text = '1@1.1:gicv3_icc_iar1_read GICv3 ICC_IAR1 read cpu 0x3 value 0x2015\n';
    expect(decodeTraceBytes(gzipSync(Buffer.from(text)))).toBe(text);
    expect(decodeTraceBytes(Buffer.from(text))).toBe(text);
  });

  it('never throws on garbage', () => {
    const junk = ['@@MARK', '#', '#@@MARK @@', '1@x:gicv3_its_read', 'gicv3_its_cmd_mapd', 'pl011_write addr', '\u0000\u0001'].join('\n');
    expect(() => parseQemuTrace(junk)).not.toThrow();
  });
});
