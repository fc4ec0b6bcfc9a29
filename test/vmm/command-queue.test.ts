/**
 * Unit test of the guest's command posting protocol against a scripted fake ITS (a mock:
 * the real ITS is exercised by guest-driver.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { GuestBus, type GuestTraceEvent } from '../../src/vmm/guest-bus.js';
import { GuestCommandQueue, ITS_CMD_QUEUE_NR_ENTRIES } from '../../src/vmm/command-queue.js';
import { buildMapti, buildMovi } from '../../src/vmm/its-command.js';
import type { VitsdTarget } from '../../src/vmm/types.js';

const ITS = 0x0808_0000;
const RAM = 0x4000_0000;

/** Fake ITS: CREADR follows CWRITER when `processing`, reads the slots it consumes. */
class FakeIts implements VitsdTarget {
  creadr = 0;
  cwriter = 0;
  processing = true;
  consumed: bigint[][] = [];
  constructor(private readonly mem: ArrayBufferGuestMemory, private readonly queueGpa: number) {}
  async mmioRead(gpa: number): Promise<bigint> {
    if (gpa === ITS + 0x90) return BigInt(this.creadr);
    return 0n;
  }
  async mmioWrite(gpa: number, _size: number, value: bigint): Promise<void> {
    if (gpa !== ITS + 0x88) return;
    this.cwriter = Number(value);
    if (!this.processing) return;
    while (this.creadr !== this.cwriter) {
      const at = this.queueGpa + this.creadr;
      this.consumed.push([0, 1, 2, 3].map((i) => this.mem.readU64Big(at + 8 * i)));
      this.creadr = (this.creadr + 32) % 0x10000;
    }
  }
  setVcpus = async (): Promise<void> => undefined;
  createDevice = async (): Promise<number> => 0;
  setDeviceAttr = async (): Promise<bigint> => 0n;
  getDeviceAttr = async (): Promise<bigint> => 0n;
  hasDeviceAttr = async (): Promise<void> => undefined;
  signalMsi = async (): Promise<number> => 0;
  ackLpi = async (): Promise<{ intid: number; priority: number }> => ({ intid: 1023, priority: 0xff });
  suspend = async (): Promise<void> => undefined;
  resume = async (): Promise<void> => undefined;
}

function setup(): { mem: ArrayBufferGuestMemory; fake: FakeIts; q: GuestCommandQueue; trace: GuestTraceEvent[] } {
  const mem = new ArrayBufferGuestMemory([{ gpa: RAM, size: 0x20000 }]);
  const fake = new FakeIts(mem, RAM);
  const trace: GuestTraceEvent[] = [];
  const bus = new GuestBus(fake, mem, (e) => trace.push(e));
  const q = new GuestCommandQueue(bus, 0, ITS, RAM, 20);
  return { mem, fake, q, trace };
}

describe('GuestCommandQueue (Linux its_send_single_command)', () => {
  it('writes the command and its SYNC in consecutive slots, then CWRITER, then waits on CREADR', async () => {
    const { fake, q, trace } = setup();
    expect(await q.post(buildMapti(0x10, 0, 8192, 1), 1n << 16n)).toBe(true);
    expect(fake.consumed).toEqual([
      [0x000000100000000an, 0x0000200000000000n, 1n, 0n],
      [5n, 0n, 0x10000n, 0n], // SYNC to RDbase 1
    ]);
    const mmio = trace.filter((e) => e.kind === 'mmio-read' || e.kind === 'mmio-write').map((e) => `${e.kind === 'mmio-read' ? 'R' : 'W'}${(e as { gpa: number }).gpa - ITS}/${(e as { size: number }).size}`);
    // readl CREADR (room for MAPTI), readl CREADR (room for SYNC), readl CREADR (rd_idx),
    // writel CWRITER = 0x40, readl CREADR (completion) -- the order in the Linux trace.
    expect(mmio).toEqual(['R144/4', 'R144/4', 'R144/4', 'W136/4', 'R144/4']);
    expect(q.writeIndex).toBe(2);
  });

  it('a command without a collection gets no SYNC', async () => {
    const { fake, q } = setup();
    await q.post(buildMovi(1, 2, 3), null);
    expect(fake.consumed.length).toBe(1);
  });

  it('wraps at the end of the 64 KiB queue', async () => {
    const { fake, q } = setup();
    q.writeIndex = ITS_CMD_QUEUE_NR_ENTRIES - 1;
    fake.creadr = fake.cwriter = 0x10000 - 32;
    expect(await q.post(buildMapti(1, 1, 8193, 0), 0n)).toBe(true);
    expect(q.writeIndex).toBe(1);
    expect(fake.creadr).toBe(32);
    expect(fake.consumed.length).toBe(2);
  });

  it('a queue that never completes times out (bounded) and is reported, like Linux', async () => {
    const { fake, q } = setup();
    fake.processing = false;
    expect(await q.post(buildMovi(1, 2, 3), null)).toBe(false);
    expect(q.stats.timeouts).toBe(1);
  });

  it('a full queue is not overwritten: allocation gives up after the poll budget', async () => {
    const { fake, q } = setup();
    fake.processing = false;
    // Reader at slot 0, writer one behind it: full.
    q.writeIndex = ITS_CMD_QUEUE_NR_ENTRIES - 1;
    expect(await q.post(buildMovi(1, 2, 3), null)).toBe(false);
    expect(q.stats.queueFull).toBe(1);
    expect(fake.cwriter).toBe(0);
  });
});
