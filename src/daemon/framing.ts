/**
 * Incremental framing of the request stream of one connection.
 *
 * Bytes are received straight into `buf` (reserve() then commit()); next() then yields the
 * complete messages one by one, as views into `buf` (no copy, no allocation per message).
 * A message may arrive in pieces and several may arrive in one read.
 *
 * File descriptors arrive with the first bytes of the sendmsg() that carried them. They are
 * attached to the message that contains the first byte of the chunk they came with — the
 * message being parsed at the time they arrive — by remembering the absolute stream offset
 * of that byte.
 *
 * The header is checked as soon as its 16 bytes are in (an oversized `size` is refused
 * before any payload is buffered), so the buffer never holds more than one maximal message
 * plus one read.
 */
import { HEADER_SIZE, MAX_PAYLOAD_SIZE } from '../protocol/constants.js';
import { checkRequestHeader, FramingError, type FramingErrorCode } from '../protocol/header.js';

/** fds one message may accumulate before further ones are closed on arrival (and the message refused). */
export const MAX_PENDING_FDS = 32;
const INITIAL_CAPACITY = 256 * 1024;
/** Largest buffer ever needed: one maximal message plus one read. */
const MAX_CAPACITY = HEADER_SIZE + MAX_PAYLOAD_SIZE + INITIAL_CAPACITY;

/** A message parsed out of the stream. Reused by the parser: valid until the next call. */
export interface Frame {
  request: number;
  flags: number;
  /** Payload bytes. */
  size: number;
  seq: number;
  /** Index of the payload in FrameParser.buf. */
  payloadOffset: number;
  /** fds that arrived with this message; a handler that keeps one sets its slot to -1. */
  fds: number[];
  /** fds were lost on the way (control data truncated, or over MAX_PENDING_FDS). */
  fdsLost: boolean;
  /** Set when next() returned FrameStatus.FRAMING_ERROR. */
  framingError: FramingErrorCode;
}

export const FrameStatus = {
  /** No complete message in the buffer. */
  NEED_MORE: 0,
  /** `frame` holds the next message. */
  MESSAGE: 1,
  /** The header in `frame` breaks the framing: the stream cannot be resynchronised. */
  FRAMING_ERROR: 2,
} as const;
export type FrameStatusCode = (typeof FrameStatus)[keyof typeof FrameStatus];

interface FdBatch {
  /** Absolute stream offset of the first byte of the chunk the fds came with. */
  pos: number;
  fds: number[];
  lost: boolean;
}

export class FrameParser {
  /** Receive buffer: bytes [start, end) are received and not yet consumed. */
  buf: Uint8Array;
  view: DataView;
  private start = 0;
  private end = 0;
  /** Absolute stream offset of buf[0]. */
  private base = 0;
  private readonly batches: FdBatch[] = [];
  private pendingFdCount = 0;
  private broken = false;
  readonly frame: Frame = {
    request: 0, flags: 0, size: 0, seq: 0, payloadOffset: 0, fds: [], fdsLost: false, framingError: FramingError.NONE,
  };

  constructor(initialCapacity = INITIAL_CAPACITY) {
    this.buf = new Uint8Array(initialCapacity);
    this.view = new DataView(this.buf.buffer);
  }

  /** Index in buf where the next received bytes go. */
  get writeOffset(): number {
    return this.end;
  }

  /** Free bytes after writeOffset. */
  get free(): number {
    return this.buf.length - this.end;
  }

  /** Received bytes not yet consumed by next(). */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Total bytes committed since creation. */
  get streamOffset(): number {
    return this.base + this.end;
  }

  /**
   * Makes room for at least `minFree` bytes after writeOffset, and for the whole message
   * in progress: compacts unconsumed bytes to the front and grows the buffer when needed.
   */
  reserve(minFree: number): void {
    if (this.start === this.end) {
      this.base += this.start;
      this.start = this.end = 0;
    }
    const needed = Math.max(minFree, this.bytesMissingForCurrentMessage());
    if (this.buf.length - this.end >= needed) return;
    if (this.start > 0) {
      this.buf.copyWithin(0, this.start, this.end);
      this.base += this.start;
      this.end -= this.start;
      this.start = 0;
    }
    if (this.buf.length - this.end >= needed) return;
    const capacity = Math.min(MAX_CAPACITY, Math.max(this.buf.length * 2, this.end + needed));
    if (capacity <= this.buf.length) return;
    const grown = new Uint8Array(capacity);
    grown.set(this.buf.subarray(0, this.end));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }

  /** Bytes still missing for the message at `start`, once its header is in. */
  private bytesMissingForCurrentMessage(): number {
    const have = this.end - this.start;
    if (have < HEADER_SIZE) return 0;
    const size = this.view.getUint32(this.start + 8, true);
    if (size > MAX_PAYLOAD_SIZE) return 0;
    return Math.max(0, HEADER_SIZE + size - have);
  }

  /**
   * Records that `n` bytes were written at writeOffset, with the fds that came with them.
   * fdsLost marks a chunk whose fds were truncated on the way (MSG_CTRUNC).
   * Returns the fds closed on arrival because too many were pending (the caller closes them).
   */
  commit(n: number, fds: readonly number[] | null, fdsLost = false): number[] | null {
    const pos = this.base + this.end;
    this.end += n;
    if ((fds === null || fds.length === 0) && !fdsLost) return null;
    let refused: number[] | null = null;
    let kept: number[] = [];
    let lost = fdsLost;
    if (fds !== null && fds.length > 0) {
      if (this.pendingFdCount + fds.length > MAX_PENDING_FDS) {
        refused = fds.slice();
        lost = true;
      } else {
        kept = fds.slice();
        this.pendingFdCount += kept.length;
      }
    }
    this.batches.push({ pos, fds: kept, lost });
    return refused;
  }

  /**
   * Parses the next message. MESSAGE: `frame` describes it and its payload is in buf until
   * the next reserve(). FRAMING_ERROR: `frame` holds the offending header; the parser is then
   * broken (every later call returns FRAMING_ERROR without consuming) and the connection
   * must be closed.
   */
  next(): FrameStatusCode {
    const f = this.frame;
    if (this.broken) return FrameStatus.FRAMING_ERROR;
    const have = this.end - this.start;
    if (have < HEADER_SIZE) return FrameStatus.NEED_MORE;
    const v = this.view;
    const s = this.start;
    const flags = v.getUint32(s + 4, true);
    const size = v.getUint32(s + 8, true);
    const error = checkRequestHeader(flags, size);
    if (error !== FramingError.NONE) {
      this.fillHeader(f, s, flags, size);
      f.framingError = error;
      this.broken = true;
      return FrameStatus.FRAMING_ERROR;
    }
    if (have < HEADER_SIZE + size) return FrameStatus.NEED_MORE;
    this.fillHeader(f, s, flags, size);
    f.framingError = FramingError.NONE;
    this.start = s + HEADER_SIZE + size;
    if (f.fds.length !== 0) f.fds.length = 0;
    f.fdsLost = false;
    if (this.batches.length !== 0) this.attachFds(f, this.base + this.start);
    return FrameStatus.MESSAGE;
  }

  private fillHeader(f: Frame, s: number, flags: number, size: number): void {
    f.request = this.view.getUint32(s, true);
    f.flags = flags;
    f.size = size;
    f.seq = this.view.getUint32(s + 12, true);
    f.payloadOffset = s + HEADER_SIZE;
  }

  /** Moves every fd batch that arrived within the message ending at messageEnd (absolute) to f. */
  private attachFds(f: Frame, messageEnd: number): void {
    let taken = 0;
    while (taken < this.batches.length && this.batches[taken]!.pos < messageEnd) {
      const b = this.batches[taken]!;
      for (const fd of b.fds) f.fds.push(fd);
      this.pendingFdCount -= b.fds.length;
      if (b.lost) f.fdsLost = true;
      taken++;
    }
    if (taken > 0) this.batches.splice(0, taken);
  }

  /** Takes every fd not attached to a parsed message (the connection is closing). */
  drainFds(): number[] {
    const out: number[] = [];
    for (const b of this.batches) for (const fd of b.fds) out.push(fd);
    this.batches.length = 0;
    this.pendingFdCount = 0;
    return out;
  }

  /** Whether a framing error was found. */
  get isBroken(): boolean {
    return this.broken;
  }
}
