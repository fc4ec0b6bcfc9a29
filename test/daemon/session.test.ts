/**
 * Dispatch unit tests: a Session fed bytes directly, over the fake VM and host (no sockets).
 * The socket layer and the real VM are covered by the integration tests.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/daemon/logger.js';
import { Session } from '../../src/daemon/session.js';
import { DaemonState } from '../../src/daemon/state.js';
import { Errno } from '../../src/util/errno.js';
import { FakeHost } from './support/fake-host.js';
import { FakeVm } from './support/fake-vm.js';
import { hello, kvmMsi, msiBatch, parseReplies, payload, request, type Reply } from './support/wire.js';

const EPROTO = -Errno.EPROTO;
const EINVAL = -Errno.EINVAL;
const ITS_DOORBELL = 0x0809_0040;

let vm: FakeVm;
let host: FakeHost;
let state: DaemonState;
let nextId = 1;

function session(): Session {
  return new Session(state, nextId++);
}

/** Feeds bytes (and fds) and returns the replies queued since the last call. */
function send(s: Session, bytes: Uint8Array, fds: number[] | null = null): Reply[] {
  s.feed(bytes, fds);
  const out = s.out.buf.slice(s.out.start, s.out.end);
  s.out.consume(s.out.pending);
  return parseReplies(out);
}

function one(s: Session, bytes: Uint8Array, fds: number[] | null = null): Reply {
  const r = send(s, bytes, fds);
  expect(r).toHaveLength(1);
  return r[0]!;
}

function attached(features = 0xfn): Session {
  const s = session();
  expect(one(s, hello(1, features)).status).toBe(0);
  return s;
}

/** vgic-v3 + ITS created and 4 vCPUs declared, through the wire. */
function withIts(s: Session): void {
  expect(one(s, request(11, 90, payload(['u32', 4], ['u32', 0]))).status).toBe(0);
  expect(one(s, request(4, 91, payload(['u32', 7], ['u32', 0]))).status).toBe(0);
  expect(one(s, request(4, 92, payload(['u32', 8], ['u32', 0]))).status).toBe(0);
}

beforeEach(() => {
  vm = new FakeVm();
  host = new FakeHost();
  state = new DaemonState(vm, host, silentLogger());
});

describe('HELLO and ownership', () => {
  it('grants the intersection of the features and echoes seq, flags 1|REPLY', () => {
    const s = session();
    const r = one(s, hello(77, 0xffff_ffff_ffff_fff5n));
    expect(r.request).toBe(1);
    expect(r.flags).toBe(1 | 4);
    expect(r.seq).toBe(77);
    expect(r.size).toBe(8 + 16);
    expect(r.status).toBe(0);
    expect(r.u32(0)).toBe(1); // version
    expect(r.u32(4)).toBe(0); // resumed: no state yet
    expect(r.u64(8)).toBe(0xfn & 0xffff_ffff_ffff_fff5n); // = 0b0101
  });

  it('a first request other than HELLO gets an 8-byte -EPROTO and the session closes', () => {
    for (const first of [request(16, 3), request(200, 4), request(9, 5, kvmMsi(ITS_DOORBELL, 0, 1))]) {
      const s = session();
      const r = one(s, first);
      expect(r.status).toBe(EPROTO);
      expect(r.size).toBe(8);
      expect(s.closing).toBe(true);
      // Nothing after it is handled.
      expect(send(s, hello())).toHaveLength(0);
    }
  });

  it('a second HELLO gets -EINVAL with zero fields and the connection stays', () => {
    const s = attached();
    const r = one(s, hello(2));
    expect(r.status).toBe(EINVAL);
    expect([...r.fields]).toEqual(new Array<number>(16).fill(0));
    expect(s.closing).toBe(false);
    expect(one(s, request(16, 3)).status).toBe(0);
  });

  it('HELLO with version 2 gets -EPROTO carrying our version, then closes', () => {
    const s = session();
    const r = one(s, hello(1, 0xfn, 2));
    expect(r.status).toBe(EPROTO);
    expect(r.u32(0)).toBe(1);
    expect(s.closing).toBe(true);
  });

  it('a second frontend gets -EBUSY and is closed; after the owner leaves, HELLO reports resumed', () => {
    const owner = attached();
    withIts(owner);
    const intruder = session();
    const r = one(intruder, hello(5));
    expect(r.status).toBe(-Errno.EBUSY);
    expect(intruder.closing).toBe(true);
    owner.closed();
    const again = session();
    const h = one(again, hello(6));
    expect(h.status).toBe(0);
    expect(h.u32(4)).toBe(1); // resumed: devices exist
  });

  it('HELLO with a wrong payload size is a request error; HELLO is still required after it', () => {
    const s = session();
    const r = one(s, request(1, 1, payload(['u32', 1], ['u32', 0])));
    expect(r.status).toBe(EINVAL);
    expect(s.closing).toBe(false);
    expect(one(s, request(16, 2)).status).toBe(EPROTO);
  });
});

