/**
 * A VMM may pass the write end of a pipe or socket as a vCPU notify fd and then stop reading
 * it. The daemon must never block on it (it makes such fds non-blocking; a shared eventfd is
 * left alone, since O_NONBLOCK there would change the VMM's own reads).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EFD_CLOEXEC } from '../../src/native/binding.js';
import { native } from '../../src/native/index.js';
import { REAL_DAEMON, startDaemon, type Daemon } from './support/daemon-process.js';
import { setupWireVm, type WireVm } from './support/its-setup.js';
import { payload, request } from './support/wire.js';

let daemon: Daemon;
let vm: WireVm;
let ours = -1;
let theirs = -1;
let efd = -1;

beforeAll(async () => {
  daemon = await startDaemon(REAL_DAEMON);
  vm = await setupWireVm(daemon.socketPath, { vcpus: 2, devices: 1, eventsPerDevice: 2 });
  [ours, theirs] = native.socketpair();
  native.setNonBlocking(theirs, false); // a blocking socket, as a careless VMM would pass it
  await vm.ok(request(12, vm.nextSeq(), payload(['u32', 0], ['u32', 0])), [theirs]);
  efd = native.eventfd(0, EFD_CLOEXEC); // blocking, as a VMM's vCPU thread reads it
  await vm.ok(request(12, vm.nextSeq(), payload(['u32', 1], ['u32', 0])), [efd]);
});

afterAll(async () => {
  vm?.c.close();
  vm?.ram.close();
  for (const fd of [ours, theirs, efd]) if (fd >= 0) native.close(fd);
  await daemon?.stop();
});

function fdFlags(pid: number, fd: number): number {
  // /proc/PID/fdinfo/FD: "flags:\t0..." (octal)
  const text = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
  return parseInt(/flags:\s*([0-7]+)/.exec(text)![1]!, 8);
}

describe('notify fds', () => {
  it('a socket nobody reads does not block the daemon, however many notifications pile up', async () => {
    // (device 0, event 0) targets vCPU 0: each MSI makes it deliverable (a notification), each ACK clears it.
    for (let i = 0; i < 3000; i++) {
      expect((await vm.c.call(vm.msi(0, 0))).status).toBe(1);
      expect((await vm.c.call(request(13, vm.nextSeq(), payload(['u32', 0], ['u32', 0])))).status).toBe(0);
    }
    // Still serving, and the unread socket is full (the daemon's writes got EAGAIN, not stuck).
    const r = await vm.c.call(request(16, vm.nextSeq()));
    expect(r.status).toBe(0);
    const stats = JSON.parse(Buffer.from(r.fields).toString('utf8')) as { msi: { delivered: number } };
    expect(stats.msi.delivered).toBeGreaterThanOrEqual(3000);
  }, 20_000);

  it('the shared eventfd keeps its blocking mode (the VMM reads it)', async () => {
    const O_NONBLOCK = 0o4000;
    expect(fdFlags(process.pid, efd) & O_NONBLOCK).toBe(0);
    expect((await vm.c.call(vm.msi(0, 1))).status).toBe(1); // event 1 -> vCPU 1
    expect(native.readU64(efd)).toBe(1);
  });
});
