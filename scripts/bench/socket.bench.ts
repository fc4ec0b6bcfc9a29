/**
 * Socket benchmarks (../shared/spec/bench.md): a real vitsd process, driven over its UNIX
 * socket by a client that calls the native sendmsg/recvmsg directly and spins on EAGAIN
 * (the daemon is another process), so that what is measured is the daemon, not the client.
 *
 * - msi_socket_batched_rate: SIGNAL_MSI_BATCH of 256 MSIs, pipelined, end to end
 *   (translation, pending set, notify fds installed), MSIs per second.
 * - msi_socket_rtt_vs_echo: median round trip of one SIGNAL_MSI / median round trip of a
 *   message of the same size through a bare Node `net` echo server (also its own process),
 *   measured by the same client in the same run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createMemfdGuestMemory, type MappedGuestMemory } from '../../src/memory/mapped-guest-memory.js';
import { native, packageRoot } from '../../src/native/index.js';
import {
  HEADER_SIZE,
  MSI_BATCH_REPLY_MESSAGE_SIZE,
  Request,
  SIGNAL_MSI_REPLY_MESSAGE_SIZE,
  encodeRequestFor,
  msiBatchMessageEntryOffset,
  writeKvmMsi,
  writeMsiBatchMessageHead,
  writeSignalMsiMessage,
} from '../../src/protocol/index.js';
import { Errno } from '../../src/util/errno.js';
import { median, round, timeMetric, type BenchResult, type BenchSuite } from './harness.js';

const VCPUS = 8;
const DEVICES = 16;
const EVENTS = 256;
const BATCH = 256;
/** Distinct pre-built batches cycled through (random events, so translations vary). */
const BATCH_VARIANTS = 16;
/** Batches in flight. */
const WINDOW = 16;
const BATCHES_PER_REP = 4000; // 1.024e6 MSIs
const REPS = 7;
const RTT_SAMPLES = 3000;

const RAM_BASE = 0x4000_0000;
const RAM_SIZE = 16 * 1024 * 1024;
const ITS_BASE = 0x0808_0000;
const DOORBELL = ITS_BASE + 0x1_0040;
const REDIST_BASE = 0x080a_0000;
const CMDQ = RAM_BASE;
const DEVICE_TABLE = RAM_BASE + 0x1_0000;
const COLLECTION_TABLE = RAM_BASE + 0x2_0000;
const PROP_TABLE = RAM_BASE + 0x3_0000;
const PEND_TABLES = RAM_BASE + 0x4_0000; // + vcpu * 64 KiB
const ITTS = RAM_BASE + 0x20_0000; // + devid * 2 KiB
const lpiOf = (devid: number, event: number): number => 8192 + devid * EVENTS + event;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A blocking-by-spinning protocol client over one non-blocking socket. */
class SpinClient {
  readonly fd: number;
  private seq = 1;
  private readonly rbuf = new Uint8Array(1 << 20);
  private readonly rview = new DataView(this.rbuf.buffer);
  private readonly slots = new Int32Array(17);

  constructor(path: string) {
    this.fd = native.connectUnix(path);
  }

  sendAll(buf: Uint8Array, offset: number, length: number, fds: number[] | null = null): void {
    let at = offset;
    let first = true;
    while (at < offset + length) {
      const n = native.sendmsg(this.fd, buf, at, offset + length - at, first ? fds : null);
      if (n > 0) {
        at += n;
        first = false;
      } else if (n !== -Errno.EAGAIN) {
        throw new Error(`sendmsg: errno ${-n}`);
      }
    }
  }

  /** Spins until exactly `length` bytes arrived into rbuf[0..length). */
  recvExactly(length: number): void {
    let got = 0;
    while (got < length) {
      const n = native.recvmsg(this.fd, this.rbuf, got, length - got, this.slots);
      if (n > 0) got += n;
      else if (n === 0) throw new Error('peer closed');
      else if (n !== -Errno.EAGAIN) throw new Error(`recvmsg: errno ${-n}`);
    }
  }