describe('framing errors', () => {
  const cases: [string, Uint8Array][] = [
    ['version bits 0', request(16, 9, new Uint8Array(0), 0)],
    ['version bits 2', request(16, 9, new Uint8Array(0), 2)],
    ['REPLY set', request(16, 9, new Uint8Array(0), 1 | 4)],
    ['bit 4 set', request(16, 9, new Uint8Array(0), 1 | 0x10)],
    ['bit 31 set', request(16, 9, new Uint8Array(0), (1 | 0x8000_0000) >>> 0)],
  ];
  for (const [name, bytes] of cases) {
    it(`${name}: -EPROTO (8 bytes) then close, even after HELLO`, () => {
      const s = attached();
      const r = send(s, new Uint8Array([...bytes, ...request(16, 10)]));
      expect(r).toHaveLength(1);
      expect(r[0]!.status).toBe(EPROTO);
      expect(r[0]!.size).toBe(8);
      expect(r[0]!.seq).toBe(9);
      expect(s.closing).toBe(true);
    });
  }
  it('size over 1 MiB: refused from the header alone', () => {
    const s = attached();
    const h = request(16, 9);
    new DataView(h.buffer).setUint32(8, (1 << 20) + 1, true);
    const r = one(s, h);
    expect(r.status).toBe(EPROTO);
    expect(s.closing).toBe(true);
    expect(state.counters.framingErrors).toBe(1);
  });
});

describe('request errors', () => {
  it('wrong payload sizes get -EINVAL with zero-filled fields; the stream stays in sync', () => {
    const s = attached();
    const bad = [
      request(4, 2, payload(['u32', 7])), // CREATE_DEVICE needs 8
      request(5, 3, new Uint8Array(23)), // SET_DEVICE_ATTR needs 24
      request(8, 4, new Uint8Array(25)), // MMIO needs 24
      request(9, 5, new Uint8Array(31)), // SIGNAL_MSI needs 32
      request(14, 6, new Uint8Array(1)), // SUSPEND needs 0
      request(16, 7, new Uint8Array(4)), // GET_STATS needs 0
      request(2, 8, payload(['u32', 9], ['u32', 0], ['bytes', new Uint8Array(9 * 24)])), // 9 regions
      request(10, 9, payload(['u32', 0], ['u32', 0])), // empty batch
      request(10, 10, payload(['u32', 2], ['u32', 0], ['bytes', kvmMsi(ITS_DOORBELL, 0, 1)])), // count 2, one MSI
    ];
    const all = new Uint8Array(bad.reduce((n, b) => n + b.length, 0) + 16);
    let at = 0;
    for (const b of bad) {
      all.set(b, at);
      at += b.length;
    }
    all.set(request(15, 11), at); // RESUME, valid
    const replies = send(s, all);
    expect(replies.map((r) => [r.seq, r.status])).toEqual([
      [2, EINVAL], [3, EINVAL], [4, EINVAL], [5, EINVAL], [6, EINVAL], [7, EINVAL], [8, EINVAL], [9, EINVAL], [10, EINVAL], [11, 0],
    ]);
    // Fields present and zero: CREATE_DEVICE 8, SET_DEVICE_ATTR 8, MMIO 8, batch 8.
    expect(replies.map((r) => r.fields.length)).toEqual([8, 8, 8, 0, 0, 0, 0, 8, 8, 0]);
    for (const r of replies) expect(r.fields.every((b) => b === 0)).toBe(true);
    expect(s.closing).toBe(false);
  });

  it('an unknown code gets -EOPNOTSUPP and the connection stays', () => {
    const s = attached();
    const r = one(s, request(17, 4, new Uint8Array(12)));
    expect(r.status).toBe(-Errno.EOPNOTSUPP);
    expect(r.size).toBe(8);
    expect(one(s, request(64, 5)).status).toBe(-Errno.EOPNOTSUPP);
    expect(one(s, request(0, 6)).status).toBe(-Errno.EOPNOTSUPP);
    expect(s.closing).toBe(false);
  });

  it('fds where none belong: -EINVAL and every fd closed at once', () => {
    const s = attached();
    const r = one(s, request(16, 4), [40, 41]);
    expect(r.status).toBe(EINVAL);
    expect(host.closed).toEqual([40, 41]);
    expect(state.counters.fdsDropped).toBe(2);
  });

  it('a request missing its fd gets -EINVAL', () => {
    const s = attached();
    withIts(s);
    expect(one(s, request(12, 4, payload(['u32', 0], ['u32', 0]))).status).toBe(EINVAL);
    expect(one(s, request(3, 5, payload(['u64', 4096n], ['u64', 0n]))).status).toBe(EINVAL);
    // SET_MEM_TABLE with 2 regions and 1 fd
    const table = payload(['u32', 2], ['u32', 0], ['u64', 0n], ['u64', 4096n], ['u64', 0n], ['u64', 8192n], ['u64', 4096n], ['u64', 0n]);
    expect(one(s, request(2, 6, table), [50]).status).toBe(EINVAL);
    expect(host.closed).toContain(50);
    expect(host.mapped).toHaveLength(0);
  });

  it('features not granted: -EOPNOTSUPP (fds closed)', () => {
    const s = attached(0n);
    withIts(s);
    expect(one(s, msiBatch(3, [kvmMsi(ITS_DOORBELL, 0, 1)])).status).toBe(-Errno.EOPNOTSUPP);
    expect(one(s, request(3, 4, payload(['u64', 4096n], ['u64', 0n])), [60]).status).toBe(-Errno.EOPNOTSUPP);
    expect(one(s, request(12, 5, payload(['u32', 0], ['u32', 0])), [61]).status).toBe(-Errno.EOPNOTSUPP);
    expect(host.closed).toEqual([60, 61]);
  });

  it('a bug in a handler is answered (-EINVAL) and counted, the session goes on', () => {
    const s = attached();
    withIts(s);
    const r = one(s, request(5, 4, payload(['u32', 1], ['u32', 99], ['u64', 0n], ['u64', 0n])));
    expect(r.status).toBe(EINVAL);
    expect(state.counters.internalErrors).toBe(1);
    expect(one(s, request(16, 5)).status).toBe(0);
  });
});

