/**
 * The native shim against the real kernel: mappings, fds, UNIX sockets with SCM_RIGHTS and
 * libuv poll watchers. Behaviours that can kill a process run in a child process.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EFD_CLOEXEC, MFD_CLOEXEC, MS_SYNC, POLL_READABLE, POLL_WRITABLE, PROT_READ, PROT_WRITE, type PollHandle } from '../../src/native/binding.js';
import { errnoOf, toErrnoError } from '../../src/native/errors.js';
import { native, nativeAddonPath, packageRoot } from '../../src/native/index.js';
import { Errno, ErrnoError } from '../../src/util/errno.js';

const RW = PROT_READ | PROT_WRITE;
const EAGAIN = 11;

/** Throws-with-code helper: runs fn, returns the error (fails if nothing was thrown). */
function thrown(fn: () => unknown): Error & { code?: string; errno?: number; syscall?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string; errno?: number };
  }
  throw new Error('expected an exception');
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** O_CLOEXEC as /proc shows it in fdinfo "flags" (octal 02000000). */
function isCloexec(fd: number): boolean {
  const flags = /flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
  return (parseInt(flags, 8) & 0o2000000) !== 0;
}

function memfd(size: number): number {
  const fd = native.memfdCreate('native-test', MFD_CLOEXEC);
  ftruncateSync(fd, size);
  return fd;
}

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
function runFixture(name: string, args: string[], nodeFlags: string[] = []): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...nodeFlags, '--import', 'tsx', fixture(name), ...args], { cwd: packageRoot(), encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const toClose: number[] = [];
afterEach(() => {
  for (const fd of toClose.splice(0)) if (native.isOpen(fd)) native.close(fd);
});
const track = <T extends number>(fd: T): T => (toClose.push(fd), fd);

describe('loader', () => {
  it('finds the addon under the package root', () => {
    expect(existsSync(nativeAddonPath())).toBe(true);
    expect(existsSync(join(packageRoot(), 'package.json'))).toBe(true);
    expect(native.pageSize).toBe(4096);
  });

  it('tells the user to run `npm run build:native` when the addon is missing', () => {
    const loader = join(packageRoot(), 'src', 'native', 'index.ts');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `await import(${JSON.stringify(loader)})`], {
      cwd: packageRoot(),
      encoding: 'utf8',
      env: { ...process.env, VITSD_NATIVE_ADDON: join(tmpdir(), 'no-such-dir', 'vitsd_native.node') },
      timeout: 30_000,
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/native addon is missing .*no-such-dir.*npm run build:native/s);
  });
});

