/**
 * protocol.md "Suspend and resume", against the real daemon process: once the saves have
 * returned, no byte of guest RAM changes until RESUME, whatever the frontend sends; and the
 * dirty log marks every page the saves changed, and only pages holding the saved tables.
 */
import { createHash } from 'node:crypto';
import { ftruncateSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MFD_CLOEXEC, PROT_READ, PROT_WRITE } from '../../src/native/binding.js';
import { native } from '../../src/native/index.js';
import { Errno } from '../../src/util/errno.js';
import { REAL_DAEMON, startDaemon, type Daemon } from './support/daemon-process.js';
import {
  CMDQ,
  COLLECTION_TABLE,
  DEVICE_TABLE,
  DOORBELL,
  GICR_STRIDE,
  ITS_BASE,
  ITT_BYTES,
  RAM_BASE,
  RAM_SIZE,
  REDIST_BASE,
  cmd,
  ittOf,
  lpiOf,
  pendTable,
  setupWireVm,
  type WireVm,
} from './support/its-setup.js';
import { kvmMsi, msiBatch, payload, request, type Reply } from './support/wire.js';

const VCPUS = 2;
const DEVICES = 4;
const EVENTS = 16;
const PAGE = 4096;
const EBUSY = -Errno.EBUSY;
/** The log covers guest pages 0 .. (RAM_BASE + RAM_SIZE) / 4096: one bit each. */
const LOG_BYTES = (RAM_BASE + RAM_SIZE) / PAGE / 8;

let daemon: Daemon;
let vm: WireVm;
let logFd: number;
let logMap: ArrayBuffer;
let log: Uint8Array;