describe('MSIs', () => {
  it('SIGNAL_MSI: status 1 delivered, 0 dropped, negative errno; no fields', () => {
    const s = attached();
    expect(one(s, request(9, 2, kvmMsi(ITS_DOORBELL, 0, 1))).status).toBe(-Errno.ENODEV);
    withIts(s);
    const r = one(s, request(9, 3, kvmMsi(ITS_DOORBELL, 4, 1)));
    expect(r.status).toBe(1);
    expect(r.size).toBe(8);
    expect(one(s, request(9, 4, kvmMsi(ITS_DOORBELL, 5, 1))).status).toBe(0);
    expect(one(s, request(9, 5, kvmMsi(ITS_DOORBELL, 4, 1, 0))).status).toBe(EINVAL); // no VALID_DEVID
  });

  it('NO_REPLY is honoured for SIGNAL_MSI and the batch only', () => {
    const s = attached();
    withIts(s);
    const noReply = 1 | 8;
    expect(send(s, request(9, 2, kvmMsi(ITS_DOORBELL, 0, 1), noReply))).toHaveLength(0);
    expect(send(s, msiBatch(3, [kvmMsi(ITS_DOORBELL, 0, 1)], noReply))).toHaveLength(0);
    expect(send(s, request(9, 4, new Uint8Array(3), noReply))).toHaveLength(0); // even a request error
    expect(vm.stats.msiDelivered).toBe(2);
    expect(one(s, request(16, 5, new Uint8Array(0), noReply)).status).toBe(0); // ignored elsewhere
  });

  it('a batch counts processed and delivered and stops at the first error', () => {
    const s = attached();
    withIts(s);
    const even = (devid: number) => kvmMsi(ITS_DOORBELL, 2, devid);
    const odd = (devid: number) => kvmMsi(ITS_DOORBELL, 3, devid);
    let r = one(s, msiBatch(2, [even(1), odd(2), even(3), even(4)]));
    expect([r.status, r.u32(0), r.u32(4)]).toEqual([0, 4, 3]);
    r = one(s, msiBatch(3, [even(1), odd(2), kvmMsi(ITS_DOORBELL, 2, 0xbad), even(4)]));
    // Two handled before the failing third; the fourth never runs.
    expect([r.status, r.u32(0), r.u32(4)]).toEqual([EINVAL, 2, 1]);
    expect(vm.stats.msiDelivered).toBe(3 + 1);
  });

  it('notify fds: set while deliverable writes 1 at once, and each new deliverable writes 1', () => {
    const s = attached();
    withIts(s);
    expect(one(s, request(9, 2, kvmMsi(ITS_DOORBELL, 0, 1))).status).toBe(1); // vcpu 1 now deliverable
    expect(one(s, request(12, 3, payload(['u32', 1], ['u32', 0])), [70]).status).toBe(0);
    expect(host.writes).toEqual([{ fd: 70, value: 1 }]);
    expect(one(s, request(12, 4, payload(['u32', 2], ['u32', 0])), [71]).status).toBe(0);
    expect(host.writes).toHaveLength(1); // vcpu 2 has nothing yet
    expect(one(s, request(9, 5, kvmMsi(ITS_DOORBELL, 0, 2))).status).toBe(1);
    expect(host.writes).toEqual([{ fd: 70, value: 1 }, { fd: 71, value: 1 }]);
    // Replacing vcpu 1's fd closes the old one.
    expect(one(s, request(12, 6, payload(['u32', 1], ['u32', 0])), [72]).status).toBe(0);
    expect(host.closed).toContain(70);
    expect(host.closed).not.toContain(72);
    // EAGAIN (eventfd saturated) is not an error.
    host.writeResult.set(72, -Errno.EAGAIN);
    vm.deliverable.clear();
    expect(one(s, request(9, 7, kvmMsi(ITS_DOORBELL, 0, 1))).status).toBe(1);
    expect(state.counters.notifyWriteErrors).toBe(0);
    // A vCPU out of range.
    expect(one(s, request(12, 8, payload(['u32', 4], ['u32', 0])), [73]).status).toBe(EINVAL);
    expect(host.closed).toContain(73);
  });

  it('ACK_LPI returns intid/priority, 1023/0xff when none; bad flags or vcpu -EINVAL', () => {
    const s = attached();
    withIts(s);
    let r = one(s, request(13, 2, payload(['u32', 0], ['u32', 0])));
    expect([r.status, r.u32(0), r.u32(4)]).toEqual([0, 1023, 0xff]);
    one(s, request(9, 3, kvmMsi(ITS_DOORBELL, 0, 3)));
    r = one(s, request(13, 4, payload(['u32', 3], ['u32', 1]))); // PEEK
    expect([r.status, r.u32(0), r.u32(4)]).toEqual([0, 8195, 0xa0]);
    expect(vm.hasDeliverable(3)).toBe(true);
    r = one(s, request(13, 5, payload(['u32', 3], ['u32', 0])));
    expect(r.u32(0)).toBe(8195);
    expect(vm.hasDeliverable(3)).toBe(false);
    expect(one(s, request(13, 6, payload(['u32', 3], ['u32', 2]))).status).toBe(EINVAL);
    expect(one(s, request(13, 7, payload(['u32', 4], ['u32', 0]))).status).toBe(EINVAL);
  });
});

