/**
 * Guest-memory and native-shim benchmarks (suite "memory").
 *
 * memory_rw_vs_dataview (bench.md): a mixed u32/u64 read+write loop through MappedGuestMemory
 * on a 64 MiB memfd region with a dirty log attached / the same loop on a bare DataView over
 * an ArrayBuffer. Both loops draw the same xorshift addresses; the layer's loop adds only what
 * the layer costs (address -> chunk check, dirty-bit test). Steady state: after the warm-up
 * every page's dirty bit is set, as between two collections by the VMM.
 *
 * Native per-call figures (for README's dependency choice): a bare N-API call (isOpen(-1),
 * no system call), writeU64 on an eventfd beside Node's own fs.writeSync of the same 8 bytes,
 * recvmsg on an empty socket (EAGAIN), and a plain JS function call.
 */
import { ftruncateSync, writeSync } from 'node:fs';
import { native } from '../../src/native/index.js';
import { mapDirtyLog, type MappedDirtyLog } from '../../src/memory/mapped-dirty-log.js';
import { createMemfdGuestMemory, type MappedGuestMemory } from '../../src/memory/mapped-guest-memory.js';
import { dirtyLogBytesFor } from '../../src/memory/region-table.js';
import { median, round, timeMetric, type BenchResult, type BenchSuite } from './harness.js';

const REGION_GPA = 0x4000_0000; // 1 GiB: guest addresses are not buffer offsets
const REGION_SIZE = 64 * 1024 * 1024;
const OPS = 4 * 1024 * 1024;
const REPS = 9;

/** 4 ops per iteration: read u32, write u32, read u64, write u64, at xorshift addresses. */
function guestLoop(mem: MappedGuestMemory, base: number, mask: number, ops: number): number {
  let x = 0x9e3779b9 | 0;
  let acc = 0;
  for (let i = 0; i < ops; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const a = base + (x & mask);
    acc = (acc + mem.readU32(a)) | 0;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    mem.writeU32(base + (x & mask), acc);
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const b = base + (x & mask);
    acc = (acc + mem.readU64Lo(b) + mem.readU64Hi(b)) | 0;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    mem.writeU64(base + (x & mask), acc, i);
  }
  return acc;
}

/** The same loop on a bare DataView (the floor). */
function dataViewLoop(view: DataView, base: number, mask: number, ops: number): number {
  let x = 0x9e3779b9 | 0;
  let acc = 0;
  for (let i = 0; i < ops; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const a = base + (x & mask);
    acc = (acc + view.getUint32(a, true)) | 0;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    view.setUint32(base + (x & mask), acc, true);
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const b = base + (x & mask);
    acc = (acc + view.getUint32(b, true) + view.getUint32(b + 4, true)) | 0;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const c = base + (x & mask);
    view.setUint32(c, acc, true);
    view.setUint32(c + 4, i, true);
  }
  return acc;
}

/** Runs a and b alternately (warm-up first) and returns their median times in ms. */
function alternate(a: () => void, b: () => void, reps: number): [number, number] {
  a();
  b();
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < reps; i++) {
    let t0 = process.hrtime.bigint();
    a();
    ta.push(Number(process.hrtime.bigint() - t0) / 1e6);
    t0 = process.hrtime.bigint();
    b();
    tb.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return [median(ta), median(tb)];
}

/** Median ns per call of fn over n calls. */
function nsPerCall(fn: (n: number) => void, n: number, reps = 7): number {
  fn(n);
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    fn(n);
    times.push(Number(process.hrtime.bigint() - t0) / n);
  }
  return median(times);
}

function nsMetric(metric: string, value: number, limit: number | null, goal: string, note: string): BenchResult {
  return {
    metric,
    value: round(value),
    unit: 'ns',
    limit: limit === null ? null : round(limit),
    ratio: limit === null || limit === 0 ? null : round(value / limit),
    goal,
    note,
  };
}

let sink = 0;
function plainJsFunction(x: number): number {
  return (x * 3 + 1) | 0;
}

/** A mapped guest memory at gpa with a mapped dirty log covering it (both memfds). */
function mappedWithLog(gpa: number, size: number): { mem: MappedGuestMemory; dirty: MappedDirtyLog; close(): void } {
  const mem = createMemfdGuestMemory([{ gpa, size }], { name: 'bench-guest-ram' });
  const logFd = native.memfdCreate('bench-dirty-log', 1);
  const logBytes = dirtyLogBytesFor(gpa + size);
  ftruncateSync(logFd, logBytes);
  const dirty = mapDirtyLog(logFd, logBytes, 0);
  native.close(logFd); // the mapping keeps the file
  mem.setDirtyLog(dirty.log);
  return {
    mem,
    dirty,
    close() {
      mem.setDirtyLog(null);
      dirty.close();
      mem.close();
    },
  };
}

/** Every page of [gpa, gpa + size) has its dirty bit: a loop that skipped marking is no benchmark. */
function checkAllDirty(log: Uint8Array, gpa: number, size: number): void {
  let missing = 0;
  for (let p = gpa / 4096; p < (gpa + size) / 4096; p++) if (((log[Math.floor(p / 8)]! >> (p % 8)) & 1) === 0) missing++;
  if (missing !== 0) throw new Error(`bench: ${missing} written pages are not dirty`);
}

