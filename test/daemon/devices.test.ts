/**
 * The real daemon (src/cli/vitsd.ts over src/attr's VirtualGic) as a separate process, set
 * up over the wire like a VMM + Linux guest would: guest RAM in a memfd passed with
 * SCM_RIGHTS, ITS and redistributor registers through MMIO, a command queue in the shared
 * file processed on a CWRITER write, MSIs delivered, notified and acknowledged, stats.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { Errno } from '../../src/util/errno.js';
import { REAL_DAEMON, startDaemon, type Daemon } from './support/daemon-process.js';
import {
  CMDQ,
  COLLECTION_TABLE,
  DEVICE_TABLE,
  DOORBELL,
  ITS_BASE,
  cmd,
  ittOf,
  lpiOf,
  setupWireVm,
  type WireVm,
} from './support/its-setup.js';
import { kvmMsi, msiBatch, payload, request } from './support/wire.js';

const VCPUS = 4;
const DEVICES = 4;
const EVENTS = 16;

let daemon: Daemon;
let vm: WireVm;
const notify: number[] = [];

beforeAll(async () => {
  daemon = await startDaemon(REAL_DAEMON);
  vm = await setupWireVm(daemon.socketPath, { vcpus: VCPUS, devices: DEVICES, eventsPerDevice: EVENTS });
  for (let i = 0; i < VCPUS; i++) {
    const efd = native.eventfd(0);
    notify.push(efd);
    await vm.ok(request(12, vm.nextSeq(), payload(['u32', i], ['u32', 0])), [efd]);
  }
});

afterAll(async () => {
  vm?.c.close();
  vm?.ram.close();
  for (const fd of notify) native.close(fd);
  await daemon?.stop();
});

async function ack(vcpu: number, peek = false): Promise<[number, number, number]> {
  const r = await vm.c.call(request(13, vm.nextSeq(), payload(['u32', vcpu], ['u32', peek ? 1 : 0])));
  return [r.status, r.u32(0), r.u32(4)];
}

async function stats(): Promise<Record<string, Record<string, number>>> {
  const r = await vm.c.call(request(16, vm.nextSeq()));
  expect(r.status).toBe(0);
  return JSON.parse(Buffer.from(r.fields).toString('utf8')) as Record<string, Record<string, number>>;
}

/** Drains a vCPU's notify eventfd: its counter, 0 when it was not signalled. */
function drainNotify(vcpu: number): number {
  const n = native.readU64(notify[vcpu]!);
  return n === -Errno.EAGAIN ? 0 : n;
}