describe('devices, MMIO, vCPUs', () => {
  it('CREATE_DEVICE replies the id; flags other than TEST are -EINVAL; errors from the VM pass through', () => {
    const s = attached();
    expect(one(s, request(4, 2, payload(['u32', 8], ['u32', 0]))).status).toBe(-Errno.ENODEV);
    const r = one(s, request(4, 3, payload(['u32', 7], ['u32', 0])));
    expect([r.status, r.u32(0)]).toEqual([0, 1]);
    expect(one(s, request(4, 4, payload(['u32', 7], ['u32', 0]))).status).toBe(-Errno.EEXIST);
    expect(one(s, request(4, 5, payload(['u32', 8], ['u32', 2]))).status).toBe(EINVAL);
    const t = one(s, request(4, 6, payload(['u32', 8], ['u32', 1])));
    expect([t.status, t.u32(0)]).toEqual([0, 0]);
  });

  it('attributes: SET returns the value, GET reads it, HAS, unknown device -EBADF', () => {
    const s = attached();
    withIts(s);
    const attr = (code: number, seq: number, dev: number, group: number, a: bigint, v: bigint) =>
      one(s, request(code, seq, payload(['u32', dev], ['u32', group], ['u64', a], ['u64', v])));
    let r = attr(5, 2, 2, 8, 0x80n, 0xdead_beef_0000_0001n);
    expect([r.status, r.u64(0)]).toEqual([0, 0xdead_beef_0000_0001n]);
    r = attr(6, 3, 2, 8, 0x80n, 0n);
    expect(r.u64(0)).toBe(0xdead_beef_0000_0001n);
    expect(attr(7, 4, 2, 8, 0x80n, 0n).status).toBe(0);
    expect(attr(7, 5, 2, 12, 0n, 0n).status).toBe(-Errno.ENXIO);
    r = attr(6, 6, 9, 8, 0n, 0n);
    expect([r.status, r.u64(0)]).toEqual([-Errno.EBADF, 0n]);
  });

  it('MMIO: reads return data masked to the length; lengths and is_write are checked', () => {
    const s = attached();
    const mmio = (seq: number, addr: bigint, len: number, w: number, data: bigint) =>
      one(s, request(8, seq, payload(['u64', addr], ['u32', len], ['u32', w], ['u64', data])));
    let r = mmio(2, 0x0808_0000n, 4, 0, 0n);
    expect([r.status, r.u64(0)]).toEqual([0, 0x0808_0004n]);
    // The fake returns gpa + size: 0x0808_00fe + 1 = 0x0808_00ff, and a 1-byte read keeps 0xff only.
    r = mmio(3, 0x0808_00fen, 1, 0, 0n);
    expect(r.u64(0)).toBe(0xffn);
    // A write passes the data masked to its length and replies 0.
    r = mmio(4, 0x0808_0008n, 2, 1, 0x1234_5678n);
    expect([r.status, r.u64(0)]).toEqual([0, 0n]);
    expect(vm.calls).toContain('mmioWrite(0x8080008,2,0x5678)');
    for (const len of [0, 3, 5, 16]) expect(mmio(5, 0x0808_0000n, len, 0, 0n).status).toBe(EINVAL);
    expect(mmio(6, 0x0808_0000n, 4, 2, 0n).status).toBe(EINVAL);
    r = mmio(7, 0xdead000n, 4, 0, 0n);
    expect([r.status, r.u64(0)]).toEqual([-Errno.ENXIO, 0n]);
  });

  it('SET_VCPUS: 1..512', () => {
    const s = attached();
    expect(one(s, request(11, 2, payload(['u32', 0], ['u32', 0]))).status).toBe(EINVAL);
    expect(one(s, request(11, 3, payload(['u32', 513], ['u32', 0]))).status).toBe(EINVAL);
    expect(one(s, request(11, 4, payload(['u32', 512], ['u32', 0]))).status).toBe(0);
    expect(vm.nrVcpus).toBe(512);
  });
});

