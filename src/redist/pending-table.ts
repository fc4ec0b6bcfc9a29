/**
 * LPI pending tables in guest RAM (GICR_PENDBASER): one bit per INTID from 0, byte
 * INTID / 8, bit INTID % 8; LPI bits start at byte 1024 (kvm-its-abi.md 2.8). With 16 ID
 * bits a table is 8 KiB: its LPI bytes 1024..8191 lie in the first two 4 KiB pages of the
 * (64 KiB aligned) table.
 *
 * The save works a 32-bit word (32 INTIDs) at a time over the span of each page that holds
 * LPIs targeting the table's vCPU, merging their pending latches (bits of other LPIs are
 * kept): in place in guest RAM where the span lies in one backing view (the dirty log set
 * after the data, when a word changed), else on a copy written back when a byte changed.
 * Guest RAM ends up with exactly the bytes KVM's byte-by-byte vgic_v3_save_pending_tables
 * leaves, and the pages logged as written are exactly those holding a changed byte
 * (unchanged words may be rewritten with their own value: no guest-visible difference).
 *
 * Guest memory regions are 4 KiB aligned, so a span inside one page lies inside one region
 * (a bulk access never straddles two regions where byte accesses would not).
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import { LPI_BASE } from './types.js';

/** Word ranges [from, to) of each 4 KiB page that holds LPI bits (word w = bytes 4w..4w+3). */
const PAGE_WORD_RANGES: readonly (readonly [number, number])[] = [
  [LPI_BASE >>> 5, 4096 >>> 2], // bytes 1024..4095
  [4096 >>> 2, 8192 >>> 2], // bytes 4096..8191
];
/** Size of the part of a pending table that holds LPI bits (16 ID bits). */
export const PENDING_TABLE_BYTES = 8192;

/** Scratch output of targetSpan (first, last word). */
const span = new Int32Array(2);

/** First and last word of [from, to) with a target bit, into `span`; false if none. */
function targetSpan(targets: Uint32Array, from: number, to: number): boolean {
  let first = from;
  while (first < to && targets[first] === 0) first++;
  if (first === to) return false;
  let last = to - 1;
  while (targets[last] === 0) last--;
  span[0] = first;
  span[1] = last;
  return true;
}

/**
 * The target bitmap and the latches of the table being saved, copied here before the merge
 * (a memcpy of 7 KiB each): as module constants, V8 compiles the merge loop with their
 * address and length as constants, where for arrays passed in it reloads both on every
 * access (measured: SAVE_PENDING_TABLES of 57344 LPIs on 8 vCPUs ~18 us instead of ~32,
 * copies included).
 */
const TARGETS = new Uint32Array(PAGE_WORD_RANGES[PAGE_WORD_RANGES.length - 1]![1]);
const LATCHES = new Uint32Array(PAGE_WORD_RANGES[PAGE_WORD_RANGES.length - 1]![1]);

/** Word access to the scratch copy: a Uint32Array where the host is little-endian (all usual Node hosts). */
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * True when every byte the save needs in the table at `base` is inside guest RAM.
 * `targets` = the vCPU's target bitmap (2048 words; bit = LPI exists and targets it).
 */
export function pendingTableAccessible(memory: GuestMemory, base: number, targets: Uint32Array): boolean {
  for (let p = 0; p < PAGE_WORD_RANGES.length; p++) {
    const range = PAGE_WORD_RANGES[p]!;
    if (!targetSpan(targets, range[0], range[1])) continue;
    if (!memory.contains(base + span[0]! * 4, (span[1]! - span[0]! + 1) * 4)) return false;
  }
  return true;
}

/** Reusable copy of one pending table (bytes, and word views over the same memory). */
export class PendingTableScratch {
  readonly bytes = new Uint8Array(PENDING_TABLE_BYTES);
  readonly words = new Uint32Array(this.bytes.buffer);
  readonly view = new DataView(this.bytes.buffer);
}

/**
 * Writes the pending latch of every LPI that has a target into its target vCPU's table:
 * table v at bases[v], with the LPIs whose bits are set in targets[v] (2048 words).
 * `latches` = VM-wide pending bitmap (2048 words). Adds the bytes written to
 * counter.pendingTableWrites as it goes. Throws what the memory throws (GuestMemoryFault,
 * GuestMemoryFrozen); the tables before the failing one stay written.
 */
export function writePendingTables(
  memory: GuestMemory,
  bases: ArrayLike<number>,
  targets: readonly Uint32Array[],
  latches: Uint32Array,
  scratch: PendingTableScratch,
  counter: { pendingTableWrites: number },
): void {
  const from = PAGE_WORD_RANGES[0]![0];
  LATCHES.set(latches.subarray(from, LATCHES.length), from);
  for (let v = 0; v < targets.length; v++) {
    counter.pendingTableWrites += savePendingTable(memory, bases[v]!, targets[v]!, scratch);
  }
}

/** One vCPU's table (writePendingTables, LATCHES loaded); returns the number of bytes written. */
function savePendingTable(memory: GuestMemory, base: number, targets: Uint32Array, scratch: PendingTableScratch): number {
  let written = 0;
  let copied = false;
  for (let p = 0; p < PAGE_WORD_RANGES.length; p++) {
    const range = PAGE_WORD_RANGES[p]!;
    if (!targetSpan(targets, range[0], range[1])) continue;
    const first = span[0]!;
    const last = span[1]!;
    if (!copied) {
      const from = PAGE_WORD_RANGES[0]![0];
      TARGETS.set(targets.subarray(from, TARGETS.length), from);
      copied = true;
    }
    const from = first * 4;
    const len = (last - first + 1) * 4;
    const window = LITTLE_ENDIAN_HOST ? memory.writableWordWindow(base + from, len) : null;
    if (window !== null) {
      // (words rewritten with their own value are no change the guest can see)
      if (mergeWords(window.words, window.index - first, first, last) !== 0) {
        memory.wroteWindow(base + from, len);
        written += len;
      }
      continue;
    }
    memory.readBytes(base + from, scratch.bytes, from, len);
    const changed = LITTLE_ENDIAN_HOST
      ? mergeWords(scratch.words, 0, first, last)
      : mergeWordsPortable(scratch.view, first, last);
    if (changed !== 0) {
      memory.writeBytes(base + from, scratch.bytes, from, len);
      written += len;
    }
  }
  return written;
}

/**
 * words[at + w] = (words[at + w] & ~TARGETS[w]) | (LATCHES[w] & TARGETS[w]) for w in
 * [first, last]; returns the OR of all changes (0: nothing changed). Branch-free: words
 * without a target bit are rewritten unchanged.
 */
function mergeWords(words: Uint32Array, at: number, first: number, last: number): number {
  const targets = TARGETS; // (the module constants themselves: see TARGETS)
  const latches = LATCHES;
  let changes = 0;
  for (let w = first; w <= last; w++) {
    const t = targets[w]!;
    const old = words[at + w]!;
    const now = (old & ~t) | (latches[w]! & t);
    words[at + w] = now;
    changes |= old ^ now;
  }
  return changes;
}

/** mergeWords on a big-endian host: the table's words are little-endian. */
function mergeWordsPortable(view: DataView, first: number, last: number): number {
  let changes = 0;
  for (let w = first; w <= last; w++) {
    const t = TARGETS[w]!;
    const old = view.getUint32(w * 4, true);
    const now = (old & ~t) | (LATCHES[w]! & t);
    view.setUint32(w * 4, now >>> 0, true);
    changes |= old ^ now;
  }
  return changes;
}
