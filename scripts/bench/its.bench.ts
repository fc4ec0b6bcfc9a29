/**
 * ITS core benchmarks (bench.md): translate_rate, translate_vs_map, command_rate.
 * In-core: ArrayBufferGuestMemory, the real LPI system, one ITS programmed through its
 * registers and fed through a command queue in guest RAM, as a guest would.
 */
import { Its } from '../../src/its/its.js';
import { GITS_BASER0, GITS_CBASER, GITS_CTLR, GITS_CWRITER } from '../../src/its/types.js';
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { LpiRedistributors } from '../../src/redist/lpi-system.js';
import { round, timeMedian, type BenchResult, type BenchSuite } from './harness.js';

const RAM_BASE = 0x4000_0000;
const RAM_SIZE = 0x400_0000; // 64 MiB
const CMDQ = RAM_BASE; // up to 1 MiB (CBASER.Size = 255)
const CMDQ_BYTES = 0x10_0000;
const DEVICE_TABLE = RAM_BASE + 0x10_0000;
const COLLECTION_TABLE = RAM_BASE + 0x11_0000;
const PROP_TABLE = RAM_BASE + 0x12_0000;
const PEND_TABLES = RAM_BASE + 0x13_0000; // + vcpu * 64 KiB
const ITT_BASE = RAM_BASE + 0x100_0000; // 8 KiB per device (1024 events x 8 bytes)
const NR_VCPUS = 4;
const DEVICES = 1024;
const EVENTS = 1024;
const LPI_BASE = 8192;
const LPI_COUNT = 65536 - LPI_BASE;
const VALID = 1n << 63n;

interface Setup {
  memory: ArrayBufferGuestMemory;
  its: Its;
}

function setup(): Setup {
  const memory = new ArrayBufferGuestMemory([{ gpa: RAM_BASE, size: RAM_SIZE }]);
  const lpis = new LpiRedistributors(memory, NR_VCPUS, { onDeliverable: () => {} });
  lpis.resetPropbaser();
  memory.fill(PROP_TABLE, 0x1_0000, 0xa1);
  lpis.mmioWrite(0, 0x70, 8, BigInt(PROP_TABLE) | 0x580n | 15n);
  for (let v = 0; v < NR_VCPUS; v++) {
    lpis.mmioWrite(v, 0x78, 8, BigInt(PEND_TABLES + v * 0x1_0000) | 0x580n);
    lpis.mmioWrite(v, 0x0, 4, 1n);
  }
  const its = new Its(memory, lpis);
  its.setReg(GITS_BASER0, VALID | BigInt(DEVICE_TABLE));
  its.setReg(GITS_BASER0 + 8, VALID | BigInt(COLLECTION_TABLE));
  its.setReg(GITS_CBASER, VALID | BigInt(CMDQ) | BigInt(CMDQ_BYTES / 4096 - 1));
  its.setReg(GITS_CTLR, 1n);
  return { memory, its };
}

/** Command words (DW0..DW3 as u32 pairs) written straight into the queue. */
class QueueWriter {
  offset = 0;
  constructor(private readonly memory: ArrayBufferGuestMemory) {}
  put(dw0lo: number, dw0hi: number, dw1lo: number, dw1hi: number, dw2lo: number, dw2hi: number, dw3lo = 0, dw3hi = 0): void {
    const a = CMDQ + this.offset;
    this.memory.writeU64(a, dw0lo, dw0hi);
    this.memory.writeU64(a + 8, dw1lo, dw1hi);
    this.memory.writeU64(a + 16, dw2lo, dw2hi);
    this.memory.writeU64(a + 24, dw3lo, dw3hi);
    this.offset = (this.offset + 32) % CMDQ_BYTES;
  }
  mapd(devid: number, size: number, itt: number): void {
    this.put(0x08, devid, size, 0, itt % 0x1_0000_0000, Math.floor(itt / 0x1_0000_0000) | 0x8000_0000);
  }
  mapc(icid: number, rd: number): void {
    this.put(0x09, 0, 0, 0, (icid | (rd << 16)) >>> 0, 0x8000_0000);
  }
  mapti(devid: number, eventid: number, intid: number, icid: number): void {
    this.put(0x0a, devid, eventid, intid, icid, 0);
  }
  int(devid: number, eventid: number): void {
    this.put(0x03, devid, eventid, 0, 0, 0);
  }
  movi(devid: number, eventid: number, icid: number): void {
    this.put(0x01, devid, eventid, 0, icid, 0);
  }
  inv(devid: number, eventid: number): void {
    this.put(0x0c, devid, eventid, 0, 0, 0);
  }
  sync(): void {
    this.put(0x05, 0, 0, 0, 0, 0);
  }
}

function kick(its: Its, w: QueueWriter): void {
  its.mmioWrite(GITS_CWRITER, 8, BigInt(w.offset));
}

/** 1024 devices x 1024 events through MAPD/MAPC/MAPTI commands (LPIs shared round-robin). */
function mapMillion(s: Setup): void {
  const w = new QueueWriter(s.memory);
  for (let c = 0; c < NR_VCPUS; c++) w.mapc(c, c);
  kick(s.its, w);
  let n = 0;
  for (let d = 0; d < DEVICES; d++) {
    w.mapd(d, 9, ITT_BASE + d * EVENTS * 8);
    for (let e = 0; e < EVENTS; e++) {
      w.mapti(d, e, LPI_BASE + ((d * EVENTS + e) % LPI_COUNT), e % NR_VCPUS);
      if (++n % 16384 === 0) kick(s.its, w);
    }
  }
  kick(s.its, w);
  if (s.its.eventCount() !== DEVICES * EVENTS) throw new Error(`mapped ${s.its.eventCount()} events, expected ${DEVICES * EVENTS}`);
}

