/**
 * MappedGuestMemory on real shared memory: a second process mapping the same pages, fds
 * passed over real UNIX sockets, a sparse 5 GiB memfd, file-backed memory and the dirty log
 * mapped from a file.
 */
import { closeSync, fstatSync, ftruncateSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MFD_CLOEXEC, POLL_READABLE } from '../../src/native/binding.js';
import { native } from '../../src/native/index.js';
import { GuestMemoryFault } from '../../src/memory/errors.js';
import { mapDirtyLog } from '../../src/memory/mapped-dirty-log.js';
import { MappedGuestMemory, createMemfdGuestMemory, openFileGuestMemory } from '../../src/memory/mapped-guest-memory.js';
import { Errno, ErrnoError } from '../../src/util/errno.js';
import { Peer, PEER_SCRIPT } from '../native/peer.js';
import { dirtyPages } from './helpers.js';

const GiB = 2 ** 30;

function pread(fd: number, length: number, position: number): Buffer {
  const buf = Buffer.alloc(length);
  expect(readSync(fd, buf, 0, length, position)).toBe(length);
  return buf;
}

function errnoOfThrown(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ErrnoError);
    return (e as ErrnoError).errno;
  }
  throw new Error('expected an ErrnoError');
}

/** Resolves with the next readable event on fd (libuv poll). */
function readable(fd: number): Promise<void> {
  return new Promise((resolve) => {
    const h = native.pollStart(fd, POLL_READABLE, () => {
      native.pollStop(h);
      resolve();
    });
  });
}

describe('two processes sharing guest memory', () => {
  it('a write in one process is read by the other in place, both ways (fd sent over a socketpair)', async () => {
    const gpa = 0x4000_0000;
    const mem = createMemfdGuestMemory([{ gpa, size: 0x10000 }]);
    const [mine, theirs] = native.socketpair();
    const peer = new Peer(PEER_SCRIPT, theirs);
    try {
      native.close(theirs); // the child has its own copy as fd 3
      const fd = mem.mappedRegions[0]!.fd;
      peer.send({ op: 'recv-map', gpa, size: 0x10000, mmapOffset: 0 });
      expect(native.sendmsg(mine, Buffer.from('SET_MEM_TABLE'), 0, 13, [fd])).toBe(13);
      expect(await peer.next()).toEqual({ ok: true, fds: 1, text: 'SET_MEM_TABLE' });

      mem.writeU32(gpa + 0x100, 0xdeadbeef);
      expect(await peer.request({ op: 'read32', gpa: gpa + 0x100 })).toEqual({ value: 0xdeadbeef });
      await peer.request({ op: 'write32', gpa: gpa + 0xfffc, value: 0x12345678 });
      expect(mem.readU32(gpa + 0xfffc)).toBe(0x12345678);
      mem.writeU64(gpa + 0x8000, 0x11111111, 0x22222222);
      expect(await peer.request({ op: 'read32', gpa: gpa + 0x8004 })).toEqual({ value: 0x22222222 });
      // the bytes are in the file, where the VMM's guest sees them
      expect(pread(fd, 4, 0x100).readUInt32LE(0)).toBe(0xdeadbeef);
      expect(await peer.close()).toEqual({ code: 0, signal: null });
    } finally {
      peer.child.kill();
      native.close(mine);
      mem.close();
    }
  });

  it('maps a memfd received from another process over a listening UNIX socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vitsd-mem-'));
    const path = join(dir, 'vitsd.sock');
    const listener = native.listenUnix(path, 4, 0o600);
    const peer = new Peer(PEER_SCRIPT);
    try {
      const accepted = readable(listener);
      const reply = peer.request({ op: 'connect-send-memfd', path, size: 0x4000, marker: 0xfeedf00d });
      await accepted;
      const conn = native.accept(listener);
      expect(conn).toBeGreaterThan(0);
      expect(await reply).toEqual({ ok: true, sent: 5 });
      const fds = new Int32Array(17);
      const buf = new Uint8Array(16);
      let n = native.recvmsg(conn, buf, 0, 16, fds);
      if (n === -11) {
        await readable(conn);
        n = native.recvmsg(conn, buf, 0, 16, fds);
      }
      expect(n).toBe(5);
      expect(fds[0]).toBe(1);
      const mem = new MappedGuestMemory([{ gpa: 0x8000_0000n, size: 0x4000n, fd: fds[1]!, mmapOffset: 0n }], { ownFds: true });
      try {
        expect(mem.readU32(0x8000_0000)).toBe(0xfeedf00d); // written by the peer into its own memfd
        mem.writeU32(0x8000_0004, 0x0badcafe);
        expect(await peer.request({ op: 'read-raw32', offset: 4 })).toEqual({ value: 0x0badcafe });
      } finally {
        mem.close();
        expect(native.isOpen(fds[1]!)).toBe(false); // ownFds: closed with the memory
        native.close(conn);
      }
    } finally {
      await peer.close();
      native.close(listener);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a write to a page the peer made read-only kills only the peer (SIGSEGV)', async () => {
    const mem = createMemfdGuestMemory([{ gpa: 0, size: 0x1000 }]);
    const [mine, theirs] = native.socketpair();
    const peer = new Peer(PEER_SCRIPT, theirs);
    try {
      native.close(theirs);
      mem.writeU32(0, 0x5a5a5a5a);
      peer.send({ op: 'recv-map-readonly-then-write', size: 0x1000 });
      native.sendmsg(mine, Buffer.from('x'), 0, 1, [mem.mappedRegions[0]!.fd]);
      expect(await peer.next()).toMatchObject({ ok: true });
      expect(await peer.exited).toEqual({ code: null, signal: 'SIGSEGV' });
      expect(mem.readU32(0)).toBe(0x5a5a5a5a); // this process and its mapping are fine
    } finally {
      native.close(mine);
      mem.close();
    }
  });
});