describe('mmap / munmap / mprotect / msync', () => {
  it('maps a file MAP_SHARED: two mappings of one memfd alias the same pages', () => {
    const fd = track(memfd(3 * 4096));
    const a = native.mmap(fd, 3 * 4096, 0, RW);
    const b = native.mmap(fd, 2 * 4096, 4096, RW); // file offset 4096
    expect(a.byteLength).toBe(3 * 4096);
    new DataView(a).setUint32(4096 + 8, 0xa5a5_1234, true);
    expect(new DataView(b).getUint32(8, true)).toBe(0xa5a5_1234);
    new Uint8Array(b)[4096] = 0x77; // file offset 8192
    expect(new Uint8Array(a)[8192]).toBe(0x77);
    // the file itself holds the bytes
    const check = Buffer.alloc(4);
    const dup = openSync(`/proc/self/fd/${fd}`, 'r');
    try {
      expect(readSync(dup, check, 0, 4, 4096 + 8)).toBe(4); // pread
    } finally {
      closeSync(dup);
    }
    expect(check.readUInt32LE(0)).toBe(0xa5a5_1234);
    native.munmap(a);
    native.munmap(b);
  });

  it('munmap detaches: stale views read as empty and cannot write (no SIGSEGV)', () => {
    const fd = track(memfd(4096));
    const ab = native.mmap(fd, 4096, 0, RW);
    const words = new Uint32Array(ab);
    const view = new DataView(ab);
    words[0] = 7;
    native.munmap(ab);
    expect(ab.byteLength).toBe(0);
    expect(words.length).toBe(0);
    expect(words[0]).toBeUndefined();
    words[0] = 1; // silently ignored on a detached buffer
    expect(() => view.getUint32(0, true)).toThrow(TypeError);
    expect(() => view.setUint32(0, 1, true)).toThrow(TypeError);
    native.munmap(ab); // idempotent
    expect(thrown(() => native.mprotect(ab, PROT_READ)).code).toBe('EINVAL');
    expect(thrown(() => native.msync(ab)).code).toBe('EINVAL');
    // the data was written to the file before the unmap
    const again = native.mmap(fd, 4096, 0, RW);
    expect(new Uint32Array(again)[0]).toBe(7);
    native.munmap(again);
  });

  it('rejects buffers it did not create', () => {
    expect(thrown(() => native.munmap(new ArrayBuffer(4096))).code).toBe('EINVAL');
    expect(thrown(() => native.mprotect(new ArrayBuffer(4096), PROT_READ)).code).toBe('EINVAL');
  });

  it('throws errors carrying code, errno and syscall', () => {
    const bad = thrown(() => native.mmap(987_654, 4096, 0, RW));
    expect([bad.code, bad.errno, bad.syscall]).toEqual(['EBADF', 9, 'mmap']);
    expect(errnoOf(bad)).toBe(Errno.EBADF);
    expect(toErrnoError(bad, 'map')).toBeInstanceOf(ErrnoError);
    expect(toErrnoError(bad, 'map').errno).toBe(Errno.EBADF);
    const fd = track(memfd(8192));
    expect(thrown(() => native.mmap(fd, 0, 0, RW)).code).toBe('EINVAL');
    expect(thrown(() => native.mmap(fd, 100.5, 0, RW)).code).toBe('EINVAL');
    expect(thrown(() => native.mmap(fd, 2 ** 32, 0, RW)).code).toBe('EINVAL'); // over 2^32 - 4096
    expect(thrown(() => native.mmap(fd, 4096, 100, RW)).code).toBe('EINVAL'); // offset not page aligned
  });

  it('maps a read-only file descriptor only without PROT_WRITE (EACCES)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vitsd-native-'));
    try {
      const path = join(dir, 'ro');
      writeFileSync(path, Buffer.alloc(4096, 9));
      const fd = openSync(path, 'r');
      try {
        const e = thrown(() => native.mmap(fd, 4096, 0, RW));
        expect(e.code).toBe('EACCES');
        const ro = native.mmap(fd, 4096, 0, PROT_READ);
        expect(new Uint8Array(ro)[100]).toBe(9);
        native.munmap(ro);
      } finally {
        closeSync(fd);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('mprotect validates its range; msync flushes', () => {
    const fd = track(memfd(3 * 4096));
    const ab = native.mmap(fd, 3 * 4096, 0, RW);
    native.mprotect(ab, PROT_READ, 4096, 4096);
    native.mprotect(ab, RW, 4096, 4096);
    native.mprotect(ab, RW);
    new Uint8Array(ab)[4096] = 1; // writable again: this process would die otherwise
    expect(thrown(() => native.mprotect(ab, PROT_READ, 100, 4096)).code).toBe('EINVAL');
    expect(() => native.mprotect(ab, PROT_READ, 4096, 3 * 4096)).toThrow(RangeError);
    native.msync(ab);
    native.msync(ab, MS_SYNC);
    native.munmap(ab);
  });

  it('unmaps dropped mappings when they are garbage-collected', () => {
    const r = runFixture('gc-mappings.ts', [], ['--expose-gc']);
    expect(r.stderr).toBe('');
    const { before, whileHeld, afterGc } = JSON.parse(r.stdout) as Record<string, number>;
    expect(whileHeld - before).toBeGreaterThanOrEqual(1000); // 2000 mappings (the kernel may merge some)
    expect(afterGc - before).toBeLessThan(50);
  });
});

describe('eventfd, close, isOpen', () => {
  it('adds written values and reads the sum once', () => {
    const fd = track(native.eventfd(0));
    expect(isCloexec(fd)).toBe(true);
    expect(native.readU64(fd)).toBe(-EAGAIN); // counter 0, non-blocking
    expect(native.writeU64(fd, 5)).toBe(8);
    expect(native.writeU64(fd, 2 ** 40)).toBe(8);
    expect(native.readU64(fd)).toBe(5 + 2 ** 40);
    expect(native.readU64(fd)).toBe(-EAGAIN);
    expect(native.writeU64(fd, -1)).toBe(-Errno.EINVAL);
    expect(native.writeU64(fd, 1.5)).toBe(-Errno.EINVAL);
    expect(native.readU64(fd)).toBe(-EAGAIN); // neither invalid value was written
  });

  it('starts from initval and honours explicit flags', () => {
    const fd = track(native.eventfd(3, EFD_CLOEXEC | 0o4000));
    expect(native.readU64(fd)).toBe(3);
  });

  it('reports -EBADF on a closed descriptor instead of throwing', () => {
    const fd = native.eventfd(0);
    expect(native.isOpen(fd)).toBe(true);
    native.close(fd);
    expect(native.isOpen(fd)).toBe(false);
    expect(native.writeU64(fd, 1)).toBe(-Errno.EBADF);
    expect(native.readU64(fd)).toBe(-Errno.EBADF);
    expect(thrown(() => native.close(fd)).code).toBe('EBADF');
    expect(native.isOpen(-1)).toBe(false);
  });

  it('setNonBlocking turns O_NONBLOCK on and off and keeps the other flags', () => {
    // O_NONBLOCK is 04000 in fdinfo "flags" (octal); an eventfd made without EFD_NONBLOCK is blocking.
    const fileFlags = (fd: number): number => parseInt(/flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
    const fd = track(native.eventfd(0, EFD_CLOEXEC));
    expect(fileFlags(fd) & 0o4000).toBe(0);
    native.setNonBlocking(fd, true);
    expect(fileFlags(fd) & 0o4000).toBe(0o4000);
    // Only now is a read on the empty counter safe: it must report EAGAIN, not block.
    expect(native.readU64(fd)).toBe(-EAGAIN);
    native.setNonBlocking(fd, true); // idempotent
    expect(fileFlags(fd) & 0o4000).toBe(0o4000);
    native.setNonBlocking(fd, false);
    expect(fileFlags(fd) & 0o4000).toBe(0);
    expect(isCloexec(fd)).toBe(true);
    const closed = native.eventfd(0);
    native.close(closed);
    expect(thrown(() => native.setNonBlocking(closed, true)).code).toBe('EBADF');
    expect(thrown(() => native.setNonBlocking(fd, 1 as unknown as boolean))).toBeInstanceOf(TypeError);
  });

  it('memfd_create honours MFD_CLOEXEC and gives a sizable file', () => {
    const fd = track(native.memfdCreate('x', MFD_CLOEXEC));
    expect(isCloexec(fd)).toBe(true);
    ftruncateSync(fd, 12288);
    expect(fstatSync(fd).size).toBe(12288);
  });
});

describe('UNIX sockets and SCM_RIGHTS', () => {
  it('passes fds that refer to the same open files, close-on-exec', () => {
    const [a, b] = native.socketpair().map(track) as [number, number];
    const efd = track(native.eventfd(0));
    const mfd = track(memfd(4096));
    expect(native.sendmsg(a, Buffer.from('hello'), 0, 5, [efd, mfd])).toBe(5);
    const buf = new Uint8Array(16);
    const fds = new Int32Array(17);
    expect(native.recvmsg(b, buf, 2, 10, fds)).toBe(5);
    expect(Buffer.from(buf.subarray(2, 7)).toString()).toBe('hello');
    expect(fds[0]).toBe(2);
    const [rEfd, rMfd] = [track(fds[1]!), track(fds[2]!)];
    expect(rEfd).not.toBe(efd);
    expect(fstatSync(rMfd).ino).toBe(fstatSync(mfd).ino);
    expect(isCloexec(rEfd) && isCloexec(rMfd)).toBe(true); // MSG_CMSG_CLOEXEC
    native.writeU64(rEfd, 9); // the same eventfd
    expect(native.readU64(efd)).toBe(9);
    expect(native.recvmsg(b, buf, 0, 16, fds)).toBe(-EAGAIN);
    expect(fds[0]).toBe(0);
  });

  it('closes the fds that do not fit in the caller\'s array', () => {
    const [a, b] = native.socketpair().map(track) as [number, number];
    const sent = [0, 1, 2, 3, 4].map(() => track(native.eventfd(0)));
    expect(native.sendmsg(a, Buffer.from('m'), 0, 1, sent)).toBe(1);
    const fds = new Int32Array(3); // room for 2
    const before = openFds();
    expect(native.recvmsg(b, new Uint8Array(4), 0, 4, fds)).toBe(1);
    expect(fds[0]).toBe(2);
    expect(openFds() - before).toBe(2); // 5 arrived, 3 were closed by the shim
    track(fds[1]!);
    track(fds[2]!);
  });

  it('receives the largest fd set the kernel allows (253) and keeps 16', () => {
    const [a, b] = native.socketpair().map(track) as [number, number];
    const efd = track(native.eventfd(0));
    expect(native.sendmsg(a, Buffer.from('m'), 0, 1, new Array<number>(253).fill(efd))).toBe(1);
    const fds = new Int32Array(17);
    const before = openFds();
    expect(native.recvmsg(b, new Uint8Array(4), 0, 4, fds)).toBe(1);
    expect(fds[0]).toBe(16);
    expect(openFds() - before).toBe(16);
    for (let i = 1; i <= 16; i++) track(fds[i]!);
  });

  it('never raises SIGPIPE: a send to a closed peer is -EPIPE, a receive is 0', () => {
    const [a, b] = native.socketpair();
    native.close(b);
    expect(native.sendmsg(a, Buffer.from('x'), 0, 1, null)).toBe(-32); // EPIPE
    native.close(a);
    const [c, d] = native.socketpair().map(track) as [number, number];
    native.close(c);
    expect(native.recvmsg(d, new Uint8Array(4), 0, 4, new Int32Array(17))).toBe(0);
  });

  it('validates arguments', () => {
    const [a] = native.socketpair().map(track) as [number, number];
    expect(native.recvmsg(a, new Uint8Array(4), 0, 0, new Int32Array(17))).toBe(-Errno.EINVAL);
    expect(() => native.recvmsg(a, new Uint8Array(4), 2, 4, new Int32Array(17))).toThrow(RangeError);
    expect(() => native.recvmsg(a, new Uint8Array(4), 0, 4, new Int32Array(0))).toThrow(TypeError);
    expect(() => native.sendmsg(a, new Uint8Array(4), 0, 5, null)).toThrow(RangeError);
    expect(() => native.sendmsg(a, new Uint8Array(4), 0, 4, new Array<number>(254).fill(0))).toThrow(RangeError);
  });

  describe('listenUnix / accept / connectUnix', () => {
    let dir = '';
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'vitsd-sock-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('creates the socket file with the requested mode and accepts a connection', () => {
      for (const mode of [0o600, 0o660]) {
        const path = join(dir, `s${mode.toString(8)}`);
        const l = track(native.listenUnix(path, 16, mode));
        expect(statSync(path).mode & 0o777).toBe(mode);
        expect(statSync(path).isSocket()).toBe(true);
        expect(native.accept(l)).toBe(-EAGAIN);
        const c = track(native.connectUnix(path));
        const s = track(native.accept(l));
        expect(s).toBeGreaterThan(0);
        expect(isCloexec(s) && isCloexec(c)).toBe(true);
        expect(native.sendmsg(c, Buffer.from('ping'), 0, 4, null)).toBe(4);
        const buf = new Uint8Array(8);
        expect(native.recvmsg(s, buf, 0, 8, new Int32Array(17))).toBe(4);
        expect(Buffer.from(buf.subarray(0, 4)).toString()).toBe('ping');
        expect(native.recvmsg(c, buf, 0, 8, new Int32Array(17))).toBe(-EAGAIN); // non-blocking
      }
    });

    it('reports ENOENT, ECONNREFUSED, EADDRINUSE, ENAMETOOLONG', () => {
      expect(thrown(() => native.connectUnix(join(dir, 'missing'))).code).toBe('ENOENT');
      const stale = join(dir, 'stale');
      native.close(native.listenUnix(stale, 1, 0o600)); // file stays, nobody listens
      expect(thrown(() => native.connectUnix(stale)).code).toBe('ECONNREFUSED');
      expect(thrown(() => native.listenUnix(stale, 1, 0o600)).code).toBe('EADDRINUSE');
      expect(thrown(() => native.listenUnix(join(dir, 'x'.repeat(200)), 1, 0o600)).code).toBe('ENAMETOOLONG');
    });
  });
});