describe('memory', () => {
  const region = (gpa: bigint, size: bigint, offset: bigint): ['u64', bigint][] => [['u64', gpa], ['u64', size], ['u64', offset]];
  const table = (...regions: ['u64', bigint][][]) => payload(['u32', regions.length], ['u32', 0], ...regions.flat());

  it('SET_MEM_TABLE maps the regions with their fds in order, then closes the fds', () => {
    const s = attached();
    const r = one(s, request(2, 2, table(region(0x4000_0000n, 0x10_0000n, 0n), region(0x1000n, 0x1000n, 0x10_0000n))), [80, 81]);
    expect(r.status).toBe(0);
    expect(host.mapped[0]!.map((m) => [m.gpa, m.size, m.mmapOffset, m.fd])).toEqual([
      [0x4000_0000n, 0x10_0000n, 0n, 80],
      [0x1000n, 0x1000n, 0x10_0000n, 81],
    ]);
    expect(host.closed.sort()).toEqual([80, 81]);
    expect(vm.memory.regions.map((g) => g.gpa)).toEqual([0x1000, 0x4000_0000]);
    expect(state.memory).toBe(vm.memory);
  });

  it('misaligned or overlapping regions: -EINVAL, fds closed, nothing replaced', () => {
    const s = attached();
    const before = vm.memory;
    expect(one(s, request(2, 2, table(region(0x800n, 0x1000n, 0n))), [82]).status).toBe(EINVAL);
    expect(one(s, request(2, 3, table(region(0n, 0x2000n, 0n), region(0x1000n, 0x1000n, 0n))), [83, 84]).status).toBe(EINVAL);
    expect(one(s, request(2, 4, table(region(0n, 0n, 0n))), [85]).status).toBe(EINVAL);
    expect(host.closed.sort()).toEqual([82, 83, 84, 85]);
    expect(vm.memory).toBe(before);
  });

  it('a replacement after INIT is refused by the VM (-EBUSY) and the new mapping released', () => {
    const s = attached();
    expect(one(s, request(2, 2, table(region(0n, 0x1000n, 0n))), [86]).status).toBe(0);
    withIts(s);
    vm.initialised = true;
    const first = vm.memory;
    expect(one(s, request(2, 3, table(region(0n, 0x2000n, 0n))), [87]).status).toBe(-Errno.EBUSY);
    expect(vm.memory).toBe(first);
    vm.suspend();
    expect(one(s, request(2, 4, table(region(0n, 0x2000n, 0n))), [88]).status).toBe(0);
    expect(vm.memory.regions[0]!.size).toBe(0x2000);
  });

  it('SET_LOG_BASE attaches a log that covers the regions, else -EINVAL', () => {
    const s = attached();
    // 64 pages of RAM at gpa 0 need 64 bits = 8 bytes of log.
    expect(one(s, request(2, 2, table(region(0n, 64n * 4096n, 0n))), [90]).status).toBe(0);
    expect(one(s, request(3, 3, payload(['u64', 7n], ['u64', 0n])), [91]).status).toBe(EINVAL);
    expect(host.logsReleased).toBe(1);
    expect(one(s, request(3, 4, payload(['u64', 8n], ['u64', 0n])), [92]).status).toBe(0);
    expect(vm.memory.dirtyLog?.length).toBe(8);
    expect(host.closed).toEqual(expect.arrayContaining([90, 91, 92]));
    // The log follows a new table, which it must cover too: 65 pages do not fit in 8 bytes.
    vm.initialised = false;
    expect(one(s, request(2, 5, table(region(0n, 65n * 4096n, 0n))), [93]).status).toBe(EINVAL);
    expect(one(s, request(2, 6, table(region(0n, 32n * 4096n, 0n))), [94]).status).toBe(0);
    expect(vm.memory.dirtyLog?.length).toBe(8);
  });
});

