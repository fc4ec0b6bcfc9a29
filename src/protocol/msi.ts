/**
 * SIGNAL_MSI (9) and SIGNAL_MSI_BATCH (10): struct kvm_msi on the wire.
 *
 * struct kvm_msi { u32 address_lo; u32 address_hi; u32 data; u32 flags; u32 devid; u8 pad[12]; }
 *
 * These are hot paths on both sides: besides the object codecs (cold, for tools and tests)
 * there are allocation-free writers/readers that work on a reused buffer.
 */
import {
  FLAG_NO_REPLY,
  HEADER_SIZE,
  KVM_MSI_ADDRESS_HI_OFFSET,
  KVM_MSI_ADDRESS_LO_OFFSET,
  KVM_MSI_DATA_OFFSET,
  KVM_MSI_DEVID_OFFSET,
  KVM_MSI_FLAGS_OFFSET,
  KVM_MSI_SIZE,
  MSI_BATCH_HEAD_SIZE,
  PROTOCOL_VERSION,
  REPLY_STATUS_SIZE,
  Request,
} from './constants.js';
import { fixedCodec, getU32, setU32, type PayloadCodec } from './codec.js';
import { writeHeader } from './header.js';

export interface KvmMsi {
  addressLo: number;
  addressHi: number;
  /** The EventID. */
  data: number;
  /** Bit 0: KVM_MSI_VALID_DEVID (required by vitsd). */
  flags: number;
  devid: number;
}

/** Writes one struct kvm_msi (pad zeroed). No allocation. */
export function writeKvmMsi(
  view: DataView,
  o: number,
  addressLo: number,
  addressHi: number,
  data: number,
  flags: number,
  devid: number,
): void {
  view.setUint32(o + KVM_MSI_ADDRESS_LO_OFFSET, addressLo >>> 0, true);
  view.setUint32(o + KVM_MSI_ADDRESS_HI_OFFSET, addressHi >>> 0, true);
  view.setUint32(o + KVM_MSI_DATA_OFFSET, data >>> 0, true);
  view.setUint32(o + KVM_MSI_FLAGS_OFFSET, flags >>> 0, true);
  view.setUint32(o + KVM_MSI_DEVID_OFFSET, devid >>> 0, true);
  view.setUint32(o + 20, 0, true);
  view.setUint32(o + 24, 0, true);
  view.setUint32(o + 28, 0, true);
}

/** Reads one struct kvm_msi into a caller-owned object. No allocation. */
export function readKvmMsiInto(view: DataView, o: number, out: KvmMsi): void {
  out.addressLo = view.getUint32(o + KVM_MSI_ADDRESS_LO_OFFSET, true);
  out.addressHi = view.getUint32(o + KVM_MSI_ADDRESS_HI_OFFSET, true);
  out.data = view.getUint32(o + KVM_MSI_DATA_OFFSET, true);
  out.flags = view.getUint32(o + KVM_MSI_FLAGS_OFFSET, true);
  out.devid = view.getUint32(o + KVM_MSI_DEVID_OFFSET, true);
}

export const KvmMsiCodec: PayloadCodec<KvmMsi> = fixedCodec<KvmMsi>(
  KVM_MSI_SIZE,
  (view, o, v) => writeKvmMsi(view, o, v.addressLo, v.addressHi, v.data, v.flags, v.devid),
  (view, o) => {
    const m: KvmMsi = { addressLo: 0, addressHi: 0, data: 0, flags: 0, devid: 0 };
    readKvmMsiInto(view, o, m);
    return m;
  },
);

/** SIGNAL_MSI_BATCH request: u32 count, u32 reserved, then count x struct kvm_msi. */
export interface MsiBatchRequest {
  msis: KvmMsi[];
}

export function msiBatchPayloadSize(count: number): number {
  return MSI_BATCH_HEAD_SIZE + count * KVM_MSI_SIZE;
}

/** Offset of MSI `index` in a batch payload starting at payloadOffset. */
export function msiBatchEntryOffset(payloadOffset: number, index: number): number {
  return payloadOffset + MSI_BATCH_HEAD_SIZE + index * KVM_MSI_SIZE;
}

