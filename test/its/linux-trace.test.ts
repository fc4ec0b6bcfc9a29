/**
 * Replays a real Linux 6.1 guest's ITS traffic (4 vCPUs, virtio devices, CPU hotplug, driver
 * rebinds), recorded on QEMU's ITS (/work/shared/traces/linux-6.1-smp4; the fixture holds
 * the 255 raw commands of its command queue and the interleaving of commands and MSIs).
 * Each command is submitted with its own CWRITER write; each MSI must be delivered to the
 * INTID and vCPU the recorded run resolved it to.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Its } from '../../src/its/its.js';
import { GITS_BASER0, GITS_CBASER, GITS_CREADR, GITS_CTLR, GITS_CWRITER } from '../../src/its/types.js';
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { LpiRedistributors } from '../../src/redist/lpi-system.js';

interface Fixture {
  registers: Record<string, string>;
  commands: [string, string, string, string][];
  sequence: (['C', number] | ['M', number, number, number, number])[];
}

const fixture = JSON.parse(
  readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'linux-6.1-smp4-replay.json'), 'utf8'),
) as Fixture;

describe('Linux 6.1 guest trace replay', () => {
  it('runs all 255 commands without error and resolves all 150 MSIs as recorded', () => {
    // Guest RAM around the tables, queue and ITTs the guest used (QEMU virt: RAM at 1 GiB).
    const memory = new ArrayBufferGuestMemory([
      { gpa: 0x4200_0000, size: 0x160_0000 },
      { gpa: 0x4830_0000, size: 0x10_0000 },
    ]);
    const reg = (name: string): bigint => BigInt(fixture.registers[name]!);
    const lpis = new LpiRedistributors(memory, 4, { onDeliverable: () => {} });
    lpis.resetPropbaser();
    const propbaser = reg('PROPBASER');
    memory.fill(Number(propbaser & 0xffff_f000n), 0xe000, 0xa3); // priority 0xa0, enabled (as dumped)
    lpis.mmioWrite(0, 0x70, 8, propbaser);
    for (let v = 0; v < 4; v++) {
      lpis.mmioWrite(v, 0x78, 8, reg('PENDBASER0') + BigInt(v * 0x1_0000));
      lpis.mmioWrite(v, 0x0, 4, 1n);
    }
    const its = new Its(memory, lpis);
    its.setReg(GITS_BASER0, reg('BASER0'));
    its.setReg(GITS_BASER0 + 8, reg('BASER1'));
    its.setReg(GITS_CBASER, reg('CBASER'));
    // The two-level device table: L1 entry 0 -> the L2 page, as the guest wrote it.
    const l1 = Number(reg('BASER0') & 0x0000_ffff_ffff_0000n);
    memory.writeU64Big(l1, reg('L1_0'));
    const queue = Number(reg('CBASER') & 0x000f_ffff_ffff_f000n);
    fixture.commands.forEach((words, i) => words.forEach((w, j) => memory.writeU64Big(queue + i * 32 + j * 8, BigInt(w))));
    its.mmioWrite(GITS_CTLR, 4, 0x8000_0001n);
    expect(its.enabled).toBe(true);

    let msis = 0;
    for (const step of fixture.sequence) {
      if (step[0] === 'C') {
        const end = (step[1] + 1) * 32;
        its.mmioWrite(GITS_CWRITER, 4, BigInt(end));
        expect(its.mmioRead(GITS_CREADR, 4)).toBe(BigInt(end));
      } else {
        const [, devid, eventid, intid, rdbase] = step;
        expect(its.translate(devid, eventid)).toBe(intid);
        expect(its.signalMsi(devid, eventid)).toBe(1);
        expect(lpis.target(intid)).toBe(rdbase);
        lpis.clearPending(intid); // the guest acknowledged it
        msis++;
      }
    }
    expect(msis).toBe(150);
    const s = its.stats;
    expect(s.commands).toMatchObject({ SYNC: 122, INV: 44, MAPTI: 31, MOVI: 22, DISCARD: 13, MAPD: 11, MAPC: 6, INVALL: 6, total: 255 });
    expect(Object.entries(s.commandErrors).filter(([, n]) => n > 0)).toEqual([]);
    expect(s.msiDelivered).toBe(150);
  });
});
