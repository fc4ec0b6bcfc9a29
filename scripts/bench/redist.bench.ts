/**
 * Redistributor (LPI system) benchmarks (bench.md):
 * - save_pending_1m_core (informative; bench.md's save_pending_1m, through the device
 *   attribute, is in saverestore.bench.ts): SAVE_PENDING_TABLES, 8 vCPUs, 10% of LPIs pending. KVM's LPI INTID
 *   space is 16 bits, so "1M LPIs" are 1M references (mapped events) on the 57344 LPIs
 *   8192..65535, every one of which exists. LPIs are spread round-robin over the vCPUs
 *   (the worst case for locality: every byte of every table holds a mapped LPI).
 *   Limit: the same pending-table bytes (8 x 7 KiB) written as 32-bit DataView stores.
 * - lpi_pending_ack_rate (informative): setPending + non-PEEK ack pairs per second, with
 *   64 LPIs pending per vCPU in the background.
 */
import { ArrayBufferGuestMemory } from '../../src/memory/array-buffer-guest-memory.js';
import { LpiRedistributors } from '../../src/redist/lpi-system.js';
import { median, round, timeMedian, timeMetric, type BenchResult, type BenchSuite } from './harness.js';

const RAM_BASE = 0x4000_0000;
const RAM_SIZE = 0x100_0000; // 16 MiB
const PROP_TABLE = RAM_BASE + 0x1_0000;
const PEND_TABLES = RAM_BASE + 0x10_0000; // + vcpu * 64 KiB
const NR_VCPUS = 8;
const LPI_BASE = 8192;
const LPI_END = 65536;
const REFERENCES = 1 << 20;
/** Bytes of one pending table that hold LPI bits: INTIDs 8192..65535 -> bytes 1024..8191. */
const LPI_BYTES_FROM = LPI_BASE / 8;
const LPI_BYTES_TO = LPI_END / 8;

function setup(): { memory: ArrayBufferGuestMemory; lpis: LpiRedistributors } {
  const memory = new ArrayBufferGuestMemory([{ gpa: RAM_BASE, size: RAM_SIZE }]);
  const lpis = new LpiRedistributors(memory, NR_VCPUS, { onDeliverable: () => {} });
  lpis.resetPropbaser();
  memory.fill(PROP_TABLE, LPI_END - LPI_BASE, 0xa1);
  lpis.mmioWrite(0, 0x70, 8, BigInt(PROP_TABLE) | 0x580n | 15n);
  for (let v = 0; v < NR_VCPUS; v++) {
    lpis.mmioWrite(v, 0x78, 8, BigInt(PEND_TABLES + v * 0x1_0000) | 0x580n);
    lpis.mmioWrite(v, 0x0, 4, 1n);
  }
  return { memory, lpis };
}

/** Deterministic xorshift32, so every run pends the same LPIs. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

function clearPendingTables(memory: ArrayBufferGuestMemory): void {
  for (let v = 0; v < NR_VCPUS; v++) memory.fill(PEND_TABLES + v * 0x1_0000, LPI_BYTES_TO, 0);
}

function savePending(): BenchResult {
  const { memory, lpis } = setup();
  let refs = 0;
  for (let intid = LPI_BASE; intid < LPI_END; intid++) {
    lpis.acquire(intid, intid % NR_VCPUS);
    refs++;
  }
  for (let intid = LPI_BASE; refs < REFERENCES; intid = intid + 1 < LPI_END ? intid + 1 : LPI_BASE, refs++) {
    lpis.acquire(intid, 0);
  }
  const rand = rng(0x5eed);
  for (let intid = LPI_BASE; intid < LPI_END; intid++) if (rand() < 0.1) lpis.setPending(intid);

  // Each repetition saves into zeroed tables (the first save after a run), timed alone.
  const times: number[] = [];
  for (let rep = 0; rep < 16; rep++) {
    clearPendingTables(memory);
    const t0 = process.hrtime.bigint();
    lpis.savePendingTables();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (rep > 0) times.push(ms); // rep 0 is the warm-up
  }
  const value = median(times);

  const view = new DataView(memory.buffers[0]!);
  const limit = timeMedian(() => {
    for (let v = 0; v < NR_VCPUS; v++) {
      const base = PEND_TABLES - RAM_BASE + v * 0x1_0000;
      for (let off = LPI_BYTES_FROM; off < LPI_BYTES_TO; off += 4) view.setUint32(base + off, off, true);
    }
  }, 15, 3);
  return timeMetric('save_pending_1m_core', value, limit, '(info)', `LpiSystem.savePendingTables alone (the official save_pending_1m is in the saverestore suite); ${LPI_END - LPI_BASE} LPIs, ${refs} refs, ${NR_VCPUS} vCPUs`);
}

function pendingAckRate(): BenchResult {
  const { lpis } = setup();
  for (let intid = LPI_BASE; intid < LPI_END; intid++) lpis.acquire(intid, intid % NR_VCPUS);
  // Background: 64 pending LPIs per vCPU (all LPIs share one priority, so each ack takes the
  // lowest pending INTID of that vCPU and the pending set keeps its size).
  for (let intid = LPI_BASE; intid < LPI_BASE + 64 * NR_VCPUS; intid++) lpis.setPending(intid);
  const N = 1_000_000;
  const ms = timeMedian(() => {
    let intid = LPI_BASE + 64 * NR_VCPUS;
    for (let i = 0; i < N; i++) {
      lpis.setPending(intid);
      lpis.ack(intid % NR_VCPUS, false);
      intid = intid + 1 < LPI_END ? intid + 1 : LPI_BASE;
    }
  }, 5, 1);
  const rate = N / (ms / 1000);
  return { metric: 'lpi_pending_ack_rate', value: round(rate), unit: 'per second', limit: null, ratio: null, goal: '(informative)', note: '64 pending per vCPU' };
}

export const suite: BenchSuite = {
  name: 'redist',
  async run(): Promise<BenchResult[]> {
    return [savePending(), pendingAckRate()];
  },
};