describe('MappedGuestMemory', () => {
  it('splits a 5 GiB region into chunks and handles accesses across the 4 GiB line (sparse memfd)', () => {
    // Region [0, 5 GiB) in 2 GiB chunks: [0, 2G) [2G, 4G) [4G, 5G); 4 GiB is a chunk boundary.
    const mem = createMemfdGuestMemory([{ gpa: 0, size: 5 * GiB }]);
    const fd = mem.mappedRegions[0]!.fd;
    try {
      const line = 4 * GiB;
      mem.writeU64(line - 4, 0x44332211, 0x88776655); // straddles the two mappings
      mem.writeU32(line - 8, 0xaabbccdd); // below, in the [2G, 4G) chunk
      mem.writeU32(line + 4, 0x01020304); // above, in the [4G, 5G) chunk
      mem.writeU8(5 * GiB - 1, 0xee); // last byte of the region
      // bytes landed at the matching file offsets (pread is independent of the mappings)
      expect([...pread(fd, 16, line - 8)]).toEqual([0xdd, 0xcc, 0xbb, 0xaa, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x04, 0x03, 0x02, 0x01]);
      expect(pread(fd, 1, 5 * GiB - 1)[0]).toBe(0xee);
      expect(mem.readU64Big(line - 4)).toBe(0x8877665544332211n);
      expect(mem.readU32(line - 2)).toBe(0x66554433);
      expect(mem.readU32(line + 4)).toBe(0x01020304);
      expect(() => mem.readU16(5 * GiB - 1)).toThrow(GuestMemoryFault);
      // a bulk copy across the line
      const src = Uint8Array.from({ length: 64 }, (_, i) => i);
      mem.writeBytes(line - 32, src);
      expect([...pread(fd, 64, line - 32)]).toEqual([...src]);
      // still sparse: the test used a few pages, not 5 GiB
      expect(fstatSync(fd).blocks * 512).toBeLessThan(1024 * 1024);
    } finally {
      mem.close();
    }
  });

  it('refuses a region the file does not back (it would SIGBUS), with EINVAL', () => {
    const fd = native.memfdCreate('short', MFD_CLOEXEC);
    try {
      ftruncateSync(fd, 0x10000);
      expect(errnoOfThrown(() => new MappedGuestMemory([{ gpa: 0, size: 0x20000, fd }]))).toBe(Errno.EINVAL);
      expect(errnoOfThrown(() => new MappedGuestMemory([{ gpa: 0, size: 0x10000, fd, mmapOffset: 0x1000 }]))).toBe(Errno.EINVAL);
      const ok = new MappedGuestMemory([{ gpa: 0, size: 0x8000, fd, mmapOffset: 0x8000 }]);
      ok.writeU32(0, 1);
      expect(pread(fd, 4, 0x8000).readUInt32LE(0)).toBe(1);
      ok.close();
      expect(native.isOpen(fd)).toBe(true); // not owned: the caller closes it
    } finally {
      native.close(fd);
    }
  });

  it('reports a bad fd as EBADF and validates the table (EINVAL) before mapping', () => {
    expect(errnoOfThrown(() => new MappedGuestMemory([{ gpa: 0, size: 0x1000, fd: 999_999 }]))).toBe(Errno.EBADF);
    expect(errnoOfThrown(() => new MappedGuestMemory([{ gpa: 0x800, size: 0x1000, fd: 0 }]))).toBe(Errno.EINVAL);
  });

  it('maps several regions of one file at their offsets', () => {
    const fd = native.memfdCreate('multi', MFD_CLOEXEC);
    try {
      ftruncateSync(fd, 0x4000);
      const mem = new MappedGuestMemory([
        { gpa: 0x10_0000, size: 0x1000, fd, mmapOffset: 0x3000 },
        { gpa: 0x0, size: 0x2000, fd, mmapOffset: 0x0 },
      ]);
      mem.writeU32(0x10_0000, 0x31);
      mem.writeU32(0x1ffc, 0x32);
      expect(pread(fd, 4, 0x3000).readUInt32LE(0)).toBe(0x31);
      expect(pread(fd, 4, 0x1ffc).readUInt32LE(0)).toBe(0x32);
      expect(mem.mappedRegions.map((r) => [r.gpa, r.mmapOffset])).toEqual([
        [0, 0],
        [0x10_0000, 0x3000],
      ]);
      mem.close();
    } finally {
      native.close(fd);
    }
  });
});