/** Deterministic shuffle (xorshift32) of (devid << 10 | eventid) keys. */
function randomOrder(): Int32Array {
  const keys = new Int32Array(DEVICES * EVENTS);
  for (let i = 0; i < keys.length; i++) keys[i] = i;
  let x = 0x9e3779b9 | 0;
  for (let i = keys.length - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    const t = keys[i]!;
    keys[i] = keys[j]!;
    keys[j] = t;
  }
  return keys;
}

let sink = 0;

function translateLoop(its: Its, order: Int32Array): void {
  let s = 0;
  for (let i = 0; i < order.length; i++) {
    const k = order[i]!;
    s += its.translate(k >>> 10, k & 1023);
  }
  sink += s;
}

function mapLoop(map: Map<number, number>, order: Int32Array): void {
  let s = 0;
  for (let i = 0; i < order.length; i++) s += map.get(order[i]!)!;
  sink += s;
}

function signalLoop(its: Its, order: Int32Array): void {
  let s = 0;
  for (let i = 0; i < order.length; i++) {
    const k = order[i]!;
    s += its.signalMsi(k >>> 10, k & 1023);
  }
  sink += s;
}

/** Fills the whole queue: MAPD, then MAPTI x N with an INT every 8 and a MOVI every 16, then INV, SYNC. */
function fillCommandQueue(s: Setup): number {
  const w = new QueueWriter(s.memory);
  const slots = CMDQ_BYTES / 32 - 1; // one slot stays empty (CWRITER != CREADR)
  const devid = 7;
  w.mapd(devid, 15, ITT_BASE);
  let n = 1;
  let e = 0;
  while (n < slots - 2) {
    w.mapti(devid, e, LPI_BASE + (e % LPI_COUNT), e % NR_VCPUS);
    n++;
    if (e % 8 === 7 && n < slots - 2) {
      w.int(devid, e - 3);
      n++;
    }
    if (e % 16 === 15 && n < slots - 2) {
      w.movi(devid, e - 5, (e + 1) % NR_VCPUS);
      n++;
    }
    e++;
  }
  w.inv(devid, 0);
  w.sync();
  return n + 2;
}

export const suite: BenchSuite = {
  name: 'its',
  async run(): Promise<BenchResult[]> {
    const results: BenchResult[] = [];

    // ---- translate_rate / translate_vs_map ----
    const s = setup();
    mapMillion(s);
    const order = randomOrder();
    const map = new Map<number, number>();
    for (let k = 0; k < order.length; k++) map.set(k, s.its.translate(k >>> 10, k & 1023));
    const tTranslate = timeMedian(() => translateLoop(s.its, order), 9, 3);
    const tMap = timeMedian(() => mapLoop(map, order), 9, 3);
    const tSignal = timeMedian(() => signalLoop(s.its, order), 7, 3);
    const n = order.length;
    results.push({
      metric: 'translate_rate', value: round(n / (tTranslate / 1000)), unit: 'per second', limit: null, ratio: null, goal: '>= 20e6',
      note: `${DEVICES}x${EVENTS} mapped, random order; signalMsi ${(n / (tSignal / 1000) / 1e6).toFixed(1)}e6/s`,
    });
    const nsTranslate = (tTranslate * 1e6) / n;
    const nsMap = (tMap * 1e6) / n;
    results.push({
      metric: 'translate_vs_map', value: round(nsTranslate), unit: 'ns', limit: round(nsMap), ratio: round(nsTranslate / nsMap), goal: '<= 1',
      note: 'ns per translate / ns per Map.get, 1M integer keys, same random order',
    });

    // ---- command_rate ----
    const c = setup();
    const w = new QueueWriter(c.memory);
    for (let i = 0; i < NR_VCPUS; i++) w.mapc(i, i);
    kick(c.its, w);
    const count = fillCommandQueue(c);
    const cbaser = VALID | BigInt(CMDQ) | BigInt(CMDQ_BYTES / 4096 - 1);
    const runQueue = (): void => {
      // Rewind: disable, rewrite CBASER (CREADR = CWRITER = 0), enable, then one CWRITER write.
      c.its.mmioWrite(GITS_CTLR, 4, 0n);
      c.its.mmioWrite(GITS_CBASER, 8, cbaser);
      c.its.mmioWrite(GITS_CTLR, 4, 1n);
      c.its.mmioWrite(GITS_CWRITER, 8, BigInt(count * 32));
    };
    const tCommands = timeMedian(runQueue, 9, 3);
    const errs = Object.entries(c.its.stats.commandErrors).filter(([, v]) => v > 0);
    results.push({
      metric: 'command_rate', value: round(count / (tCommands / 1000)), unit: 'per second', limit: null, ratio: null, goal: '>= 2e6',
      note: `${count} commands per queue pass${errs.length ? `; errors ${JSON.stringify(Object.fromEntries(errs))}` : ''}`,
    });
    if (sink === 0.5) console.log(sink);
    return results;
  },
};