function ramBytes(): Uint8Array {
  const out = new Uint8Array(RAM_SIZE);
  vm.ram.readBytes(RAM_BASE, out);
  return out;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Guest page numbers (gpa / 4096) whose bit is set in the dirty log. */
function dirtyPages(): Set<number> {
  const pages = new Set<number>();
  for (let i = 0; i < log.length; i++) {
    if (log[i] === 0) continue;
    for (let bit = 0; bit < 8; bit++) if ((log[i]! >> bit) & 1) pages.add(i * 8 + bit);
  }
  return pages;
}

function changedPages(before: Uint8Array, after: Uint8Array): Set<number> {
  const pages = new Set<number>();
  for (let off = 0; off < RAM_SIZE; off += PAGE) {
    const a = before.subarray(off, off + PAGE);
    const b = after.subarray(off, off + PAGE);
    if (Buffer.compare(a, b) !== 0) pages.add((RAM_BASE + off) / PAGE);
  }
  return pages;
}

/** Pages holding tables the saves may write: device and collection tables, ITTs, pending tables. */
function tablePages(): Set<number> {
  const pages = new Set<number>();
  const add = (gpa: number, len: number) => {
    for (let p = Math.floor(gpa / PAGE); p * PAGE < gpa + len; p++) pages.add(p);
  };
  add(DEVICE_TABLE, 0x1_0000);
  add(COLLECTION_TABLE, 0x1_0000);
  for (let d = 0; d < DEVICES; d++) add(ittOf(d), ITT_BYTES);
  for (let v = 0; v < VCPUS; v++) add(pendTable(v), 0x1_0000);
  return pages;
}

beforeAll(async () => {
  daemon = await startDaemon(REAL_DAEMON);
  vm = await setupWireVm(daemon.socketPath, { vcpus: VCPUS, devices: DEVICES, eventsPerDevice: EVENTS });
  logFd = native.memfdCreate('vitsd-test-dirty-log', MFD_CLOEXEC);
  ftruncateSync(logFd, 64 * 1024);
  logMap = native.mmap(logFd, 64 * 1024, 0, PROT_READ | PROT_WRITE);
  log = new Uint8Array(logMap, 0, LOG_BYTES);
  await vm.ok(request(3, vm.nextSeq(), payload(['u64', BigInt(LOG_BYTES)], ['u64', 0n])), [logFd]);
});

afterAll(async () => {
  vm?.c.close();
  vm?.ram.close();
  if (logMap) native.munmap(logMap);
  if (logFd) native.close(logFd);
  await daemon?.stop();
});

describe('suspend guarantee', () => {
  it('a dirty log smaller than guest memory is refused', async () => {
    const r = await vm.c.call(request(3, vm.nextSeq(), payload(['u64', BigInt(LOG_BYTES - 1)], ['u64', 0n])), [logFd]);
    expect(r.status).toBe(-Errno.EINVAL);
  });

  it('saves mark exactly the table pages they change; then nothing changes guest RAM until RESUME', async () => {
    // Pending LPIs on both vCPUs (some acknowledged again), so that SAVE_PENDING_TABLES has bits to write.
    for (let d = 0; d < DEVICES; d++) for (let e = 0; e < EVENTS; e += 3) expect((await vm.c.call(vm.msi(d, e))).status).toBe(1);
    await vm.ok(request(13, vm.nextSeq(), payload(['u32', 0], ['u32', 0])));
    // A command waiting in the queue beyond CWRITER (MAPTI of a new event, then INT): a CWRITER
    // write while suspended must not run it.
    const cwriter = Number(await vm.mmioRead(ITS_BASE + 0x88, 8));
    const pendingCommands = [cmd.mapti(0, EVENTS + 1, lpiOf(0, EVENTS + 1), 0), cmd.int(0, EVENTS + 1), cmd.sync(0)];
    pendingCommands.forEach((c, i) => c.forEach((w, j) => vm.ram.writeU64Big(CMDQ + cwriter + 32 * i + 8 * j, w)));

    expect((await vm.c.call(request(14, vm.nextSeq()))).status).toBe(0); // SUSPEND
    log.fill(0);
    const beforeSaves = ramBytes();
    expect((await vm.c.call(vm.attr(5, vm.v3, 4, 3n))).status).toBe(0); // SAVE_PENDING_TABLES
    expect((await vm.c.call(vm.attr(5, vm.its, 4, 1n))).status).toBe(0); // ITS_SAVE_TABLES
    const afterSaves = ramBytes();

    const changed = changedPages(beforeSaves, afterSaves);
    const dirty = dirtyPages();
    const tables = tablePages();
    expect(changed.size).toBeGreaterThan(0);
    for (const p of changed) expect(dirty.has(p), `changed page 0x${(p * PAGE).toString(16)} is not in the dirty log`).toBe(true);
    for (const p of dirty) expect(tables.has(p), `page 0x${(p * PAGE).toString(16)} marked dirty holds no saved table`).toBe(true);
    // The saved state is there: DTE of device 0 valid, pending bit of an LPI of vCPU 1 set.
    expect(vm.ram.readU64Big(DEVICE_TABLE) >> 63n).toBe(1n);
    const lpi = lpiOf(1, 3); // event 3 -> vCPU 1, sent above and not acknowledged
    expect((vm.ram.readU8(pendTable(1) + (lpi >> 3)) >> (lpi & 7)) & 1).toBe(1);

    const checksum = sha(afterSaves);
    const efd = native.eventfd(0);
    const attr = (code: 5 | 6 | 7, dev: number, group: number, a: bigint, v = 0n) => vm.attr(code, dev, group, a, v);
    const mmioW = (gpa: number, len: number, v: bigint) => vm.mmio(gpa, len, true, v);
    const mmioR = (gpa: number, len: number) => vm.mmio(gpa, len, false);
    const rd0 = REDIST_BASE;
    const memTable = () => request(2, vm.nextSeq(), payload(['u32', 1], ['u32', 0], ['u64', BigInt(RAM_BASE)], ['u64', BigInt(RAM_SIZE)], ['u64', 0n]));
    // [request, fds, expected status]
    const hammer = (): [Uint8Array, number[] | null, number | 'any'][] => [
      [mmioW(ITS_BASE + 0x88, 8, BigInt(cwriter + 3 * 32)), null, EBUSY],
      [mmioW(ITS_BASE + 0x00, 4, 0n), null, EBUSY],
      [mmioW(ITS_BASE + 0x80, 8, (1n << 63n) | BigInt(CMDQ)), null, EBUSY],
      [mmioW(ITS_BASE + 0x100, 8, 0n), null, EBUSY],
      [mmioW(ITS_BASE + 0x1_0040, 4, 1n), null, EBUSY],
      [mmioW(rd0 + 0x00, 4, 0n), null, EBUSY],
      [mmioW(rd0 + 0x70, 8, 0n), null, EBUSY],
      [mmioW(rd0 + GICR_STRIDE + 0x78, 8, 0n), null, EBUSY],
      [mmioR(ITS_BASE + 0x00, 4), null, 0],
      [mmioR(ITS_BASE + 0x90, 8), null, 0],
      [mmioR(rd0 + 0x70, 8), null, 0],
      [vm.msi(1, 1), null, EBUSY],
      [request(9, vm.nextSeq(), kvmMsi(DOORBELL, 2, 2)), null, EBUSY],
      [msiBatch(vm.nextSeq(), [kvmMsi(DOORBELL, 0, 0), kvmMsi(DOORBELL, 1, 1)]), null, EBUSY],
      [request(13, vm.nextSeq(), payload(['u32', 1], ['u32', 0])), null, EBUSY],
      [request(13, vm.nextSeq(), payload(['u32', 1], ['u32', 1])), null, 0],
      [attr(5, vm.its, 8, 0x0n, 0n), null, EBUSY], // GITS_CTLR
      [attr(5, vm.its, 8, 0x88n, 0n), null, EBUSY], // GITS_CWRITER
      [attr(5, vm.its, 4, 4n), null, EBUSY], // ITS_CTRL_RESET
      [attr(5, vm.its, 4, 2n), null, EBUSY], // ITS_RESTORE_TABLES
      [attr(5, vm.v3, 5, (0n << 32n) | 0x70n, 0n), null, EBUSY], // GICR_PROPBASER of vCPU 0
      [attr(5, vm.v3, 4, 3n), null, 0], // SAVE_PENDING_TABLES again: same bytes
      [attr(5, vm.its, 4, 1n), null, 0], // ITS_SAVE_TABLES again: same bytes
      [attr(6, vm.its, 8, 0x80n), null, 0],
      [attr(6, vm.v3, 5, 0x78n), null, 0],
      [attr(7, vm.its, 4, 1n), null, 0],
      [request(4, vm.nextSeq(), payload(['u32', 8], ['u32', 0])), null, EBUSY],
      [request(11, vm.nextSeq(), payload(['u32', 4], ['u32', 0])), null, EBUSY],
      [memTable(), [vm.ram.mappedRegions[0]!.fd], 0],
      [request(3, vm.nextSeq(), payload(['u64', BigInt(LOG_BYTES)], ['u64', 0n])), [logFd], 0],
      [request(12, vm.nextSeq(), payload(['u32', 0], ['u32', 0])), [efd], 0],
      [request(16, vm.nextSeq()), null, 0],
      [request(14, vm.nextSeq()), null, 0], // SUSPEND again
      [request(50, vm.nextSeq(), new Uint8Array(40)), null, -Errno.EOPNOTSUPP],
    ];
    for (let round = 0; round < 5; round++) {
      for (const [bytes, fds, expected] of hammer()) {
        const r: Reply = await vm.c.call(bytes, fds);
        const code = new DataView(bytes.buffer).getUint32(0, true);
        if (expected !== 'any') expect(r.status, `request ${code} seq ${r.seq} while suspended`).toBe(expected);
      }
    }
    native.close(efd);
    expect(sha(ramBytes())).toBe(checksum);

    // RESUME: the frozen command queue and MSIs work again.
    expect((await vm.c.call(request(15, vm.nextSeq()))).status).toBe(0);
    expect((await vm.c.call(vm.msi(2, 2))).status).toBe(1);
    await vm.mmioWrite(ITS_BASE + 0x88, 8, BigInt(cwriter + 3 * 32));
    expect(await vm.mmioRead(ITS_BASE + 0x90, 8)).toBe(BigInt(cwriter + 3 * 32));
  });
});
