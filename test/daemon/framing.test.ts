import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameParser, FrameStatus, MAX_PENDING_FDS } from '../../src/daemon/framing.js';
import { FramingError } from '../../src/protocol/header.js';

/** A request message: 16-byte header (request, flags, size, seq) then `size` payload bytes of value `fill`. */
function message(request: number, seq: number, size: number, fill = 0xab, flags = 1): Uint8Array {
  const m = new Uint8Array(16 + size);
  const v = new DataView(m.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size, true);
  v.setUint32(12, seq, true);
  m.fill(fill, 16);
  return m;
}

function push(p: FrameParser, bytes: Uint8Array, fds: number[] | null = null): void {
  p.reserve(bytes.length);
  p.buf.set(bytes, p.writeOffset);
  p.commit(bytes.length, fds);
}

interface Parsed {
  request: number;
  seq: number;
  size: number;
  payload: number[];
  fds: number[];
}

function drain(p: FrameParser): Parsed[] {
  const out: Parsed[] = [];
  while (p.next() === FrameStatus.MESSAGE) {
    const f = p.frame;
    out.push({ request: f.request, seq: f.seq, size: f.size, payload: f.size <= 4096 ? [...p.buf.subarray(f.payloadOffset, f.payloadOffset + f.size)] : [], fds: [...f.fds] });
  }
  return out;
}

