/**
 * The client against a live vitsd process (real sockets, real fds, real shared memory), and
 * against a scripted peer for the failure modes a healthy daemon never shows.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { VitsdClient } from '../../src/client/client.js';
import { ClientErrno, VitsdBatchError, VitsdError } from '../../src/client/errors.js';
import { startDaemon, type DaemonProcess } from '../../src/cli/vitsctl/daemon-launcher.js';
import { createMemfdGuestMemory } from '../../src/memory/mapped-guest-memory.js';
import { EFD_CLOEXEC, EFD_NONBLOCK } from '../../src/native/binding.js';
import { native } from '../../src/native/index.js';
import { Feature } from '../../src/protocol/constants.js';
import { Errno } from '../../src/util/errno.js';
import { GuestBus } from '../../src/vmm/guest-bus.js';
import { GuestItsDriver } from '../../src/vmm/guest-driver.js';
import { GuestRamAllocator } from '../../src/vmm/guest-ram-allocator.js';
import { VmInstance } from '../../src/vmm/vm-instance.js';
import { doorbell, rdBase, virtLayout } from '../../src/vmm/vm-layout.js';
import { helloFields, replyBytes, ScriptedServer } from './support/scripted-server.js';

const dir = mkdtempSync(join(tmpdir(), 'vitsd-client-test-'));
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let socketCounter = 0;
async function daemon(): Promise<DaemonProcess> {
  const d = await startDaemon(join(dir, `d${socketCounter++}.sock`));
  cleanups.push(() => d.stop());
  return d;
}

const layout = virtLayout({ nrVcpus: 4, ramSize: 8 * 1024 * 1024 });

/** A daemon with a booted guest: one device 0x10 with 4 vectors, enabled. */
async function bootedVm(): Promise<{ vm: VmInstance; driver: GuestItsDriver; db: number }> {
  const d = await daemon();
  const vm = await VmInstance.open({ socketPath: d.socketPath, layout });
  cleanups.push(() => vm.close());
  await vm.createGic();
  const driver = new GuestItsDriver(new GuestBus(vm.client, vm.memory), layout, new GuestRamAllocator(layout.ramBase, layout.ramSize));
  await driver.boot();
  await driver.enableAll(await driver.createDevice(0, 0x10, 4), (e) => e);
  return { vm, driver, db: doorbell(layout.itsBases[0]!) };
}

async function rejection(p: Promise<unknown>): Promise<VitsdError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(VitsdError);
    return e as VitsdError;
  }
  throw new Error('expected a rejection');
}

