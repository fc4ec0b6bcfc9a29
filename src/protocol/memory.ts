/** SET_MEM_TABLE (code 2) and SET_LOG_BASE (code 3). */
import { MEM_REGION_SIZE, MEM_TABLE_HEAD_SIZE } from './constants.js';
import { fixedCodec, getU32, getU64, setU32, setU64, type PayloadCodec } from './codec.js';

/** One region: u64 guest_phys_addr, u64 memory_size, u64 mmap_offset (its fd travels in order). */
export interface MemRegionDesc {
  guestPhysAddr: bigint;
  memorySize: bigint;
  mmapOffset: bigint;
}

/** Request: u32 nregions, u32 reserved, then nregions x MemRegionDesc. */
export interface SetMemTableRequest {
  regions: MemRegionDesc[];
}

export function memTablePayloadSize(nregions: number): number {
  return MEM_TABLE_HEAD_SIZE + nregions * MEM_REGION_SIZE;
}

export function encodeMemRegion(view: DataView, o: number, r: MemRegionDesc): void {
  setU64(view, o, r.guestPhysAddr);
  setU64(view, o + 8, r.memorySize);
  setU64(view, o + 16, r.mmapOffset);
}

export function decodeMemRegion(view: DataView, o: number): MemRegionDesc {
  return { guestPhysAddr: getU64(view, o), memorySize: getU64(view, o + 8), mmapOffset: getU64(view, o + 16) };
}

export const SetMemTableRequestCodec: PayloadCodec<SetMemTableRequest> = {
  size: (v) => memTablePayloadSize(v.regions.length),
  encode(view, o, v) {
    setU32(view, o, v.regions.length);
    setU32(view, o + 4, 0);
    for (let i = 0; i < v.regions.length; i++) encodeMemRegion(view, o + MEM_TABLE_HEAD_SIZE + i * MEM_REGION_SIZE, v.regions[i]!);
  },
  decode(view, o, length) {
    // nregions as sent, bounded by what the payload holds (the table has checked they agree).
    const n = Math.min(getU32(view, o), Math.floor((length - MEM_TABLE_HEAD_SIZE) / MEM_REGION_SIZE));
    const regions: MemRegionDesc[] = [];
    for (let i = 0; i < n; i++) regions.push(decodeMemRegion(view, o + MEM_TABLE_HEAD_SIZE + i * MEM_REGION_SIZE));
    return { regions };
  },
};

/** Request: u64 log_size (bytes), u64 mmap_offset; the log's fd travels with it. */
export interface SetLogBaseRequest {
  logSize: bigint;
  mmapOffset: bigint;
}
export const SET_LOG_BASE_SIZE = 16;
export const SetLogBaseRequestCodec: PayloadCodec<SetLogBaseRequest> = fixedCodec<SetLogBaseRequest>(
  SET_LOG_BASE_SIZE,
  (view, o, v) => {
    setU64(view, o, v.logSize);
    setU64(view, o + 8, v.mmapOffset);
  },
  (view, o) => ({ logSize: getU64(view, o), mmapOffset: getU64(view, o + 8) }),
);