export const MsiBatchRequestCodec: PayloadCodec<MsiBatchRequest> = {
  size: (v) => msiBatchPayloadSize(v.msis.length),
  encode(view, o, v) {
    setU32(view, o, v.msis.length);
    setU32(view, o + 4, 0);
    for (let i = 0; i < v.msis.length; i++) KvmMsiCodec.encode(view, msiBatchEntryOffset(o, i), v.msis[i]!);
  },
  decode(view, o, length) {
    const n = Math.min(getU32(view, o), Math.floor((length - MSI_BATCH_HEAD_SIZE) / KVM_MSI_SIZE));
    const msis: KvmMsi[] = [];
    for (let i = 0; i < n; i++) msis.push(KvmMsiCodec.decode(view, msiBatchEntryOffset(o, i), KVM_MSI_SIZE));
    return { msis };
  },
};

/** SIGNAL_MSI_BATCH reply fields: u32 processed, u32 delivered. */
export interface MsiBatchReply {
  processed: number;
  delivered: number;
}
export const MSI_BATCH_REPLY_SIZE = 8;
export const MsiBatchReplyCodec: PayloadCodec<MsiBatchReply> = fixedCodec<MsiBatchReply>(
  MSI_BATCH_REPLY_SIZE,
  (view, o, v) => {
    setU32(view, o, v.processed);
    setU32(view, o + 4, v.delivered);
  },
  (view, o) => ({ processed: getU32(view, o), delivered: getU32(view, o + 4) }),
);

// ---- whole messages on a reused buffer (client hot path) ----

/** Bytes of a SIGNAL_MSI request message (header + kvm_msi). */
export const SIGNAL_MSI_MESSAGE_SIZE = HEADER_SIZE + KVM_MSI_SIZE;
/** Bytes of a SIGNAL_MSI reply message (header + status). */
export const SIGNAL_MSI_REPLY_MESSAGE_SIZE = HEADER_SIZE + REPLY_STATUS_SIZE;
/** Bytes of a SIGNAL_MSI_BATCH reply message (header + status + processed/delivered). */
export const MSI_BATCH_REPLY_MESSAGE_SIZE = HEADER_SIZE + REPLY_STATUS_SIZE + MSI_BATCH_REPLY_SIZE;

/** Writes a whole SIGNAL_MSI request at o; returns its size. No allocation. */
export function writeSignalMsiMessage(
  view: DataView,
  o: number,
  seq: number,
  noReply: boolean,
  addressLo: number,
  addressHi: number,
  data: number,
  flags: number,
  devid: number,
): number {
  writeHeader(view, o, Request.SIGNAL_MSI, PROTOCOL_VERSION | (noReply ? FLAG_NO_REPLY : 0), KVM_MSI_SIZE, seq);
  writeKvmMsi(view, o + HEADER_SIZE, addressLo, addressHi, data, flags, devid);
  return SIGNAL_MSI_MESSAGE_SIZE;
}

/**
 * Writes the header and the count of a SIGNAL_MSI_BATCH message at o; the caller then
 * writes entry i with writeKvmMsi at msiBatchMessageEntryOffset(o, i). Returns the whole
 * message size. No allocation.
 */
export function writeMsiBatchMessageHead(view: DataView, o: number, seq: number, noReply: boolean, count: number): number {
  const size = msiBatchPayloadSize(count);
  writeHeader(view, o, Request.SIGNAL_MSI_BATCH, PROTOCOL_VERSION | (noReply ? FLAG_NO_REPLY : 0), size, seq);
  view.setUint32(o + HEADER_SIZE, count >>> 0, true);
  view.setUint32(o + HEADER_SIZE + 4, 0, true);
  return HEADER_SIZE + size;
}

export function msiBatchMessageEntryOffset(messageOffset: number, index: number): number {
  return msiBatchEntryOffset(messageOffset + HEADER_SIZE, index);
}