describe('VitsdClient against vitsd', { timeout: 180_000 }, () => {
  it('HELLO grants the features; a second frontend gets EBUSY; a reconnect sees resumed = 1', async () => {
    const d = await daemon();
    const a = await VitsdClient.connect(d.socketPath);
    cleanups.push(() => a.close());
    expect(a.version).toBe(1);
    expect(a.resumed).toBe(false);
    expect(a.features).toBe(BigInt(Feature.DIRTY_LOG | Feature.MSI_BATCH | Feature.NOTIFY_FD | Feature.RECONNECT));
    const busy = await rejection(VitsdClient.connect(d.socketPath));
    expect(busy.errno).toBe(Errno.EBUSY);
    expect(busy.request).toBe('HELLO');
    await a.setVcpus(2);
    a.close();
    // Ownership is released when the owner's socket closes; retry briefly for the daemon to notice.
    let b: VitsdClient | null = null;
    for (let i = 0; i < 50 && b === null; i++) {
      b = await VitsdClient.connect(d.socketPath, { features: Feature.MSI_BATCH }).catch(() => null);
      if (b === null) await new Promise((r) => setTimeout(r, 20));
    }
    expect(b).not.toBeNull();
    cleanups.push(() => b!.close());
    expect(b!.features).toBe(BigInt(Feature.MSI_BATCH));
  });

  it('a negative status is a VitsdError with errno, request name and seq; the connection stays usable', async () => {
    const d = await daemon();
    const c = await VitsdClient.connect(d.socketPath);
    cleanups.push(() => c.close());
    const e1 = await rejection(c.getDeviceAttr(42, 0, 4n));
    expect(e1.errno).toBe(Errno.EBADF);
    expect(e1.request).toBe('GET_DEVICE_ATTR');
    expect(e1.seq).toBeGreaterThan(1); // HELLO had seq 1
    expect(e1.message).toMatch(/^EBADF: GET_DEVICE_ATTR \(seq \d+\)/);
    const e2 = await rejection(c.createDevice(8));
    expect(e2.errno).toBe(Errno.ENODEV);
    expect(await c.createDevice(7, true)).toBe(0);
    const id = await c.createDevice(7);
    expect(id).toBeGreaterThan(0);
    const e3 = await rejection(c.createDevice(7));
    expect(e3.errno).toBe(Errno.EEXIST);
  });

  it('pipelining: thousands of requests in flight, each reply matched to its own request', async () => {
    const { vm } = await bootedVm();
    const c = vm.client;
    const n = 3000;
    const reads = Array.from({ length: n }, (_, i) => {
      const vcpu = i % 4;
      return c.mmioRead(rdBase(layout, vcpu) + 0x8, 8).then((v) => ({ vcpu, v }));
    });
    expect(c.inFlight).toBeGreaterThan(100);
    const results = await Promise.all(reads);
    for (const { vcpu, v } of results) {
      // GICR_TYPER: Processor_Number at bits 23:8, affinity at 63:32 (Aff0 = vcpu for < 16 vCPUs)
      expect(Number((v >> 8n) & 0xffffn)).toBe(vcpu);
      expect(Number(v >> 32n)).toBe(vcpu);
    }
    expect(c.stats.outOfOrder).toBe(0);
    expect(c.inFlight).toBe(0);
  });

  it('SIGNAL_MSI: 1 delivered, 0 dropped, EINVAL outside an ITS frame, EBUSY while suspended', async () => {
    const { vm, driver, db } = await bootedVm();
    const c = vm.client;
    const base = driver.device(0, 0x10).lpis.base;
    expect(await c.signalMsi(db, 0x10, 2)).toBe(1);
    expect(await c.ackLpi(2)).toEqual({ intid: base + 2, priority: 0xa0 });
    expect(await c.signalMsi(db, 0x77, 0)).toBe(0);
    expect((await rejection(c.signalMsi(0x1000, 0x10, 0))).errno).toBe(Errno.EINVAL);
    await c.suspend();
    const busy = await rejection(c.signalMsi(db, 0x10, 1));
    expect(busy.errno).toBe(Errno.EBUSY);
    expect(busy.request).toBe('SIGNAL_MSI');
    await c.resume();
    expect(await c.signalMsi(db, 0x10, 1)).toBe(1);
  });

  it('SIGNAL_MSI_BATCH: processed and delivered; a negative status keeps how far it got', async () => {
    const { vm, db } = await bootedVm();
    const c = vm.client;
    const r = await c.signalMsiBatch([
      { doorbell: db, devid: 0x10, eventid: 0 },
      { doorbell: db, devid: 0x99, eventid: 0 },
      { doorbell: db, devid: 0x10, eventid: 3 },
    ]);
    expect(r).toEqual({ processed: 3, delivered: 2 });
    const e = await rejection(
      c.signalMsiBatch([
        { doorbell: db, devid: 0x10, eventid: 1 },
        { doorbell: 0x1000, devid: 0x10, eventid: 1 },
        { doorbell: db, devid: 0x10, eventid: 2 },
      ]),
    );
    expect(e).toBeInstanceOf(VitsdBatchError);
    expect(e.errno).toBe(Errno.EINVAL);
    expect((e as VitsdBatchError).processed).toBe(1);
    expect((e as VitsdBatchError).delivered).toBe(1);
  });

  it('NO_REPLY MSIs get no reply; barrier() orders after them', async () => {
    const { vm, driver, db } = await bootedVm();
    const c = vm.client;
    const base = driver.device(0, 0x10).lpis.base;
    const before = c.stats.replies;
    for (let e = 0; e < 4; e++) expect(c.signalMsiNoReply(db, 0x10, e)).toBe(true);
    expect(c.signalMsiBatchNoReply([{ doorbell: db, devid: 0x10, eventid: 0 }])).toBe(true);
    await c.barrier();
    expect(c.stats.replies).toBe(before + 1); // only the barrier's GET_STATS was answered
    // Event e targets vCPU e (enableAll above): each vCPU has its LPI.
    for (let v = 0; v < 4; v++) expect((await c.ackLpi(v)).intid).toBe(base + v);
    const stats = await c.getStats();
    expect(stats.requests['SIGNAL_MSI']).toBe(4);
  });

  it('SET_VCPU_NOTIFY_FD: the eventfd is written when the vCPU gains a deliverable LPI', async () => {
    const { vm, db } = await bootedVm();
    const c = vm.client;
    const efd = native.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    cleanups.push(() => native.close(efd));
    await c.setVcpuNotifyFd(1, efd);
    expect(native.readU64(efd)).toBe(-Errno.EAGAIN);
    expect(await c.signalMsi(db, 0x10, 1)).toBe(1); // event 1 -> vCPU 1
    expect(native.readU64(efd)).toBe(1);
  });

  it('fds: a request with the wrong number of fds gets EINVAL and the connection stays open', async () => {
    const d = await daemon();
    const c = await VitsdClient.connect(d.socketPath);
    cleanups.push(() => c.close());
    const mem = createMemfdGuestMemory([{ gpa: 0x4000_0000, size: 0x10_0000 }]);
    cleanups.push(() => mem.close());
    const r = mem.mappedRegions[0]!;
    const e = await rejection(c.request('SET_MEM_TABLE', { regions: [{ guestPhysAddr: BigInt(r.gpa), memorySize: BigInt(r.size), mmapOffset: 0n }] }, { fds: [] }));
    expect(e.errno).toBe(Errno.EINVAL);
    await c.setMemTable([{ gpa: r.gpa, size: r.size, fd: r.fd, mmapOffset: r.mmapOffset }]);
  });

  it('close() rejects what is in flight with EPIPE; so does every later request', async () => {
    const d = await daemon();
    const c = await VitsdClient.connect(d.socketPath);
    const inflight = c.getStats();
    c.close();
    const e = await rejection(inflight);
    expect(e.errno).toBe(ClientErrno.EPIPE);
    expect((await rejection(c.getStats())).errno).toBe(ClientErrno.EPIPE);
    expect(c.closed).toBe(true);
  });

  it('a daemon that dies: pending requests reject and onClose is called', async () => {
    const d = await daemon();
    let closed: VitsdError | null = null;
    const c = await VitsdClient.connect(d.socketPath, { onClose: (e) => (closed = e) });
    cleanups.push(() => c.close());
    d.proc.kill('SIGKILL');
    await d.exited;
    const e = await rejection(c.getStats());
    expect([ClientErrno.EPIPE, ClientErrno.ECONNRESET]).toContain(e.errno);
    expect(closed).not.toBeNull();
  });
});