  /** One request, its whole reply; returns the status and a view of the fields. */
  call(bytes: Uint8Array, fds: number[] | null = null): { status: number; u32: (o: number) => number } {
    this.sendAll(bytes, 0, bytes.length, fds);
    this.recvExactly(HEADER_SIZE);
    const size = this.rview.getUint32(8, true);
    let got = HEADER_SIZE;
    while (got < HEADER_SIZE + size) {
      const n = native.recvmsg(this.fd, this.rbuf, got, HEADER_SIZE + size - got, this.slots);
      if (n > 0) got += n;
      else if (n !== -Errno.EAGAIN) throw new Error(`recvmsg: ${n}`);
    }
    const status = this.rview.getInt32(16, true);
    const v = this.rview;
    return { status, u32: (o) => v.getUint32(24 + o, true) };
  }

  ok(bytes: Uint8Array, fds: number[] | null = null): { status: number; u32: (o: number) => number } {
    const r = this.call(bytes, fds);
    if (r.status < 0) throw new Error(`request ${new DataView(bytes.buffer).getUint32(0, true)} failed: ${r.status}`);
    return r;
  }

  nextSeq(): number {
    return this.seq++;
  }

  get view(): DataView {
    return this.rview;
  }

  get buffer(): Uint8Array {
    return this.rbuf;
  }

  close(): void {
    native.close(this.fd);
  }
}

/** Programs the VM like a VMM and a Linux guest would, all over the socket. */
function setUpVm(c: SpinClient, ram: MappedGuestMemory): void {
  const b = BigInt;
  const attr = (dev: number, group: number, a: bigint, value = 0n) =>
    c.ok(encodeRequestFor('SET_DEVICE_ATTR', c.nextSeq(), { deviceId: dev, group, attr: a, value }));
  const mmioWrite = (gpa: number, length: number, data: bigint) =>
    c.ok(encodeRequestFor('MMIO', c.nextSeq(), { address: b(gpa), length, isWrite: 1, data }));
  c.ok(encodeRequestFor('HELLO', c.nextSeq(), { version: 1, features: 0xfn }));
  c.ok(encodeRequestFor('SET_MEM_TABLE', c.nextSeq(), { regions: [{ guestPhysAddr: b(RAM_BASE), memorySize: b(RAM_SIZE), mmapOffset: 0n }] }), [ram.mappedRegions[0]!.fd]);
  c.ok(encodeRequestFor('SET_VCPUS', c.nextSeq(), { count: VCPUS }));
  const v3 = c.ok(encodeRequestFor('CREATE_DEVICE', c.nextSeq(), { type: 7, flags: 0 })).u32(0);
  attr(v3, 0, 2n, 0x0800_0000n);
  attr(v3, 0, 3n, b(REDIST_BASE));
  attr(v3, 4, 0n);
  const its = c.ok(encodeRequestFor('CREATE_DEVICE', c.nextSeq(), { type: 8, flags: 0 })).u32(0);
  attr(its, 0, 4n, b(ITS_BASE));
  attr(its, 4, 0n);
  ram.fill(PROP_TABLE, 0x1_0000 - 8192, 0xa3); // priority 0xa0, RES1, enabled
  for (let i = 0; i < VCPUS; i++) {
    const rd = REDIST_BASE + i * 0x2_0000;
    mmioWrite(rd + 0x70, 8, b(PROP_TABLE) | (1n << 10n) | (7n << 7n) | 15n);
    mmioWrite(rd + 0x78, 8, b(PEND_TABLES + i * 0x1_0000) | (1n << 10n) | (7n << 7n));
    mmioWrite(rd, 4, 1n);
    const efd = native.eventfd(0);
    c.ok(encodeRequestFor('SET_VCPU_NOTIFY_FD', c.nextSeq(), { vcpu: i }), [efd]);
    native.close(efd);
  }
  mmioWrite(ITS_BASE + 0x100, 8, (1n << 63n) | (2n << 8n) | b(DEVICE_TABLE));
  mmioWrite(ITS_BASE + 0x108, 8, (1n << 63n) | (2n << 8n) | b(COLLECTION_TABLE));
  mmioWrite(ITS_BASE + 0x80, 8, (1n << 63n) | b(CMDQ) | 15n);
  mmioWrite(ITS_BASE, 4, 1n);
  // Commands: MAPC per vCPU, MAPD + MAPTI per event (target vCPU event % VCPUS), SYNC.
  const cmds: bigint[][] = [];
  for (let i = 0; i < VCPUS; i++) cmds.push([0x09n, 0n, b(i) | (b(i) << 16n) | (1n << 63n), 0n]);
  for (let d = 0; d < DEVICES; d++) {
    cmds.push([0x08n | (b(d) << 32n), 7n, b(ITTS + d * 2048) | (1n << 63n), 0n]);
    for (let e = 0; e < EVENTS; e++) cmds.push([0x0an | (b(d) << 32n), b(e) | (b(lpiOf(d, e)) << 32n), b(e % VCPUS), 0n]);
  }
  cmds.push([0x05n, 0n, 0n, 0n]);
  let cwriter = 0;
  for (let at = 0; at < cmds.length; at += 1000) {
    for (const cmd of cmds.slice(at, at + 1000)) {
      for (let w = 0; w < 4; w++) ram.writeU64Big(CMDQ + cwriter + 8 * w, cmd[w]!);
      cwriter = (cwriter + 32) % 0x1_0000;
    }
    mmioWrite(ITS_BASE + 0x88, 8, b(cwriter));
  }
  // Every MSI must now be delivered: check one per device.
  for (let d = 0; d < DEVICES; d++) {
    const m = new Uint8Array(48);
    writeSignalMsiMessage(new DataView(m.buffer), 0, c.nextSeq(), false, DOORBELL, 0, d, 1, d);
    const r = c.call(m);
    if (r.status !== 1) throw new Error(`set-up check: MSI to device ${d} gave status ${r.status}`);
  }
}