function rwMetric(metric: string, gpa: number, span: number, withLog: boolean, goal: string, note: string): BenchResult {
  const { mem, dirty, close } = mappedWithLog(gpa, REGION_SIZE);
  try {
    if (!withLog) mem.setDirtyLog(null);
    const bare = new DataView(new ArrayBuffer(REGION_SIZE));
    const mask = (span - 1) & ~7;
    const [tGuest, tBare] = alternate(
      () => {
        sink ^= guestLoop(mem, gpa, mask, OPS);
      },
      () => {
        sink ^= dataViewLoop(bare, 0, mask, OPS);
      },
      REPS,
    );
    if (withLog && span === REGION_SIZE) checkAllDirty(dirty.log, gpa, REGION_SIZE);
    return timeMetric(metric, tGuest, tBare, goal, note);
  } finally {
    close();
  }
}

/**
 * Bulk sequential writes the way table saves can do them: entries encoded into a reusable
 * 64 KiB scratch buffer through a DataView, then one writeBytes() per batch (one bounds check,
 * one copy, one dirty-log pass) / the same u64 entries stored directly as two setUint32 each.
 */
function bulkWriteMetric(): BenchResult {
  const entries = 1 << 20; // 8 MiB of u64 entries
  const { mem, close } = mappedWithLog(REGION_GPA, REGION_SIZE);
  try {
    const scratch = new Uint8Array(64 * 1024);
    const sv = new DataView(scratch.buffer);
    const perBatch = scratch.length / 8;
    const bare = new DataView(new ArrayBuffer(REGION_SIZE));
    const [tGuest, tBare] = alternate(
      () => {
        for (let first = 0; first < entries; first += perBatch) {
          for (let i = 0; i < perBatch; i++) {
            sv.setUint32(i * 8, first + i, true);
            sv.setUint32(i * 8 + 4, 0x8000_0000, true);
          }
          mem.writeBytes(REGION_GPA + first * 8, scratch);
        }
      },
      () => {
        for (let e = 0; e < entries; e++) {
          bare.setUint32(e * 8, e, true);
          bare.setUint32(e * 8 + 4, 0x8000_0000, true);
        }
      },
      REPS,
    );
    if (mem.readU64Lo(REGION_GPA + 8 * 12345) !== 12345) throw new Error('bench: bulk write lost data');
    return timeMetric('memory_bulk_write_vs_dataview', tGuest, tBare, '(info)', '1M u64 entries via 64 KiB scratch + writeBytes, dirty log on');
  } finally {
    close();
  }
}

function memoryMetrics(): BenchResult[] {
  const results = [
    rwMetric('memory_rw_vs_dataview', REGION_GPA, REGION_SIZE, true, '<= 1.5', '4M mixed u32/u64 ops, random over 64 MiB mapped at 1 GiB, dirty log on'),
    rwMetric('memory_rw_vs_dataview_nolog', REGION_GPA, REGION_SIZE, false, '(info)', 'same, no dirty log attached'),
    rwMetric('memory_rw_vs_dataview_256k', REGION_GPA, 256 * 1024, true, '(info)', 'same, random over a 256 KiB (cache-resident) window'),
    bulkWriteMetric(),
  ];
  // Last: a region above 4 GiB makes V8 keep the cached chunk start as a double for every
  // instance from then on (field representation), which would slow the metrics above.
  results.push(rwMetric('memory_rw_vs_dataview_above_4g', 2 ** 32, REGION_SIZE, true, '(info)', 'as memory_rw_vs_dataview, region at 4 GiB (float address arithmetic)'));
  return results;
}

function nativeMetrics(): BenchResult[] {
  const efd = native.eventfd(0);
  const [a, b] = native.socketpair();
  const eight = new Uint8Array(8);
  eight[0] = 1;
  const buf = new Uint8Array(64);
  const fds = new Int32Array(17);
  try {
    const drain = (): void => {
      native.readU64(efd);
    };
    const tNapi = nsPerCall((n) => {
      let c = 0;
      for (let i = 0; i < n; i++) if (native.isOpen(-1)) c++;
      sink ^= c;
    }, 1_000_000);
    const tJs = nsPerCall((n) => {
      let c = 0;
      for (let i = 0; i < n; i++) c = plainJsFunction(c + i);
      sink ^= c;
    }, 1_000_000);
    const tWrite = nsPerCall((n) => {
      for (let i = 0; i < n; i++) native.writeU64(efd, 1);
      drain();
    }, 200_000);
    const tFsWrite = nsPerCall((n) => {
      for (let i = 0; i < n; i++) writeSync(efd, eight, 0, 8);
      drain();
    }, 200_000);
    const tRecv = nsPerCall((n) => {
      let c = 0;
      for (let i = 0; i < n; i++) c += native.recvmsg(b, buf, 0, 64, fds);
      sink ^= c;
    }, 200_000);
    if (native.recvmsg(b, buf, 0, 64, fds) !== -11) throw new Error('bench: recvmsg on an empty socket did not return -EAGAIN');
    return [
      nsMetric('native_call_ns', tNapi, tJs, '(info)', 'bare N-API call isOpen(-1), no syscall; limit = plain JS function call'),
      nsMetric('native_writeu64_eventfd_ns', tWrite, tFsWrite, '(info)', 'native.writeU64(eventfd); limit = fs.writeSync of the same 8 bytes'),
      nsMetric('native_recvmsg_eagain_ns', tRecv, null, '(info)', 'native.recvmsg on an empty socketpair (syscall + N-API)'),
    ];
  } finally {
    native.close(efd);
    native.close(a);
    native.close(b);
  }
}

export const suite: BenchSuite = {
  name: 'memory',
  async run(): Promise<BenchResult[]> {
    const results = [...memoryMetrics(), ...nativeMetrics()];
    if (sink === 0.5) console.log(sink); // keep the loops' results observable
    return results;
  },
};