describe('device set-up over the socket', () => {
  it('the ITS is enabled and the queue fully processed by the CWRITER write', async () => {
    expect((await vm.mmioRead(ITS_BASE, 4)) & 1n).toBe(1n);
    const creadr = await vm.mmioRead(ITS_BASE + 0x90, 8);
    expect(creadr).toBe(await vm.mmioRead(ITS_BASE + 0x88, 8));
    // VCPUS MAPC + DEVICES x (MAPD + EVENTS MAPTI) + SYNC commands of 32 bytes each.
    expect(creadr).toBe(BigInt((VCPUS + DEVICES * (1 + EVENTS) + 1) * 32));
    const s = await stats();
    expect(s['commands']).toMatchObject({ MAPC: VCPUS, MAPD: DEVICES, MAPTI: DEVICES * EVENTS, SYNC: 1 });
  });

  it('an MSI is delivered to its collection vCPU, notified once, and acknowledged', async () => {
    for (let i = 0; i < VCPUS; i++) drainNotify(i);
    // (device 2, event 5) -> collection 5 % 4 = vCPU 1.
    const r = await vm.c.call(vm.msi(2, 5));
    expect(r.status).toBe(1);
    expect(drainNotify(1)).toBe(1);
    expect([0, 2, 3].map(drainNotify)).toEqual([0, 0, 0]);
    expect(await ack(1, true)).toEqual([0, lpiOf(2, 5), 0xa0]);
    expect(await ack(1)).toEqual([0, lpiOf(2, 5), 0xa0]);
    expect(await ack(1)).toEqual([0, 1023, 0xff]);
  });

  it('two pending LPIs: ACK returns the lower INTID first and re-notifies for the other', async () => {
    drainNotify(2);
    expect((await vm.c.call(vm.msi(3, 6))).status).toBe(1); // vcpu 6 % 4 = 2
    expect((await vm.c.call(vm.msi(1, 2))).status).toBe(1); // vcpu 2
    expect(drainNotify(2)).toBe(1);
    expect(await ack(2)).toEqual([0, lpiOf(1, 2), 0xa0]);
    expect(drainNotify(2)).toBe(1); // a non-PEEK ACK that leaves another one
    expect(await ack(2)).toEqual([0, lpiOf(3, 6), 0xa0]);
    expect(await ack(2)).toEqual([0, 1023, 0xff]);
  });

  it('MSI errors: unmapped event dropped (0), bad doorbell or no VALID_DEVID -EINVAL', async () => {
    const before = (await stats())['msi']!;
    expect((await vm.c.call(vm.msi(1, EVENTS + 3))).status).toBe(0);
    expect((await vm.c.call(vm.msi(DEVICES + 7, 0))).status).toBe(0);
    expect((await vm.c.call(vm.msi(1, 1, 0))).status).toBe(-Errno.EINVAL);
    expect((await vm.c.call(request(9, vm.nextSeq(), kvmMsi(0x1000, 1, 1)))).status).toBe(-Errno.EINVAL);
    const after = (await stats())['msi']!;
    expect(after['dropped']! - before['dropped']!).toBe(2);
  });

  it('a batch: processed/delivered, stopping at the first error', async () => {
    const msis = [];
    for (let d = 0; d < DEVICES; d++) for (let e = 0; e < EVENTS; e++) msis.push(kvmMsi(DOORBELL, e, d));
    let r = await vm.c.call(msiBatch(vm.nextSeq(), msis));
    expect([r.status, r.u32(0), r.u32(4)]).toEqual([0, DEVICES * EVENTS, DEVICES * EVENTS]);
    r = await vm.c.call(msiBatch(vm.nextSeq(), [kvmMsi(DOORBELL, 1, 0), kvmMsi(DOORBELL, 99, 0), kvmMsi(0x1000, 1, 0), kvmMsi(DOORBELL, 2, 0)]));
    expect([r.status, r.u32(0), r.u32(4)]).toEqual([-Errno.EINVAL, 2, 1]);
    for (let i = 0; i < VCPUS; i++) while ((await ack(i))[1] !== 1023);
  });

  it('an INT command through the queue makes the LPI pending', async () => {
    drainNotify(3);
    await vm.commands([cmd.int(0, 7), cmd.sync(3)]); // event 7 -> vCPU 3
    expect(drainNotify(3)).toBe(1);
    expect(await ack(3)).toEqual([0, lpiOf(0, 7), 0xa0]);
  });

  it('attributes: GET of ITS registers, HAS, unknown device -EBADF', async () => {
    const baser0 = await vm.c.call(vm.attr(6, vm.its, 8, 0x100n));
    expect(baser0.status).toBe(0);
    // 64 KiB pages: PA[47:16] in bits [47:16] (bits [52:48] are the RO Entry_Size).
    expect(baser0.u64(0) & 0x0000_ffff_ffff_0000n).toBe(BigInt(DEVICE_TABLE));
    const baser1 = await vm.c.call(vm.attr(6, vm.its, 8, 0x108n));
    expect(baser1.u64(0) & 0x0000_ffff_ffff_0000n).toBe(BigInt(COLLECTION_TABLE));
    const cbaser = await vm.c.call(vm.attr(6, vm.its, 8, 0x80n));
    expect(cbaser.u64(0) & 0x000f_ffff_ffff_f000n).toBe(BigInt(CMDQ));
    expect((await vm.c.call(vm.attr(7, vm.its, 8, 0x0n))).status).toBe(0);
    expect((await vm.c.call(vm.attr(6, 77, 8, 0x0n))).status).toBe(-Errno.EBADF);
    expect((await vm.c.call(request(4, vm.nextSeq(), payload(['u32', 7], ['u32', 0])))).status).toBe(-Errno.EEXIST);
  });

  it('saves land in guest RAM where the guest put its tables (device table, ITT)', async () => {
    expect((await vm.c.call(request(14, vm.nextSeq()))).status).toBe(0); // SUSPEND
    expect((await vm.c.call(vm.attr(5, vm.its, 4, 1n))).status).toBe(0); // ITS_SAVE_TABLES
    // DTE of device 1 (flat table, 8-byte entries) is valid (bit 63) and points at its ITT.
    const dte = vm.ram.readU64Big(DEVICE_TABLE + 8 * 1);
    expect(dte >> 63n).toBe(1n);
    // KVM ABI rev 0 DTE (kvm-its-abi.md 3.2): ITT address bits [51:8] in bits [48:5].
    expect(((dte >> 5n) & ((1n << 44n) - 1n)) << 8n).toBe(BigInt(ittOf(1)));
    expect((await vm.c.call(request(15, vm.nextSeq()))).status).toBe(0); // RESUME
    const s = await stats();
    expect(s['saves']!['count']).toBe(1);
  });

  it('GET_STATS counts requests and errors', async () => {
    const s = await stats();
    expect(s['requests']!['SIGNAL_MSI']).toBe(1 + 2 + 4); // the tests above
    expect(s['requests']!['SIGNAL_MSI_BATCH']).toBe(2);
    expect(s['errors']!['EINVAL']).toBeGreaterThanOrEqual(3);
    expect(s['msi']!['delivered']).toBeGreaterThanOrEqual(4 + DEVICES * EVENTS);
    expect(s['daemon']!['notify_fds']).toBe(VCPUS);
  });
});
