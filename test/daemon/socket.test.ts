/**
 * The real daemon as a separate process (these tests are about the socket
 * layer), driven by a raw client: HELLO and ownership rules, framing and request errors,
 * fds, a client killed mid-message, the socket file's life, signals and the CLI.
 */
import { spawn, spawnSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native, nativeAddonPath } from '../../src/native/index.js';
import { Errno } from '../../src/util/errno.js';
import { REAL_DAEMON, ROOT, openFds, socketExists, spawnVitsd, startDaemon, tempDir, waitFor, type Daemon } from './support/daemon-process.js';
import { RawClient } from './support/raw-client.js';
import { hello, payload, request } from './support/wire.js';

const EPROTO = -Errno.EPROTO;
const EINVAL = -Errno.EINVAL;

/** Connects and completes HELLO, retrying while the previous owner's close is still in flight. */
async function attach(path: string, features = 0xfn): Promise<{ c: RawClient; resumed: number }> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const c = RawClient.connect(path);
    const r = await c.call(hello(1, features));
    if (r.status === 0) return { c, resumed: r.u32(4) };
    c.close();
    if (r.status !== -Errno.EBUSY || Date.now() > deadline) throw new Error(`HELLO failed: ${r.status}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

async function stillServes(path: string): Promise<void> {
  const { c } = await attach(path);
  const r = await c.call(request(16, 99));
  expect(r.status).toBe(0);
  c.close();
}

let shared: Daemon;
beforeAll(async () => {
  shared = await startDaemon();
});
afterAll(async () => {
  await shared.stop();
});

describe('HELLO and ownership over the socket', () => {
  it('a first request other than HELLO: -EPROTO, then the connection is closed', async () => {
    const c = RawClient.connect(shared.socketPath);
    const r = await c.call(request(16, 5));
    expect([r.status, r.size, r.seq, r.flags]).toEqual([EPROTO, 8, 5, 5]);
    await c.closedByPeer();
    c.close();
    await stillServes(shared.socketPath);
  });

  it('second HELLO -EINVAL (stays); second client -EBUSY (closed)', async () => {
    const { c } = await attach(shared.socketPath);
    const again = await c.call(hello(2));
    expect(again.status).toBe(EINVAL);
    const other = RawClient.connect(shared.socketPath);
    const busy = await other.call(hello(3));
    expect(busy.status).toBe(-Errno.EBUSY);
    await other.closedByPeer();
    other.close();
    expect((await c.call(request(16, 4))).status).toBe(0);
    c.close();
  });

  it('state is kept across a disconnect: the next HELLO reports resumed = 1', async () => {
    const d = await startDaemon();
    try {
      const first = await attach(d.socketPath);
      expect(first.resumed).toBe(0);
      expect((await first.c.call(request(4, 2, payload(['u32', 7], ['u32', 0])))).status).toBe(0);
      first.c.close();
      const second = await attach(d.socketPath);
      expect(second.resumed).toBe(1);
      // The device created by the first frontend is still there: a second vgic-v3 is -EEXIST.
      expect((await second.c.call(request(4, 3, payload(['u32', 7], ['u32', 0])))).status).toBe(-Errno.EEXIST);
      second.c.close();
    } finally {
      await d.stop();
    }
  });
});

describe('framing errors close the connection; the daemon keeps serving', () => {
  const oversized = request(16, 7);
  new DataView(oversized.buffer).setUint32(8, (1 << 20) + 1, true);
  const cases: [string, Uint8Array][] = [
    ['version bits 2', request(16, 7, new Uint8Array(0), 2)],
    ['REPLY set', request(16, 7, new Uint8Array(0), 5)],
    ['bit 4 set', request(16, 7, new Uint8Array(0), 0x11)],
    ['size over 1 MiB', oversized],
  ];
  for (const [name, bytes] of cases) {
    it(name, async () => {
      const { c } = await attach(shared.socketPath);
      c.send(bytes);
      const r = await c.reply();
      expect([r.status, r.size, r.seq]).toEqual([EPROTO, 8, 7]);
      await c.closedByPeer();
      c.close();
      await stillServes(shared.socketPath);
    });
  }
});

describe('request errors keep the connection', () => {
  it('wrong sizes, counts, MMIO fields and unknown codes', async () => {
    const { c } = await attach(shared.socketPath);
    const cases: [Uint8Array, number][] = [
      [request(4, 1, new Uint8Array(7)), EINVAL],
      [request(8, 2, payload(['u64', 0n], ['u32', 3], ['u32', 0], ['u64', 0n])), EINVAL],
      [request(8, 3, payload(['u64', 0n], ['u32', 4], ['u32', 2], ['u64', 0n])), EINVAL],
      [request(10, 4, payload(['u32', 16385], ['u32', 0])), EINVAL],
      [request(11, 5, payload(['u32', 513], ['u32', 0])), EINVAL],
      [request(33, 6, new Uint8Array(100)), -Errno.EOPNOTSUPP],
    ];
    for (const [bytes, status] of cases) {
      const r = await c.call(bytes);
      expect(r.status).toBe(status);
    }
    expect((await c.call(request(16, 7))).status).toBe(0);
    c.close();
  });

  it('fds where none belong are closed at once by the daemon', async () => {
    const { c } = await attach(shared.socketPath);
    expect((await c.call(request(16, 1))).status).toBe(0);
    const pid = shared.proc.pid!;
    const before = openFds(pid);
    const efds = [native.eventfd(0), native.eventfd(0), native.eventfd(0)];
    const r = await c.call(request(16, 2), efds);
    expect(r.status).toBe(EINVAL);
    // fds on a request that takes one, but two of them:
    const r2 = await c.call(request(12, 3, payload(['u32', 0], ['u32', 0])), efds.slice(0, 2));
    expect(r2.status).toBe(EINVAL);
    expect(openFds(pid)).toEqual(before);
    for (const fd of efds) native.close(fd);
    expect(shared.stderr()).toContain('closed fds the request does not use');
    c.close();
  });
});

describe('streams', () => {
  it('a request written one byte at a time, and many requests in one write', async () => {
    const { c } = await attach(shared.socketPath);
    const m = request(4, 42, payload(['u32', 99], ['u32', 0]));
    for (let i = 0; i < m.length; i++) {
      c.send(m.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, 1));
    }
    const r = await c.reply();
    expect([r.seq, r.status]).toEqual([42, -Errno.ENODEV]);
    const many: Uint8Array[] = [];
    for (let i = 0; i < 500; i++) many.push(request(i % 2 ? 16 : 15, 1000 + i));
    c.send(Buffer.concat(many));
    const replies = await c.replies(500);
    expect(replies.map((x) => x.seq)).toEqual(many.map((_, i) => 1000 + i));
    c.close();
  });

  it('replies that back up (the client does not read) are all delivered, in order', async () => {
    const { c } = await attach(shared.socketPath);
    // ~1 KiB of JSON per GET_STATS reply: 6000 of them exceed the daemon's 4 MiB high-water mark.
    const n = 6000;
    const reqs: Uint8Array[] = [];
    for (let i = 0; i < n; i++) reqs.push(request(16, i));
    c.send(Buffer.concat(reqs));
    const replies = await c.replies(n, 60_000);
    expect(replies.every((r, i) => r.seq === i && r.status === 0)).toBe(true);
    c.close();
  });

  it('a client killed in the middle of a message: the daemon drops it, keeps the state and serves the next', async () => {
    const d = await startDaemon();
    try {
      // The child: HELLO (becomes owner), create the vgic-v3, then half of a header, then wait to be killed.
      const script = `
        const n = require(process.env.ADDON);
        const fd = n.connectUnix(process.env.SOCK);
        const send = (b) => { if (n.sendmsg(fd, b, 0, b.length, null) !== b.length) throw new Error('send'); };
        const hello = Buffer.alloc(32); hello.writeUInt32LE(1, 0); hello.writeUInt32LE(1, 4); hello.writeUInt32LE(16, 8); hello.writeUInt32LE(1, 16); hello.writeUInt32LE(15, 24);
        const create = Buffer.alloc(24); create.writeUInt32LE(4, 0); create.writeUInt32LE(1, 4); create.writeUInt32LE(8, 8); create.writeUInt32LE(7, 16);
        send(hello); send(create);
        const half = Buffer.alloc(8); half.writeUInt32LE(16, 0); half.writeUInt32LE(1, 4);
        setTimeout(() => { send(half); console.log('ready'); }, 200);
        setInterval(() => {}, 1000);`;
      const child = spawn(process.execPath, ['-e', script], { env: { ...process.env, ADDON: nativeAddonPath(), SOCK: d.socketPath }, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      await waitFor(() => out.includes('ready'), 10_000, () => 'child did not get ready');
      const exited = new Promise((r) => child.on('exit', r));
      child.kill('SIGKILL');
      await exited;
      await waitFor(() => /peer closed.* in the middle of a message \(8 bytes pending\)/.test(d.stderr()), 10_000, () => d.stderr());
      const next = await attach(d.socketPath);
      expect(next.resumed).toBe(1);
      next.c.close();
    } finally {
      await d.stop();
    }
  });
});

describe('the socket file', () => {
  it('is created with mode 0600', () => {
    expect(statSync(shared.socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(shared.socketPath).isSocket()).toBe(true);
  });

  it('a stale socket file (no listener) is replaced', async () => {
    const path = join(tempDir(), 'stale.sock');
    const fd = native.listenUnix(path, 1, 0o600);
    native.close(fd); // the file stays, nobody listens
    expect(socketExists(path)).toBe(true);
    const d = await startDaemon(REAL_DAEMON, [], path);
    try {
      expect(d.stderr()).toContain('replaced a stale socket file');
      await stillServes(path);
    } finally {
      await d.stop();
    }
  });

  it('a live socket is refused with a clear message', async () => {
    const d = spawnVitsd(REAL_DAEMON, ['--socket-path', shared.socketPath]);
    const code = await d.exited;
    expect(code).toBe(1);
    expect(d.stderr()).toContain('another process is already listening on');
    await stillServes(shared.socketPath);
  });

  it('a path that is not a socket is left alone', async () => {
    const path = join(tempDir(), 'precious.txt');
    writeFileSync(path, 'keep me');
    const d = spawnVitsd(REAL_DAEMON, ['--socket-path', path]);
    expect(await d.exited).toBe(1);
    expect(d.stderr()).toContain('is not a socket');
    expect(statSync(path).isFile()).toBe(true);
  });

  it('SIGTERM and SIGINT: clean exit 0, socket file removed', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const d = await startDaemon();
      const { c } = await attach(d.socketPath);
      d.proc.kill(signal);
      expect(await d.exited).toBe(0);
      expect(socketExists(d.socketPath)).toBe(false);
      await c.closedByPeer();
      c.close();
    }
  });

  it('--fd N serves an inherited listening socket', async () => {
    const path = join(tempDir(), 'inherited.sock');
    const lfd = native.listenUnix(path, 8, 0o600);
    const d = spawnVitsd(REAL_DAEMON, ['--fd', '3'], { extraFds: [lfd] });
    try {
      await waitFor(() => d.stderr().includes('"msg":"listening"'), 30_000, () => d.stderr(), d);
      native.close(lfd);
      await stillServes(path);
    } finally {
      expect(await d.stop()).toBe(0);
    }
    // Not ours to remove: the file of an inherited socket stays.
    expect(socketExists(path)).toBe(true);
  });
});

describe('the command line', () => {
  const run = (args: string[]) => spawnSync(process.execPath, [...REAL_DAEMON, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });

  it('--print-capabilities prints JSON and exits 0 without a socket option', () => {
    const r = run(['--print-capabilities']);
    expect(r.status).toBe(0);
    const caps = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(caps).toMatchObject({ type: 'gicv3-its', protocol_version: 1, max_vcpus: 512, max_its: 16 });
    expect(caps['features']).toEqual(['dirty-log', 'msi-batch', 'notify-fd', 'reconnect']);
  });

  it('--help describes the daemon with examples; --version prints the version', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('GICv3 ITS');
    expect(r.stdout).toContain('--socket-path');
    expect(r.stdout).toContain('Examples:');
    const v = run(['--version']);
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('exactly one of --socket-path and --fd', () => {
    expect(run([]).status).toBe(2);
    expect(run(['--socket-path', '/tmp/x.sock', '--fd', '3']).status).toBe(2);
    expect(run(['--bogus']).status).not.toBe(0);
  });
});