/** BATCH_VARIANTS batch messages of BATCH random mapped MSIs, back to back. */
function buildBatches(): { bytes: Uint8Array; batchBytes: number } {
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const batchBytes = HEADER_SIZE + 8 + BATCH * 32;
  const bytes = new Uint8Array(batchBytes * BATCH_VARIANTS);
  const view = new DataView(bytes.buffer);
  for (let k = 0; k < BATCH_VARIANTS; k++) {
    const at = k * batchBytes;
    writeMsiBatchMessageHead(view, at, k, false, BATCH);
    for (let i = 0; i < BATCH; i++) writeKvmMsi(view, msiBatchMessageEntryOffset(at, i), DOORBELL, 0, rand(EVENTS), 1, rand(DEVICES));
  }
  return { bytes, batchBytes };
}

/** Sends `total` batches with WINDOW in flight; checks every reply; returns seconds. */
function pumpBatches(c: SpinClient, msgs: { bytes: Uint8Array; batchBytes: number }, total: number): number {
  const { bytes, batchBytes } = msgs;
  const totalBytes = total * batchBytes;
  const rbuf = c.buffer;
  const rview = c.view;
  const slots = new Int32Array(17);
  let sent = 0;
  let replies = 0;
  let rlen = 0;
  const t0 = performance.now();
  while (replies < total) {
    const inflight = sent - replies * batchBytes;
    if (sent < totalBytes && inflight < WINDOW * batchBytes) {
      const off = sent % bytes.length;
      const len = Math.min(bytes.length - off, totalBytes - sent, WINDOW * batchBytes - inflight);
      const n = native.sendmsg(c.fd, bytes, off, len, null);
      if (n > 0) sent += n;
      else if (n !== -Errno.EAGAIN) throw new Error(`sendmsg: errno ${-n}`);
    }
    const n = native.recvmsg(c.fd, rbuf, rlen, rbuf.length - rlen, slots);
    if (n > 0) {
      rlen += n;
      let at = 0;
      while (rlen - at >= MSI_BATCH_REPLY_MESSAGE_SIZE) {
        const status = rview.getInt32(at + 16, true);
        const processed = rview.getUint32(at + 24, true);
        if (status !== 0 || processed !== BATCH || rview.getUint32(at, true) !== Request.SIGNAL_MSI_BATCH) {
          throw new Error(`batch reply: status ${status}, processed ${processed}`);
        }
        at += MSI_BATCH_REPLY_MESSAGE_SIZE;
        replies++;
      }
      rbuf.copyWithin(0, at, rlen);
      rlen -= at;
    } else if (n === 0) {
      throw new Error('daemon closed the connection');
    } else if (n !== -Errno.EAGAIN) {
      throw new Error(`recvmsg: errno ${-n}`);
    }
  }
  return (performance.now() - t0) / 1000;
}

