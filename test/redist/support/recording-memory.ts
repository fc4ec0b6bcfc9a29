/**
 * The real ArrayBufferGuestMemory (src/memory) plus what the redist tests need to check
 * which guest bytes were written: every successful writeU8 / writeBytes, and every wroteWindow
 * (how a write made in place through writableWordWindow is declared), is recorded: those are
 * the only writes the LPI system makes. peek/poke give the test byte access without recording.
 */
import { ArrayBufferGuestMemory } from '../../../src/memory/array-buffer-guest-memory.js';

export class RecordingGuestMemory extends ArrayBufferGuestMemory {
  /** Successful writes made by the code under test, in order. */
  readonly writes: { gpa: number; len: number }[] = [];
  private quiet = false;

  override writeU8(gpa: number, value: number): void {
    super.writeU8(gpa, value);
    if (!this.quiet) this.writes.push({ gpa, len: 1 });
  }

  override writeBytes(gpa: number, src: Uint8Array, srcOffset = 0, len = src.length - srcOffset): void {
    super.writeBytes(gpa, src, srcOffset, len);
    if (!this.quiet) this.writes.push({ gpa, len });
  }

  override wroteWindow(gpa: number, len: number): void {
    super.wroteWindow(gpa, len);
    if (!this.quiet) this.writes.push({ gpa, len });
  }

  /** Test helper: reads one byte. */
  peek(gpa: number): number {
    return this.readU8(gpa);
  }

  /** Test helper: writes one byte without recording it. */
  poke(gpa: number, value: number): void {
    this.quiet = true;
    try {
      this.writeU8(gpa, value);
    } finally {
      this.quiet = false;
    }
  }
}