describe('VitsdClient against a scripted peer', () => {
  it('per-request timeout: ETIMEDOUT; the late reply is dropped and the connection keeps working', async () => {
    let stall = true;
    const stalled: number[] = [];
    const server = new ScriptedServer((f, reply) => {
      if (f.request === 1) reply(replyBytes(1, f.seq, 0, helloFields()));
      else if (stall) stalled.push(f.seq);
      else reply(replyBytes(f.request, f.seq, 0));
    });
    cleanups.push(() => server.close());
    const c = await VitsdClient.connect(server.path, { timeoutMs: 150 });
    cleanups.push(() => c.close());
    const e = await rejection(c.resume());
    expect(e.errno).toBe(ClientErrno.ETIMEDOUT);
    expect(e.request).toBe('RESUME');
    expect(c.stats.timeouts).toBe(1);
    stall = false;
    server.sendAll(replyBytes(15, stalled[0]!, 0)); // the late reply
    await c.suspend();
    expect(c.stats.lateReplies).toBe(1);
    expect(c.closed).toBe(false);
  });

  it('a reply to a request that is not in flight breaks the protocol: the connection is closed', async () => {
    const server = new ScriptedServer((f, reply) => {
      if (f.request === 1) reply(replyBytes(1, f.seq, 0, helloFields()));
      else reply(replyBytes(f.request, f.seq + 1000, 0));
    });
    cleanups.push(() => server.close());
    const c = await VitsdClient.connect(server.path);
    const e = await rejection(c.resume());
    expect(e.errno).toBe(Errno.EPROTO);
    expect(c.closed).toBe(true);
  });

  it('HELLO refused with EPROTO: connect() rejects with the errno and closes', async () => {
    const server = new ScriptedServer((f, reply) => reply(replyBytes(f.request, f.seq, -Errno.EPROTO)));
    cleanups.push(() => server.close());
    const e = await rejection(VitsdClient.connect(server.path));
    expect(e.errno).toBe(Errno.EPROTO);
    expect(e.request).toBe('HELLO');
  });

  it('a reply with the wrong number of field bytes is rejected with EPROTO', async () => {
    const server = new ScriptedServer((f, reply) => {
      if (f.request === 1) reply(replyBytes(1, f.seq, 0, helloFields()));
      else reply(replyBytes(f.request, f.seq, 0, new Uint8Array(3)));
    });
    cleanups.push(() => server.close());
    const c = await VitsdClient.connect(server.path);
    cleanups.push(() => c.close());
    const e = await rejection(c.getDeviceAttr(1, 0, 0n));
    expect(e.errno).toBe(Errno.EPROTO);
    expect(server.frames.map((f) => f.request)).toEqual([1, 6]);
  });
});