/** Round trips of `request` (the reply is `replyLength` bytes), in ms. */
function roundTrips(c: SpinClient, request: Uint8Array, replyLength: number, samples: number): number[] {
  const times: number[] = new Array<number>(samples);
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    c.sendAll(request, 0, request.length);
    c.recvExactly(replyLength);
    times[i] = performance.now() - t0;
  }
  return times;
}

async function waitForSocket(path: string, proc: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!existsSync(path)) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
    if (Date.now() > deadline) throw new Error(`${what} did not start`);
    await sleep(20);
  }
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await exited;
}

export const suite: BenchSuite = {
  name: 'socket',
  async run(): Promise<BenchResult[]> {
    const dir = mkdtempSync(join(tmpdir(), 'vitsd-bench-'));
    const daemonPath = join(dir, 'vitsd.sock');
    const echoPath = join(dir, 'echo.sock');
    const daemon = spawn(process.execPath, [join(packageRoot(), 'dist/src/cli/vitsd.js'), '--socket-path', daemonPath, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const echoScript = "require('net').createServer((s) => s.on('data', (d) => s.write(d))).listen(process.argv[1])";
    const echo = spawn(process.execPath, ['-e', echoScript, echoPath], { stdio: ['ignore', 'ignore', 'inherit'] });
    const ram = createMemfdGuestMemory([{ gpa: RAM_BASE, size: RAM_SIZE }]);
    try {
      await waitForSocket(daemonPath, daemon, 'vitsd');
      await waitForSocket(echoPath, echo, 'the echo server');
      const c = new SpinClient(daemonPath);
      setUpVm(c, ram);

      // ---- batched rate ----
      const batches = buildBatches();
      pumpBatches(c, batches, BATCHES_PER_REP); // warm-up (JIT on both sides)
      const rates: number[] = [];
      for (let rep = 0; rep < REPS; rep++) rates.push((BATCHES_PER_REP * BATCH) / pumpBatches(c, batches, BATCHES_PER_REP));

      // ---- single-MSI round trip vs echo ----
      const msi = new Uint8Array(48);
      writeSignalMsiMessage(new DataView(msi.buffer), 0, 1, false, DOORBELL, 0, 3, 1, 2);
      const echoClient = new SpinClient(echoPath);
      roundTrips(c, msi, SIGNAL_MSI_REPLY_MESSAGE_SIZE, RTT_SAMPLES);
      roundTrips(echoClient, msi, msi.length, RTT_SAMPLES);
      const msiRtts: number[] = [];
      const echoRtts: number[] = [];
      for (let rep = 0; rep < REPS; rep++) {
        msiRtts.push(median(roundTrips(c, msi, SIGNAL_MSI_REPLY_MESSAGE_SIZE, RTT_SAMPLES)));
        echoRtts.push(median(roundTrips(echoClient, msi, msi.length, RTT_SAMPLES)));
      }
      echoClient.close();
      c.close();

      const rate = median(rates);
      return [
        {
          metric: 'msi_socket_batched_rate',
          value: round(rate),
          unit: 'MSI/s',
          limit: null,
          ratio: null,
          goal: '>= 10e6',
          note: `${BATCH}-MSI batches, ${WINDOW} in flight, ${DEVICES}x${EVENTS} events on ${VCPUS} vCPUs`,
        },
        timeMetric(
          'msi_socket_rtt_vs_echo',
          median(msiRtts),
          median(echoRtts),
          '<= 1.5',
          `SIGNAL_MSI ${round(median(msiRtts) * 1000)} us vs net echo ${round(median(echoRtts) * 1000)} us (48-byte message)`,
        ),
      ];
    } finally {
      await stop(daemon);
      await stop(echo);
      ram.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