describe('order, suspend, stats', () => {
  it('pipelined requests get their replies in order', () => {
    const s = attached();
    withIts(s);
    const many: Uint8Array[] = [];
    for (let i = 0; i < 50; i++) many.push(i % 3 === 0 ? request(16, 1000 + i) : request(9, 1000 + i, kvmMsi(ITS_DOORBELL, i, 1)));
    const bytes = new Uint8Array(many.reduce((n, m) => n + m.length, 0));
    let at = 0;
    for (const m of many) {
      bytes.set(m, at);
      at += m.length;
    }
    const replies = send(s, bytes);
    expect(replies.map((r) => r.seq)).toEqual(many.map((_, i) => 1000 + i));
  });

  it('SUSPEND and RESUME delegate to the VM', () => {
    const s = attached();
    withIts(s);
    expect(one(s, request(14, 2)).status).toBe(0);
    expect(vm.suspended).toBe(true);
    expect(one(s, request(9, 3, kvmMsi(ITS_DOORBELL, 0, 1))).status).toBe(-Errno.EBUSY);
    expect(one(s, request(15, 4)).status).toBe(0);
    expect(one(s, request(15, 5)).status).toBe(0);
    expect(vm.suspended).toBe(false);
  });

  it('GET_STATS counts requests by name and errors by errno name', () => {
    const s = attached();
    withIts(s);
    one(s, request(9, 2, kvmMsi(ITS_DOORBELL, 0, 1)));
    one(s, request(9, 3, kvmMsi(ITS_DOORBELL, 1, 1)));
    one(s, request(4, 4, payload(['u32', 7], ['u32', 0]))); // EEXIST
    one(s, request(40, 5)); // EOPNOTSUPP
    const r = one(s, request(16, 6));
    expect(r.status).toBe(0);
    const stats = JSON.parse(Buffer.from(r.fields).toString('utf8')) as Record<string, Record<string, unknown>>;
    expect(stats['requests']).toMatchObject({ HELLO: 1, SIGNAL_MSI: 2, CREATE_DEVICE: 3, SET_VCPUS: 1, GET_STATS: 1, UNKNOWN: 1 });
    expect(stats['errors']).toEqual({ EEXIST: 1, EOPNOTSUPP: 1 });
    expect(stats['msi']).toEqual({ delivered: 1, dropped: 1, dropped_by_reason: {} });
    expect(stats['saves']).toEqual({ count: 0, last_ms: 0 });
    expect(stats['commands']).toEqual({ total: 0 });
    expect(stats['daemon']).toMatchObject({ owner_connected: true, vcpus: 4 });
  });
});
