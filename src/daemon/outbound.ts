/**
 * Replies waiting to be sent on one connection. Handlers write replies in place (reserve()
 * returns an offset into `buf`); the connection sends [start, end) and keeps what a
 * partial send left over for the next writable event.
 */
const INITIAL_CAPACITY = 64 * 1024;

export class OutboundBuffer {
  buf: Uint8Array;
  view: DataView;
  start = 0;
  end = 0;

  constructor(initialCapacity = INITIAL_CAPACITY) {
    this.buf = new Uint8Array(initialCapacity);
    this.view = new DataView(this.buf.buffer);
  }

  /** Bytes waiting to be sent. */
  get pending(): number {
    return this.end - this.start;
  }

  /**
   * Appends n zero bytes and returns their offset in buf. The buffer may move: read
   * `view`/`buf` after calling this.
   */
  reserve(n: number): number {
    if (this.start === this.end) this.start = this.end = 0;
    if (this.buf.length - this.end < n) this.makeRoom(n);
    const at = this.end;
    this.buf.fill(0, at, at + n);
    this.end = at + n;
    return at;
  }

  /** Drops the last n bytes appended (a reply that turned out not to be wanted). */
  unreserve(n: number): void {
    this.end -= n;
  }

  private makeRoom(n: number): void {
    if (this.start > 0) {
      this.buf.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
      if (this.buf.length - this.end >= n) return;
    }
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.end + n));
    grown.set(this.buf.subarray(0, this.end));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }

  /** Marks n bytes as sent. */
  consume(n: number): void {
    this.start += n;
    if (this.start >= this.end) {
      this.start = this.end = 0;
      // A burst can grow the buffer a lot; give the memory back once it is drained.
      if (this.buf.length > 4 * INITIAL_CAPACITY) {
        this.buf = new Uint8Array(INITIAL_CAPACITY);
        this.view = new DataView(this.buf.buffer);
      }
    }
  }
}
