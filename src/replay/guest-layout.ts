/**
 * Guest RAM for a replay: only what the ITS and the redistributors will touch, as a small
 * table of page-aligned regions (SET_MEM_TABLE takes at most 8).
 */
import type { GuestRegion } from '../memory/guest-memory.js';
import type { AddressRange } from './trace-analysis.js';

export const PAGE = 0x1000;
/** An L2 device-table page (and the alignment of any scratch table) with 64 KiB ITS pages. */
export const TABLE_PAGE = 0x1_0000;
/** Regions closer than this are joined into one (fewer regions, little extra memory). */
const JOIN_GAP = 0x10_0000;
export const MAX_REGIONS = 8;
/** Addresses must stay below the 52-bit PA space. */
const MAX_GPA = 2 ** 52;

export interface ReplayLayout {
  readonly regions: readonly GuestRegion[];
  /** Free, mapped, 64 KiB aligned space for tables the trace does not show (L2 device pages). */
  readonly scratch: { readonly gpa: number; readonly size: number };
  /** Bytes mapped in all. */
  readonly bytes: number;
}

const alignDown = (v: number, a: number): number => Math.floor(v / a) * a;
const alignUp = (v: number, a: number): number => Math.ceil(v / a) * a;

/**
 * Page-aligns and merges the ranges, adds `scratchBytes` of scratch space above them, then
 * joins the closest neighbours until at most `maxRegions` regions remain.
 */
export function layoutGuestRam(ranges: readonly AddressRange[], scratchBytes: number, maxRegions = MAX_REGIONS): ReplayLayout {
  const spans: Array<[number, number]> = [];
  for (const r of ranges) {
    if (!(r.size > 0) || r.gpa < 0 || r.gpa + r.size > MAX_GPA) continue;
    spans.push([alignDown(r.gpa, PAGE), alignUp(r.gpa + r.size, PAGE)]);
  }
  const top = spans.reduce((m, s) => Math.max(m, s[1]), 0x4000_0000);
  const scratchGpa = alignUp(top, TABLE_PAGE);
  const scratchSize = alignUp(Math.max(scratchBytes, 0), TABLE_PAGE);
  if (scratchSize > 0) spans.push([scratchGpa, scratchGpa + scratchSize]);
  spans.sort((a, b) => a[0] - b[0]);

  const merged: Array<[number, number]> = [];
  for (const s of spans) {
    const last = merged[merged.length - 1];
    if (last && s[0] <= last[1] + JOIN_GAP) last[1] = Math.max(last[1], s[1]);
    else merged.push([s[0], s[1]]);
  }
  while (merged.length > maxRegions) {
    let best = 1;
    for (let i = 2; i < merged.length; i++) {
      if (merged[i]![0] - merged[i - 1]![1] < merged[best]![0] - merged[best - 1]![1]) best = i;
    }
    merged[best - 1]![1] = merged[best]![1];
    merged.splice(best, 1);
  }
  const regions = merged.map(([a, b]) => ({ gpa: a, size: b - a }));
  return {
    regions,
    scratch: { gpa: scratchGpa, size: scratchSize },
    bytes: regions.reduce((n, r) => n + r.size, 0),
  };
}
