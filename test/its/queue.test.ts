/** Command queue processing (kvm-its-abi.md 6.1). */
import { describe, expect, it } from 'vitest';
import { GITS_CBASER, GITS_CREADR, GITS_CTLR, GITS_CWRITER } from '../../src/its/types.js';
import { CMDQ, CommandQueue, RAM_END, cbaserValue, cmd, commands, errors, ittOf, makeVm } from './helpers.js';

describe('command queue', () => {
  it('CREADR advances by 32 per command, also for commands that fail', () => {
    const { its, q } = makeVm();
    q.submit(cmd.int(1, 0), cmd.movi(1, 0, 0), cmd.discard(9, 9), cmd.mapc(0, 99), cmd.inv(0, 0));
    expect(q.creadr).toBe(5 * 32);
    expect(q.cwriter).toBe(5 * 32);
    expect(its.stats.commands['total']).toBe(5);
    expect(Object.values(its.stats.commandErrors).reduce((a, b) => a + b, 0)).toBe(5);
  });

  it('nothing runs while disabled; CTLR.Enabled=1 runs the backlog', () => {
    const { its, q } = makeVm();
    its.mmioWrite(GITS_CTLR, 4, 0n);
    q.submit(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 0, 8192, 0));
    expect(its.stats.commands['total']).toBe(0);
    expect(its.translate(1, 0)).toBe(0);
    its.mmioWrite(GITS_CTLR, 4, 1n);
    expect(its.translate(1, 0)).toBe(8192);
    expect(q.creadr).toBe(96);
  });

  it('wraps at (Size + 1) * 4 KiB', () => {
    const { its, memory } = makeVm({ bare: true });
    its.setReg(0x100, (1n << 63n) | BigInt(CMDQ + 0x1_0000));
    its.setReg(0x108, (1n << 63n) | BigInt(CMDQ + 0x2_0000));
    its.setReg(GITS_CBASER, cbaserValue(CMDQ, 1)); // 4 KiB: 128 slots
    its.setReg(GITS_CREADR, BigInt(4096 - 64)); // restore-style: CREADR near the end
    its.setReg(GITS_CWRITER, BigInt(4096 - 64));
    const q = new CommandQueue(its, memory, CMDQ, 4096);
    its.setReg(GITS_CTLR, 1n);
    q.submit(cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 0, 8192, 0), cmd.int(1, 0));
    expect(q.cwriter).toBe(64);
    expect(q.creadr).toBe(64);
    expect(its.translate(1, 0)).toBe(8192);
    expect(its.stats.commands['total']).toBe(4);
    // The two commands before the wrap are at the queue's last two slots.
    expect(memory.readU8(CMDQ + 4096 - 64)).toBe(0x08);
    expect(memory.readU8(CMDQ)).toBe(0x0a);
  });

  it('a full queue (size/32 - 1 commands) is processed in one trigger', () => {
    const { its, q } = makeVm(); // 2048 slots
    const many = Array.from({ length: 2047 }, () => cmd.sync());
    q.submit(...many);
    expect(its.stats.commands['SYNC']).toBe(2047);
    expect(q.creadr).toBe(2047 * 32);
    q.submit(cmd.sync(), cmd.sync()); // wraps to 32
    expect(q.creadr).toBe(32);
    expect(its.stats.commands['SYNC']).toBe(2049);
  });

  it('a queue outside guest RAM: every command is dropped, counted, and CREADR still advances', () => {
    const { its } = makeVm({ bare: true });
    its.setReg(0x100, (1n << 63n) | BigInt(CMDQ + 0x1_0000));
    its.setReg(0x108, (1n << 63n) | BigInt(CMDQ + 0x2_0000));
    its.setReg(GITS_CBASER, cbaserValue(0x10_0000, 16)); // GPA 1 MiB: no RAM there
    its.setReg(GITS_CTLR, 1n);
    its.mmioWrite(GITS_CWRITER, 8, 0x200n);
    expect(its.getReg(GITS_CREADR)).toBe(0x200n);
    expect(errors(its, 'cmd_read_fault')).toBe(16);
    expect(its.stats.commands['total']).toBe(0);
  });

  it('a queue straddling the end of RAM: the readable half runs, the rest faults', () => {
    const { its, memory } = makeVm({ bare: true });
    const base = RAM_END - 0x1_0000; // 64 KiB aligned; queue of 128 KiB: half outside
    its.setReg(0x100, (1n << 63n) | BigInt(CMDQ + 0x1_0000));
    its.setReg(0x108, (1n << 63n) | BigInt(CMDQ + 0x2_0000));
    its.setReg(GITS_CBASER, cbaserValue(base, 32));
    its.setReg(GITS_CREADR, BigInt(0x1_0000 - 64));
    its.setReg(GITS_CWRITER, BigInt(0x1_0000 - 64));
    its.setReg(GITS_CTLR, 1n);
    const q = new CommandQueue(its, memory, base, 0x2_0000);
    // Two commands fit before RAM_END; the next two would be written outside RAM: write CWRITER directly.
    for (const [i, c] of [cmd.sync(), cmd.sync()].entries()) for (let w = 0; w < 4; w++) memory.writeU64Big(base + 0x1_0000 - 64 + i * 32 + w * 8, c[w]!);
    its.mmioWrite(GITS_CWRITER, 8, BigInt(0x1_0000 + 64));
    expect(q.creadr).toBe(0x1_0000 + 64);
    expect(commands(its, 'SYNC')).toBe(2);
    expect(errors(its, 'cmd_read_fault')).toBe(2);
  });

  it('a CBASER write resets CREADR/CWRITER (the queue restarts at its base)', () => {
    const { its, q } = makeVm();
    q.submit(cmd.sync(), cmd.sync());
    expect(q.creadr).toBe(64);
    its.mmioWrite(GITS_CTLR, 4, 0n);
    its.mmioWrite(GITS_CBASER, 8, cbaserValue(CMDQ));
    expect(q.creadr).toBe(0);
    expect(q.cwriter).toBe(0);
    its.mmioWrite(GITS_CTLR, 4, 1n);
    q.submit(cmd.sync());
    expect(q.creadr).toBe(32);
  });

  it('restore order: registers, then CTLR=1 executes the commands between CREADR and CWRITER', () => {
    const { its, memory } = makeVm({ bare: true });
    const q = new CommandQueue(its, memory, CMDQ, 0x1_0000);
    const list = [cmd.mapd(1, 3, ittOf(1)), cmd.mapc(0, 0), cmd.mapti(1, 0, 8192, 0)];
    list.forEach((c, i) => c.forEach((w, j) => memory.writeU64Big(CMDQ + 0x100 + i * 32 + j * 8, w)));
    its.setReg(0x4, 0n); // IIDR
    its.setReg(GITS_CBASER, cbaserValue(CMDQ));
    its.setReg(GITS_CREADR, 0x100n);
    its.setReg(GITS_CWRITER, 0x160n); // processes nothing: disabled
    its.setReg(0x100, (1n << 63n) | BigInt(CMDQ + 0x1_0000));
    its.setReg(0x108, (1n << 63n) | BigInt(CMDQ + 0x2_0000));
    expect(q.creadr).toBe(0x100);
    its.setReg(GITS_CTLR, 1n);
    expect(q.creadr).toBe(0x160);
    expect(its.translate(1, 0)).toBe(8192);
  });
});