describe('file-backed memory and the mapped dirty log', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vitsd-file-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('openFileGuestMemory creates, grows and maps a file; writes reach the file', () => {
    const path = join(dir, 'ram');
    const mem = openFileGuestMemory(path, [{ gpa: 0x4000_0000, size: 0x2000 }], { create: true });
    mem.writeU32(0x4000_1000, 0xc0ffee);
    mem.sync();
    mem.close();
    const fd = openSync(path, 'r');
    try {
      expect(fstatSync(fd).size).toBe(0x2000);
      expect((fstatSync(fd).mode & 0o777) & ~0o600).toBe(0);
      expect(pread(fd, 4, 0x1000).readUInt32LE(0)).toBe(0xc0ffee);
    } finally {
      closeSync(fd);
    }
    // reopen without create: the data is still there
    const again = openFileGuestMemory(path, [{ gpa: 0, size: 0x2000 }]);
    expect(again.readU32(0x1000)).toBe(0xc0ffee);
    again.close();
    expect(errnoOfThrown(() => openFileGuestMemory(join(dir, 'missing'), [{ gpa: 0, size: 0x1000 }]))).toBe(Errno.ENOENT);
  });

  it('mapDirtyLog maps a log at an unaligned offset; guest writes set its bits in the file', () => {
    const path = join(dir, 'log');
    const fd = openSync(path, 'w+');
    try {
      writeSync(fd, Buffer.alloc(0x3000));
      const offset = 0x1010; // not page aligned
      const dirty = mapDirtyLog(fd, 4, offset); // 32 pages: [0, 128 KiB)
      const mem = createMemfdGuestMemory([{ gpa: 0x1000, size: 0x1f000 }]);
      try {
        mem.setDirtyLog(dirty.log);
        mem.writeU32(0x1000, 1); // page 1
        mem.writeU64(0x9ffc, 1, 1); // pages 9 and 10
        mem.fill(0x1f000, 0x1000, 1); // page 31
        expect(dirtyPages(dirty.log)).toEqual([1, 9, 10, 31]);
        // byte 0: bit 1; byte 1: bits 1, 2 (pages 9, 10); byte 3: bit 7 (page 31)
        expect([...pread(fd, 4, offset)]).toEqual([0b10, 0b110, 0, 0b1000_0000]);
        expect(pread(fd, 1, offset - 1)[0]).toBe(0); // nothing outside the log
        expect(pread(fd, 1, offset + 4)[0]).toBe(0);
        expect(() => mem.setDirtyLog(dirty.log.subarray(0, 3))).toThrow(ErrnoError);
      } finally {
        mem.setDirtyLog(null);
        mem.close();
        dirty.close();
        dirty.close(); // idempotent
      }
      expect(errnoOfThrown(() => mapDirtyLog(fd, 0x4000, 0))).toBe(Errno.EINVAL); // beyond the file
      expect(errnoOfThrown(() => mapDirtyLog(fd, 0, 0))).toBe(Errno.EINVAL);
    } finally {
      closeSync(fd);
    }
  });
});