describe('FrameParser', () => {
  it('reassembles a message split at every possible byte', () => {
    const m = message(9, 42, 32, 0x5a);
    for (let cut = 1; cut < m.length; cut++) {
      const p = new FrameParser(64);
      push(p, m.subarray(0, cut));
      expect(p.next()).toBe(FrameStatus.NEED_MORE);
      push(p, m.subarray(cut));
      const got = drain(p);
      expect(got).toHaveLength(1);
      expect(got[0]).toEqual({ request: 9, seq: 42, size: 32, payload: new Array<number>(32).fill(0x5a), fds: [] });
    }
  });

  it('splits several messages arriving in one read, in order', () => {
    const a = message(1, 1, 16, 1);
    const b = message(14, 2, 0);
    const c = message(10, 3, 8 + 64, 3);
    const all = new Uint8Array([...a, ...b, ...c]);
    const p = new FrameParser(64); // smaller than the input: forces growth
    push(p, all);
    expect(drain(p).map((x) => [x.request, x.seq, x.size])).toEqual([[1, 1, 16], [14, 2, 0], [10, 3, 72]]);
    expect(p.buffered).toBe(0);
  });

  it('attaches fds to the message whose first bytes they came with', () => {
    const a = message(2, 1, 8 + 24);
    const b = message(12, 2, 8);
    const p = new FrameParser();
    // a arrives in two pieces: fds with the first piece; then b with its own fd in one chunk.
    push(p, a.subarray(0, 5), [10, 11]);
    expect(p.next()).toBe(FrameStatus.NEED_MORE);
    push(p, a.subarray(5));
    push(p, b, [12]);
    expect(drain(p).map((x) => x.fds)).toEqual([[10, 11], [12]]);
  });

  it('fds arriving mid-message belong to that message, not the next', () => {
    const a = message(3, 1, 16);
    const b = message(15, 2, 0);
    const p = new FrameParser();
    push(p, a.subarray(0, 20));
    // The rest of a and all of b arrive together with an fd: the chunk starts inside a.
    push(p, new Uint8Array([...a.subarray(20), ...b]), [7]);
    expect(drain(p).map((x) => [x.seq, x.fds])).toEqual([[1, [7]], [2, []]]);
  });

  it('reports framing errors as soon as the header is in, and stays broken', () => {
    const cases: [number, number, number][] = [
      [0, 0, FramingError.BAD_VERSION],
      [1 | 4, 0, FramingError.REPLY_FLAG],
      [1 | 0x10, 0, FramingError.RESERVED_FLAGS],
      [1, (1 << 20) + 1, FramingError.OVERSIZED],
    ];
    for (const [flags, size, error] of cases) {
      const p = new FrameParser();
      const m = message(9, 5, 0, 0, flags);
      new DataView(m.buffer).setUint32(8, size, true);
      push(p, m);
      expect(p.next()).toBe(FrameStatus.FRAMING_ERROR);
      expect(p.frame.framingError).toBe(error);
      expect(p.frame.seq).toBe(5);
      expect(p.next()).toBe(FrameStatus.FRAMING_ERROR);
    }
  });

  it('accepts a 1 MiB payload and needs the whole of it', () => {
    const p = new FrameParser(1024);
    const m = message(99, 1, 1 << 20, 0x11);
    push(p, m.subarray(0, 100));
    expect(p.next()).toBe(FrameStatus.NEED_MORE);
    p.reserve(4096);
    // After seeing the header the parser makes room for the whole message.
    expect(p.free).toBeGreaterThanOrEqual((1 << 20) + 16 - 100);
    push(p, m.subarray(100));
    const got = drain(p);
    expect(got).toHaveLength(1);
    expect(got[0]!.size).toBe(1 << 20);
  });

  it('refuses fds beyond MAX_PENDING_FDS and marks the message', () => {
    const p = new FrameParser();
    const m = message(2, 1, 8);
    p.reserve(m.length);
    p.buf.set(m.subarray(0, 4), p.writeOffset);
    const many = Array.from({ length: MAX_PENDING_FDS }, (_, i) => 100 + i);
    expect(p.commit(4, many)).toBeNull();
    p.buf.set(m.subarray(4, 8), p.writeOffset);
    expect(p.commit(4, [500, 501])).toEqual([500, 501]);
    push(p, m.subarray(8));
    expect(p.next()).toBe(FrameStatus.MESSAGE);
    expect(p.frame.fds).toEqual(many);
    expect(p.frame.fdsLost).toBe(true);
  });

  it('drainFds returns fds of a message that never completed', () => {
    const p = new FrameParser();
    push(p, message(2, 1, 32).subarray(0, 10), [3, 4]);
    expect(p.next()).toBe(FrameStatus.NEED_MORE);
    expect(p.drainFds()).toEqual([3, 4]);
  });

  it('any chunking of a random message stream yields the same messages and fds', () => {
    const msg = fc.record({ request: fc.integer({ min: 0, max: 70 }), size: fc.integer({ min: 0, max: 300 }), fill: fc.integer({ min: 0, max: 255 }), nfds: fc.integer({ min: 0, max: 3 }) });
    fc.assert(
      fc.property(fc.array(msg, { minLength: 1, maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 50 }), (msgs, cuts) => {
        let nextFd = 1000;
        const chunks: { bytes: Uint8Array; fds: number[] }[] = [];
        const expected: Parsed[] = [];
        // Each message is sent as its own sendmsg (fds on its first chunk), cut further by `cuts`.
        let cutIndex = 0;
        msgs.forEach((m, seq) => {
          const bytes = message(m.request, seq, m.size, m.fill);
          const fds = Array.from({ length: m.nfds }, () => nextFd++);
          expected.push({ request: m.request, seq, size: m.size, payload: new Array<number>(m.size).fill(m.fill), fds });
          let at = 0;
          let first = true;
          while (at < bytes.length) {
            const len = Math.min(bytes.length - at, cuts[cutIndex++ % cuts.length]!);
            chunks.push({ bytes: bytes.subarray(at, at + len), fds: first ? fds : [] });
            first = false;
            at += len;
          }
        });
        const p = new FrameParser(128);
        const got: Parsed[] = [];
        for (const c of chunks) {
          push(p, c.bytes, c.fds.length > 0 ? c.fds : null);
          got.push(...drain(p));
        }
        expect(got).toEqual(expected);
      }),
      { numRuns: 200 },
    );
  });
});