describe('poll watchers on the event loop', () => {
  const stopAll: PollHandle[] = [];
  afterEach(() => {
    for (const h of stopAll.splice(0)) native.pollStop(h);
  });

  it('calls back on the event loop when data is readable, then when writable', async () => {
    const [a, b] = native.socketpair().map(track) as [number, number];
    const events: Array<[number, number]> = [];
    let resolveFirst!: () => void;
    const first = new Promise<void>((r) => (resolveFirst = r));
    const h = native.pollStart(b, POLL_READABLE, (status, ev) => {
      events.push([status, ev]);
      native.recvmsg(b, new Uint8Array(64), 0, 64, new Int32Array(17)); // drain
      resolveFirst();
    });
    stopAll.push(h);
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual([]); // nothing to read yet
    native.sendmsg(a, Buffer.from('data'), 0, 4, null);
    expect(events).toEqual([]); // not synchronously: from the loop
    await first;
    expect(events).toEqual([[0, POLL_READABLE]]);

    let resolveWritable!: () => void;
    const writable = new Promise<void>((r) => (resolveWritable = r));
    native.pollStop(h);
    stopAll.length = 0;
    const w = native.pollStart(a, POLL_WRITABLE, (status, ev) => {
      native.pollStop(w);
      events.push([status, ev]);
      resolveWritable();
    });
    await writable;
    expect(events[1]).toEqual([0, POLL_WRITABLE]);
  });

  it('pollUpdate changes the events; pollStop inside the callback stops further callbacks', async () => {
    const [a, b] = native.socketpair().map(track) as [number, number];
    let calls = 0;
    const h = native.pollStart(b, 0, () => {
      calls++;
      native.pollStop(h); // from inside its own callback, data left unread
      native.pollStop(h); // idempotent
    });
    native.sendmsg(a, Buffer.from('x'), 0, 1, null);
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toBe(0); // events 0: paused
    native.pollUpdate(h, POLL_READABLE);
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toBe(1); // would be called on every loop turn if not stopped (level-triggered)
    expect(thrown(() => native.pollUpdate(h, POLL_READABLE)).code).toBe('EBADF');
    // the fd can be watched again once the old watcher is stopped
    const again = native.pollStart(b, POLL_READABLE, () => undefined);
    native.pollStop(again);
  });

  it('refuses a second watcher on the same fd, bad events and foreign handles', () => {
    const [, b] = native.socketpair().map(track) as [number, number];
    const h = native.pollStart(b, POLL_READABLE, () => undefined);
    stopAll.push(h);
    expect(thrown(() => native.pollStart(b, POLL_READABLE, () => undefined)).code).toBe('EEXIST');
    expect(() => native.pollUpdate(h, 8)).toThrow(RangeError);
    expect(() => native.pollStop({} as PollHandle)).toThrow(TypeError);
    expect(() => native.pollStart(b, POLL_READABLE, 5 as unknown as () => void)).toThrow(TypeError);
  });

  it('cannot watch a regular file (epoll refuses it)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vitsd-poll-'));
    try {
      const fd = openSync(join(dir, 'f'), 'w');
      try {
        writeSync(fd, 'x');
        expect(thrown(() => native.pollStart(fd, POLL_READABLE, () => undefined)).code).toBe('EPERM');
      } finally {
        closeSync(fd);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an unref\'d watcher does not keep the process alive', () => {
    const r = runFixture('poll-lifecycle.ts', ['unref']);
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.split('\n')[0]!)).toMatchObject({ started: true });
  });

  it('a throwing callback is an uncaught exception of the process', () => {
    const r = runFixture('poll-lifecycle.ts', ['throw']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual({ uncaught: 'boom from a poll callback' });
  });

  it('worker threads with live watchers and mappings terminate without crashing the process', () => {
    const r = runFixture('poll-lifecycle.ts', ['worker', '3']);
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual({ workers: 3, ok: true });
  });
});
